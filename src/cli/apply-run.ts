// What apply, apply PLAN and rollback share on the command line: the checks
// that stop a run, the question before it, the audit record around it, the
// progress view, and the results. The engine applies; this only talks.
import { userInfo, hostname } from 'node:os';
import { CheckError, ExitCode, UsageError, type ExitCodeValue } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import type { Transport } from '../transport/types.js';
import type { HostResult } from '../apply/transaction.js';
import { rolloutExitCode } from '../apply/rollout.js';
import type { SessionPool } from '../apply/session-pool.js';
import type { FleetFinding } from '../plan/checks.js';
import type { Plan } from '../plan/plan.js';
import { applyPlan, type ApplySettings, type Work } from '../engine/apply.js';
import { chalkFor, confirm, err, out } from './io.js';
import { printFindings } from './core-commands.js';
import { startRolloutProgress } from './progress.js';
import { inventoryHashOf, recordAudit, startAuditRun, type AuditCliOptions } from './audit-log.js';
import type { InventoryOptions, SshCliOptions } from './context.js';

// Measured (PERFORMANCE.md, 99 targets on 2 cores): 10 is as fast as 20 or 30 for plan and
// apply, since sshd handshakes are CPU-bound; 5 leaves the hosts' waits (fsync, watchdog) idle.
export const DEFAULT_PARALLEL = 10;

export interface LiveOptions extends InventoryOptions, SshCliOptions {
  parallel?: string;
  color?: boolean;
}

export interface ApplyOptions extends LiveOptions, AuditCliOptions {
  window?: string;
  yes?: boolean;
  maxFailures?: string;
  force?: boolean;
  unsafeSkipChecks?: boolean;
  json?: boolean;
  installPersistent?: boolean;
  verifyLive?: boolean;
  timeout?: string;
}

export function parallelOf(opts: LiveOptions): number {
  const n = Number(opts.parallel ?? DEFAULT_PARALLEL);
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new UsageError('--parallel must be an integer from 1 to 200');
  return n;
}

export function windowOf(inv: Inventory, opts: ApplyOptions): number {
  const w = Number(opts.window ?? inv.settings.window);
  if (!Number.isInteger(w) || w < 5 || w > 3600) throw new UsageError('--window must be an integer number of seconds from 5 to 3600');
  return w;
}

export function maxFailuresOf(opts: ApplyOptions): number {
  const n = Number(opts.maxFailures ?? 1);
  return Number.isInteger(n) && n > 0 ? n : 1;
}

export function operatorName(): string {
  const raw = `${userInfo().username}@${hostname()}`;
  return raw.replace(/[^A-Za-z0-9._@-]/g, '_').slice(0, 64);
}

/** Print the findings; stop the run (nothing sent) on an error unless the checks are overridden. */
export function stopOnFindings(findings: FleetFinding[], opts: ApplyOptions, what: string): void {
  printFindings(findings, opts.color);
  if (!findings.some((f) => f.severity === 'error')) return;
  if (!opts.unsafeSkipChecks) throw new CheckError(`${what} failed: nothing was sent to any host (override with --unsafe-skip-checks)`);
  err(`fleetfw: --unsafe-skip-checks: going on despite failed ${what}; the hosts will revert by themselves if they lose their management path`);
}

export function printResults(results: HostResult[], json: boolean, color?: boolean, planHash?: string): void {
  if (json) {
    const counts = Object.fromEntries(['confirmed', 'unchanged', 'rolled-back', 'failed', 'unknown', 'skipped'].map((o) => [o, results.filter((r) => r.outcome === o).length]));
    out(JSON.stringify({ type: 'summary', ...(planHash ? { planHash } : {}), exitCode: rolloutExitCode(results), counts, results }));
    return;
  }
  const c = chalkFor(process.stdout, color);
  out('');
  for (const r of results) {
    const paintOutcome = r.outcome === 'confirmed' ? c.green : r.outcome === 'unchanged' ? c.dim : r.outcome === 'rolled-back' ? c.yellow : c.red;
    const extra = [r.generation !== undefined ? `generation ${r.generation}` : '', r.reason ?? '', r.revertMs !== undefined ? `reverted ${(r.revertMs / 1000).toFixed(1)}s after load` : '']
      .filter(Boolean)
      .join('; ');
    out(`${r.host.padEnd(20)} ${paintOutcome(r.outcome.padEnd(12))} ${(r.ms / 1000).toFixed(1).padStart(5)}s  ${extra}`);
  }
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  out(`\n${count('confirmed')} confirmed, ${count('unchanged')} unchanged, ${count('rolled-back')} rolled back, ${count('failed')} failed, ${count('unknown')} unknown, ${count('skipped')} skipped.`);
}

export interface PlannedRun {
  inv: Inventory;
  display: string;
  plan: Plan;
  work: Work;
  command: 'apply' | 'rollback';
  /** The saved plan applied, if any. */
  planFile?: string;
  /** The question before the run, and the progress view's title. */
  question: string;
  title: string;
  settings: Omit<ApplySettings, 'user' | 'parallel'>;
  transport: Transport;
  pool?: SessionPool;
}

/** Ask, record, apply through the engine, report: the end every applying command shares. */
export async function runPlanned(run: PlannedRun, opts: ApplyOptions): Promise<ExitCodeValue> {
  const { inv, plan, work } = run;
  const fields = { user: operatorName(), command: run.command, planFile: run.planFile, planHash: plan.planHash, inventory: { path: run.display, sha256: inventoryHashOf(inv) }, window: run.settings.window };
  if (work.todo.length === 0) {
    if (work.broken.length > 0) recordAudit(opts, { ...fields, results: work.untouched, exitCode: ExitCode.hostsFailed });
    if (opts.json) printResults(work.untouched, true, opts.color, plan.planHash);
    else out(work.broken.length ? 'Nothing to apply on the reachable hosts.' : 'Nothing to apply: every host is in sync.');
    return work.broken.length ? ExitCode.hostsFailed : ExitCode.ok;
  }
  if (!opts.yes && !(await confirm(run.question))) {
    throw new UsageError(process.stdin.isTTY ? 'aborted: nothing was applied' : 'not a terminal: pass --yes to apply');
  }
  let audit: ReturnType<typeof startAuditRun> | undefined;
  const progress = startRolloutProgress({ hosts: work.todo.map((h) => h.host), title: run.title, window: run.settings.window, json: Boolean(opts.json), color: opts.color });
  const outcome = await applyPlan(inv, plan, work, { ...run.settings, user: fields.user, parallel: parallelOf(opts) }, {
    transport: run.transport,
    ...(run.pool ? { pool: run.pool } : {}),
    // The safety record first: a run the audit log cannot record touches no host.
    beforeFirstChange: (hosts) => {
      audit = startAuditRun(opts, { ...fields, hosts });
    },
    beforeHost: (host) => audit!.hostStarting(host),
    onEvent: (e) => progress.onEvent(e),
  }).finally(() => progress.stop());
  audit?.complete(outcome.results, outcome.exitCode);
  printResults(outcome.results, Boolean(opts.json), opts.color, plan.planHash);
  return outcome.exitCode;
}
