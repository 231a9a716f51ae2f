// Commands that talk to hosts: plan (live), apply, rollback, history, status.
// Each parses its options, calls the engine, and formats what it returns.
import { ExitCode, UsageError, type ExitCodeValue } from '../errors.js';
import type { HostSpec, Inventory } from '../model/inventory.js';
import { readFacts } from '../apply/transaction.js';
import { SessionPool } from '../apply/session-pool.js';
import { summaryLine } from '../plan/report.js';
import { checkPlanned, checkRendered, planFleet, planReachLive } from '../engine/plan-fleet.js';
import { selectWork } from '../engine/apply.js';
import { planRollback } from '../engine/rollback.js';
import { readHistory } from '../engine/history.js';
import { CheckError } from '../errors.js';
import { chalkFor, err, out } from './io.js';
import { verifyAfterRollout } from './live-report.js';
import { loadFleet, openTransport, selectHosts } from './context.js';
import { markdownLimitOf, parseFormat, planExitCode, printFindings, printPlan, reachFindings, sshPortOf, type PlanOutputOptions, type PlanSink } from './core-commands.js';
import type { RulesBefore } from '../plan/reach-plan.js';
import { streamOf } from '../plan/streamed-plan.js';
import { describeAuditMatch, formatHostAudit, readHostAudit, type AuditCliOptions } from './audit-log.js';
import { maxFailuresOf, parallelOf, runPlanned, stopOnFindings, windowOf, type ApplyOptions, type LiveOptions } from './apply-run.js';

export { DEFAULT_PARALLEL, operatorName, parallelOf, windowOf, type ApplyOptions, type LiveOptions } from './apply-run.js';

export async function cmdPlanLive(opts: LiveOptions & PlanOutputOptions, sink?: PlanSink): Promise<ExitCodeValue> {
  const format = parseFormat(opts.format);
  const markdownLimit = markdownLimitOf(opts.markdownLimit);
  const fleet = loadFleet(opts);
  const hosts = selectHosts(fleet.inv, opts.limit);
  const findings = checkRendered(fleet, hosts);
  const transport = await openTransport(fleet.inv, opts);
  try {
    const current = new Map<string, RulesBefore>();
    const plan = await planFleet(fleet, hosts, transport, parallelOf(opts), undefined, current);
    const reach = planReachLive(fleet, plan, current);
    const all = [...findings, ...checkPlanned(fleet, plan, hosts, findings), ...reachFindings(reach, opts)];
    const sshPort = sshPortOf(fleet.inv);
    const saved = sink?.(streamOf(plan, { sshPort }), fleet.inv, fleet.rendered);
    const code = planExitCode(plan, all);
    await printPlan(plan, format, opts.color, code === ExitCode.changes, { limit: markdownLimit, fullPlan: opts.out, sshPort, reach });
    printFindings(all, opts.color);
    if (saved) err(saved);
    return code;
  } finally {
    await transport.close();
  }
}

