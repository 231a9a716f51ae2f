// The CLI side of the local audit log: where it is; a run's start recorded
// before any host is touched (a failed write stops the run: it is the safety
// record), each host's start before its transaction, the completion after
// (a failed write then only warns: the hosts are already changed); and a
// host's runs shown next to its generations in `history`.
import { readFileSync } from 'node:fs';
import { FleetError } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import type { HostResult } from '../apply/transaction.js';
import {
  appendAuditRecord,
  appendAuditRecordDurably,
  auditRunsFor,
  buildAuditEntry,
  buildAuditStart,
  buildHostStarted,
  defaultAuditPath,
  findRunTxn,
  newRunId,
  parseHostTxns,
  readAuditLog,
  runFields,
  runState,
  type AuditRunFields,
  type AuditRunState,
} from '../apply/audit.js';
import { sha256 } from '../plan/saved-plan.js';
import { err } from './io.js';

export interface AuditCliOptions {
  auditLog?: string;
}

export function auditPathOf(opts: AuditCliOptions): string {
  return opts.auditLog ?? defaultAuditPath();
}

export function inventoryHashOf(inv: Inventory): string {
  return sha256(readFileSync(inv.file));
}

/** The audit log could not record a run's start: nothing was sent. */
export class AuditLogError extends FleetError {
  constructor(
    readonly file: string,
    what: string,
    cause: unknown,
  ) {
    super(
      `cannot write the audit log ${file} (${(cause as Error)?.message ?? String(cause)}): ${what}. ` +
        'The log is the record of who changed which hosts: make it writable, or name another file with --audit-log.',
    );
  }
}

export interface AuditRunRecorder {
  readonly run: string;
  /** Each host's start, on disk before its transaction touches it; rejects (AuditLogError) when it cannot be. */
  hostStarting(host: string): Promise<void>;
  /** The run's completion, with every host's outcome. */
  complete(results: HostResult[], exitCode: number): void;
}

/** Record a run's start, synced; throws AuditLogError (before any host is touched) when it cannot. */
export function startAuditRun(opts: AuditCliOptions, e: AuditRunFields & { hosts: string[] }): AuditRunRecorder {
  const file = auditPathOf(opts);
  const run = newRunId();
  try {
    appendAuditRecord(file, buildAuditStart({ ...e, run }));
  } catch (x) {
    throw new AuditLogError(file, `the ${e.command} did not start, nothing was sent to any host`, x);
  }
  let broken: unknown;
  return {
    run,
    hostStarting: async (host) => {
      // Once the log fails, no further host starts: each would go unrecorded.
      if (broken === undefined) {
        try {
          await appendAuditRecordDurably(file, buildHostStarted(run, host));
        } catch (x) {
          broken ??= x;
        }
      }
      if (broken !== undefined) throw new AuditLogError(file, `${host} not started, nothing was sent to it`, broken);
    },
    complete: (results, exitCode) => {
      try {
        appendAuditRecord(file, buildAuditEntry({ ...e, run, results, exitCode }));
      } catch (x) {
        err(`fleetfw: warning: could not record the completion of run ${run} in the audit log ${file}: ${(x as Error).message} (history will show the run as interrupted)`);
      }
    },
  };
}

/** A run that sent nothing to any host: its completion alone (a failed write only warns). */
export function recordAudit(opts: AuditCliOptions, e: AuditRunFields & { results: HostResult[]; exitCode: number }): void {
  const file = auditPathOf(opts);
  try {
    appendAuditRecord(file, buildAuditEntry({ ...e, run: newRunId() }));
  } catch (x) {
    err(`fleetfw: warning: could not write the audit log ${file}: ${(x as Error).message}`);
  }
}

export const INTERRUPTED = 'interrupted (no completion recorded; the hosts decided by themselves: see their history)';

export interface HostAuditEntry {
  /** Absent for entries written before runs had ids. */
  run?: string;
  state: AuditRunState;
  /** When the run started (without a start record: when it completed). */
  at: string;
  completedAt?: string;
  user: string;
  command: string;
  planFile?: string;
  planHash: string;
  inventory: { path: string; sha256: string };
  window?: number;
  /** This host's outcome; `interrupted` when the run recorded none. */
  outcome: string;
  txid?: string;
  generation?: number;
  reason?: string;
  /** Interrupted runs: when this host's transaction began; absent when the run never reached it. */
  reached?: string;
  /** Interrupted runs: the host's own record of the run's transaction, found by operator, plan hash and time. */
  hostRecord?: { txid: string; prepared?: string; decided?: string; decidedAt?: string };
}

export interface HostAudit {
  file: string;
  entries: HostAuditEntry[];
  skipped: number[];
}

/** The host's side, from `history`: its log lines and its generations' meta. */
export interface HostHistory {
  log: readonly string[];
  generations: ReadonlyArray<{ meta: Record<string, string> }>;
}

