// Prove an inventory's intents with real packets in the lab: a listener on
// each service port, a NEW connection (or UDP datagram, or ping) from the
// client's namespace, and the outcome compared with the intent.
import type { Inventory } from '../model/inventory.js';
import type { Lab } from './lab.js';
import { loadTemplates } from '../render/load-templates.js';
import { renderFleet } from '../render/render.js';
import { parseFleet } from '../plan/checks.js';
import { verifyIntents } from '../analyze/intents.js';
import { LabError } from '../errors.js';

export interface ProbeRow {
  intent: string;
  from: string;
  to: string;
  expected: string;
  observed: string;
  ok: boolean;
}

/** Observed probe result → what an intent calls it. */
function outcomeOf(probe: string): 'allow' | 'reject' | 'drop' {
  if (probe === 'open') return 'allow';
  if (probe === 'refused' || probe === 'unreachable') return 'reject';
  return 'drop';
}

function holds(expected: string, observed: 'allow' | 'reject' | 'drop'): boolean {
  if (expected === 'deny') return observed !== 'allow';
  return expected === observed;
}

export async function probeIntents(lab: Lab, inv: Inventory, opts: { concurrency?: number } = {}): Promise<ProbeRow[]> {
  const pairs = verifyIntents(inv, parseFleet(renderFleet(inv, loadTemplates(inv)))).flatMap((r) =>
    r.pairs.map((p) => ({ ...p, intent: r.intent })),
  );
  const listening = new Set<string>();
  for (const p of pairs) {
    if (p.intent.proto === 'icmp' || p.intent.port === undefined) continue;
    const key = `${p.to}/${p.intent.proto}/${p.intent.port}`;
    if (listening.has(key)) continue;
    listening.add(key);
    await lab.listen(p.to, p.intent.proto, p.intent.port);
  }
  const rows: ProbeRow[] = [];
  // Probes are independent; a handful at a time keeps 2 cores responsive
  // (a denied probe mostly waits out its timeout, so suites may ask for more).
  const queue = [...pairs];
  const workers = Array.from({ length: opts.concurrency ?? 6 }, async () => {
    for (let p = queue.shift(); p; p = queue.shift()) {
      if (!p.toAddr) throw new LabError(`intent "${p.intent.text}": ${p.from} -> ${p.to} has no address (${p.reason})`);
      const probe = await lab.probe(p.from, p.toAddr, p.intent.proto, p.intent.port, { family: p.intent.family, timeoutMs: 1500 });
      const observed = outcomeOf(probe);
      rows.push({ intent: p.intent.text, from: p.from, to: p.to, expected: p.intent.expect, observed: `${observed} (${probe})`, ok: holds(p.intent.expect, observed) });
    }
  });
  await Promise.all(workers);
  return rows.sort((a, b) => a.intent.localeCompare(b.intent) || a.from.localeCompare(b.from) || a.to.localeCompare(b.to));
}

export function failedRows(rows: ProbeRow[]): string[] {
  return rows.filter((r) => !r.ok).map((r) => `${r.intent}: ${r.from} -> ${r.to} expected ${r.expected}, observed ${r.observed}`);
}
