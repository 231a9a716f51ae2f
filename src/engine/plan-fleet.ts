// Read the hosts and plan them: live rules against the render, and the checks
// of what the hosts will really run. Never prints: commands format the result.
import pLimit from 'p-limit';
import type { HostSpec } from '../model/inventory.js';
import { TransportError, type Transport } from '../transport/types.js';
import type { RenderedHost } from '../render/render.js';
import { readFacts } from '../apply/transaction.js';
import type { SessionPool } from '../apply/session-pool.js';
import { formatIpSets } from '../render/ipsets.js';
import { isFormatExact } from '../analyze/format.js';
import { assemblePlan, failedHostPlan, planLiveHost, type HostPlan, type Plan } from '../plan/plan.js';
import { fleetFindings, parseFleet, plannedRuleSets, type FleetFinding } from '../plan/checks.js';
import { addListenerWarnings } from '../plan/listeners.js';
import { planReach, type RulesBefore } from '../plan/reach-plan.js';
import type { PlanReach } from '../plan/report.js';
import type { Fleet } from './fleet.js';

/** Read every selected host (bounded concurrency) and diff it against its render. With a pool, each host's session stays open for its transaction. */
export async function planFleet(fleet: Fleet, hosts: HostSpec[], transport: Transport, parallel: number, pool?: SessionPool, current?: Map<string, RulesBefore>): Promise<Plan> {
  const { inv, display, rendered } = fleet;
  const limit = pLimit(parallel);
  const byHost = new Map(rendered.map((r) => [r.host, r]));
  // Hosts whose rules fleetfw cannot print exactly as iptables-save does print them themselves.
  const names = new Set(hosts.map((h) => h.name));
  const parsed = parseFleet(rendered.filter((r) => names.has(r.host)));
  const exact = (name: string) => {
    const p = parsed.get(name);
    return p !== undefined && isFormatExact(p.v4) && isFormatExact(p.v6);
  };
  const plans = await Promise.all(
    hosts.map((h) =>
      limit(async (): Promise<HostPlan> => {
        const r = byHost.get(h.name)!;
        try {
          const facts = await readFacts(transport, h, { v4: r.v4.text, v6: r.v6.text, ipsets: formatIpSets(r.ipsets ?? []), exact: exact(h.name) }, pool);
          current?.set(h.name, { v4: facts.live.v4, v6: facts.live.v6, ipsets: facts.ipsets ?? '' });
          return addListenerWarnings(planLiveHost(r, facts, inv.preserve), inv, r, facts.listeners);
        } catch (e) {
          // Only a host that could not be reached is unreachable; one that answered something unusable is an error.
          return failedHostPlan(h.name, e instanceof TransportError ? 'unreachable' : 'error', (e as Error).message);
        }
      }),
    ),
  );
  return assemblePlan('live', display, plans);
}

/**
 * Who can reach whom now (the live rules planFleet read into `current`) against
 * what the hosts will run; hosts not read (not selected, unreachable) count as unchanged.
 */
export function planReachLive(fleet: Fleet, plan: Plan, current: ReadonlyMap<string, RulesBefore>): PlanReach {
  const planned = plannedRuleSets(parseFleet(fleet.rendered), plan, fleet.rendered, fleet.inv.preserve);
  const desired = new Map(plan.hosts.flatMap((h) => (h.desired ? [[h.host, h.desired] as const] : [])));
  const status = new Map(plan.hosts.map((h) => [h.host, h.status]));
  const reach = planReach(fleet.inv, planned, (h) => desired.get(h), (h) => {
    // In sync: it runs what it will run. Not read (not selected, unreachable): taken as running its render, said below.
    if (status.get(h) === 'in-sync' || !desired.has(h)) return 'same';
    return current.get(h) ?? 'same';
  });
  const unread = fleet.inv.hosts.filter((h) => !desired.has(h.name)).length;
  if (unread > 0) reach.notes.push(`${unread} host${unread === 1 ? '' : 's'} not read in this plan (not selected or not reachable) ${unread === 1 ? 'is' : 'are'} taken as running ${unread === 1 ? 'its' : 'their'} render`);
  return reach;
}

/** The checks of the render (and the intents touching `hosts`), before any host is read. */
export function checkRendered(fleet: Fleet, hosts: HostSpec[], rendered: RenderedHost[] = fleet.rendered): FleetFinding[] {
  return fleetFindings(fleet.inv, parseFleet(rendered), new Set(hosts.map((h) => h.name)));
}

/**
 * The checks again, on the rules the hosts will really run (the render with their
 * live preserved chains merged in): only what the render alone did not show.
 */
export function checkPlanned(fleet: Fleet, plan: Plan, hosts: HostSpec[], already: FleetFinding[], rendered: RenderedHost[] = fleet.rendered): FleetFinding[] {
  const parsed = plannedRuleSets(parseFleet(rendered), plan, rendered, fleet.inv.preserve);
  const seen = new Set(already.map((f) => `${f.host}\0${f.message}`));
  return fleetFindings(fleet.inv, parsed, new Set(hosts.map((h) => h.name))).filter((f) => !seen.has(`${f.host}\0${f.message}`));
}
