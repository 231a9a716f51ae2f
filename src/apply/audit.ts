// The operator's local audit log, one JSON object per line. Each apply and
// rollback is a run of records sharing a run id: `start` (who, which plan or
// rollback target, which inventory, which hosts), written and synced before
// any host is touched, so that a fleetfw killed mid-rollout still leaves who
// started what where; `host-started` as each host's transaction begins; and
// `complete` with what each host ended as and its transaction id. A start
// with no completion is an interrupted run: its hosts decided by themselves.
// The hosts keep their own generations and log; the txid joins the two (for
// an interrupted run: operator, plan hash and time, see findRunTxn).
// Version 1 files (one entry per run, no run id) read as completed runs.
// Never holds secrets: no key paths, no environment.
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { FleetError } from '../errors.js';
import type { HostOutcome, HostResult } from './transaction.js';

export const AUDIT_FORMAT = 'fleetfw-audit';
/** 1: one entry per run, after it. 2: start, host-started and complete records joined by a run id. */
export const AUDIT_VERSION = 2;

export type AuditCommand = 'apply' | 'rollback';

/** What a run was asked to do: in its start record and again in its completion. */
export interface AuditRunFields {
  /** user@machine of the operator. */
  user: string;
  command: AuditCommand;
  /** The saved plan file applied, when there was one. */
  planFile?: string;
  /** The plan's hash, or `rollback-to-N`: what the hosts record with each transaction. */
  planHash: string;
  inventory: { path: string; sha256: string };
  window: number;
}

export interface AuditHost {
  host: string;
  outcome: HostOutcome;
  txid?: string;
  generation?: number;
  reason?: string;
}

export interface AuditStart extends AuditRunFields {
  format: typeof AUDIT_FORMAT;
  version: number;
  event: 'start';
  run: string;
  at: string;
  /** The hosts about to be changed. */
  hosts: string[];
}

export interface AuditHostStarted {
  format: typeof AUDIT_FORMAT;
  version: number;
  event: 'host-started';
  run: string;
  at: string;
  host: string;
}

/** A run's completion (version 2), or a whole run (version 1: no event, no run id). */
export interface AuditEntry extends AuditRunFields {
  format: typeof AUDIT_FORMAT;
  version: number;
  event?: 'complete';
  run?: string;
  at: string;
  hosts: AuditHost[];
  exitCode: number;
}

export type AuditRecord = AuditStart | AuditHostStarted | AuditEntry;

/** `$XDG_STATE_HOME/fleetfw/audit.jsonl`, else `~/.local/state/fleetfw/audit.jsonl`. */
export function defaultAuditPath(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  // The XDG spec says a relative XDG_STATE_HOME is invalid and must be ignored.
  const state = env.XDG_STATE_HOME && isAbsolute(env.XDG_STATE_HOME) ? env.XDG_STATE_HOME : join(home, '.local', 'state');
  return join(state, 'fleetfw', 'audit.jsonl');
}

const MAX_REASON = 300;

