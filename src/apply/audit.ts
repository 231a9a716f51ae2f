// The operator's local audit log: one JSON object per line for every apply and
// rollback (who, when, from which inventory and plan, what each host ended
// as, with the host's transaction id). The hosts keep their own generations;
// the txid joins the two. Never holds secrets: no key paths, no environment.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import type { HostOutcome, HostResult } from './transaction.js';

export const AUDIT_FORMAT = 'fleetfw-audit';
export const AUDIT_VERSION = 1;

export interface AuditHost {
  host: string;
  outcome: HostOutcome;
  txid?: string;
  generation?: number;
  reason?: string;
}

export interface AuditEntry {
  format: typeof AUDIT_FORMAT;
  version: typeof AUDIT_VERSION;
  at: string;
  /** user@machine of the operator. */
  user: string;
  command: 'apply' | 'rollback';
  /** The saved plan file applied, when there was one. */
  planFile?: string;
  planHash: string;
  inventory: { path: string; sha256: string };
  window: number;
  hosts: AuditHost[];
  exitCode: number;
}

/** `$XDG_STATE_HOME/fleetfw/audit.jsonl`, else `~/.local/state/fleetfw/audit.jsonl`. */
export function defaultAuditPath(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  // The XDG spec says a relative XDG_STATE_HOME is invalid and must be ignored.
  const state = env.XDG_STATE_HOME && isAbsolute(env.XDG_STATE_HOME) ? env.XDG_STATE_HOME : join(home, '.local', 'state');
  return join(state, 'fleetfw', 'audit.jsonl');
}

const MAX_REASON = 300;

export function buildAuditEntry(e: Omit<AuditEntry, 'format' | 'version' | 'at' | 'hosts'> & { results: HostResult[]; now?: Date }): AuditEntry {
  const { results, now, ...rest } = e;
  return {
    format: AUDIT_FORMAT,
    version: AUDIT_VERSION,
    at: (now ?? new Date()).toISOString().replace(/\.\d+Z$/, 'Z'),
    ...rest,
    hosts: results.map((r) => {
      const h: AuditHost = { host: r.host, outcome: r.outcome };
      if (r.txid) h.txid = r.txid;
      if (r.generation !== undefined) h.generation = r.generation;
      if (r.reason) h.reason = r.reason.replace(/\s+/g, ' ').slice(0, MAX_REASON);
      return h;
    }),
  };
}

/** Append one entry; one write of one line, so concurrent fleetfw runs do not interleave. */
export function appendAuditEntry(file: string, entry: AuditEntry): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  appendFileSync(file, `${JSON.stringify(entry)}\n`, { mode: 0o600 });
}

export interface AuditLog {
  entries: AuditEntry[];
  /** Lines that are not entries (a torn write, hand edits): reported, never fatal. */
  skipped: number[];
}

export function parseAuditLog(text: string): AuditLog {
  const entries: AuditEntry[] = [];
  const skipped: number[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      const e = JSON.parse(line) as Partial<AuditEntry>;
      if (e.format === AUDIT_FORMAT && Array.isArray(e.hosts) && typeof e.at === 'string') entries.push(e as AuditEntry);
      else skipped.push(i + 1);
    } catch {
      skipped.push(i + 1);
    }
  });
  return { entries, skipped };
}

export function readAuditLog(file: string): AuditLog {
  return existsSync(file) ? parseAuditLog(readFileSync(file, 'utf8')) : { entries: [], skipped: [] };
}

/** Entries that touched HOST, oldest first, each with that host's own line. */
export function auditEntriesFor(log: AuditLog, host: string): Array<{ entry: AuditEntry; host: AuditHost }> {
  return log.entries.flatMap((entry) => entry.hosts.filter((h) => h.host === host).map((h) => ({ entry, host: h })));
}
