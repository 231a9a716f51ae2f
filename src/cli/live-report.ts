// The intents with real packets on the real fleet, as `verify --live` and `apply
// --verify-live` run them: the engine's run with the externals' hooks, and its
// report printed. Externals: in a lab (`fleetfw lab run`), their own namespaces;
// elsewhere this machine stands in for an external where the destination's rules
// treat both alike, and the rest is said not probed.
import { ExitCode, UsageError, type ExitCodeValue } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import type { RuleSet } from '../model/ruleset.js';
import { verifyIntents } from '../analyze/intents.js';
import { parseFleet } from '../plan/checks.js';
import { verifyLive, type ExternalProbe, type ExternalProbes, type LiveReport, type LiveRow } from '../engine/verify-live.js';
import { localAddressFor, probeLocal } from '../transport/local-probe.js';
import { attachLab } from '../lab/lab.js';
import { labExternalProbes } from '../lab/externals.js';
import type { Transport } from '../transport/types.js';
import type { Fleet } from '../engine/fleet.js';
import { chalkFor, err, out } from './io.js';
import { parallelOf } from './apply-run.js';
import { selectHosts } from './context.js';

/** Set by `fleetfw lab run` (labEnv): the lab whose namespaces are the externals. */
export const LAB_ENV = 'FLEETFW_LAB';

const DEFAULT_TIMEOUT_MS = 1500;

export function timeoutOf(value: string | undefined): number {
  if (value === undefined) return DEFAULT_TIMEOUT_MS;
  if (!/^\d{1,6}$/.test(value) || Number(value) < 100) throw new UsageError(`--timeout must be a number of milliseconds, at least 100, not "${value}"`);
  return Number(value);
}

const THIS_MACHINE = '(this machine)';

export const LIVE_FORMAT = 'fleetfw-verify-live';

/**
 * This machine stands in for an external when the destination's rendered rules
 * decide its packets of the intent's class as they decide the external's: the
 * model links the two, the packets prove the kernel.
 */
export function operatorStandIn(
  inv: Inventory,
  ruleSets: Map<string, { v4: RuleSet; v6: RuleSet }>,
  io: { localAddressFor: typeof localAddressFor; probeLocal: typeof probeLocal } = { localAddressFor, probeLocal },
): ExternalProbes {
  return {
    why: 'outside the fleet: fleetfw cannot start a listener there',
    probe: async (q: ExternalProbe) => {
      if (q.intent.proto === 'icmp') return { skip: 'this machine sends no echo requests (they need raw sockets)' };
      const local = await io.localAddressFor(q.toAddr);
      if (!local) return { skip: `this machine has no route to ${q.toAddr}` };
      const me = { name: THIS_MACHINE, address: local, side: q.ext.side, ...(q.intent.family === 6 ? { address6: local } : {}) };
      const alike = verifyIntents(
        { ...inv, externals: [...inv.externals, me], intents: [{ ...q.intent, from: THIS_MACHINE, to: q.to.name }] },
        ruleSets,
      )[0]?.pairs[0];
      // Alike: the same outcome, decided by the same rule (so no rule tells the two addresses apart on the way).
      if (alike?.outcome !== q.modelOutcome || alike.decidedBy !== q.modelDecidedBy) {
        const how = (outcome: string | undefined, by: string | undefined) => `${outcome ?? 'unknown'}${by ? ` by ${by}` : ''}`;
        return { skip: `${q.to.name}'s rules treat this machine (${local}) otherwise than ${q.ext.name}: ${how(alike?.outcome, alike?.decidedBy)}, not ${how(q.modelOutcome, q.modelDecidedBy)}` };
      }
      return { verdict: await io.probeLocal(q.toAddr, q.intent.proto, q.intent.port!, q.timeoutMs), via: `this machine, ${local}` };
    },
  };
}

/** 4: the packets contradict an intent; 5: some pairs could not be told (host unreachable, an answer that proves nothing). */
export function liveExitCode(r: LiveReport): ExitCodeValue {
  if (r.rows.some((x) => x.ok === false && x.observed !== 'unknown')) return ExitCode.checksFailed;
  if (r.rows.some((x) => x.observed === 'unknown')) return ExitCode.hostsFailed;
  return ExitCode.ok;
}

const mark = (r: LiveRow): string => (r.ok === undefined ? '-' : r.ok ? ' ' : '!');

function describePair(r: LiveRow): string {
  const port = r.port === undefined ? r.proto : `${r.port}/${r.proto}`;
  return `${r.from} -> ${r.to}${r.toAddr ? ` (${r.toAddr})` : ''}:${port}`;
}