/** The local audit runs that named HOST, oldest first, interrupted ones joined to the host's own record. */
export function readHostAudit(opts: AuditCliOptions, host: string, history: HostHistory): HostAudit {
  const file = auditPathOf(opts);
  let log;
  try {
    log = readAuditLog(file);
  } catch (x) {
    err(`fleetfw: warning: could not read the audit log ${file}: ${(x as Error).message}`);
    return { file, entries: [], skipped: [] };
  }
  const runs = auditRunsFor(log, host);
  const txns = parseHostTxns(history.log, history.generations.map((g) => g.meta));
  const claimed = new Set(runs.flatMap((r) => r.complete?.hosts.filter((h) => h.host === host && h.txid).map((h) => h.txid!) ?? []));
  return {
    file,
    skipped: log.skipped,
    entries: runs.map((r, i): HostAuditEntry => {
      const f = runFields(r);
      const base: HostAuditEntry = {
        ...(r.run ? { run: r.run } : {}),
        state: runState(r),
        at: f.at,
        ...(r.complete && r.start ? { completedAt: r.complete.at } : {}),
        user: f.user,
        command: f.command,
        ...(f.planFile ? { planFile: f.planFile } : {}),
        planHash: f.planHash,
        inventory: f.inventory,
        ...(f.window !== undefined ? { window: f.window } : {}),
        outcome: 'interrupted',
      };
      const h = r.complete?.hosts.find((x) => x.host === host);
      if (r.complete) {
        // A completion that does not name the host (it never reached the rollout): nothing was sent.
        return {
          ...base,
          outcome: h?.outcome ?? 'not-reported',
          ...(h?.txid ? { txid: h.txid } : {}),
          ...(h?.generation !== undefined ? { generation: h.generation } : {}),
          ...(h?.reason ? { reason: h.reason } : {}),
        };
      }
      const reached = r.reached[host];
      const t = reached ? findRunTxn(r, runs[i + 1], txns, claimed) : undefined;
      return {
        ...base,
        ...(reached ? { reached } : {}),
        ...(t ? { txid: t.txid } : {}),
        ...(t?.generation !== undefined ? { generation: t.generation } : {}),
        ...(t
          ? {
              hostRecord: {
                txid: t.txid,
                ...(t.prepared ? { prepared: t.prepared } : {}),
                ...(t.decided ? { decided: t.decided.what, decidedAt: t.decided.at } : {}),
              },
            }
          : {}),
      };
    }),
  };
}

/** " · audit: apply plan.json by …" for the generation whose txid the log knows. */
export function describeAuditMatch(audit: HostAudit, txid: string | undefined): string {
  const e = txid ? audit.entries.find((x) => x.txid === txid) : undefined;
  return e ? `  audit: ${e.command}${e.planFile ? ` ${e.planFile}` : ''} by ${e.user}${e.state === 'interrupted' ? ' (interrupted run)' : ''}` : '';
}

/** What the host itself says about an interrupted run. */
function describeInterrupted(e: HostAuditEntry, host: string): string {
  if (!e.reached) return `${host}: not reached by this run, nothing was sent to it`;
  const began = `${host}: transaction began ${e.reached}`;
  const r = e.hostRecord;
  if (!r) return `${began}; no transaction of this run in the host's log`;
  const decided = r.decided ? `${r.decidedAt ? `${r.decidedAt} ` : ''}${r.decided}` : 'no decision logged yet (still inside its window?)';
  return `${began}; the host's log: txid ${r.txid}${r.prepared ? ` prepared ${r.prepared}` : ''}, ${decided}`;
}

/** The "local audit log" section of `history HOST`. */
export function formatHostAudit(audit: HostAudit, host: string, hostTxids: ReadonlySet<string>): string[] {
  const n = audit.entries.length;
  const interrupted = audit.entries.filter((e) => e.state === 'interrupted').length;
  const lines = [`\nlocal audit log ${audit.file}: ${n} run${n === 1 ? '' : 's'} for ${host}${interrupted ? ` (${interrupted} interrupted)` : ''}`];
  for (const e of audit.entries.slice(-15)) {
    const head = `  ${e.at}  ${e.command}${e.planFile ? ` ${e.planFile}` : ''}  by ${e.user}  plan ${e.planHash}`;
    if (e.state === 'interrupted') {
      lines.push(`${head}  ${INTERRUPTED}`, `      ${describeInterrupted(e, host)}`);
      continue;
    }
    const where = e.txid ? (hostTxids.has(e.txid) ? '' : ' (txid not on the host)') : '';
    const what = [e.generation !== undefined ? `generation ${e.generation}` : '', e.reason ?? ''].filter(Boolean).join('; ');
    lines.push(`${head}  ${e.outcome}${e.txid ? `  txid ${e.txid}${where}` : ''}${what ? `  ${what}` : ''}`);
  }
  if (audit.skipped.length > 0) lines.push(`  (skipped ${audit.skipped.length} unreadable line(s): ${audit.skipped.slice(0, 5).join(', ')})`);
  return lines;
}
