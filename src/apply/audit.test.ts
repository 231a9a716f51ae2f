import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  appendAuditRecord,
  auditRuns,
  auditRunsFor,
  buildAuditEntry,
  buildAuditStart,
  buildHostStarted,
  compactTime,
  defaultAuditPath,
  findRunTxn,
  newRunId,
  parseAuditLog,
  parseHostTxns,
  readAuditLog,
  runState,
} from './audit.js';
import type { HostResult } from './transaction.js';

const results: HostResult[] = [
  { host: 'tunnel-1', outcome: 'confirmed', generation: 2, txid: '20250102T030405-aaaaaa', ms: 500 },
  { host: 'mysql-1', outcome: 'failed', reason: 'stale plan:\n live rules changed', ms: 0 },
  { host: 'web-1', outcome: 'rolled-back', reason: 'x'.repeat(1000), txid: '20250102T030405-bbbbbb', revertMs: 6100, ms: 7000 },
];

const fields = {
  user: 'ops@laptop',
  command: 'apply' as const,
  planFile: 'plan.json',
  planHash: '0123456789abcdef',
  inventory: { path: 'inventories/s1.yaml', sha256: 'f'.repeat(64) },
  window: 60,
};
const RUN = '20250102T030400-0a1b2c3d';

function entry(now = new Date('2025-01-02T03:04:05.999Z')) {
  return buildAuditEntry({ ...fields, run: RUN, results, exitCode: 6, now });
}
function start(now = new Date('2025-01-02T03:04:00.123Z'), hosts = ['tunnel-1', 'mysql-1', 'web-1']) {
  return buildAuditStart({ ...fields, run: RUN, hosts, now });
}
const lines = (...records: object[]) => records.map((r) => JSON.stringify(r)).join('\n');

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('audit log', () => {
  it('lives under XDG_STATE_HOME when it is absolute, else ~/.local/state', () => {
    expect(defaultAuditPath({ XDG_STATE_HOME: '/var/state' }, '/home/ops')).toBe('/var/state/fleetfw/audit.jsonl');
    expect(defaultAuditPath({}, '/home/ops')).toBe('/home/ops/.local/state/fleetfw/audit.jsonl');
    // The XDG spec: a relative path is invalid and ignored.
    expect(defaultAuditPath({ XDG_STATE_HOME: 'state' }, '/home/ops')).toBe('/home/ops/.local/state/fleetfw/audit.jsonl');
  });

  it('a run id sorts by its start time, like a txid', () => {
    expect(newRunId(new Date('2025-01-02T03:04:05.678Z'))).toMatch(/^20250102T030405-[0-9a-f]{8}$/);
    expect(newRunId()).not.toBe(newRunId());
    expect(compactTime('2025-01-02T03:04:05Z')).toBe('20250102T030405');
  });

  it('a start records the run id, who, what, from which inventory, the hosts about to change and the window', () => {
    expect(start()).toEqual({
      format: 'fleetfw-audit',
      version: 2,
      event: 'start',
      run: RUN,
      at: '2025-01-02T03:04:00Z',
      ...fields,
      hosts: ['tunnel-1', 'mysql-1', 'web-1'],
    });
    expect(buildHostStarted(RUN, 'mysql-1', new Date('2025-01-02T03:04:01Z'))).toEqual({
      format: 'fleetfw-audit',
      version: 2,
      event: 'host-started',
      run: RUN,
      at: '2025-01-02T03:04:01Z',
      host: 'mysql-1',
    });
  });

  it("a completion records the same run id and each host's outcome with its txid; reasons one line, bounded", () => {
    const e = entry();
    expect(e).toMatchObject({ format: 'fleetfw-audit', version: 2, event: 'complete', run: RUN, at: '2025-01-02T03:04:05Z', ...fields, exitCode: 6 });
    expect(e.hosts[0]).toEqual({ host: 'tunnel-1', outcome: 'confirmed', txid: '20250102T030405-aaaaaa', generation: 2 });
    expect(e.hosts[1]).toEqual({ host: 'mysql-1', outcome: 'failed', reason: 'stale plan: live rules changed' });
    expect(e.hosts[2]!.reason).toHaveLength(300);
  });

  it('appends one synced line per record to a private file in a created folder, and reads them back as runs', () => {
    dir = mkdtempSync(join(tmpdir(), 'fleetfw-audit-'));
    const file = join(dir, 'state', 'fleetfw', 'audit.jsonl');
    appendAuditRecord(file, start());
    appendAuditRecord(file, buildHostStarted(RUN, 'web-1'));
    appendAuditRecord(file, entry());
    const rollback = '20250102T040000-00000001';
    appendAuditRecord(file, buildAuditStart({ ...fields, command: 'rollback', planFile: undefined, planHash: 'rollback-to-1', run: rollback, hosts: ['web-1'] }));
    appendAuditRecord(file, { ...buildAuditEntry({ ...fields, command: 'rollback', planHash: 'rollback-to-1', run: rollback, results: [], exitCode: 0 }), hosts: [{ host: 'web-1', outcome: 'confirmed', txid: 't3', generation: 3 }] });
    expect(readFileSync(file, 'utf8').trimEnd().split('\n')).toHaveLength(5);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'state', 'fleetfw')).mode & 0o777).toBe(0o700);
    const log = readAuditLog(file);
    expect(log.skipped).toEqual([]);
    const runs = auditRunsFor(log, 'web-1');
    expect(runs.map((r) => [r.run, runState(r), r.start?.command, r.complete?.hosts.find((h) => h.host === 'web-1')?.outcome])).toEqual([
      [RUN, 'complete', 'apply', 'rolled-back'],
      [rollback, 'complete', 'rollback', 'confirmed'],
    ]);
    expect(Object.keys(runs[0]!.reached)).toEqual(['web-1']);
    expect(auditRunsFor(log, 'nobody')).toEqual([]);
  });

  it('a failed write throws (the caller decides whether it stops the run)', () => {
    dir = mkdtempSync(join(tmpdir(), 'fleetfw-audit-'));
    writeFileSync(join(dir, 'file'), '');
    expect(() => appendAuditRecord(join(dir!, 'file', 'audit.jsonl'), start())).toThrow(/ENOTDIR|EEXIST/);
  });

  it('a start with no completion is an interrupted run; the hosts it reached are known', () => {
    const later = buildAuditStart({ ...fields, run: '20250102T050000-00000002', hosts: ['mysql-1'], now: new Date('2025-01-02T05:00:00Z') });
    const log = parseAuditLog(lines(start(), buildHostStarted(RUN, 'tunnel-1'), later, entry()));
    const runs = auditRuns(log);
    expect(runs.map((r) => [r.run, runState(r)])).toEqual([
      [RUN, 'complete'],
      ['20250102T050000-00000002', 'interrupted'],
    ]);
    const killed = parseAuditLog(lines(start(), buildHostStarted(RUN, 'tunnel-1'), buildHostStarted(RUN, 'mysql-1')));
    const [run] = auditRunsFor(killed, 'web-1');
    expect(runState(run!)).toBe('interrupted');
    expect(Object.keys(run!.reached)).toEqual(['tunnel-1', 'mysql-1']);
    expect(run!.reached['web-1']).toBeUndefined();
  });

  it('reads version 1 files (one entry per run, no run id) as completed runs', () => {
    const v1 = {
      format: 'fleetfw-audit',
      version: 1,
      at: '2025-01-01T00:00:00Z',
      user: 'ops@laptop',
      command: 'apply',
      planHash: 'aa',
      inventory: { path: 'inv.yaml', sha256: 'b'.repeat(64) },
      window: 60,
      hosts: [{ host: 'web-1', outcome: 'confirmed', txid: '20250101T000000-cccccc', generation: 1 }],
      exitCode: 0,
    };
    const log = parseAuditLog(`${lines(v1, v1, start())}\n`);
    expect(log.skipped).toEqual([]);
    const runs = auditRunsFor(log, 'web-1');
    expect(runs.map((r) => [r.run, runState(r)])).toEqual([
      [undefined, 'complete'],
      [undefined, 'complete'],
      [RUN, 'interrupted'],
    ]);
  });

  it('reads a missing file as empty and skips lines that are not records, by line number', () => {
    expect(readAuditLog('/nonexistent/fleetfw/audit.jsonl')).toEqual({ records: [], skipped: [] });
    const good = JSON.stringify(entry());
    const log = parseAuditLog(
      [good, '{"torn": ', '', '{"format":"other"}', good, JSON.stringify({ ...start(), hosts: [1] }), JSON.stringify({ ...start(), event: 'later-kind' }), JSON.stringify(start())].join('\n'),
    );
    expect(log.records).toHaveLength(3);
    expect(log.skipped).toEqual([2, 4, 6, 7]);
  });

  it('never writes what fleetfw was not given to record (no environment, no key paths)', () => {
    dir = mkdtempSync(join(tmpdir(), 'fleetfw-audit-'));
    const file = join(dir, 'audit.jsonl');
    writeFileSync(file, '');
    appendAuditRecord(file, start());
    appendAuditRecord(file, buildHostStarted(RUN, 'web-1'));
    appendAuditRecord(file, entry());
    const keys = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => Object.keys(JSON.parse(l) as object).sort());
    expect(keys).toEqual([
      ['at', 'command', 'event', 'format', 'hosts', 'inventory', 'planFile', 'planHash', 'run', 'user', 'version', 'window'],
      ['at', 'event', 'format', 'host', 'run', 'version'],
      ['at', 'command', 'event', 'exitCode', 'format', 'hosts', 'inventory', 'planFile', 'planHash', 'run', 'user', 'version', 'window'],
    ]);
  });
});

