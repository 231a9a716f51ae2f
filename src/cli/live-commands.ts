// Commands that talk to hosts: plan (live), apply, rollback, history, status.
import { userInfo, hostname } from 'node:os';
import pLimit from 'p-limit';
import { CheckError, ExitCode, FleetError, UsageError, type ExitCodeValue } from '../errors.js';
import type { HostSpec, Inventory } from '../model/inventory.js';
import type { Transport } from '../transport/types.js';
import type { RenderedHost } from '../render/render.js';
import { bastionOf } from '../inventory/query.js';
import { hostMessage, runHost, splitFamilies } from '../host/run.js';
import { readFacts, type HostResult } from '../apply/transaction.js';
import { rollout, rolloutExitCode } from '../apply/rollout.js';
import { SessionPool } from '../apply/session-pool.js';
import { formatIpSets, parseIpSets } from '../render/ipsets.js';
import { healthProber } from '../apply/health.js';
import { assemblePlan, failedHostPlan, planLiveHost, type HostPlan, type Plan } from '../plan/plan.js';
import { fleetFindings, parseFleet, plannedRuleSets, type FleetFinding } from '../plan/checks.js';
import { withoutForeign } from '../plan/foreign.js';
import { addListenerWarnings } from '../plan/listeners.js';
import { parseRuleSet } from '../analyze/parse.js';
import { checkManagementPath } from '../analyze/lockout.js';
import { summaryLine } from '../plan/report.js';
import { isFormatExact } from '../analyze/format.js';
import { chalkFor, confirm, err, out } from './io.js';
import { loadFleet, openTransport, selectHosts, type InventoryOptions, type SshCliOptions } from './context.js';
import { parseFormat, planExitCode, printFindings, printPlan, type PlanSink } from './core-commands.js';
import { startRolloutProgress } from './progress.js';
import { describeAuditMatch, formatHostAudit, inventoryHashOf, readHostAudit, recordAudit, startAuditRun, type AuditCliOptions } from './audit-log.js';
import type { ReviewedApply } from './review-commands.js';

// Measured (PERFORMANCE.md, 99 targets on 2 cores): 10 is as fast as 20 or 30 for plan and
// apply, since sshd handshakes are CPU-bound; 5 leaves the hosts' waits (fsync, watchdog) idle.
export const DEFAULT_PARALLEL = 10;

export interface LiveOptions extends InventoryOptions, SshCliOptions {
  parallel?: string;
  color?: boolean;
}

export function parallelOf(opts: LiveOptions): number {
  const n = Number(opts.parallel ?? DEFAULT_PARALLEL);
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new UsageError('--parallel must be an integer from 1 to 200');
  return n;
}

/** Read every selected host (bounded concurrency) and diff it against its render. */
export async function planLive(
  inv: Inventory,
  display: string,
  rendered: RenderedHost[],
  hosts: HostSpec[],
  transport: Transport,
  parallel: number,
  /** apply: keep each host's session open for its transaction. */
  pool?: SessionPool,
): Promise<Plan> {
  const limit = pLimit(parallel);
  const byHost = new Map(rendered.map((r) => [r.host, r]));
  // Hosts whose rules fleetfw cannot print exactly as iptables-save does print them themselves.
  const names = new Set(hosts.map((h) => h.name));
  const parsed = parseFleet(rendered.filter((r) => names.has(r.host)));
  const exact = (name: string) => {
    const p = parsed.get(name);
    return p !== undefined && isFormatExact(p.v4) && isFormatExact(p.v6);
  };
  const plans = await Promise.all(
    hosts.map((h) =>
      limit(async (): Promise<HostPlan> => {
        const r = byHost.get(h.name)!;
        try {
          const facts = await readFacts(transport, h, { v4: r.v4.text, v6: r.v6.text, ipsets: formatIpSets(r.ipsets ?? []), exact: exact(h.name) }, pool);
          return addListenerWarnings(planLiveHost(r, facts, inv.preserve), inv, r, facts.listeners);
        } catch (e) {
          return failedHostPlan(h.name, 'unreachable', (e as Error).message);
        }
      }),
    ),
  );
  return assemblePlan('live', display, plans);
}

export function preflight(inv: Inventory, rendered: RenderedHost[], hosts: HostSpec[]): FleetFinding[] {
  return fleetFindings(inv, parseFleet(rendered), new Set(hosts.map((h) => h.name)));
}

