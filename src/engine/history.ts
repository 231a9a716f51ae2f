// A host's own record: the generations it keeps and its recent transactions.
import { FleetError } from '../errors.js';
import type { HostSpec } from '../model/inventory.js';
import type { Transport } from '../transport/types.js';
import { hostMessage, runHost } from '../host/run.js';

export interface Generation {
  generation: number;
  meta: Record<string, string>;
}

export async function readHistory(transport: Transport, host: HostSpec): Promise<{ generations: Generation[]; log: string[] }> {
  const s = await transport.open(host.name);
  try {
    const r = await runHost(s, 'history', [], { sudo: host.ssh.sudo, timeoutMs: 30_000 });
    if (r.code !== 0) throw new FleetError(`${host.name}: history: ${hostMessage(r)}`);
    return parseHistory(r.stdout);
  } finally {
    await s.close();
  }
}

/** What the `history` verb prints: `--- generation` sections of key=value lines, then `--- log`. */
export function parseHistory(stdout: string): { generations: Generation[]; log: string[] } {
  const generations: Generation[] = [];
  const log: string[] = [];
  let section = '';
  for (const line of stdout.split('\n')) {
    if (line === '--- generation') generations.push({ generation: 0, meta: {} });
    if (line.startsWith('--- ')) {
      section = line.slice(4);
      continue;
    }
    if (section === 'generation' && line.includes('=')) {
      const g = generations[generations.length - 1]!;
      const [k, ...v] = line.split('=');
      g.meta[k!] = v.join('=');
      if (k === 'generation') g.generation = Number(v.join('='));
    } else if (section === 'log' && line) log.push(line);
  }
  return { generations: generations.sort((a, b) => a.generation - b.generation), log };
}