export function printLive(r: LiveReport, markdown: boolean, color: boolean | undefined): void {
  const c = chalkFor(process.stdout, markdown ? false : color);
  const byIntent = new Map<string, LiveRow[]>();
  for (const row of r.rows) byIntent.set(row.intent, [...(byIntent.get(row.intent) ?? []), row]);
  if (markdown) {
    out('| | intent | pairs | result | slowest probe |');
    out('|---|---|---:|---|---:|');
  }
  for (const i of r.intents) {
    const rows = byIntent.get(i.intent) ?? [];
    const status = i.failed > 0 ? 'FAIL' : i.unknown > 0 ? '????' : i.held === 0 ? 'n/a ' : 'ok  ';
    const counts = [`${i.held} held`, i.failed ? `${i.failed} failed` : '', i.unknown ? `${i.unknown} cannot tell` : '', i.notProbed ? `${i.notProbed} not probed` : ''].filter(Boolean).join(', ');
    if (markdown) {
      out(`| ${status.trim()} | \`${i.intent}\` | ${i.pairs} | ${counts} | ${i.ms} ms |`);
      continue;
    }
    const paint = i.failed > 0 ? c.red : i.unknown > 0 ? c.yellow : i.held === 0 ? c.dim : c.green;
    out(`${paint(status)} ${i.intent}  (${i.pairs} pair${i.pairs === 1 ? '' : 's'}: ${counts}; ${i.ms} ms)`);
    for (const row of rows) {
      if (row.ok === true || row.observed === 'not-probed') continue;
      out(`   ${mark(row)} ${describePair(row)}: expected ${row.expected}, observed ${row.observed} (${row.seen})`);
    }
    // Pairs not probed, one line per reason: on a real fleet, most pairs from or to externals.
    const reasons = new Map<string, LiveRow[]>();
    for (const row of rows.filter((x) => x.observed === 'not-probed')) reasons.set(row.seen, [...(reasons.get(row.seen) ?? []), row]);
    for (const [seen, rs] of reasons) {
      out(`   - ${rs.length === 1 ? describePair(rs[0]!) : `${rs.length} pairs (${rs.map((x) => `${x.from} -> ${x.to}`).join(', ')})`}: ${seen}`);
    }
  }
  if (markdown) {
    const bad = r.rows.filter((x) => x.ok === false);
    if (bad.length > 0) out(`\n${bad.map((x) => `- \`${describePair(x)}\`: expected ${x.expected}, observed ${x.observed} (${x.seen})`).join('\n')}`);
  }
  const all = r.rows;
  const count = (f: (x: LiveRow) => boolean) => all.filter(f).length;
  const failed = count((x) => x.ok === false && x.observed !== 'unknown');
  const unknown = count((x) => x.observed === 'unknown');
  const notProbed = count((x) => x.observed === 'not-probed');
  out('');
  out(
    `${count((x) => x.ok === true)} of ${all.length} pairs held with real packets${failed ? `, ${failed} failed` : ''}${unknown ? `, ${unknown} cannot tell` : ''}${notProbed ? `, ${notProbed} not probed` : ''}; ` +
      `${r.listeners.started} listeners started and removed, ${r.listeners.existing} answered by the hosts' own services; ${(r.ms / 1000).toFixed(1)} s.`,
  );
}

/** Run the proof on `fleet` through `transport`, pairs kept by `pairs`, with progress on a terminal. */
export async function runLive(
  fleet: Fleet,
  transport: Transport,
  opts: { parallel?: string; timeout?: string; progress: boolean; pairs?: (from: string, to: string) => boolean },
): Promise<LiveReport> {
  const timeoutMs = timeoutOf(opts.timeout);
  const labDir = process.env[LAB_ENV];
  const externals = labDir ? labExternalProbes(await attachLab(labDir)) : operatorStandIn(fleet.inv, parseFleet(fleet.rendered));
  const tty = opts.progress && process.stderr.isTTY === true;
  try {
    return await verifyLive(fleet, transport, {
      parallel: parallelOf(opts),
      timeoutMs,
      externals,
      ...(opts.pairs ? { pairs: opts.pairs } : {}),
      ...(tty ? { onProgress: (done: number, total: number) => process.stderr.write(`\rprobing: ${done}/${total} pairs`) } : {}),
    });
  } finally {
    if (tty) process.stderr.write('\r\x1b[K');
  }
}

/** `apply --verify-live`: after a rollout that ended cleanly, the proof, its report, and the exit code it makes. */
export async function verifyAfterRollout(
  fleet: Fleet,
  transport: Transport,
  opts: { parallel?: string; timeout?: string; json?: boolean; color?: boolean; limit?: string },
  rollout: ExitCodeValue,
): Promise<ExitCodeValue> {
  if (rollout !== ExitCode.ok) {
    err(`fleetfw: --verify-live not run: the rollout did not end cleanly (exit ${rollout})`);
    return rollout;
  }
  // With --limit, the pairs with an applied host at one end.
  const selected = opts.limit === undefined ? undefined : new Set(selectHosts(fleet.inv, opts.limit).map((h) => h.name));
  const report = await runLive(fleet, transport, {
    ...opts,
    progress: !opts.json,
    ...(selected ? { pairs: (from: string, to: string) => selected.has(from) || selected.has(to) } : {}),
  });
  if (opts.json) out(JSON.stringify({ type: 'verify-live', format: LIVE_FORMAT, version: 1, ...report }));
  else {
    out('');
    printLive(report, false, opts.color);
  }
  for (const h of report.hostErrors) err(`error: ${h.host}: ${h.error}`);
  return liveExitCode(report);
}
