// Commands that need no host: render, offline plan, verify, explain.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { formatIpSets } from '../render/ipsets.js';
import { dirname, join, basename } from 'node:path';
import { ExitCode, UsageError, type ExitCodeValue } from '../errors.js';
import type { Inventory, Proto, Side } from '../model/inventory.js';
import type { CtState, Rule } from '../model/ruleset.js';
import type { RenderedHost } from '../render/render.js';
import { describeDecision, describeOrigin, type Packet } from '../analyze/evaluate.js';
import { evaluatePath } from '../analyze/path.js';
import { describePacket } from '../analyze/flow.js';
import { formatRule } from '../analyze/format.js';
import { localOf } from '../analyze/lockout.js';
import { LINUX_CLIENT_PORTS } from '../analyze/prove.js';
import { TCP_FLAG } from '../analyze/netfilter-names.js';
import { verifyIntents } from '../analyze/intents.js';
import { assemblePlan, planOfflineHost, type Plan } from '../plan/plan.js';
import { checkFleet, parseFleet, type FleetFinding } from '../plan/checks.js';
import { formatPlanJson, formatPlanMarkdown, formatPlanText } from '../plan/report.js';
import { chalkFor, colorFor, out } from './io.js';
import { loadFleet, selectHosts, type InventoryOptions } from './context.js';

export type Format = 'text' | 'markdown' | 'json';

export function parseFormat(value: string | undefined): Format {
  const f = value ?? 'text';
  if (f !== 'text' && f !== 'markdown' && f !== 'json') throw new UsageError(`--format must be text, markdown or json, not "${f}"`);
  return f;
}

export function cmdRender(opts: InventoryOptions & { out: string }): ExitCodeValue {
  const { inv, rendered } = loadFleet(opts);
  const hosts = new Set(selectHosts(inv, opts.limit).map((h) => h.name));
  for (const r of rendered.filter((x) => hosts.has(x.host))) {
    const dir = join(opts.out, r.host);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'rules.v4'), r.v4.text);
    writeFileSync(join(dir, 'rules.v6'), r.v6.text);
    const sets = formatIpSets(r.ipsets ?? []);
    if (sets) writeFileSync(join(dir, 'ipsets'), sets);
    else rmSync(join(dir, 'ipsets'), { force: true });
  }
  out(`rendered ${hosts.size} hosts into ${opts.out}/<host>/rules.v4 and rules.v6`);
  for (const r of rendered.filter((x) => hosts.has(x.host))) for (const n of r.notes) out(`  ${r.host}: ${n}`);
  return ExitCode.ok;
}

/** The stored render that an offline plan compares with: `<inventory>.rendered/` beside the inventory. */
export function defaultSnapshotDir(inv: Inventory): string {
  return join(dirname(inv.file), `${basename(inv.file).replace(/\.ya?ml$/, '')}.rendered`);
}

export function printPlan(plan: Plan, format: Format, color?: boolean, exitHint = true): void {
  if (format === 'json') out(formatPlanJson(plan));
  else if (format === 'markdown') out(formatPlanMarkdown(plan));
  else out(formatPlanText(plan, { color: colorFor(process.stdout, color), exitHint }));
}

export function planExitCode(plan: Plan, findings: FleetFinding[]): ExitCodeValue {
  if (findings.some((f) => f.severity === 'error')) return ExitCode.checksFailed;
  // A host that would boot without its firewall is a failed host, though an apply can still mend it.
  if (plan.summary.unreachable + plan.summary.errors > 0 || plan.hosts.some((h) => h.persistedBroken || h.unpersisted)) return ExitCode.hostsFailed;
  return plan.summary.changes > 0 ? ExitCode.changes : ExitCode.ok;
}

export function printFindings(findings: FleetFinding[], color?: boolean): void {
  const c = chalkFor(process.stderr, color);
  for (const f of findings) {
    const tag = f.severity === 'error' ? c.red('error') : c.yellow('warning');
    process.stderr.write(`${tag}: ${f.host}: ${f.message}\n`);
  }
}

/** Receives every plan a plan command makes (`plan --out` saves it). */
export type PlanSink = (plan: Plan, inv: Inventory, rendered: RenderedHost[]) => void;

export function cmdPlanOffline(opts: InventoryOptions & { against?: string; format?: string; color?: boolean }, sink?: PlanSink): ExitCodeValue {
  const format = parseFormat(opts.format);
  const { inv, display, rendered } = loadFleet(opts);
  const findings = checkFleet(inv, parseFleet(rendered));
  const dir = opts.against ?? defaultSnapshotDir(inv);
  const hosts = new Set(selectHosts(inv, opts.limit).map((h) => h.name));
  const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : undefined);
  const plans = rendered
    .filter((r) => hosts.has(r.host))
    .map((r) => planOfflineHost(r, { v4: read(join(dir, r.host, 'rules.v4')), v6: read(join(dir, r.host, 'rules.v6')), ipsets: read(join(dir, r.host, 'ipsets')) }));
  const plan = assemblePlan('offline', display, plans);
  sink?.(plan, inv, rendered);
  const code = planExitCode(plan, findings);
  printPlan(plan, format, opts.color, code === ExitCode.changes);
  printFindings(findings, opts.color);
  return code;
}

/** "templates/roles/db.v4:3, db/rules.v4 line 14: -A TCP …" */
export function describeRule(rule: Rule): string {
  return `${describeOrigin(rule)}${formatRule(rule)}`;
}

