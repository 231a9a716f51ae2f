// The local audit log end to end on its own S1 lab: fleetfw killed with
// SIGKILL mid-rollout leaves the run's start (and the start of the host it was
// on) in the log, and `history` shows the run as interrupted beside what the
// host itself decided; a log that cannot be written stops the apply before any
// host is touched.
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab } from '../src/lab/lab.js';
import { fleetfw, historyLog, inventoryPath, liveRules, scratchFleet, startInventoryLab, waitFor, writeTemplate } from './support.js';

const S1 = inventoryPath('s1');
const STATE = '/var/lib/fleetfw';
const WINDOW = 6;
const INTERRUPTED = 'interrupted (no completion recorded; the hosts decided by themselves: see their history)';
let lab: Lab;
let dir: string;
let audit: string;
let fleet: ReturnType<typeof scratchFleet>;

beforeAll(async () => {
  lab = await startInventoryLab(S1, { applied: true });
  dir = mkdtempSync(join(tmpdir(), 'fleetfw-audit-e2e-'));
  audit = join(dir, 'state', 'audit.jsonl');
  // The change: both mysql hosts open one more port.
  fleet = scratchFleet('s1');
  const role = readFileSync(join(fleet.templates, 'roles/mysql.v4'), 'utf8');
  const rule = '-A INPUT -i {{ self.if.private }} -p tcp --dport 9700 -j ACCEPT';
  // One *filter section per file: into the role's own, if it has one.
  writeTemplate(fleet.templates, 'roles/mysql.v4', role.includes('*filter') ? role.replace(/(^\*filter$[\s\S]*?)^COMMIT$/m, `$1${rule}\nCOMMIT`) : `${role}*filter\n${rule}\nCOMMIT\n`);
});

