// A fleet reached over IPv6: every host but the bastion has only IPv6 addresses
// (what a lab fleet past IPv4's documentation ranges is, bench/fleet.ts), so
// fleetfw reaches each at its private IPv6 address from the bastion's. The plan,
// the apply with its confirmation over a new connection, the persist and the
// lockout check all run over IPv6, and the rules fleetfw adds let the bastion in
// and nobody else.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fleetYaml, TEMPLATES_IPV6 } from '../bench/fleet.js';
import { loadInventory } from '../src/inventory/load.js';
import { labSpecFromInventory, startLab, type Lab } from '../src/lab/lab.js';
import { fleetfw, liveRules, persistedRules, requireLabPrerequisites, writeTemplate } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'fleetfw-e2e-ipv6-'));
const templates = join(dir, 'templates');
cpSync(TEMPLATES_IPV6, templates, { recursive: true });
const inventory = join(dir, 's1-8-ipv6.yaml');
writeFileSync(inventory, fleetYaml(8, { ipv6: true }).replace(JSON.stringify(TEMPLATES_IPV6), JSON.stringify(templates)));
const WP1 = loadInventory(inventory).hosts.find((h) => h.name === 'wordpress-1')!.private6!;
const MGMT_IN = '-A INPUT -s 2001:db8:1::1/128 -i eth1 -p tcp -m tcp --dport 22 -j ACCEPT';
let lab: Lab;

beforeAll(async () => {
  requireLabPrerequisites();
  lab = await startLab(labSpecFromInventory(loadInventory(inventory)));
});

afterAll(async () => {
  await lab?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('hosts reached at their private IPv6 address', () => {
  it('the inventory gives wordpress-1 no IPv4 address at all', () => {
    const wp = loadInventory(inventory).hosts.find((h) => h.name === 'wordpress-1')!;
    expect([wp.public, wp.private, wp.private6]).toEqual([undefined, undefined, '2001:db8:1::3']);
  });

  it('plan reads every host through the bastion over IPv6', async () => {
    const r = await fleetfw(lab, ['plan', '--inventory', inventory, '--format', 'json']);
    expect(r.code, r.stderr).toBe(2);
    expect((JSON.parse(r.stdout) as { summary: { changes: number } }).summary.changes).toBe(8);
  });

  it('apply confirms every host over a new IPv6 connection and persists the IPv6 path', async () => {
    const r = await fleetfw(lab, ['apply', '--inventory', inventory, '--yes', '--window', '20']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/8 confirmed, 0 unchanged, 0 rolled back, 0 failed/);
    expect((await liveRules(lab, 'wordpress-1')).v6.split('\n')).toContain(MGMT_IN);
    expect((await persistedRules(lab, 'wordpress-1')).v6.split('\n')).toContain(MGMT_IN);
    const again = await fleetfw(lab, ['plan', '--inventory', inventory]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
  });

  it('the bastion gets in over IPv6; the intruder on the same network does not', async () => {
    expect(await lab.probe('tunnel-1', WP1, 'tcp', 22)).toBe('open');
    expect(await lab.probe('intruder', WP1, 'tcp', 22)).toBe('timeout');
  });

  it('a template that cuts the IPv6 path is refused before anything is sent, naming its file and line', async () => {
    writeTemplate(templates, 'roles/wordpress.v6', '*raw\n-A PREROUTING -p tcp --dport 22 -j DROP\nCOMMIT\n');
    try {
      const before = (await liveRules(lab, 'wordpress-1')).v6;
      const r = await fleetfw(lab, ['apply', '--inventory', inventory, '--yes', '--window', '20']);
      expect(r.code, r.stdout + r.stderr).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/SSH from bastion tunnel-1 to wordpress-1 would be dropped[^\n]*roles\/wordpress\.v6:2/);
      expect((await liveRules(lab, 'wordpress-1')).v6).toBe(before);
    } finally {
      writeTemplate(templates, 'roles/wordpress.v6', '*filter\n-A INPUT -i {{ self.if.private }} -p tcp -s {{ group.haproxy.private6 }} --dport 80 -j ACCEPT\nCOMMIT\n');
    }
  });
});
