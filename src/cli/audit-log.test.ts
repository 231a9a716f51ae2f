import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildAuditEntry, buildAuditStart, buildHostStarted } from '../apply/audit.js';
import { AuditLogError, describeAuditMatch, formatHostAudit, INTERRUPTED, readHostAudit, startAuditRun } from './audit-log.js';

const fields = {
  user: 'ops@laptop',
  command: 'apply' as const,
  planHash: '0123456789abcdef',
  inventory: { path: 'inventories/s1.yaml', sha256: 'f'.repeat(64) },
  window: 20,
};
const records = (file: string) => readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetfw-audit-cli-'));
  file = join(dir, 'state', 'audit.jsonl');
});
afterEach(() => {
  vi.restoreAllMocks();
  rmSync(dir, { recursive: true, force: true });
});

describe('recording a run', () => {
  it('start before the rollout, each host before its transaction, the completion at the end, one run id', async () => {
    const run = startAuditRun({ auditLog: file }, { ...fields, hosts: ['mysql-1', 'mysql-2'] });
    expect(records(file)).toMatchObject([{ event: 'start', run: run.run, hosts: ['mysql-1', 'mysql-2'], planHash: fields.planHash, window: 20 }]);
    // The host's record is written, and synced, when its promise resolves.
    await run.hostStarting('mysql-1');
    expect(records(file)).toHaveLength(2);
    run.complete([{ host: 'mysql-1', outcome: 'confirmed', txid: '20250102T030405-aaaaaa', generation: 2, ms: 1 }, { host: 'mysql-2', outcome: 'skipped', reason: 'failure budget reached', ms: 0 }], 5);
    expect(records(file)).toMatchObject([
      { event: 'start', run: run.run },
      { event: 'host-started', run: run.run, host: 'mysql-1' },
      { event: 'complete', run: run.run, exitCode: 5, hosts: [{ host: 'mysql-1', outcome: 'confirmed' }, { host: 'mysql-2', outcome: 'skipped' }] },
    ]);
  });

  it('a start the log cannot take stops the run, naming the file', () => {
    writeFileSync(join(dir, 'state'), 'a file where the folder should be');
    let error: unknown;
    try {
      startAuditRun({ auditLog: file }, { ...fields, hosts: ['mysql-1'] });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AuditLogError);
    expect((error as Error).message).toMatch(new RegExp(`^cannot write the audit log ${file} \\(.+\\): the apply did not start, nothing was sent to any host\\. .*--audit-log`));
  });

  it('a host start the log cannot take fails that host and every later one before anything is sent', async () => {
    const run = startAuditRun({ auditLog: file }, { ...fields, hosts: ['mysql-1', 'mysql-2'] });
    rmSync(join(dir, 'state'), { recursive: true });
    writeFileSync(join(dir, 'state'), '');
    await expect(run.hostStarting('mysql-1')).rejects.toThrow(/cannot write the audit log .*: mysql-1 not started, nothing was sent to it/);
    // Back in place: still refused, the run's record has a hole.
    rmSync(join(dir, 'state'));
    mkdirSync(join(dir, 'state'));
    await expect(run.hostStarting('mysql-2')).rejects.toThrow(AuditLogError);
    expect(existsSync(file)).toBe(false);
  });

  it('a completion the log cannot take only warns: the hosts are already changed', () => {
    const run = startAuditRun({ auditLog: file }, { ...fields, hosts: ['mysql-1'] });
    rmSync(join(dir, 'state'), { recursive: true });
    writeFileSync(join(dir, 'state'), '');
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    run.complete([{ host: 'mysql-1', outcome: 'confirmed', ms: 1 }], 0);
    expect(String(stderr.mock.calls[0]?.[0])).toMatch(new RegExp(`warning: could not record the completion of run ${run.run} in the audit log ${file}: .*interrupted`));
  });
});