/**
 * The checks again, on the rules the hosts will really run (the render with their
 * live preserved chains merged in): only what the render alone did not show.
 */
export function recheckPlanned(inv: Inventory, rendered: RenderedHost[], plan: Plan, hosts: HostSpec[], already: FleetFinding[]): FleetFinding[] {
  const parsed = plannedRuleSets(parseFleet(rendered), plan, rendered, inv.preserve);
  const seen = new Set(already.map((f) => `${f.host}\0${f.message}`));
  return fleetFindings(inv, parsed, new Set(hosts.map((h) => h.name))).filter((f) => !seen.has(`${f.host}\0${f.message}`));
}

export async function cmdPlanLive(opts: LiveOptions & { format?: string }, sink?: PlanSink): Promise<ExitCodeValue> {
  const format = parseFormat(opts.format);
  const { inv, display, rendered } = loadFleet(opts);
  const hosts = selectHosts(inv, opts.limit);
  const findings = preflight(inv, rendered, hosts);
  const transport = await openTransport(inv, opts);
  try {
    const plan = await planLive(inv, display, rendered, hosts, transport, parallelOf(opts));
    const all = [...findings, ...recheckPlanned(inv, rendered, plan, hosts, findings)];
    sink?.(plan, inv, rendered);
    const code = planExitCode(plan, all);
    printPlan(plan, format, opts.color, code === ExitCode.changes);
    printFindings(all, opts.color);
    return code;
  } finally {
    await transport.close();
  }
}

export function operatorName(): string {
  const raw = `${userInfo().username}@${hostname()}`;
  return raw.replace(/[^A-Za-z0-9._@-]/g, '_').slice(0, 64);
}

function printResults(results: HostResult[], json: boolean, color?: boolean, planHash?: string): void {
  if (json) {
    const counts = Object.fromEntries(['confirmed', 'unchanged', 'rolled-back', 'failed', 'unknown', 'skipped'].map((o) => [o, results.filter((r) => r.outcome === o).length]));
    out(JSON.stringify({ type: 'summary', ...(planHash ? { planHash } : {}), exitCode: rolloutExitCode(results), counts, results }));
    return;
  }
  const c = chalkFor(process.stdout, color);
  out('');
  for (const r of results) {
    const paintOutcome = r.outcome === 'confirmed' ? c.green : r.outcome === 'unchanged' ? c.dim : r.outcome === 'rolled-back' ? c.yellow : c.red;
    const extra = [r.generation !== undefined ? `generation ${r.generation}` : '', r.reason ?? '', r.revertMs !== undefined ? `reverted ${(r.revertMs / 1000).toFixed(1)}s after load` : '']
      .filter(Boolean)
      .join('; ');
    out(`${r.host.padEnd(20)} ${paintOutcome(r.outcome.padEnd(12))} ${(r.ms / 1000).toFixed(1).padStart(5)}s  ${extra}`);
  }
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  out(`\n${count('confirmed')} confirmed, ${count('unchanged')} unchanged, ${count('rolled-back')} rolled back, ${count('failed')} failed, ${count('unknown')} unknown, ${count('skipped')} skipped.`);
}

export interface ApplyOptions extends LiveOptions, AuditCliOptions {
  window?: string;
  yes?: boolean;
  maxFailures?: string;
  force?: boolean;
  unsafeSkipChecks?: boolean;
  json?: boolean;
  installPersistent?: boolean;
}

export function windowOf(inv: Inventory, opts: ApplyOptions): number {
  const w = Number(opts.window ?? inv.settings.window);
  if (!Number.isInteger(w) || w < 5 || w > 3600) throw new UsageError('--window must be an integer number of seconds from 5 to 3600');
  return w;
}

