// Reviewed plans: `plan --out FILE` saves a plan, `apply FILE` applies exactly
// that plan. Nothing that moved since the review is applied: a changed
// inventory or template refuses the whole plan (exit 8), a host whose live
// rules changed is refused by name (checked before starting, and again by the
// host script's prepare, which refuses a mismatching hash with exit 76).
import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { UsageError, type ExitCodeValue } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import type { RenderedHost } from '../render/render.js';
import { SessionPool } from '../apply/session-pool.js';
import type { Plan } from '../plan/plan.js';
import { parseSavedPlan, savedPlanChunks, type SavedPlan } from '../plan/saved-plan.js';
import { streamOf, type StreamedPlan } from '../plan/streamed-plan.js';
import { selectWork } from '../engine/apply.js';
import { checkPlanned, checkRendered } from '../engine/plan-fleet.js';
import { checkSavedSources, recheckSaved, savedRules } from '../engine/saved-plan.js';
import { EMBEDDED_INVENTORY, loadFleet, openTransport, type InventoryOptions } from './context.js';
import { err } from './io.js';
import { verifyAfterRollout } from './live-report.js';
import { printPlan } from './core-commands.js';
import { maxFailuresOf, operatorName, parallelOf, runPlanned, stopOnFindings, windowOf, type ApplyOptions } from './apply-run.js';

/** The inventory as the user named it: saved plans keep relative paths relative (CI checkouts). */
function inventoryArg(opts: InventoryOptions): string {
  return opts.inventory ?? process.env.FLEETFW_INVENTORY ?? EMBEDDED_INVENTORY;
}

/** `plan --out FILE`: write the plan about to be printed, for `apply FILE`; returns the line that says so. */
export function savePlanFile(file: string, input: Plan | StreamedPlan, inv: Inventory, rendered: RenderedHost[], opts: InventoryOptions): string {
  const plan = streamOf(input);
  const chunks = savedPlanChunks(plan, {
    inventoryPath: inventoryArg(opts),
    inventoryText: readFileSync(inv.file),
    rendered,
    createdBy: operatorName(),
  });
  // Whole file or nothing: a reviewer must never see half a plan. Written host by host: it can be gigabytes.
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    let batch = '';
    for (const chunk of chunks) {
      batch += chunk;
      if (batch.length >= 1 << 16) {
        writeSync(fd, batch);
        batch = '';
      }
    }
    writeSync(fd, batch);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
  const how = plan.mode === 'offline' ? 'an offline plan, for review only: apply needs a live plan' : `apply it with: fleetfw apply ${file}`;
  return `fleetfw: saved the plan to ${file} (plan hash ${plan.planHash}; ${how})`;
}

export function readSavedPlan(file: string): SavedPlan {
  if (!existsSync(file)) throw new UsageError(`plan file not found: ${file}`);
  const parsed = parseSavedPlan(readFileSync(file, 'utf8'));
  if ('error' in parsed) throw new UsageError(`${file}: ${parsed.error}`);
  return parsed.saved;
}

/** `apply FILE`. */
export async function cmdApplyPlan(file: string, opts: ApplyOptions): Promise<ExitCodeValue> {
  if (opts.limit) throw new UsageError('--limit cannot narrow a saved plan: it is applied as reviewed (plan again with --limit)');
  if (opts.force) throw new UsageError('--force does not apply to a saved plan: it applies exactly the reviewed changes');
  const saved = readSavedPlan(file);
  if (saved.plan.mode !== 'live') {
    throw new UsageError(`${file} is an offline plan (compared with a stored render, not the hosts): it cannot prove the hosts are as reviewed; save a live plan with \`fleetfw plan --out FILE\``);
  }
  const loaded = loadFleet({ ...opts, inventory: opts.inventory ?? saved.inventory.path });
  const fleet = { ...loaded, display: saved.inventory.path };
  checkSavedSources(file, saved, fleet);
  const planned = new Set(saved.plan.hosts.map((h) => h.host));
  const hosts = fleet.inv.hosts.filter((h) => planned.has(h.name));
  const rules = savedRules(saved, fleet.rendered);
  const window = windowOf(fleet.inv, opts);
  const findings = checkRendered(fleet, hosts, rules);
  stopOnFindings(findings, opts, 'pre-flight checks');
  const transport = await openTransport(fleet.inv, opts);
  const pool = new SessionPool();
  try {
    const { plan, refused } = await recheckSaved(saved, fleet.inv, transport, parallelOf(opts), pool);
    for (const r of refused) err(`fleetfw: refusing ${r.host}: ${r.why}`);
    if (!opts.json) await printPlan(plan, 'text', opts.color, false);
    stopOnFindings(checkPlanned(fleet, plan, hosts, findings, rules), opts, 'pre-flight checks of the rules the hosts will run');
    const work = selectWork(plan, fleet.inv, false);
    await pool.release(new Set(work.todo.map((h) => h.host)));
    const code = await runPlanned(
      {
        ...fleet,
        plan,
        work,
        command: 'apply',
        planFile: file,
        question: `Apply the reviewed plan ${plan.planHash} to ${work.todo.length} host(s) with a ${window}s auto-rollback window?`,
        title: `fleetfw apply: ${work.todo.length} host(s), window ${window}s, plan ${plan.planHash}`,
        settings: { window, maxFailures: maxFailuresOf(opts), source: 'apply', installPersistent: fleet.inv.settings.installPersistent && opts.installPersistent !== false },
        transport,
        pool,
      },
      opts,
    );
    return opts.verifyLive ? await verifyAfterRollout(fleet, transport, opts, code) : code;
  } finally {
    await pool.release();
    await transport.close();
  }
}
