// Apply a plan: the one path a fresh plan, a reviewed plan and a rollback all
// take. The hosts that change run their transactions in rollout order (bastions
// first and alone, a canary, then the rest within the failure budget); the
// others are reported beside them. Never prints: events go to the caller.
import type { Inventory } from '../model/inventory.js';
import type { Transport } from '../transport/types.js';
import type { HostPlan, Plan } from '../plan/plan.js';
import { rollout, rolloutExitCode } from '../apply/rollout.js';
import type { SessionPool } from '../apply/session-pool.js';
import { healthProber } from '../apply/health.js';
import type { ApplyEvent, HostResult, TransactionInput } from '../apply/transaction.js';
import type { ExitCodeValue } from '../errors.js';

/** Which hosts a plan changes, and how the others are reported. */
export interface Work {
  /** Hosts a transaction runs on, bastions first. */
  todo: HostPlan[];
  /** In sync (unless forced) or broken: reported beside the others, never touched. */
  untouched: HostResult[];
  /** Hosts the plan could not read or plan. */
  broken: HostPlan[];
}

export function selectWork(plan: Plan, inv: Inventory, force: boolean): Work {
  const bastions = new Set(inv.networks.map((n) => n.bastion));
  const todo = plan.hosts.filter((h) => h.status === 'changes' || (force && h.status === 'in-sync'));
  const broken = plan.hosts.filter((h) => h.status === 'unreachable' || h.status === 'error');
  return {
    todo: [...todo.filter((h) => bastions.has(h.host)), ...todo.filter((h) => !bastions.has(h.host))],
    untouched: [
      ...plan.hosts.filter((h) => h.status === 'in-sync' && !force).map((h): HostResult => ({ host: h.host, outcome: 'unchanged', ms: 0, generation: h.generation })),
      ...broken.map((h): HostResult => ({ host: h.host, outcome: 'failed', reason: h.error, ms: 0 })),
    ],
    broken,
  };
}

export interface ApplySettings {
  window: number;
  /** Stop starting hosts after this many failures or rollbacks. */
  maxFailures: number;
  parallel: number;
  /** Who applies (recorded with each generation on the host). */
  user: string;
  /** Why the generations exist. */
  source: 'apply' | 'rollback';
  /** Install iptables-persistent where the plan found it missing. */
  installPersistent: boolean;
}

export interface ApplyIo {
  transport: Transport;
  /** The plan's kept sessions: each host's transaction runs on its own. */
  pool?: SessionPool;
  onEvent: (e: ApplyEvent) => void;
  /** Told the hosts about to change before any is touched: a throw stops the run (the audit's start record). */
  beforeFirstChange?: (hosts: string[]) => void;
  /** Awaited before each host's transaction: a rejection fails that host before anything is sent to it. */
  beforeHost?: (host: string) => Promise<void>;
}

export interface ApplyOutcome {
  /** Every host of the plan, sorted by name. */
  results: HostResult[];
  exitCode: ExitCodeValue;
}

/** Run the transactions of `work` and report every host of the plan. */
export async function applyPlan(inv: Inventory, plan: Plan, work: Work, settings: ApplySettings, io: ApplyIo): Promise<ApplyOutcome> {
  let results: HostResult[] = [];
  if (work.todo.length > 0) {
    io.beforeFirstChange?.(work.todo.map((h) => h.host));
    const byName = new Map(inv.hosts.map((h) => [h.name, h]));
    const inputs = work.todo.map(
      (h): TransactionInput => ({
        host: byName.get(h.host)!,
        desired: h.desired!,
        expectedLiveHash: h.liveHash,
        source: settings.source,
        installPersistent: Boolean(h.persistentMissing) && settings.installPersistent,
      }),
    );
    results = await rollout(inputs, {
      transport: io.transport,
      window: settings.window,
      generations: inv.settings.generations,
      user: settings.user,
      planHash: plan.planHash,
      parallel: settings.parallel,
      maxFailures: settings.maxFailures,
      bastions: new Set(inv.networks.map((n) => n.bastion)),
      onEvent: io.onEvent,
      ...(io.beforeHost ? { beforeHost: io.beforeHost } : {}),
      probe: healthProber(inv, io.transport),
      ...(io.pool ? { pool: io.pool } : {}),
    });
  }
  const all = [...results, ...work.untouched].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  return { results: all, exitCode: rolloutExitCode(all) };
}