/** Plan and apply in one go, or (reviewed) apply a saved plan exactly as reviewed. */
export async function cmdApply(opts: ApplyOptions, reviewed?: ReviewedApply): Promise<ExitCodeValue> {
  const { inv, display, rendered } = reviewed?.fleet ?? loadFleet(opts);
  const hosts = reviewed ? reviewed.hosts : selectHosts(inv, opts.limit);
  const window = windowOf(inv, opts);
  const maxFailures = Number(opts.maxFailures ?? 1);
  const findings = preflight(inv, reviewed?.checkedRules ?? rendered, hosts);
  printFindings(findings, opts.color);
  if (findings.some((f) => f.severity === 'error')) {
    if (!opts.unsafeSkipChecks) throw new CheckError('pre-flight checks failed: nothing was sent to any host (override with --unsafe-skip-checks)');
    err('fleetfw: --unsafe-skip-checks: going on despite failed checks; the hosts will revert by themselves if they lose their management path');
  }
  const transport = await openTransport(inv, opts);
  const pool = new SessionPool();
  try {
    const plan = reviewed ? await reviewed.recheck(transport, parallelOf(opts), pool) : await planLive(inv, display, rendered, hosts, transport, parallelOf(opts), pool);
    if (!opts.json) printPlan(plan, 'text', opts.color, false);
    // What the live rules' preserved chains change is only known now: checked before anything is sent.
    const planned = recheckPlanned(inv, reviewed?.checkedRules ?? rendered, plan, hosts, findings);
    printFindings(planned, opts.color);
    if (planned.some((f) => f.severity === 'error')) {
      if (!opts.unsafeSkipChecks) throw new CheckError('pre-flight checks of the rules the hosts will run failed: nothing was sent to any host (override with --unsafe-skip-checks)');
      err('fleetfw: --unsafe-skip-checks: going on despite failed checks of the rules the hosts will run');
    }
    const todo = plan.hosts.filter((h) => h.status === 'changes' || (opts.force && h.status === 'in-sync'));
    const broken = plan.hosts.filter((h) => h.status === 'unreachable' || h.status === 'error');
    await pool.release(new Set(todo.map((h) => h.host)));
    const auditFields = { user: operatorName(), command: 'apply' as const, planFile: reviewed?.file, planHash: plan.planHash, inventory: { path: display, sha256: inventoryHashOf(inv) }, window };
    const audit = (results: HostResult[]) => recordAudit(opts, { ...auditFields, results, exitCode: rolloutExitCode(results) });
    // Hosts no transaction runs on: reported (and audited) beside those it runs on.
    const untouched = [
      ...plan.hosts.filter((h) => h.status === 'in-sync' && !opts.force).map((h): HostResult => ({ host: h.host, outcome: 'unchanged', ms: 0, generation: h.generation })),
      ...broken.map((h): HostResult => ({ host: h.host, outcome: 'failed', reason: h.error, ms: 0 })),
    ];
    if (todo.length === 0) {
      if (broken.length > 0) audit(untouched);
      if (opts.json) printResults(untouched, true, opts.color, plan.planHash);
      else out(broken.length ? 'Nothing to apply on the reachable hosts.' : 'Nothing to apply: every host is in sync.');
      return broken.length ? ExitCode.hostsFailed : ExitCode.ok;
    }
    if (!opts.yes) {
      const ok = await confirm(`Apply to ${todo.length} host(s) with a ${window}s auto-rollback window?`);
      if (!ok) throw new UsageError(process.stdin.isTTY ? 'aborted: nothing was applied' : 'not a terminal: pass --yes to apply');
    }
    // The safety record first: a run the audit log cannot record touches no host.
    const auditRun = startAuditRun(opts, { ...auditFields, hosts: todo.map((h) => h.host) });
    const byName = new Map(inv.hosts.map((h) => [h.name, h]));
    const bastionNames = new Set(inv.networks.map((n) => n.bastion));
    const progress = startRolloutProgress({
      hosts: [...todo.filter((h) => bastionNames.has(h.host)), ...todo.filter((h) => !bastionNames.has(h.host))].map((h) => h.host),
      title: `fleetfw apply: ${todo.length} host(s), window ${window}s, plan ${plan.planHash}`,
      window,
      json: Boolean(opts.json),
      color: opts.color,
    });
    const results = await rollout(
      todo.map((h) => ({
        host: byName.get(h.host)!,
        desired: h.desired!,
        expectedLiveHash: h.liveHash,
        source: 'apply' as const,
        installPersistent: Boolean(h.persistentMissing) && inv.settings.installPersistent && opts.installPersistent !== false,
      })),
      {
        transport,
        window,
        generations: inv.settings.generations,
        user: operatorName(),
        planHash: plan.planHash,
        parallel: parallelOf(opts),
        maxFailures: Number.isInteger(maxFailures) && maxFailures > 0 ? maxFailures : 1,
        bastions: bastionNames,
        onEvent: auditRun.watch(progress.onEvent),
        probe: healthProber(inv, transport),
        pool,
      },
    ).finally(() => progress.stop());
    const all = [...results, ...untouched].sort((a, b) => (a.host < b.host ? -1 : 1));
    auditRun.complete(all, rolloutExitCode(all));
    printResults(all, Boolean(opts.json), opts.color, plan.planHash);
    return rolloutExitCode(all);
  } finally {
    await pool.release();
    await transport.close();
  }
}

