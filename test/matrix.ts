// The probe matrix of a lab: `fleetfw verify --live`, the operator's own command, run
// in the lab (externals probed from their own namespaces), its JSON read back.
import type { Inventory } from '../src/model/inventory.js';
import type { Lab } from '../src/lab/lab.js';
import type { LiveReport } from '../src/engine/verify-live.js';
import { fleetfw } from './support.js';

export interface ProbeRow {
  intent: string;
  from: string;
  to: string;
  expected: string;
  /** The intent's word and what the packet met: `reject (refused)`. */
  observed: string;
  ok: boolean;
}

export async function probeIntents(lab: Lab, inv: Inventory, extra: string[] = []): Promise<ProbeRow[]> {
  const r = await fleetfw(lab, ['verify', '--live', '--format', 'json', '--inventory', inv.file, ...extra]);
  let report: LiveReport;
  try {
    report = JSON.parse(r.stdout) as LiveReport;
  } catch {
    throw new Error(`verify --live exited ${r.code} without a report:\n${r.stdout}${r.stderr}`);
  }
  return report.rows.map((x) => ({
    intent: x.intent,
    from: x.from,
    to: x.to,
    expected: x.expected,
    observed: `${x.observed} (${x.seen.split(/[\s:]/)[0]})`,
    // Not probed counts as failed: in a lab every pair can be.
    ok: x.ok === true,
  }));
}

export function failedRows(rows: ProbeRow[]): string[] {
  return rows.filter((r) => !r.ok).map((r) => `${r.intent}: ${r.from} -> ${r.to} expected ${r.expected}, observed ${r.observed}`);
}
