// Per-role health probes (inventory `health:`), run after the load and before
// the confirmation: a probe that fails refuses the confirmation, so the host
// reverts at once instead of keeping rules that broke its service.
import type { HostSpec, Inventory } from '../model/inventory.js';
import { bastionOf } from '../inventory/query.js';
import type { Transport } from '../transport/types.js';

const PROBE_TIMEOUT_MS = 5_000;

/** Returns undefined when every probe of the host's roles passes, else what failed. */
export function healthProber(inv: Inventory, transport: Transport): (host: HostSpec) => Promise<string | undefined> {
  return async (host) => {
    const probes = host.groups.flatMap((g) => inv.health[g] ?? []);
    for (const p of probes) {
      const from = p.from ?? bastionOf(inv, host).name;
      const address = host.private ?? host.private6 ?? host.public ?? host.public6;
      if (!address) continue;
      // A new connection from the vantage host: its sshd opens the TCP connection for us.
      // A vantage host out of reach fails the probe: the host then reverts at once, not at its deadline.
      let session;
      try {
        session = await transport.open(from);
      } catch (e) {
        return `${from} cannot be reached to probe ${host.name}: ${(e as Error).message}`;
      }
      try {
        if (!(await session.connectTcp(address, p.port, PROBE_TIMEOUT_MS))) {
          return `${from} cannot connect to ${host.name} ${address}:${p.port}`;
        }
      } finally {
        await session.close().catch(() => undefined);
      }
    }
    return undefined;
  };
}
