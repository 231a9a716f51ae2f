// Issue 6 end to end on its own S1 lab: a saved plan is applied exactly as
// reviewed; a host whose rules changed behind fleetfw's back is refused by
// name while the others go ahead; a changed inventory refuses the whole plan;
// apply writes the local audit log and `history` shows it beside the host's
// generations.
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInventory } from '../src/inventory/load.js';
import { labSpecFromInventory, startLab, type Lab } from '../src/lab/lab.js';
import { fleetfw, historyLog, inventoryPath, liveRules, requireLabPrerequisites, scratchFleet, writeTemplate } from './support.js';

const S1 = inventoryPath('s1');
let lab: Lab;
let dir: string;
let audit: string;
let fleet: ReturnType<typeof scratchFleet>;

beforeAll(async () => {
  requireLabPrerequisites();
  lab = await startLab(labSpecFromInventory(loadInventory(S1)));
  dir = mkdtempSync(join(tmpdir(), 'fleetfw-review-'));
  audit = join(dir, 'state', 'audit.jsonl');
  // The change under review: wordpress hosts open 8080 to the bastion.
  fleet = scratchFleet('s1');
  const role = readFileSync(join(fleet.templates, 'roles/wordpress.v4'), 'utf8');
  writeTemplate(fleet.templates, 'roles/wordpress.v4', role.replace('COMMIT', '-A INPUT -i {{ self.if.private }} -p tcp -s {{ bastion.private }} --dport 8080 -j ACCEPT\nCOMMIT'));
});