describe('history HOST: the runs that named the host', () => {
  const host = 'mysql-1';
  const line = (r: object) => `${JSON.stringify(r)}\n`;
  const at = (s: string) => new Date(s);
  // The host's side, as `history` reads it.
  const hostHistory = {
    log: [
      '2025-01-02T03:00:01Z 20250102T030001-111111 prepared user=ops@laptop plan=0123456789abcdef window=20',
      '2025-01-02T03:00:02Z 20250102T030001-111111 confirmed generation=1',
      '2025-01-02T03:10:01Z 20250102T031001-222222 prepared user=ops@laptop plan=0123456789abcdef window=20',
      '2025-01-02T03:10:25Z 20250102T031001-222222 reverted confirmation failed: no new connection within 10s',
    ],
    generations: [{ meta: { generation: '1', txid: '20250102T030001-111111', user: 'ops@laptop', plan_hash: '0123456789abcdef', when: '2025-01-02T03:00:02Z' } }],
  };

  function writeLog(): void {
    mkdirSync(join(dir, 'state'));
    const v1 = { format: 'fleetfw-audit', version: 1, at: '2025-01-01T00:00:00Z', ...fields, hosts: [{ host, outcome: 'unchanged' }], exitCode: 0 };
    writeFileSync(
      file,
      [
        line(v1),
        // A completed run.
        line(buildAuditStart({ ...fields, run: 'r1', hosts: [host], now: at('2025-01-02T03:00:00Z') })),
        line(buildHostStarted('r1', host, at('2025-01-02T03:00:01Z'))),
        line(buildAuditEntry({ ...fields, run: 'r1', results: [{ host, outcome: 'confirmed', txid: '20250102T030001-111111', generation: 1, ms: 1 }], exitCode: 0, now: at('2025-01-02T03:00:03Z') })),
        // Killed after this host's load.
        line(buildAuditStart({ ...fields, run: 'r2', hosts: [host, 'mysql-2'], now: at('2025-01-02T03:10:00Z') })),
        line(buildHostStarted('r2', host, at('2025-01-02T03:10:01Z'))),
        // Killed before reaching this host.
        line(buildAuditStart({ ...fields, run: 'r3', planFile: 'plan.json', hosts: ['tunnel-1', host], now: at('2025-01-02T03:20:00Z') })),
        line(buildHostStarted('r3', 'tunnel-1', at('2025-01-02T03:20:01Z'))),
        '{"torn":\n',
      ].join(''),
    );
  }

  it('a start with no completion shows as interrupted, joined to the transaction the host logged for it', () => {
    writeLog();
    const audit = readHostAudit({ auditLog: file }, host, hostHistory);
    expect(audit.skipped).toEqual([9]);
    expect(audit.entries.map((e) => [e.run, e.state, e.outcome, e.txid])).toEqual([
      [undefined, 'complete', 'unchanged', undefined],
      ['r1', 'complete', 'confirmed', '20250102T030001-111111'],
      ['r2', 'interrupted', 'interrupted', '20250102T031001-222222'],
      ['r3', 'interrupted', 'interrupted', undefined],
    ]);
    expect(audit.entries[1]).toMatchObject({ at: '2025-01-02T03:00:00Z', completedAt: '2025-01-02T03:00:03Z' });
    expect(audit.entries[2]).toMatchObject({
      reached: '2025-01-02T03:10:01Z',
      hostRecord: { txid: '20250102T031001-222222', prepared: '2025-01-02T03:10:01Z', decided: 'reverted confirmation failed: no new connection within 10s', decidedAt: '2025-01-02T03:10:25Z' },
    });
    expect(audit.entries[3]!.reached).toBeUndefined();

    const text = formatHostAudit(audit, host, new Set(['20250102T030001-111111', '20250102T031001-222222']));
    expect(text[0]).toBe(`\nlocal audit log ${file}: 4 runs for mysql-1 (2 interrupted)`);
    expect(text).toContain(`  2025-01-02T03:00:00Z  apply  by ops@laptop  plan 0123456789abcdef  confirmed  txid 20250102T030001-111111  generation 1`);
    expect(text).toContain(`  2025-01-02T03:10:00Z  apply  by ops@laptop  plan 0123456789abcdef  ${INTERRUPTED}`);
    expect(text).toContain(
      "      mysql-1: transaction began 2025-01-02T03:10:01Z; the host's log: txid 20250102T031001-222222 prepared 2025-01-02T03:10:01Z, 2025-01-02T03:10:25Z reverted confirmation failed: no new connection within 10s",
    );
    expect(text).toContain(`  2025-01-02T03:20:00Z  apply plan.json  by ops@laptop  plan 0123456789abcdef  ${INTERRUPTED}`);
    expect(text).toContain('      mysql-1: not reached by this run, nothing was sent to it');
    expect(text.at(-1)).toBe('  (skipped 1 unreadable line(s): 9)');
    expect(describeAuditMatch(audit, '20250102T030001-111111')).toBe('  audit: apply by ops@laptop');
    expect(describeAuditMatch(audit, '20250102T031001-222222')).toBe('  audit: apply by ops@laptop (interrupted run)');
  });

  it("an interrupted run the host has no transaction of says so; a log that cannot be read is empty", () => {
    writeLog();
    const audit = readHostAudit({ auditLog: file }, host, { log: [], generations: [] });
    expect(audit.entries[2]).toMatchObject({ state: 'interrupted', reached: '2025-01-02T03:10:01Z' });
    expect(audit.entries[2]!.hostRecord).toBeUndefined();
    expect(formatHostAudit(audit, host, new Set())).toContain("      mysql-1: transaction began 2025-01-02T03:10:01Z; no transaction of this run in the host's log");
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(readHostAudit({ auditLog: dir }, host, hostHistory)).toEqual({ file: dir, entries: [], skipped: [] });
    expect(String(stderr.mock.calls[0]?.[0])).toContain(`could not read the audit log ${dir}`);
  });
});
