// The CLI side of the local audit log: where it is, writing an entry after
// apply and rollback (a write failure warns: the hosts are already changed),
// and showing a host's entries next to its generations in `history`.
import { readFileSync } from 'node:fs';
import type { Inventory } from '../model/inventory.js';
import type { HostResult } from '../apply/transaction.js';
import { appendAuditEntry, auditEntriesFor, buildAuditEntry, defaultAuditPath, readAuditLog, type AuditEntry } from '../apply/audit.js';
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

export function recordAudit(
  opts: AuditCliOptions,
  e: { user: string; command: AuditEntry['command']; planFile?: string; planHash: string; inventory: { path: string; sha256: string }; window: number; results: HostResult[]; exitCode: number },
): void {
  const file = auditPathOf(opts);
  try {
    appendAuditEntry(file, buildAuditEntry(e));
  } catch (x) {
    err(`fleetfw: warning: could not write the audit log ${file}: ${(x as Error).message}`);
  }
}

export interface HostAudit {
  file: string;
  entries: Array<{ at: string; user: string; command: string; planFile?: string; planHash: string; inventory: { path: string; sha256: string }; outcome: string; txid?: string; generation?: number; reason?: string }>;
  skipped: number[];
}

/** The local audit entries that touched HOST, oldest first. */
export function readHostAudit(opts: AuditCliOptions, host: string): HostAudit {
  const file = auditPathOf(opts);
  let log;
  try {
    log = readAuditLog(file);
  } catch (x) {
    err(`fleetfw: warning: could not read the audit log ${file}: ${(x as Error).message}`);
    return { file, entries: [], skipped: [] };
  }
  return {
    file,
    skipped: log.skipped,
    entries: auditEntriesFor(log, host).map(({ entry, host: h }) => ({
      at: entry.at,
      user: entry.user,
      command: entry.command,
      ...(entry.planFile ? { planFile: entry.planFile } : {}),
      planHash: entry.planHash,
      inventory: entry.inventory,
      outcome: h.outcome,
      ...(h.txid ? { txid: h.txid } : {}),
      ...(h.generation !== undefined ? { generation: h.generation } : {}),
      ...(h.reason ? { reason: h.reason } : {}),
    })),
  };
}

/** " · audit: apply plan.json at … by …" for the generation whose txid the log knows. */
export function describeAuditMatch(audit: HostAudit, txid: string | undefined): string {
  const e = txid ? audit.entries.find((x) => x.txid === txid) : undefined;
  return e ? `  audit: ${e.command}${e.planFile ? ` ${e.planFile}` : ''} by ${e.user}` : '';
}

/** The "local audit log" section of `history HOST`. */
export function formatHostAudit(audit: HostAudit, host: string, hostTxids: ReadonlySet<string>): string[] {
  const lines = [`\nlocal audit log ${audit.file}: ${audit.entries.length} entr${audit.entries.length === 1 ? 'y' : 'ies'} for ${host}`];
  for (const e of audit.entries.slice(-15)) {
    const where = e.txid ? (hostTxids.has(e.txid) ? '' : ' (txid not on the host)') : '';
    const what = [e.generation !== undefined ? `generation ${e.generation}` : '', e.reason ?? ''].filter(Boolean).join('; ');
    lines.push(
      `  ${e.at}  ${e.command}${e.planFile ? ` ${e.planFile}` : ''}  by ${e.user}  plan ${e.planHash}  ${e.outcome}${e.txid ? `  txid ${e.txid}${where}` : ''}${what ? `  ${what}` : ''}`,
    );
  }
  if (audit.skipped.length > 0) lines.push(`  (skipped ${audit.skipped.length} unreadable line(s): ${audit.skipped.slice(0, 5).join(', ')})`);
  return lines;
}
