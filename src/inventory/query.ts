// Lookups over a validated Inventory that render, analysis and apply share.
import { InternalError } from '../errors.js';
import type { HostSpec, Inventory } from '../model/inventory.js';

/** Group name → member hosts sorted by name (inv.hosts is sorted); includes `all` and every role. */
export function groupMembers(inv: Inventory): Map<string, HostSpec[]> {
  const out = new Map<string, HostSpec[]>();
  for (const host of inv.hosts) {
    for (const g of host.groups) {
      const list = out.get(g);
      if (list) list.push(host);
      else out.set(g, [host]);
    }
  }
  return out;
}

/** The bastion through which `host` is reached (a bastion is its own). */
export function bastionOf(inv: Inventory, host: HostSpec): HostSpec {
  const network = inv.networks.find((n) => n.name === host.network);
  const bastion = network && inv.hosts.find((h) => h.name === network.bastion);
  // The loader guarantees both; a miss means a hand-built Inventory is wrong.
  if (!bastion) throw new InternalError(`host "${host.name}" has no bastion (network "${host.network}")`);
  return bastion;
}