afterAll(async () => {
  await lab?.stop();
  fleet?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface AuditLine {
  event?: string;
  run?: string;
  at: string;
  planHash: string;
  host?: string;
  hosts: unknown[];
}
const auditLines = (): AuditLine[] => readFileSync(audit, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as AuditLine);
const sh = (host: string, script: string) => lab.exec(host, ['sh', '-c', script]);
const exists = async (host: string, path: string) => (await lab.exec(host, ['test', '-e', path])).code === 0;

interface HistoryJson {
  audit: { entries: Array<{ run?: string; state: string; outcome: string; reached?: string; txid?: string; hostRecord?: { txid: string; decided?: string } }> };
}

describe('audit log of a killed apply', () => {
  let killedRun = '';
  let killedTxid = '';

  it('SIGKILL mid-rollout leaves the start without a completion; history shows the run as interrupted, joined to what the host decided', async () => {
    const host = 'mysql-1';
    await sh(host, `mkdir -p ${STATE}/faults && rm -f ${STATE}/faults/* && touch ${STATE}/faults/pause-load`);
    let child: ChildProcess | undefined;
    // One host at a time, in name order: mysql-1 (the canary) is loaded, mysql-2 not reached yet.
    const run = fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--yes', '--window', String(WINDOW), '--parallel', '1', '--audit-log', audit], { onSpawn: (c) => (child = c) });
    try {
      await waitFor(() => exists(host, `${STATE}/faults/at-load`), 60_000, `${host} to reach load`);
    } finally {
      child?.kill('SIGKILL');
    }
    const r = await run;
    expect(r.code, r.stdout + r.stderr).toBe(128);

    const lines = auditLines();
    expect(lines.map((l) => l.event)).toEqual(['start', 'host-started']);
    const [start, started] = lines;
    expect(start).toMatchObject({ event: 'start', command: 'apply', inventory: { path: fleet.inventory }, window: WINDOW });
    expect(start!.hosts).toEqual(['mysql-1', 'mysql-2']);
    expect(started).toMatchObject({ event: 'host-started', run: start!.run, host });
    killedRun = start!.run!;

    // The host decides by itself: past its window, the watchdog puts the old rules back.
    await sh(host, `rm -f ${STATE}/faults/pause-load`);
    await waitFor(async () => /^\S+ \S+ reverted /m.test(await historyLog(lab, host)) && !(await exists(host, `${STATE}/txn`)), 60_000, `${host} to revert by itself`);
    await sh(host, `rm -rf ${STATE}/faults`);
    const prepared = new RegExp(`^\\S+ (\\S+) prepared user=\\S+ plan=${start!.planHash} `, 'm').exec(await historyLog(lab, host));
    expect(prepared, await historyLog(lab, host)).not.toBeNull();
    killedTxid = prepared![1]!;

    const history = await fleetfw(lab, ['history', host, '--inventory', fleet.inventory, '--audit-log', audit]);
    expect(history.code, history.stderr).toBe(0);
    expect(history.stdout).toContain(`local audit log ${audit}: 1 run for ${host} (1 interrupted)`);
    expect(history.stdout).toContain(`${start!.at}  apply  by `);
    expect(history.stdout).toContain(`plan ${start!.planHash}  ${INTERRUPTED}`);
    expect(history.stdout).toMatch(new RegExp(`^      ${host}: transaction began \\S+; the host's log: txid ${killedTxid} prepared \\S+, \\S+ reverted `, 'm'));

    const json = JSON.parse((await fleetfw(lab, ['history', host, '--inventory', fleet.inventory, '--audit-log', audit, '--json'])).stdout) as HistoryJson;
    expect(json.audit.entries).toHaveLength(1);
    expect(json.audit.entries[0]).toMatchObject({ run: killedRun, state: 'interrupted', outcome: 'interrupted', txid: killedTxid, hostRecord: { txid: killedTxid, decided: expect.stringMatching(/^reverted /) } });
    expect(json.audit.entries[0]!.reached).toEqual(started!.at);

    // The host the run never reached: nothing was sent to it.
    const other = await fleetfw(lab, ['history', 'mysql-2', '--inventory', fleet.inventory, '--audit-log', audit]);
    expect(other.stdout).toContain(`plan ${start!.planHash}  ${INTERRUPTED}`);
    expect(other.stdout).toContain('      mysql-2: not reached by this run, nothing was sent to it');
  });

  it('the same plan applied again completes under its own run id; the killed run stays interrupted, with its own txid', async () => {
    expect(killedRun, 'the previous test ran').not.toBe('');
    const r = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--yes', '--window', String(WINDOW), '--audit-log', audit]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const mine = auditLines().filter((l) => l.run !== killedRun);
    expect(mine.map((l) => [l.event, l.host])).toEqual([
      ['start', undefined],
      ['host-started', 'mysql-1'],
      ['host-started', 'mysql-2'],
      ['complete', undefined],
    ]);
    expect(new Set(mine.map((l) => l.run)).size).toBe(1);
    const json = JSON.parse((await fleetfw(lab, ['history', 'mysql-1', '--inventory', fleet.inventory, '--audit-log', audit, '--json'])).stdout) as HistoryJson;
    expect(json.audit.entries.map((e) => [e.run === killedRun, e.state, e.outcome])).toEqual([
      [true, 'interrupted', 'interrupted'],
      [false, 'complete', 'confirmed'],
    ]);
    expect(json.audit.entries[0]!.txid).toBe(killedTxid);
    expect(json.audit.entries[1]!.txid).not.toBe(killedTxid);
  });

  it('an audit log that cannot be written stops the apply before any host is touched, naming the file', async () => {
    writeFileSync(join(dir, 'not-a-folder'), '');
    const bad = join(dir, 'not-a-folder', 'audit.jsonl');
    // A change for both mysql hosts again, so that there is something to send.
    const role = readFileSync(join(fleet.templates, 'roles/mysql.v4'), 'utf8');
    writeTemplate(fleet.templates, 'roles/mysql.v4', role.replace('--dport 9700', '--dport 9701'));
    const before = { log: await historyLog(lab, 'mysql-1'), rules: await liveRules(lab, 'mysql-1') };
    const r = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--yes', '--window', String(WINDOW), '--audit-log', bad]);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stderr).toContain(`fleetfw: cannot write the audit log ${bad} (`);
    expect(r.stderr).toContain('the apply did not start, nothing was sent to any host');
    expect(r.stderr).not.toContain('internal error');
    expect(await historyLog(lab, 'mysql-1')).toBe(before.log);
    expect(await liveRules(lab, 'mysql-1')).toEqual(before.rules);
  });
});