/** Plan and apply in one go. */
export async function cmdApply(opts: ApplyOptions): Promise<ExitCodeValue> {
  const fleet = loadFleet(opts);
  const hosts = selectHosts(fleet.inv, opts.limit);
  const window = windowOf(fleet.inv, opts);
  const findings = checkRendered(fleet, hosts);
  stopOnFindings(findings, opts, 'pre-flight checks');
  const transport = await openTransport(fleet.inv, opts);
  const pool = new SessionPool();
  try {
    const current = new Map<string, RulesBefore>();
    const plan = await planFleet(fleet, hosts, transport, parallelOf(opts), pool, current);
    if (!opts.json) await printPlan(plan, 'text', opts.color, false, { reach: planReachLive(fleet, plan, current) });
    // What the live rules' preserved chains change is only known now: checked before anything is sent.
    stopOnFindings(checkPlanned(fleet, plan, hosts, findings), opts, 'pre-flight checks of the rules the hosts will run');
    const work = selectWork(plan, fleet.inv, Boolean(opts.force));
    await pool.release(new Set(work.todo.map((h) => h.host)));
    const code = await runPlanned(
      {
        ...fleet,
        plan,
        work,
        command: 'apply',
        question: `Apply to ${work.todo.length} host(s) with a ${window}s auto-rollback window?`,
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
  const fleet = loadFleet(opts);
  const host = hostByName(fleet.inv, hostName);
  const window = windowOf(fleet.inv, opts);
  const transport = await openTransport(fleet.inv, opts);
  try {
    const r = await planRollback(fleet, host, opts.to === undefined ? undefined : Number(opts.to), transport);
    if (!r.lockout.ok && !opts.unsafeSkipChecks) {
      throw new CheckError(`generation ${r.target} would cut the management path of ${hostName}: ${r.lockout.message}`);
    }
    // With --json, stdout carries only the JSON lines.
    const say = opts.json ? err : out;
    say(`rolling ${hostName} back from generation ${r.from} to ${r.target}`);
    for (const d of r.hostPlan.diffs) say(d.patch);
    return await runPlanned(
      {
        ...fleet,
        plan: r.plan,
        work: selectWork(r.plan, fleet.inv, true),
        command: 'rollback',
        question: `Roll ${hostName} back to generation ${r.target} with a ${window}s auto-rollback window?`,
        title: `fleetfw rollback: ${hostName} to generation ${r.target}, window ${window}s`,
        settings: { window, maxFailures: 1, source: 'rollback', installPersistent: false },
        transport,
      },
      opts,
    );
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
    const plan = await planFleet({ inv, display, rendered }, hosts, transport, parallelOf(opts));
    // Whether the rules the hosts run (render and preserved chains) keep their management path and intents.
    const offline = checkRendered({ inv, display, rendered }, hosts);
    const findings = [...offline, ...checkPlanned({ inv, display, rendered }, plan, hosts, offline)];
    const rows = plan.hosts.map((h) => ({
      host: h.host,
      state: h.status === 'in-sync' ? 'in sync' : h.status === 'changes' ? 'drift' : h.status,
      generation: h.generation ?? null,
      persisted: h.persistedBroken ? 'would not load at boot' : h.persistedDrift === undefined ? null : h.persistedDrift ? 'differs from live' : 'matches live',
      leftover: h.leftover ?? null,
      lastTransaction: h.lastTxn ?? null,
      problems: [h.persistedBroken, h.unpersisted].filter((p): p is string => p !== undefined),
      error: h.error ?? null,
    }));
    if (format === 'json') {
      out(JSON.stringify({ format: 'fleetfw-status', version: 1, hosts: rows, findings }, null, 2));
    } else {
      const c = chalkFor(process.stdout, opts.color);
      for (const r of rows) {
        const paintState = r.state === 'in sync' ? c.green : r.state === 'drift' ? c.yellow : c.red;
        const left = r.leftover ? `; leftover transaction ${r.leftover.id} (${r.leftover.state}, watchdog ${r.leftover.watchdogAlive ? 'armed' : 'gone'})` : '';
        // The host's own record settles what an apply could not see (an `unknown` host, a lost answer).
        const t = r.lastTransaction;
        const last = t && t.state !== 'confirmed' ? `; last transaction ${t.id} ${t.state}${t.reason ? ` (${t.reason})` : ''}` : '';
        out(`${r.host.padEnd(20)} ${paintState(r.state.padEnd(12))} generation ${r.generation ?? '-'}; persisted ${r.persisted ?? '-'}${left}${last}${r.error ? `; ${r.error}` : ''}`);
        for (const p of r.problems) out(c.red(`    error: ${p}`));
      }
      out(`\n${summaryLine(plan)}`);
      printFindings(findings, opts.color);
    }
    return planExitCode(plan, findings);
  } finally {
    await transport.close();
  }
}