export function cmdVerify(opts: InventoryOptions & { format?: string; color?: boolean }): ExitCodeValue {
  const format = parseFormat(opts.format);
  const { inv, rendered } = loadFleet(opts);
  // A --limit that names nothing is a mistake to answer (verify still proves the whole fleet).
  selectHosts(inv, opts.limit);
  const parsed = parseFleet(rendered);
  const findings = checkFleet(inv, parsed);
  const results = verifyIntents(inv, parsed);
  const failed = results.filter((r) => !r.ok).length;
  if (format === 'json') {
    out(JSON.stringify({ format: 'fleetfw-verify', version: 1, intents: results.map((r) => ({ intent: r.intent.text, ok: r.ok, pairs: r.pairs })), findings }, null, 2));
  } else {
    const c = chalkFor(process.stdout, opts.color);
    for (const r of results) {
      out(`${r.ok ? c.green('ok  ') : c.red('FAIL')} ${r.intent.text}`);
      for (const p of r.pairs) {
        const mark = p.ok ? ' ' : c.red('!');
        out(`   ${mark} ${p.from} -> ${p.to}: ${p.outcome}${p.decidedBy ? ` (${p.decidedBy})` : ''}`);
        if (p.counterexample) out(`       packet ${p.counterexample}; path ${p.path ?? '-'}`);
      }
    }
    out(`\n${results.length - failed} of ${results.length} intents hold${failed ? `, ${failed} fail` : ''}.`);
  }
  printFindings(findings, opts.color);
  return failed > 0 || findings.some((f) => f.severity === 'error') ? ExitCode.checksFailed : ExitCode.ok;
}

export function cmdExplain(
  hostName: string,
  opts: InventoryOptions & { from: string; port?: string; sport?: string; proto?: string; via?: string; state?: string; ipv6?: boolean; color?: boolean; format?: string },
): ExitCodeValue {
  const { inv, rendered } = loadFleet(opts);
  const host = inv.hosts.find((h) => h.name === hostName);
  if (!host) throw new UsageError(`no host named "${hostName}" in the inventory`);
  const family = opts.ipv6 ? 6 : 4;
  const proto = (opts.proto ?? 'tcp') as Proto;
  if (!['tcp', 'udp', 'icmp'].includes(proto)) throw new UsageError('--proto must be tcp, udp or icmp');
  const fromHost = inv.hosts.find((h) => h.name === opts.from);
  const fromExt = inv.externals.find((e) => e.name === opts.from);
  const via: Side = (opts.via as Side | undefined) ?? (fromExt ? fromExt.side : fromHost?.private && host.private ? 'private' : 'public');
  const field = family === 6 ? (`${via}6` as const) : via;
  const dst = host[field];
  if (!dst) throw new UsageError(`${hostName} has no ${field} address`);
  const src = fromHost?.[field] ?? (fromExt ? (family === 6 ? fromExt.address6 : fromExt.address) : opts.from);
  if (!src) throw new UsageError(`--from ${opts.from}: no ${field} address`);
  const parsed = parseFleet(rendered.filter((r) => r.host === hostName)).get(hostName)!;
  const port = opts.port === undefined ? undefined : Number(opts.port);
  const sport = opts.sport === undefined ? LINUX_CLIENT_PORTS[0] : Number(opts.sport);
  const state = (opts.state ?? 'NEW') as CtState;
  const tcpFlags = proto !== 'tcp' ? undefined : state === 'NEW' ? TCP_FLAG.SYN : TCP_FLAG.ACK;
  const packet: Packet = {
    family,
    hook: 'PREROUTING',
    in: host.interfaces[via],
    src,
    dst,
    proto,
    dport: proto === 'icmp' ? undefined : port,
    sport: proto === 'icmp' ? undefined : sport,
    state,
    tcpFlags,
    icmpType: proto === 'icmp' ? (family === 4 ? 8 : 128) : undefined,
    icmpCode: proto === 'icmp' ? 0 : undefined,
  };
  const ev = evaluatePath(family === 4 ? parsed.v4 : parsed.v6, packet, 'in', { local: localOf(host) }, { trace: true });
  if (opts.format === 'json') {
    out(JSON.stringify({ host: hostName, packet, verdict: ev.verdict, rejectWith: ev.rejectWith, hops: ev.hops, rewrites: ev.rewrites.map((w) => ({ field: w.field, from: w.from, to: w.to, rule: describeRule(w.outcome.rule) })), forwarded: ev.forwarded ?? false, decidedBy: ev.decidedBy, trace: ev.trace }, null, 2));
    return ExitCode.ok;
  }
  const c = chalkFor(process.stdout, opts.color);
  out(describePacket(packet).replace(` -> ${dst}`, ` -> ${hostName} ${dst}`) + ` in ${host.interfaces[via]}`);
  let table = '';
  for (const step of ev.trace) {
    if (step.table !== table) out(`  ${c.dim(`${step.table} table`)}`);
    table = step.table;
    const what = step.rule ? describeRule(step.rule) : `${step.chain} policy`;
    out(`    ${step.event.padEnd(8)} ${what}`);
  }
  for (const w of ev.rewrites) out(`  rewritten: ${w.field} ${w.from} -> ${w.to} by ${describeRule(w.outcome.rule)}`);
  if (ev.forwarded) out(`  ${ev.packet.dst} is not ${hostName}'s address: routed on (FORWARD)`);
  const color = ev.verdict === 'ACCEPT' ? c.green : ev.verdict === 'unknown' ? c.yellow : c.red;
  out(`path: ${ev.hops.join(' > ') || 'no tables'}`);
  out(`verdict: ${color(ev.verdict)}${ev.rejectWith ? ` (${ev.rejectWith})` : ''}, decided by ${describeDecision(ev)}`);
  return ExitCode.ok;
}
