// A host's own record: the generations it keeps and its recent transactions.
import type { HostSpec } from '../model/inventory.js';
import type { Transport } from '../transport/types.js';
import * as client from '../host/client.js';

export { parseHistory, type Generation } from '../host/client.js';

export async function readHistory(transport: Transport, host: HostSpec): Promise<{ generations: client.Generation[]; log: string[] }> {
  const s = await transport.open(host.name);
  try {
    return await client.history(s, host.ssh.sudo);
  } finally {
    await s.close();
  }
}
