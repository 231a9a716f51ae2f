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

/** Where fleetfw reaches a host: the side of the address, which address, and its family. */
export interface ManagementAddress {
  side: 'public' | 'private';
  family: 4 | 6;
  address: string;
}

/**
 * The address the management path ends at: a bastion's public address (IPv4, else
 * IPv6), any other host's private one (IPv4, else IPv6), which its bastion reaches
 * from its own private address of that family. Undefined: the host has none.
 */
export function managementAddress(inv: Inventory, host: HostSpec): ManagementAddress | undefined {
  // By the networks alone: called for every host of a fleet, it must not look hosts up.
  if (inv.networks.some((n) => n.bastion === host.name)) {
    if (host.public) return { side: 'public', family: 4, address: host.public };
    if (host.public6) return { side: 'public', family: 6, address: host.public6 };
    return undefined;
  }
  if (host.private) return { side: 'private', family: 4, address: host.private };
  if (host.private6) return { side: 'private', family: 6, address: host.private6 };
  return undefined;
}

/** A host's private address of a family. */
export const privateOf = (h: HostSpec, family: 4 | 6): string | undefined => (family === 4 ? h.private : h.private6);

/** The inventory's operator CIDRs of a family. */
export const operatorsOf = (inv: Inventory, family: 4 | 6): string[] => inv.operators.filter((c) => c.includes(':') === (family === 6));