function isoSeconds(now: Date | undefined): string {
  return (now ?? new Date()).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Sortable like a txid: the start time (UTC, seconds), then random hex. */
export function newRunId(now: Date = new Date()): string {
  return `${compactTime(isoSeconds(now))}-${randomBytes(4).toString('hex')}`;
}

export function buildAuditStart(e: AuditRunFields & { run: string; hosts: string[]; now?: Date }): AuditStart {
  const { now, run, hosts, ...rest } = e;
  return { format: AUDIT_FORMAT, version: AUDIT_VERSION, event: 'start', run, at: isoSeconds(now), ...rest, hosts: [...hosts] };
}

export function buildHostStarted(run: string, host: string, now?: Date): AuditHostStarted {
  return { format: AUDIT_FORMAT, version: AUDIT_VERSION, event: 'host-started', run, at: isoSeconds(now), host };
}

export function buildAuditEntry(e: AuditRunFields & { run: string; results: HostResult[]; exitCode: number; now?: Date }): AuditEntry {
  const { results, now, run, ...rest } = e;
  return {
    format: AUDIT_FORMAT,
    version: AUDIT_VERSION,
    event: 'complete',
    run,
    at: isoSeconds(now),
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

/** A record did not reach the audit log whole (the disk is full, say); the CLI says what that stopped (AuditLogError). */
export class AuditWriteError extends FleetError {}

/**
 * Append one record and sync it to disk before returning: the start of a run
 * must be on disk before any host changes. One write of one line (O_APPEND), so
 * concurrent fleetfw runs do not interleave. Throws on any failure, a short
 * write included (its torn line is skipped by the reader).
 */
export function appendAuditRecord(file: string, record: AuditRecord): void {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const created = !existsSync(file);
  const fd = openSync(file, 'a', 0o600);
  try {
    writeLine(fd, record);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  // A new file's name is durable only once its folder is synced too.
  if (created) {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }
}

function writeLine(fd: number, record: AuditRecord): void {
  const line = Buffer.from(`${JSON.stringify(record)}\n`);
  const n = writeSync(fd, line);
  if (n !== line.length) throw new AuditWriteError(`short write (${n} of ${line.length} bytes)`);
}

/**
 * {@link appendAuditRecord} for a record that must be on disk before the caller goes
 * on, without stopping the event loop for the fsync (it runs on the thread pool): a
 * rollout does not wait for one host's record while it drives the others. The file
 * must exist (a run's start record made it).
 */
export async function appendAuditRecordDurably(file: string, record: AuditRecord): Promise<void> {
  const fd = openSync(file, 'a', 0o600);
  try {
    writeLine(fd, record);
    await new Promise<void>((resolve, reject) => fsync(fd, (e) => (e ? reject(e) : resolve())));
  } finally {
    closeSync(fd);
  }
}

export interface AuditLog {
  records: AuditRecord[];
  /** Lines that are not records (a torn write, hand edits, a later format): reported, never fatal. */
  skipped: number[];
}

const isString = (x: unknown): x is string => typeof x === 'string';

function asRecord(x: unknown): AuditRecord | undefined {
  if (typeof x !== 'object' || x === null) return undefined;
  const e = x as Record<string, unknown>;
  if (e.format !== AUDIT_FORMAT || !isString(e.at)) return undefined;
  if (e.event === 'start') {
    return isString(e.run) && isString(e.planHash) && Array.isArray(e.hosts) && e.hosts.every(isString) ? (e as unknown as AuditStart) : undefined;
  }
  if (e.event === 'host-started') return isString(e.run) && isString(e.host) ? (e as unknown as AuditHostStarted) : undefined;
  if (e.event !== undefined && e.event !== 'complete') return undefined;
  const hostsOk = Array.isArray(e.hosts) && e.hosts.every((h) => typeof h === 'object' && h !== null && isString((h as { host?: unknown }).host));
  return hostsOk && (e.run === undefined || isString(e.run)) ? (e as unknown as AuditEntry) : undefined;
}

export function parseAuditLog(text: string): AuditLog {
  const records: AuditRecord[] = [];
  const skipped: number[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let r: AuditRecord | undefined;
    try {
      r = asRecord(JSON.parse(line));
    } catch {
      r = undefined;
    }
    if (r) records.push(r);
    else skipped.push(i + 1);
  });
  return { records, skipped };
}

export function readAuditLog(file: string): AuditLog {
  return existsSync(file) ? parseAuditLog(readFileSync(file, 'utf8')) : { records: [], skipped: [] };
}

/** One apply or rollback, from its records. */
export interface AuditRun {
  /** Absent for version 1 entries. */
  run?: string;
  start?: AuditStart;
  /** host -> when its transaction began. */
  reached: Record<string, string>;
  complete?: AuditEntry;
}

export type AuditRunState = 'complete' | 'interrupted';

/** A run that started and never recorded its completion was interrupted (killed, crashed, power lost). */
export function runState(r: AuditRun): AuditRunState {
  return r.complete ? 'complete' : 'interrupted';
}

/** What the run was asked to do (its start, else its completion). */
export function runFields(r: AuditRun): AuditRunFields & { at: string } {
  return (r.start ?? r.complete)!;
}

/** Runs in the order they started (the order of their first record). */
export function auditRuns(log: AuditLog): AuditRun[] {
  const runs: AuditRun[] = [];
  const byId = new Map<string, AuditRun>();
  const of = (id: string) => {
    let r = byId.get(id);
    if (!r) {
      r = { run: id, reached: {} };
      byId.set(id, r);
      runs.push(r);
    }
    return r;
  };
  for (const rec of log.records) {
    if (rec.event === 'start') of(rec.run).start ??= rec;
    else if (rec.event === 'host-started') of(rec.run).reached[rec.host] ??= rec.at;
    else if (rec.run === undefined) runs.push({ reached: {}, complete: rec });
    else of(rec.run).complete ??= rec;
  }
  // host-started records alone (their start line torn or edited away) say too little to show.
  return runs.filter((r) => r.start || r.complete);
}

/** Runs that named HOST (about to change it, or reporting its outcome), oldest first. */
export function auditRunsFor(log: AuditLog, host: string): AuditRun[] {
  return auditRuns(log).filter((r) => r.start?.hosts.includes(host) || r.complete?.hosts.some((h) => h.host === host) || r.reached[host] !== undefined);
}

/** A transaction as the host's own log and generations record it. */
export interface HostTxn {
  txid: string;
  /** Host clock, when prepare began. */
  prepared?: string;
  user?: string;
  plan?: string;
  /** The host's last word on it: `confirmed generation=3`, `reverted <reason>`, … */
  decided?: { at: string; what: string };
  generation?: number;
}

const TXID = /^(\d{8}T\d{6})-[0-9a-f]+$/;

/**
 * The host's transactions from `history`'s log lines (`TIME TXID prepared
 * user=U plan=P window=W`, `TIME TXID confirmed generation=N`, `TIME TXID
 * reverted REASON`, …) and its generations' meta (txid, user, plan_hash).
 */
export function parseHostTxns(log: readonly string[], generations: ReadonlyArray<Record<string, string>> = []): HostTxn[] {
  const byId = new Map<string, HostTxn>();
  const of = (txid: string) => {
    let t = byId.get(txid);
    if (!t) byId.set(txid, (t = { txid }));
    return t;
  };
  for (const line of log) {
    const m = /^(\S+) (\S+) (\S+)(?: (.*))?$/.exec(line);
    if (!m || !TXID.test(m[2]!)) continue;
    const [, at, txid, verb, rest = ''] = m;
    const t = of(txid!);
    if (verb === 'prepared') {
      t.prepared = at;
      t.user = /(?:^| )user=(\S+)/.exec(rest)?.[1] ?? t.user;
      t.plan = /(?:^| )plan=(\S+)/.exec(rest)?.[1] ?? t.plan;
    } else {
      t.decided = { at: at!, what: rest ? `${verb} ${rest}` : verb! };
      const gen = /(?:^| )generation=(\d+)/.exec(rest)?.[1];
      if (verb === 'confirmed' && gen) t.generation = Number(gen);
    }
  }
  for (const g of generations) {
    if (!g.txid || !TXID.test(g.txid)) continue;
    const t = of(g.txid);
    t.user ??= g.user;
    t.plan ??= g.plan_hash;
    if (g.generation && t.generation === undefined) t.generation = Number(g.generation);
    t.decided ??= { at: g.when ?? '', what: `confirmed generation=${g.generation ?? '?'}` };
  }
  return [...byId.values()];
}

/** `2025-01-02T03:04:05Z` -> `20250102T030405`, the txid's time prefix. */
export function compactTime(iso: string): string {
  return iso.replace(/[-:]/g, '').replace(/(\.\d+)?Z$/, '');
}

/**
 * The host's transaction of an interrupted run, which never learned its txid:
 * the host records the operator and plan hash fleetfw sent it, and a txid
 * begins with the operator's clock, taken after the run's start record was
 * written (no clock skew between them). The earliest such transaction from the
 * run's start until the next run that named this host started (that second
 * excluded: better no match than another run's), not claimed by a completed
 * run's record.
 */
export function findRunTxn(run: AuditRun, next: AuditRun | undefined, txns: readonly HostTxn[], claimed: ReadonlySet<string>): HostTxn | undefined {
  const fields = runFields(run);
  const from = compactTime(fields.at);
  const until = next ? compactTime(runFields(next).at) : undefined;
  return txns
    .filter((t) => {
      const time = TXID.exec(t.txid)?.[1];
      return time !== undefined && t.user === fields.user && t.plan === fields.planHash && !claimed.has(t.txid) && time >= from && (until === undefined || time < until);
    })
    .sort((a, b) => (a.txid < b.txid ? -1 : 1))[0];
}