interface Generation {
  generation: number;
  meta: Record<string, string>;
}

async function readHistory(transport: Transport, host: HostSpec): Promise<{ generations: Generation[]; log: string[] }> {
  const s = await transport.open(host.name);
  try {
    const r = await runHost(s, 'history', [], { sudo: host.ssh.sudo, timeoutMs: 30_000 });
    if (r.code !== 0) throw new FleetError(`${host.name}: history: ${hostMessage(r)}`);
    const generations: Generation[] = [];
    const log: string[] = [];
    let section = '';
    for (const line of r.stdout.split('\n')) {
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
  } finally {
    await s.close();
  }
}

function hostByName(inv: Inventory, name: string): HostSpec {
  const h = inv.hosts.find((x) => x.name === name);
  if (!h) throw new UsageError(`no host named "${name}" in the inventory`);
  return h;
}

export async function cmdHistory(hostName: string, opts: LiveOptions & AuditCliOptions & { json?: boolean }): Promise<ExitCodeValue> {
  const { inv } = loadFleet(opts);
  const host = hostByName(inv, hostName);
  const transport = await openTransport(inv, opts);
  try {
    const facts = await readFacts(transport, host);
    const { generations, log } = await readHistory(transport, host);
    const audit = readHostAudit(opts, hostName, { generations, log });
    if (opts.json) {
      out(JSON.stringify({ host: hostName, current: facts.generation, generations, log, audit }, null, 2));
      return ExitCode.ok;
    }
    out(`${hostName}: current generation ${facts.generation}`);
    for (const g of generations) {
      const m = g.meta;
      out(`${g.generation === facts.generation ? '*' : ' '} ${String(g.generation).padStart(4)}  ${m.when ?? ''}  ${(m.source ?? '').padEnd(8)} by ${m.user ?? '?'}  plan ${m.plan_hash ?? '?'}  txid ${m.txid ?? '?'}${describeAuditMatch(audit, m.txid)}`);
    }
    if (log.length > 0) out(`\nrecent transactions:\n${log.slice(-15).map((l) => `  ${l}`).join('\n')}`);
    const hostTxids = new Set([...generations.map((g) => g.meta.txid ?? ''), ...log.map((l) => l.split(' ')[1] ?? '')]);
    out(formatHostAudit(audit, hostName, hostTxids).join('\n'));
    return ExitCode.ok;
  } finally {
    await transport.close();
  }
}

export async function cmdRollback(hostName: string, opts: ApplyOptions & { to?: string }): Promise<ExitCodeValue> {
  const { inv, display, rendered } = loadFleet(opts);
  const host = hostByName(inv, hostName);
  const window = windowOf(inv, opts);
  const transport = await openTransport(inv, opts);
  try {
    const facts = await readFacts(transport, host);
    const target = opts.to !== undefined ? Number(opts.to) : facts.generation - 1;
    if (!Number.isInteger(target) || target < 1) {
      throw new UsageError(`${hostName} has no previous generation to roll back to (current: ${facts.generation}); see fleetfw history ${hostName}`);
    }
    const s = await transport.open(host.name);
    let stored: { v4: string; v6: string; ipsets?: string };
    try {
      const r = await runHost(s, 'generation', [String(target)], { sudo: host.ssh.sudo, timeoutMs: 30_000 });
      if (r.code !== 0) throw new UsageError(`${hostName}: ${hostMessage(r)}`);
      stored = splitFamilies(r.stdout);
    } finally {
      await s.close();
    }
    // The old generation without the foreign parts it saved, with today's merged in like any apply.
    const base = rendered.find((x) => x.host === hostName)!;
    const asRendered: RenderedHost = {
      ...base,
      v4: { ...base.v4, text: withoutForeign(stored.v4, 4, inv.preserve), origins: [] },
      v6: { ...base.v6, text: withoutForeign(stored.v6, 6, inv.preserve), origins: [] },
      notes: [`rollback to generation ${target}`],
      ipsets: parseIpSets(stored.ipsets ?? ''),
    };
    // Every table of the generation, and the live tables it lacks emptied (see planLiveHost).
    const hostPlan = planLiveHost(asRendered, { ...facts, canonical: undefined }, inv.preserve);
    if (!hostPlan.desired) throw new FleetError(`${hostName}: ${hostPlan.error ?? 'cannot plan the rollback'}`, ExitCode.hostsFailed);
    // The generation as it will run: its own rules with today's preserved chains merged in.
    const planned = parseRuleSet(hostPlan.desired!.v4, { family: 4, file: `${hostName} generation ${target}` }).ruleSet;
    const sets = new Map(asRendered.ipsets!.map((s) => [s.name, s]));
    const bastion = bastionOf(inv, host);
    const bastionRs = bastion.name === host.name ? undefined : parseFleet(rendered.filter((r) => r.host === bastion.name)).get(bastion.name)?.v4;
    const lockout = checkManagementPath(inv, host, { ...planned, sets }, bastionRs);
    if (!lockout.ok && !opts.unsafeSkipChecks) {
      throw new CheckError(`generation ${target} would cut the management path of ${hostName} via ${bastion.name}: ${lockout.message}`);
    }
    // With --json, stdout carries only the JSON lines.
    const say = opts.json ? err : out;
    say(`rolling ${hostName} back from generation ${facts.generation} to ${target}`);
    for (const d of hostPlan.diffs) say(d.patch);
    const auditRun = startAuditRun(opts, { user: operatorName(), command: 'rollback', planHash: `rollback-to-${target}`, inventory: { path: display, sha256: inventoryHashOf(inv) }, window, hosts: [hostName] });
    const progress = startRolloutProgress({ hosts: [hostName], title: `fleetfw rollback: ${hostName} to generation ${target}, window ${window}s`, window, json: Boolean(opts.json), color: opts.color });
    const results = await rollout([{ host, desired: hostPlan.desired, expectedLiveHash: facts.liveHash, source: 'rollback' }], {
      transport,
      window,
      generations: inv.settings.generations,
      user: operatorName(),
      planHash: `rollback-to-${target}`,
      parallel: 1,
      maxFailures: 1,
      bastions: new Set(),
      onEvent: auditRun.watch(progress.onEvent),
      probe: healthProber(inv, transport),
    }).finally(() => progress.stop());
    auditRun.complete(results, rolloutExitCode(results));
    printResults(results, Boolean(opts.json), opts.color, `rollback-to-${target}`);
    return rolloutExitCode(results);
  } finally {
    await transport.close();
  }
}

export async function cmdStatus(opts: LiveOptions & { format?: string }): Promise<ExitCodeValue> {
  const format = parseFormat(opts.format);
  const { inv, display, rendered } = loadFleet(opts);
  const hosts = selectHosts(inv, opts.limit);
  const transport = await openTransport(inv, opts);
  try {
    const plan = await planLive(inv, display, rendered, hosts, transport, parallelOf(opts));
    // Whether the rules the hosts run (render and preserved chains) keep their management path and intents.
    const offline = preflight(inv, rendered, hosts);
    const findings = [...offline, ...recheckPlanned(inv, rendered, plan, hosts, offline)];
    const rows = plan.hosts.map((h) => ({
      host: h.host,
      state: h.status === 'in-sync' ? 'in sync' : h.status === 'changes' ? 'drift' : h.status,
      generation: h.generation ?? null,
      persisted: h.persistedDrift === undefined ? null : h.persistedDrift ? 'differs from live' : 'matches live',
      leftover: h.leftover ?? null,
      error: h.error ?? null,
    }));
    if (format === 'json') {
      out(JSON.stringify({ format: 'fleetfw-status', version: 1, hosts: rows, findings }, null, 2));
    } else {
      const c = chalkFor(process.stdout, opts.color);
      for (const r of rows) {
        const paintState = r.state === 'in sync' ? c.green : r.state === 'drift' ? c.yellow : c.red;
        const left = r.leftover ? `; leftover transaction ${r.leftover.id} (${r.leftover.state}, watchdog ${r.leftover.watchdogAlive ? 'armed' : 'gone'})` : '';
        out(`${r.host.padEnd(20)} ${paintState(r.state.padEnd(12))} generation ${r.generation ?? '-'}; persisted ${r.persisted ?? '-'}${left}${r.error ? `; ${r.error}` : ''}`);
      }
      out(`\n${summaryLine(plan)}`);
      printFindings(findings, opts.color);
    }
    return planExitCode(plan, findings);
  } finally {
    await transport.close();
  }
}
