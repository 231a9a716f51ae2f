// A reviewed plan, applied exactly as reviewed: refused whole when the inventory
// or templates changed since (exit 8), host by host when a host's live rules did.
import { readFileSync } from 'node:fs';
import pLimit from 'p-limit';
import { ExitCode, FleetError } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import type { Transport } from '../transport/types.js';
import type { RenderedHost } from '../render/render.js';
import { readFacts } from '../apply/transaction.js';
import type { SessionPool } from '../apply/session-pool.js';
import { assemblePlan, type HostPlan, type Plan } from '../plan/plan.js';
import { findSourceChanges, short, type SavedPlan } from '../plan/saved-plan.js';
import type { Fleet } from './fleet.js';

/** The fleet's rules with the saved ones in place: what the pre-flight checks judge. */
export function savedRules(saved: SavedPlan, rendered: RenderedHost[]): RenderedHost[] {
  const rules = new Map(saved.plan.hosts.filter((h) => h.desired).map((h) => [h.host, h.desired!]));
  return rendered.map((r) => {
    const d = rules.get(r.host);
    return d ? { ...r, v4: { ...r.v4, text: d.v4, origins: [] }, v6: { ...r.v6, text: d.v6, origins: [] } } : r;
  });
}

/** Refuse a plan whose sources moved since it was saved. */
export function checkSavedSources(file: string, saved: SavedPlan, fleet: Fleet): void {
  const changed = findSourceChanges(saved, { inventoryText: readFileSync(fleet.inv.file), rendered: fleet.rendered });
  if (changed.length > 0) {
    throw new FleetError(`${file} is stale: ${changed.join('; ')}. Nothing was applied: plan again and review.`, ExitCode.stalePlan);
  }
}

/**
 * The saved plan, each changing host's live rules read again: a host whose rules
 * moved since the plan is refused by name (an error in the plan), the others kept.
 */
export async function recheckSaved(saved: SavedPlan, inv: Inventory, transport: Transport, parallel: number, pool?: SessionPool): Promise<{ plan: Plan; refused: Array<{ host: string; why: string }> }> {
  const limit = pLimit(parallel);
  const byName = new Map(inv.hosts.map((h) => [h.name, h]));
  const refused: Array<{ host: string; why: string }> = [];
  const hosts = await Promise.all(
    saved.plan.hosts.map((h) =>
      limit(async (): Promise<HostPlan> => {
        if (h.status !== 'changes') return h;
        try {
          const facts = await readFacts(transport, byName.get(h.host)!, undefined, pool);
          if (facts.liveHash === h.liveHash) return h;
          const why = `live rules changed since the plan was made (planned against ${short(h.liveHash ?? '?')}, now ${short(facts.liveHash)}): not applied, plan again`;
          refused.push({ host: h.host, why });
          return { ...h, status: 'error', error: why };
        } catch (e) {
          return { ...h, status: 'unreachable', error: (e as Error).message };
        }
      }),
    ),
  );
  // Same desired rules, so the same plan hash: the generations record the reviewed plan.
  return { plan: { ...assemblePlan(saved.plan.mode, saved.plan.inventory, hosts), planHash: saved.plan.planHash }, refused };
}
