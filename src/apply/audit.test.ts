import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { appendAuditEntry, auditEntriesFor, buildAuditEntry, defaultAuditPath, parseAuditLog, readAuditLog } from './audit.js';
import type { HostResult } from './transaction.js';

const results: HostResult[] = [
  { host: 'tunnel-1', outcome: 'confirmed', generation: 2, txid: '20250102T030405-aaaaaa', ms: 500 },
  { host: 'mysql-1', outcome: 'failed', reason: 'stale plan:\n live rules changed', ms: 0 },
  { host: 'web-1', outcome: 'rolled-back', reason: 'x'.repeat(1000), txid: '20250102T030405-bbbbbb', revertMs: 6100, ms: 7000 },
];

function entry(now = new Date('2025-01-02T03:04:05.999Z')) {
  return buildAuditEntry({
    user: 'ops@laptop',
    command: 'apply',
    planFile: 'plan.json',
    planHash: '0123456789abcdef',
    inventory: { path: 'inventories/s1.yaml', sha256: 'f'.repeat(64) },
    window: 60,
    results,
    exitCode: 6,
    now,
  });
}

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

  it('records who, when, inventory, plan and each host\'s outcome with its txid; reasons one line, bounded', () => {
    const e = entry();
    expect(e).toMatchObject({
      format: 'fleetfw-audit',
      version: 1,
      at: '2025-01-02T03:04:05Z',
      user: 'ops@laptop',
      command: 'apply',
      planFile: 'plan.json',
      planHash: '0123456789abcdef',
      inventory: { path: 'inventories/s1.yaml', sha256: 'f'.repeat(64) },
      window: 60,
      exitCode: 6,
    });
    expect(e.hosts[0]).toEqual({ host: 'tunnel-1', outcome: 'confirmed', txid: '20250102T030405-aaaaaa', generation: 2 });
    expect(e.hosts[1]).toEqual({ host: 'mysql-1', outcome: 'failed', reason: 'stale plan: live rules changed' });
    expect(e.hosts[2]!.reason).toHaveLength(300);
  });

  it('appends one line per entry to a private file in a created folder, and reads them back', () => {
    dir = mkdtempSync(join(tmpdir(), 'fleetfw-audit-'));
    const file = join(dir, 'state', 'fleetfw', 'audit.jsonl');
    appendAuditEntry(file, entry());
    appendAuditEntry(file, { ...entry(), command: 'rollback', planHash: 'rollback-to-1', hosts: [{ host: 'web-1', outcome: 'confirmed', txid: 't3', generation: 3 }] });
    expect(readFileSync(file, 'utf8').trimEnd().split('\n')).toHaveLength(2);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'state', 'fleetfw')).mode & 0o777).toBe(0o700);
    const log = readAuditLog(file);
    expect(log.skipped).toEqual([]);
    expect(auditEntriesFor(log, 'web-1').map(({ entry: e, host }) => [e.command, host.outcome, host.txid])).toEqual([
      ['apply', 'rolled-back', '20250102T030405-bbbbbb'],
      ['rollback', 'confirmed', 't3'],
    ]);
    expect(auditEntriesFor(log, 'nobody')).toEqual([]);
  });

  it('reads a missing file as empty and skips lines that are not entries, by line number', () => {
    expect(readAuditLog('/nonexistent/fleetfw/audit.jsonl')).toEqual({ entries: [], skipped: [] });
    const good = JSON.stringify(entry());
    const log = parseAuditLog(`${good}\n{"torn": \n\n{"format":"other"}\n${good}\n`);
    expect(log.entries).toHaveLength(2);
    expect(log.skipped).toEqual([2, 4]);
  });

  it('never writes what fleetfw was not given to record (no environment, no key paths)', () => {
    dir = mkdtempSync(join(tmpdir(), 'fleetfw-audit-'));
    const file = join(dir, 'audit.jsonl');
    writeFileSync(file, '');
    appendAuditEntry(file, entry());
    const keys = Object.keys(JSON.parse(readFileSync(file, 'utf8')) as object).sort();
    expect(keys).toEqual(['at', 'command', 'exitCode', 'format', 'hosts', 'inventory', 'planFile', 'planHash', 'user', 'version', 'window']);
  });
});