describe("joining an interrupted run to the host's own record", () => {
  // As `fleetfw-host.sh history` prints them.
  const hostLog = [
    '2025-01-02T02:00:01Z 20250102T020000-111111 prepared user=ops@laptop plan=0123456789abcdef window=60',
    '2025-01-02T02:00:02Z 20250102T020000-111111 confirmed generation=1',
    '2025-01-02T03:04:01Z 20250102T030401-222222 prepared user=ops@laptop plan=0123456789abcdef window=60',
    '2025-01-02T03:05:02Z 20250102T030401-222222 reverted confirmation failed: no new connection within 30s',
    '2025-01-02T03:06:00Z 20250102T030600-333333 prepared user=ops@laptop plan=0123456789abcdef window=60',
    '2025-01-02T03:06:01Z 20250102T030600-333333 confirmed generation=2',
    'not a log line',
  ];
  const generations = [
    { generation: '1', txid: '20250102T020000-111111', user: 'ops@laptop', when: '2025-01-02T02:00:02Z', plan_hash: '0123456789abcdef' },
    { generation: '2', txid: '20250102T030600-333333', user: 'ops@laptop', when: '2025-01-02T03:06:01Z', plan_hash: '0123456789abcdef' },
  ];

  it("reads the host's transactions: operator, plan, and its last word on each", () => {
    const txns = parseHostTxns(hostLog, generations);
    expect(txns.map((t) => [t.txid, t.user, t.plan, t.decided?.what, t.generation])).toEqual([
      ['20250102T020000-111111', 'ops@laptop', '0123456789abcdef', 'confirmed generation=1', 1],
      ['20250102T030401-222222', 'ops@laptop', '0123456789abcdef', 'reverted confirmation failed: no new connection within 30s', undefined],
      ['20250102T030600-333333', 'ops@laptop', '0123456789abcdef', 'confirmed generation=2', 2],
    ]);
    // Generations whose log lines were trimmed away still count.
    expect(parseHostTxns([], generations).map((t) => [t.txid, t.plan, t.decided?.what])).toEqual([
      ['20250102T020000-111111', '0123456789abcdef', 'confirmed generation=1'],
      ['20250102T030600-333333', '0123456789abcdef', 'confirmed generation=2'],
    ]);
  });

  it('finds it by operator, plan hash and time: after its start, before the next run, not claimed by a completed run', () => {
    const txns = parseHostTxns(hostLog, generations);
    const killed = auditRuns(parseAuditLog(lines(start(), buildHostStarted(RUN, 'mysql-1'))))[0]!;
    // Same plan re-applied at 03:06 by a run that completed and named its txid.
    const rerun = auditRuns(
      parseAuditLog(
        lines(
          buildAuditStart({ ...fields, run: 'r2', hosts: ['mysql-1'], now: new Date('2025-01-02T03:06:00Z') }),
          buildAuditEntry({ ...fields, run: 'r2', results: [{ host: 'mysql-1', outcome: 'confirmed', txid: '20250102T030600-333333', generation: 2, ms: 1 }], exitCode: 0 }),
        ),
      ),
    )[0]!;
    const claimed = new Set(['20250102T030600-333333']);
    expect(findRunTxn(killed, rerun, txns, claimed)?.txid).toBe('20250102T030401-222222');
    expect(findRunTxn(killed, undefined, txns, claimed)?.txid).toBe('20250102T030401-222222');
    // Another operator's or another plan's transactions are not this run's.
    expect(findRunTxn({ ...killed, start: { ...killed.start!, user: 'someone@else' } }, undefined, txns, claimed)).toBeUndefined();
    expect(findRunTxn({ ...killed, start: { ...killed.start!, planHash: 'ffff' } }, undefined, txns, claimed)).toBeUndefined();
    // Killed before this host's transaction: the next run's transaction is not taken for it,
    // even when that run recorded no completion either.
    const log2 = hostLog.slice(0, 2).concat(hostLog.slice(4, 6));
    expect(findRunTxn(killed, rerun, parseHostTxns(log2, generations), new Set())).toBeUndefined();
    expect(findRunTxn(killed, undefined, parseHostTxns(log2, generations), claimed)).toBeUndefined();
    // Nothing before the run's start.
    const late = auditRuns(parseAuditLog(lines(start(new Date('2025-01-02T03:07:00Z')))))[0]!;
    expect(findRunTxn(late, undefined, txns, claimed)).toBeUndefined();
  });
});
