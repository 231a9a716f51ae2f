// Reviewed plans: `plan --out FILE` saves a plan, `apply FILE` applies exactly
// that plan. Nothing that moved since the review is applied: a changed
// inventory or template refuses the whole plan (exit 8), a host whose live
// rules changed is refused by name (checked before starting, and again by the
// host script's prepare, which refuses a mismatching hash with exit 76).
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import pLimit from 'p-limit';
import { ExitCode, FleetError, UsageError, type ExitCodeValue } from '../errors.js';
import type { HostSpec, Inventory } from '../model/inventory.js';
import type { RenderedHost } from '../render/render.js';
import type { Transport } from '../transport/types.js';
import { readFacts } from '../apply/transaction.js';
import type { SessionPool } from '../apply/session-pool.js';
import { assemblePlan, type HostPlan, type Plan } from '../plan/plan.js';
import { buildSavedPlan, findSourceChanges, formatSavedPlan, parseSavedPlan, short, type SavedPlan } from '../plan/saved-plan.js';
import { EMBEDDED_INVENTORY, loadFleet, type InventoryOptions } from './context.js';
import { err } from './io.js';
import { cmdApply, operatorName, type ApplyOptions } from './live-commands.js';

/** What cmdApply needs to apply a saved plan instead of planning. */
export interface ReviewedApply {
  /** The plan file as given. */
  file: string;
  fleet: { inv: Inventory; display: string; rendered: RenderedHost[] };
  /** The hosts the plan covers. */
  hosts: HostSpec[];
  /** The fleet's rules with the saved ones in place: what the pre-flight checks judge. */
  checkedRules: RenderedHost[];
  /** The saved plan, with each host whose live rules moved since marked as an error. */
  /** With a pool, each host's session (and its host script) stays open for its transaction. */
  recheck(transport: Transport, parallel: number, pool?: SessionPool): Promise<Plan>;
}

/** The inventory as the user named it: saved plans keep relative paths relative (CI checkouts). */
function inventoryArg(opts: InventoryOptions): string {
  return opts.inventory ?? process.env.FLEETFW_INVENTORY ?? EMBEDDED_INVENTORY;
}

/** `plan --out FILE`: write the plan that was just printed, for `apply FILE`. */
export function savePlanFile(file: string, plan: Plan, inv: Inventory, rendered: RenderedHost[], opts: InventoryOptions): void {
  const saved = buildSavedPlan(plan, {
    inventoryPath: inventoryArg(opts),
    inventoryText: readFileSync(inv.file),
    rendered,
    createdBy: operatorName(),
  });
  // Whole file or nothing: a reviewer must never see half a plan.
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, formatSavedPlan(saved));
  renameSync(tmp, file);
  const how = plan.mode === 'offline' ? 'an offline plan, for review only: apply needs a live plan' : `apply it with: fleetfw apply ${file}`;
  err(`fleetfw: saved the plan to ${file} (plan hash ${plan.planHash}; ${how})`);
}

export function readSavedPlan(file: string): SavedPlan {
  if (!existsSync(file)) throw new UsageError(`plan file not found: ${file}`);
  const parsed = parseSavedPlan(readFileSync(file, 'utf8'));
  if ('error' in parsed) throw new UsageError(`${file}: ${parsed.error}`);
  return parsed.saved;
}

function asRendered(base: RenderedHost, desired: { v4: string; v6: string }): RenderedHost {
  return { ...base, v4: { ...base.v4, text: desired.v4, origins: [] }, v6: { ...base.v6, text: desired.v6, origins: [] } };
}

/** Mark the hosts whose live rules are no longer those the plan was made against. */
async function recheckLive(saved: SavedPlan, inv: Inventory, transport: Transport, parallel: number, pool?: SessionPool): Promise<Plan> {
  const limit = pLimit(parallel);
  const byName = new Map(inv.hosts.map((h) => [h.name, h]));
  const hosts = await Promise.all(
    saved.plan.hosts.map((h) =>
      limit(async (): Promise<HostPlan> => {
        if (h.status !== 'changes') return h;
        try {
          const facts = await readFacts(transport, byName.get(h.host)!, undefined, pool);
          if (facts.liveHash === h.liveHash) return h;
          const why = `live rules changed since the plan was made (planned against ${short(h.liveHash ?? '?')}, now ${short(facts.liveHash)}): not applied, plan again`;
          err(`fleetfw: refusing ${h.host}: ${why}`);
          return { ...h, status: 'error', error: why };
        } catch (e) {
          return { ...h, status: 'unreachable', error: (e as Error).message };
        }
      }),
    ),
  );
  // Same desired rules, so the same plan hash: the generations record the reviewed plan.
  return { ...assemblePlan(saved.plan.mode, saved.plan.inventory, hosts), planHash: saved.plan.planHash };
}

/** `apply FILE`. */
export async function cmdApplyPlan(file: string, opts: ApplyOptions): Promise<ExitCodeValue> {
  const o = opts as ApplyOptions & { limit?: string; force?: boolean };
  if (o.limit) throw new UsageError('--limit cannot narrow a saved plan: it is applied as reviewed (plan again with --limit)');
  if (o.force) throw new UsageError('--force does not apply to a saved plan: it applies exactly the reviewed changes');
  const saved = readSavedPlan(file);
  if (saved.plan.mode !== 'live') {
    throw new UsageError(`${file} is an offline plan (compared with a stored render, not the hosts): it cannot prove the hosts are as reviewed; save a live plan with \`fleetfw plan --out FILE\``);
  }
  const fleet = loadFleet({ ...opts, inventory: opts.inventory ?? saved.inventory.path });
  const { inv, rendered } = fleet;
  const changed = findSourceChanges(saved, { inventoryText: readFileSync(inv.file), rendered });
  if (changed.length > 0) {
    throw new FleetError(`${file} is stale: ${changed.join('; ')}. Nothing was applied: plan again and review.`, ExitCode.stalePlan);
  }
  const planned = new Set(saved.plan.hosts.map((h) => h.host));
  const savedRules = new Map(saved.plan.hosts.filter((h) => h.desired).map((h) => [h.host, h.desired!]));
  return cmdApply(opts, {
    file,
    fleet: { ...fleet, display: saved.inventory.path },
    hosts: inv.hosts.filter((h) => planned.has(h.name)),
    checkedRules: rendered.map((r) => (savedRules.has(r.host) ? asRendered(r, savedRules.get(r.host)!) : r)),
    recheck: (transport, parallel, pool) => recheckLive(saved, inv, transport, parallel, pool),
  });
}