afterAll(async () => {
  await lab?.stop();
  fleet?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface AuditLine {
  event?: string;
  run?: string;
  command: string;
  planFile?: string;
  planHash: string;
  user: string;
  inventory: { path: string; sha256: string };
  hosts: Array<{ host: string; outcome: string; txid?: string; generation?: number; reason?: string }>;
  exitCode: number;
}
const auditLines = (): AuditLine[] => readFileSync(audit, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as AuditLine);
/** Each run's completion (its start and host-started records left out). */
const completions = (): AuditLine[] => auditLines().filter((l) => l.event === 'complete');

describe('reviewed plans', () => {
  it('plan --out saves the plan it prints; apply FILE applies exactly it and writes the audit log', async () => {
    const planFile = join(dir, 'plan1.json');
    const plan = await fleetfw(lab, ['plan', '--inventory', S1, '--out', planFile]);
    expect(plan.code, plan.stderr).toBe(2);
    expect(plan.stderr).toContain(`saved the plan to ${planFile}`);
    const saved = JSON.parse(readFileSync(planFile, 'utf8')) as { format: string; inventory: { path: string; sha256: string }; plan: { planHash: string; hosts: Array<{ liveHash: string; desired: unknown }> } };
    expect(saved.format).toBe('fleetfw-saved-plan');
    expect(saved.inventory.path).toBe(S1);
    expect(saved.plan.hosts).toHaveLength(6);
    for (const h of saved.plan.hosts) expect(h.liveHash).toMatch(/^[0-9a-f]{64}$/);

    const logins = () => Object.fromEntries(['mysql-1', 'wordpress-1'].map((h) => [h, (readFileSync(join(lab.dir, h, 'sshd.log'), 'utf8').match(/Accepted publickey/g) ?? []).length]));
    const before = logins();
    const r = await fleetfw(lab, ['apply', planFile, '--yes', '--window', '20', '--audit-log', audit]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`plan hash ${saved.plan.planHash}`);
    // Two connections per host, as for a plain apply: the recheck's session is the prepare's.
    const after = logins();
    for (const h of Object.keys(before)) expect(after[h]! - before[h]!, h).toBe(2);
    expect(r.stdout).toContain('6 confirmed, 0 unchanged, 0 rolled back, 0 failed, 0 unknown, 0 skipped.');
    const [entry] = completions();
    expect(entry).toMatchObject({ command: 'apply', planFile, planHash: saved.plan.planHash, inventory: saved.inventory, exitCode: 0 });
    // Started before any host was touched, under the same run id.
    expect(auditLines()[0]).toMatchObject({ event: 'start', run: entry!.run, planFile, planHash: saved.plan.planHash, inventory: saved.inventory });
    expect(entry!.hosts.map((h) => [h.host, h.outcome, h.generation])).toEqual(
      ['haproxy-www', 'mysql-1', 'mysql-2', 'tunnel-1', 'wordpress-1', 'wordpress-2'].map((h) => [h, 'confirmed', 1]),
    );
    for (const h of entry!.hosts) expect(h.txid).toMatch(/^\d{8}T\d{6}-[0-9a-f]{6}$/);
    // The generation records the reviewed plan's hash.
    const history = await fleetfw(lab, ['history', 'mysql-1', '--inventory', S1, '--audit-log', audit]);
    expect(history.stdout).toMatch(new RegExp(`\\* +1 .* plan ${saved.plan.planHash}  txid ${entry!.hosts[1]!.txid}  audit: apply ${planFile} by `));
  });

  it('refuses, by name, a host whose live rules changed since the plan; the others are applied', async () => {
    const planFile = join(dir, 'plan2.json');
    const plan = await fleetfw(lab, ['plan', '--inventory', fleet.inventory, '--out', planFile]);
    expect(plan.code, plan.stdout + plan.stderr).toBe(2);
    expect(plan.stdout).toContain('Plan: 2 to change, 4 in sync.');

    // Behind fleetfw's back, after the review.
    await lab.exec('wordpress-1', ['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'ACCEPT']);
    const before = await liveRules(lab, 'wordpress-1');
    const logBefore = await historyLog(lab, 'wordpress-1');

    const r = await fleetfw(lab, ['apply', planFile, '--yes', '--window', '20', '--audit-log', audit]);
    expect(r.code, r.stdout + r.stderr).toBe(5);
    expect(r.stderr).toMatch(/refusing wordpress-1: live rules changed since the plan was made \(planned against [0-9a-f]{12}, now [0-9a-f]{12}\): not applied, plan again/);
    expect(r.stdout).toMatch(/^wordpress-1\s+failed\s.*live rules changed since the plan was made/m);
    expect(r.stdout).toMatch(/^wordpress-2\s+confirmed\s.*generation 2/m);
    expect(r.stdout).toMatch(/^mysql-1\s+unchanged\s/m);
    // Nothing reached the refused host.
    expect(await liveRules(lab, 'wordpress-1')).toEqual(before);
    expect(await historyLog(lab, 'wordpress-1')).toBe(logBefore);
    expect((await liveRules(lab, 'wordpress-2')).v4).toContain('--dport 8080');

    const entry = completions().at(-1)!;
    expect(entry).toMatchObject({ command: 'apply', planFile, exitCode: 5 });
    const w1 = entry.hosts.find((h) => h.host === 'wordpress-1')!;
    const w2 = entry.hosts.find((h) => h.host === 'wordpress-2')!;
    expect(w1).toMatchObject({ outcome: 'failed', reason: expect.stringContaining('live rules changed since the plan was made') });
    expect(w1.txid).toBeUndefined();
    expect(w2).toMatchObject({ outcome: 'confirmed', generation: 2, txid: expect.any(String) });

    // history: the host's generations and the local audit entries, joined by txid.
    const history = await fleetfw(lab, ['history', 'wordpress-2', '--inventory', fleet.inventory, '--audit-log', audit]);
    expect(history.code, history.stderr).toBe(0);
    expect(history.stdout).toMatch(new RegExp(`\\* +2 .* txid ${w2.txid}  audit: apply ${planFile} by `));
    expect(history.stdout).toContain(`local audit log ${audit}: 2 runs for wordpress-2`);
    expect(history.stdout).toMatch(new RegExp(`apply ${planFile}  by \\S+  plan \\S+  confirmed  txid ${w2.txid}  generation 2`));
    const refused = await fleetfw(lab, ['history', 'wordpress-1', '--inventory', fleet.inventory, '--audit-log', audit, '--json']);
    const json = JSON.parse(refused.stdout) as { current: number; audit: { entries: Array<{ outcome: string; reason?: string }> } };
    expect(json.current).toBe(1);
    expect(json.audit.entries.map((e) => e.outcome)).toEqual(['confirmed', 'failed']);
  });

  it('refuses the whole plan when the inventory changed since it was made (exit 8, nothing sent)', async () => {
    const planFile = join(dir, 'plan3.json');
    await lab.exec('wordpress-1', ['iptables', '-D', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'ACCEPT']);
    const plan = await fleetfw(lab, ['plan', '--inventory', fleet.inventory, '--out', planFile]);
    expect(plan.code, plan.stdout + plan.stderr).toBe(2);
    appendFileSync(fleet.inventory, '# edited after the review\n');
    const logBefore = await historyLog(lab, 'wordpress-1');
    const linesBefore = auditLines().length;
    const r = await fleetfw(lab, ['apply', planFile, '--yes', '--audit-log', audit]);
    expect(r.code, r.stdout + r.stderr).toBe(8);
    expect(r.stderr).toMatch(new RegExp(`${planFile} is stale: inventory ${fleet.inventory} changed since the plan was made \\(plan: sha256 [0-9a-f]{12}, now: [0-9a-f]{12}\\)\\. Nothing was applied`));
    expect(await historyLog(lab, 'wordpress-1')).toBe(logBefore);
    expect(auditLines()).toHaveLength(linesBefore);
  });

  it('refuses an offline plan and a plan printed with --format json, saying what to do', async () => {
    const offline = join(dir, 'offline.json');
    const p = await fleetfw(lab, ['plan', '--offline', '--inventory', S1, '--out', offline]);
    expect(p.stderr).toContain('an offline plan, for review only');
    expect(existsSync(offline)).toBe(true);
    const r = await fleetfw(lab, ['apply', offline, '--yes']);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain('is an offline plan');
    const json = await fleetfw(lab, ['plan', '--offline', '--inventory', S1, '--format', 'json']);
    const printed = join(dir, 'printed.json');
    appendFileSync(printed, json.stdout);
    const r2 = await fleetfw(lab, ['apply', printed, '--yes']);
    expect(r2.code).toBe(64);
    expect(r2.stderr).toContain('not a saved plan: save one with `fleetfw plan --out FILE`');
  });
});
