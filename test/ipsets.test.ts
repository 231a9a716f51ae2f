// Issue 5 end to end: S1 scaled to 30 backends, where the backend whitelist
// (seed 000) renders as one ipset match per host instead of one rule per peer.
// Applied in the lab: sets load before the rules, members pass and others do
// not, a reboot brings the sets back before the rules, a member added shows in
// the plan, a revert puts the previous set back, and so does a rollback; a saved
// plan applies its sets as reviewed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInventory } from '../src/inventory/load.js';
import { labSpecFromInventory, startLab, type Lab } from '../src/lab/lab.js';
import { fleetfw, inventoryPath, liveRules, ROOT, requireLabPrerequisites, waitFor } from './support.js';

const SET = 'fleetfw-backend-private';
const dir = mkdtempSync(join(tmpdir(), 'fleetfw-e2e-ipsets-'));

/** S1 plus `extra` WordPress backends wp-N (192.0.2.100+), so backend has 4 + extra members. */
function scaledS1(extra: number): string {
  const base = readFileSync(inventoryPath('s1'), 'utf8').replace('templates: ../templates', `templates: ${join(ROOT, 'templates')}`);
  const hosts = Array.from({ length: extra }, (_, i) => `  wp-${i + 1}: { public: 203.0.113.${100 + i}, private: 192.0.2.${100 + i}, roles: [backend, wordpress] }`);
  const file = join(dir, `s1-${4 + extra}-backends.yaml`);
  writeFileSync(file, base.replace('hosts:\n', `hosts:\n${hosts.join('\n')}\n`));
  return file;
}

const S30 = scaledS1(26);
const S31 = scaledS1(27); // one member more: wp-27, 192.0.2.126
let lab: Lab;

const members = async (host: string): Promise<string[]> => {
  const r = await lab.exec(host, ['ipset', 'list', SET]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.split('Members:\n')[1]!.split('\n').filter(Boolean).sort();
};
const mysql3306 = (from: string) => lab.probe(from, '192.0.2.14', 'tcp', 3306);

beforeAll(async () => {
  requireLabPrerequisites();
  // The lab holds every host of the larger fleet; the 30-backend inventory leaves wp-27 out.
  lab = await startLab(labSpecFromInventory(loadInventory(S31)));
  await lab.listen('mysql-1', 'tcp', 3306);
});

afterAll(async () => {
  await lab?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('S1 with 30 backends: the whitelist as an ipset', () => {
  it('applies: one set rule per host, the set loaded with its 30 members', async () => {
    const r = await fleetfw(lab, ['apply', '--inventory', S30, '--yes', '--window', '20']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const rules = (await liveRules(lab, 'mysql-1')).v4.split('\n').filter((l) => l.includes('match-set'));
    expect(rules).toEqual([`-A INPUT ! -s 192.0.2.14/32 -i eth1 -p tcp -m set --match-set ${SET} src -j ACCEPT`]);
    expect(await members('mysql-1')).toHaveLength(30);
    // mysql-2 logs in as deploy: ipset through sudo -n too.
    expect(await members('mysql-2')).toHaveLength(30);
  });

  it('lets a member through and keeps a non-member out, with real packets', async () => {
    expect(await mysql3306('wp-20')).toBe('open');
    expect(await mysql3306('intruder')).not.toBe('open');
    expect(await mysql3306('wp-27')).not.toBe('open'); // not in this inventory, so not in the set
  });

  it('plans no change right after the apply', async () => {
    const r = await fleetfw(lab, ['plan', '--inventory', S30, '--limit', 'backend']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  it('survives a reboot: ipset-persistent loads the set before the rules', async () => {
    await lab.reboot('mysql-1');
    expect(await members('mysql-1')).toHaveLength(30);
    expect((await liveRules(lab, 'mysql-1')).v4).toContain(`--match-set ${SET} src`);
    expect(await mysql3306('wp-20')).toBe('open');
    expect(await mysql3306('intruder')).not.toBe('open');
  });

  it('shows a member added as one line of the plan', async () => {
    const r = await fleetfw(lab, ['plan', '--inventory', S31, '--limit', 'mysql-1']);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stdout).toMatch(/^\s*\+add fleetfw-backend-private 192\.0\.2\.126$/m);
    const [diff = '', reach = ''] = r.stdout.split('\nReachability: ');
    expect(diff.split('\n').filter((l) => /^\s*[+-](?![+-])/.test(l))).toHaveLength(1);
    // What it means: the new member's host may now reach mysql-1.
    expect(reach).toMatch(/^1 opened, 0 closed; /);
    expect(reach).toMatch(/^ {2}\+ \S+ -> mysql-1:\*\/tcp/m);
  });

  it('reverts the set with the rules when the change is not confirmed', async () => {
    const before = await members('mysql-1');
    const rules = await liveRules(lab, 'mysql-1');
    let killed = false;
    const r = await fleetfw(lab, ['apply', '--inventory', S31, '--limit', 'mysql-1', '--yes', '--window', '6'], {
      onStderr: (chunk, child) => {
        if (!killed && chunk.includes('mysql-1: loaded')) {
          killed = true;
          child.kill('SIGKILL');
        }
      },
    });
    expect(killed, r.stderr).toBe(true);
    expect(await members('mysql-1')).toContain('192.0.2.126'); // loaded, unconfirmed
    expect(await mysql3306('wp-27')).toBe('open');
    await waitFor(async () => !(await members('mysql-1')).includes('192.0.2.126'), 20_000, 'mysql-1 to revert its set');
    expect(await members('mysql-1')).toEqual(before);
    expect(await liveRules(lab, 'mysql-1')).toEqual(rules);
    expect(await mysql3306('wp-27')).not.toBe('open');
  });

  it('rolls back to the previous generation, the set with the rules: each generation keeps its ipsets', async () => {
    const before = await members('mysql-1');
    const applied = await fleetfw(lab, ['apply', '--inventory', S31, '--limit', 'mysql-1', '--yes', '--window', '10']);
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    expect(await members('mysql-1')).toContain('192.0.2.126');
    const generations = await lab.exec('mysql-1', ['sh', '-c', 'cd /var/lib/fleetfw/generations && grep -c "^add " */ipsets']);
    expect(generations.stdout.trim().split('\n')).toEqual(['000001/ipsets:30', '000002/ipsets:31']);
    const back = await fleetfw(lab, ['rollback', 'mysql-1', '--inventory', S31, '--window', '10', '--yes']);
    expect(back.code, back.stdout + back.stderr).toBe(0);
    expect(await members('mysql-1')).toEqual(before);
    expect(await mysql3306('wp-27')).not.toBe('open');
    expect(await mysql3306('wp-26')).toBe('open');
  });

  it('applies a saved plan with its sets, exactly as reviewed', async () => {
    const planFile = join(dir, 'plan-31.json');
    const plan = await fleetfw(lab, ['plan', '--inventory', S31, '--limit', 'mysql-1', '--out', planFile]);
    expect(plan.code, plan.stdout + plan.stderr).toBe(2);
    expect(plan.stdout).toMatch(/^\s*\+add fleetfw-backend-private 192\.0\.2\.126$/m);
    const applied = await fleetfw(lab, ['apply', planFile, '--yes', '--window', '10']);
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    expect(await members('mysql-1')).toContain('192.0.2.126');
    expect(await mysql3306('wp-27')).toBe('open');
  });
});
