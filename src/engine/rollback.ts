// Plan a rollback: a host's earlier generation, as it will run (without the
// foreign chains it saved, with today's merged in, every live table it lacks
// emptied), and whether it keeps the management path. Applied like any plan.
import { ExitCode, FleetError, UsageError } from '../errors.js';
import type { HostSpec } from '../model/inventory.js';
import type { Transport } from '../transport/types.js';
import type { RenderedHost } from '../render/render.js';
import { bastionOf } from '../inventory/query.js';
import * as client from '../host/client.js';
import { readFacts } from '../apply/transaction.js';
import { parseIpSets } from '../render/ipsets.js';
import { assemblePlan, planLiveHost, type HostPlan, type Plan } from '../plan/plan.js';
import { parseFleet } from '../plan/checks.js';
import { withoutForeign } from '../plan/foreign.js';
import { parseRuleSet } from '../analyze/parse.js';
import { checkManagementPath, type LockoutResult } from '../analyze/lockout.js';
import type { Fleet } from './fleet.js';

export interface RollbackPlan {
  /** A plan of this one host, its hash naming the target generation. */
  plan: Plan;
  hostPlan: HostPlan;
  from: number;
  target: number;
  /** The management path under the generation as it will run. */
  lockout: LockoutResult;
}

/** `to` undefined: the generation before the current one. */
export async function planRollback(fleet: Fleet, host: HostSpec, to: number | undefined, transport: Transport): Promise<RollbackPlan> {
  const { inv, display, rendered } = fleet;
  const facts = await readFacts(transport, host);
  const target = to ?? facts.generation - 1;
  if (!Number.isInteger(target) || target < 1) {
    throw new UsageError(`${host.name} has no previous generation to roll back to (current: ${facts.generation}); see fleetfw history ${host.name}`);
  }
  const s = await transport.open(host.name);
  let stored: { v4: string; v6: string; ipsets?: string };
  try {
    stored = await client.generation(s, host.ssh.sudo, target).catch((e: unknown) => {
      // The generation asked for is not on the host: a usage mistake, said in the host's words.
      throw e instanceof client.HostError ? new UsageError(`${host.name}: ${e.hostSays}`) : e;
    });
  } finally {
    await s.close();
  }
  // The old generation without the foreign parts it saved, with today's merged in like any apply.
  const base = rendered.find((x) => x.host === host.name)!;
  const asRendered: RenderedHost = {
    ...base,
    v4: { ...base.v4, text: withoutForeign(stored.v4, 4, inv.preserve), origins: [] },
    v6: { ...base.v6, text: withoutForeign(stored.v6, 6, inv.preserve), origins: [] },
    notes: [`rollback to generation ${target}`],
    ipsets: parseIpSets(stored.ipsets ?? ''),
  };
  // Every table of the generation, and the live tables it lacks emptied (see planLiveHost).
  const hostPlan = planLiveHost(asRendered, { ...facts, canonical: undefined }, inv.preserve, `generation ${target}`);
  if (!hostPlan.desired) throw new FleetError(`${host.name}: ${hostPlan.error ?? 'cannot plan the rollback'}`, ExitCode.hostsFailed);
  // The generation as it will run: its own rules with today's preserved chains merged in.
  const sets = new Map(asRendered.ipsets!.map((x) => [x.name, x]));
  const desired = hostPlan.desired;
  const planned = (family: 4 | 6) => ({ ...parseRuleSet(desired[family === 4 ? 'v4' : 'v6'], { family, file: `${host.name} generation ${target}` }).ruleSet, sets });
  const bastion = bastionOf(inv, host);
  const bastionRs = bastion.name === host.name ? undefined : parseFleet(rendered.filter((r) => r.host === bastion.name)).get(bastion.name);
  const lockout = checkManagementPath(inv, host, { v4: planned(4), v6: planned(6) }, bastionRs);
  // A rollback always runs its transaction, even onto rules that look the same.
  const plan = { ...assemblePlan('live', display, [{ ...hostPlan, status: 'changes' as const }]), planHash: `rollback-to-${target}` };
  return { plan, hostPlan, from: facts.generation, target, lockout };
}
