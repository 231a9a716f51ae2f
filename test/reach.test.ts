// The reachability diff of a live plan, on S1 in the lab: the rules the hosts run
// (read over SSH) against the rules they will run. A template change that opens
// port 8080 on haproxy-www reads as the flows it opens, the internet's first; a
// real packet confirms what the plan said once it is applied.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab } from '../src/lab/lab.js';
import { fleetfw, scratchFleet, startInventoryLab } from './support.js';

let lab: Lab;
let fleet: ReturnType<typeof scratchFleet>;

beforeAll(async () => {
  fleet = scratchFleet('s1');
  lab = await startInventoryLab(fleet.inventory, { applied: true });
});

afterAll(async () => {
  await lab?.stop();
  fleet?.cleanup();
});

describe('the live plan says who can now reach whom', () => {
  it('in sync: nothing opened or closed', async () => {
    const r = await fleetfw(lab, ['plan', '--inventory', fleet.inventory]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('Reachability: no flow opened or closed.');
  });

  it('port 8080 opened on haproxy-www: the internet first, every flow it opens, none covered by an intent; --require-intents fails it', async () => {
    const role = join(fleet.templates, 'roles/haproxy.v4');
    writeFileSync(role, readFileSync(role, 'utf8').replace('COMMIT', '-A INPUT -i {{ self.if.public }} -p tcp --dport 8080 -j ACCEPT\nCOMMIT'));
    const r = await fleetfw(lab, ['plan', '--inventory', fleet.inventory]);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    const section = r.stdout.slice(r.stdout.indexOf('Reachability:'), r.stdout.indexOf('\nPlan: '));
    expect(section.split('\n').filter((l) => l.startsWith('  ')).slice(0, 3)).toEqual([
      '  + any other address -> haproxy-www:8080/tcp  (newly exposed to the internet; wider than any group)',
      '  + internet -> haproxy-www:8080/tcp  (newly exposed to the internet)',
      '  + all -> haproxy-www:8080/tcp  (via public)',
    ]);
    expect(section).toContain('Reachability: 3 opened, 0 closed; 3 opened flows no intent covers.');

    const strict = await fleetfw(lab, ['plan', '--inventory', fleet.inventory, '--require-intents']);
    expect(strict.code).toBe(4);
    expect(strict.stderr).toContain('3 opened flows no intent covers (--require-intents)');

    const json = await fleetfw(lab, ['plan', '--inventory', fleet.inventory, '--format', 'json']);
    const doc = JSON.parse(json.stdout) as { reachability: { lines: Array<{ change: string; from: string; to: string; ports: string; marks: string[] }> } };
    expect(doc.reachability.lines[1]).toMatchObject({ change: 'open', from: 'internet', to: 'haproxy-www', ports: '8080', marks: ['internet'] });

    // Applied, the internet's connection to 8080 gets through the firewall: nothing listens, so the host answers with a reset.
    expect(await lab.probe('internet', '203.0.113.11', 'tcp', 8080)).toBe('timeout');
    const apply = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--yes', '--window', '10']);
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    expect(await lab.probe('internet', '203.0.113.11', 'tcp', 8080)).toBe('refused');
  });
});
