// Live plan warnings from the host's listening sockets (read with the facts,
// no extra round trip): services the rendered rules would block or expose.
import type { Inventory } from '../model/inventory.js';
import type { Listener } from '../model/listener.js';
import type { RenderedHost } from '../render/render.js';
import { assessListeners, listenerWarnings } from '../analyze/exposure.js';
import { parseFleet } from './checks.js';
import type { HostPlan } from './plan.js';

export function addListenerWarnings(plan: HostPlan, inv: Inventory, rendered: RenderedHost, listeners: readonly Listener[] | undefined): HostPlan {
  const host = inv.hosts.find((h) => h.name === rendered.host);
  const sets = parseFleet([rendered]).get(rendered.host);
  if (!host || !sets || !listeners) return plan;
  const warnings = listenerWarnings(assessListeners(inv, host, sets, listeners, { firstPeer: true }));
  return warnings.length > 0 ? { ...plan, warnings: [...(plan.warnings ?? []), ...warnings] } : plan;
}
