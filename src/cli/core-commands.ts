// Commands that need no host: render, offline plan, verify, explain.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { formatIpSets } from '../render/ipsets.js';
import { dirname, join, basename } from 'node:path';
import { ExitCode, UsageError, type ExitCodeValue } from '../errors.js';
import type { ExternalSpec, Family, HostSpec, Inventory, Proto, Side } from '../model/inventory.js';
import type { CtState, Rule } from '../model/ruleset.js';
import type { RenderedHost } from '../render/render.js';
import { describeDecision, describeOrigin, type Packet } from '../analyze/evaluate.js';
import { evaluatePath } from '../analyze/path.js';
import { describePacket } from '../analyze/flow.js';
import { formatRule } from '../analyze/format.js';
import { localOf } from '../analyze/lockout.js';
import { canonicaliseCidr, familyOf, pickFirstUsable } from '../analyze/cidr.js';
import { didYouMean, suggest } from '../inventory/suggest.js';
import { LINUX_CLIENT_PORTS } from '../analyze/prove.js';
import { TCP_FLAG } from '../analyze/netfilter-names.js';
import { verifyIntents } from '../analyze/intents.js';
import { planOfflineHost, type Plan } from '../plan/plan.js';
import { outlinesOf, streamPlan, type StreamedPlan } from '../plan/streamed-plan.js';
import { planReach, type RulesBefore } from '../plan/reach-plan.js';
import { formatReachLine } from '../plan/reach-report.js';
import { formatPlanHtml } from '../plan/reach-html.js';
import { checkFleet, fleetFindings, parseFleet, type FleetFinding } from '../plan/checks.js';
import { formatPlanMarkdown, MARKDOWN_LIMIT, MARKDOWN_MIN_LIMIT, planJson, planTextChunks, type MarkdownOptions, type PlanReach } from '../plan/report.js';
import { chalkFor, colorFor, err, out, writeChunks } from './io.js';
import { hostNamed, loadFleet, PLAN_OFFLINE, selectHosts, type InventoryOptions } from './context.js';

export type Format = 'text' | 'markdown' | 'json' | 'html';

/** The formats of a report; `html` is a plan's alone (the commands' --format choices say which take it). */
export const REPORT_FORMATS: readonly Format[] = ['text', 'markdown', 'json'];
export const PLAN_FORMATS: readonly Format[] = [...REPORT_FORMATS, 'html'];

export function parseFormat(value: string | undefined, allowed: readonly Format[] = PLAN_FORMATS): Format {
  const f = (value ?? 'text') as Format;
  if (!allowed.includes(f)) throw new UsageError(`--format must be ${allowed.slice(0, -1).join(', ')} or ${allowed[allowed.length - 1]}, not "${f}"`);
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

/**
 * Print a plan on stdout. Text and JSON are written host by host as they are
 * made (a plan of 10,000 new hosts is gigabytes); markdown is cut to its limit;
 * HTML draws the who-can-reach-whom matrix, proven only when asked for.
 */
export async function printPlan(plan: Plan | StreamedPlan, format: Format, color?: boolean, exitHint = true, opts: MarkdownOptions = {}): Promise<void> {
  if (format === 'json') await writeChunks(process.stdout, jsonLines(plan, opts.reach));
  else if (format === 'markdown') out(formatPlanMarkdown(plan, opts));
  else if (format === 'html') process.stdout.write(formatPlanHtml(plan, opts.reach, opts.reach?.matrix?.()));
  else await writeChunks(process.stdout, planTextChunks(plan, { color: colorFor(process.stdout, color), exitHint, ...(opts.reach ? { reach: opts.reach } : {}) }));
}

function* jsonLines(plan: Plan | StreamedPlan, reach?: PlanReach): Generator<string> {
  yield* planJson(plan, reach);
  yield '\n';
}

/** `--markdown-limit`: a number of characters GitHub accepts in a comment, with room for the summary. */
export function markdownLimitOf(value: string | undefined): number {
  if (value === undefined) return MARKDOWN_LIMIT;
  const n = Number(value);
  if (!Number.isInteger(n) || n < MARKDOWN_MIN_LIMIT) throw new UsageError(`--markdown-limit must be a whole number of characters, at least ${MARKDOWN_MIN_LIMIT}, not "${value}"`);
  return n;
}

/** The SSH port of each host (the management path, for the markdown's order of importance). */
export function sshPortOf(inv: Inventory): (host: string) => number | undefined {
  const ports = new Map(inv.hosts.map((h) => [h.name, h.ssh.port]));
  return (host) => ports.get(host);
}

export function planExitCode(plan: Plan | StreamedPlan, findings: FleetFinding[]): ExitCodeValue {
  if (findings.some((f) => f.severity === 'error')) return ExitCode.checksFailed;
  // A host that would boot without its firewall is a failed host, though an apply can still mend it.
  if (plan.summary.unreachable + plan.summary.errors > 0 || outlinesOf(plan).some((h) => h.persistedBroken || h.unpersisted)) return ExitCode.hostsFailed;
  return plan.summary.changes > 0 ? ExitCode.changes : ExitCode.ok;
}

export function printFindings(findings: FleetFinding[], color?: boolean): void {
  const c = chalkFor(process.stderr, color);
  for (const f of findings) {
    const tag = f.severity === 'error' ? c.red('error') : c.yellow('warning');
    process.stderr.write(`${tag}: ${f.host}: ${f.message}\n`);
  }
}

/** `--require-intents`: an opened flow no intent mentions fails the plan. */
export function reachFindings(reach: PlanReach, opts: { requireIntents?: boolean }): FleetFinding[] {
  if (!opts.requireIntents || reach.uncovered.length === 0) return [];
  const n = reach.uncovered.length;
  return [{ host: 'fleet', severity: 'error', code: 'uncovered-flows', message: `${n} opened flow${n === 1 ? '' : 's'} no intent covers (--require-intents): ${reach.uncovered.slice(0, 3).map(formatReachLine).join('; ')}${n > 3 ? '; …' : ''}` }];
}

/** Saves the plan (before it is printed: the markdown names the file) and returns what to say after it. */
export type PlanSink = (plan: StreamedPlan, inv: Inventory, rendered: RenderedHost[]) => string;

/** The options of `plan` that shape its output. */
export interface PlanOutputOptions {
  format?: string;
  /** `--require-intents`. */
  requireIntents?: boolean;
  color?: boolean;
  /** `--markdown-limit`. */
  markdownLimit?: string;
  /** `--out`: where the full plan is saved (named by a markdown plan that is cut). */
  out?: string;
}

/**
 * `--against DIR`: a stored render that exists. A folder that holds no host's
 * rules.v4 (the inventories folder, say) is refused rather than planned as if
 * every host were new; an empty folder is a render of no host yet.
 */
export function checkStoredRender(dir: string, inv: Inventory): void {
  if (!existsSync(dir)) throw new UsageError(`--against ${dir}: no such folder (write a stored render with \`fleetfw render --out ${dir}\`)`);
  if (!statSync(dir).isDirectory()) throw new UsageError(`--against ${dir}: not a folder: name the folder \`fleetfw render --out\` wrote (DIR/<host>/rules.v4)`);
  const entries = readdirSync(dir, { withFileTypes: true });
  const hostDirs = entries.filter((e) => e.isDirectory() && existsSync(join(dir, e.name, 'rules.v4')));
  if (entries.length === 0 || hostDirs.length > 0) return;
  const inside = entries.filter((e) => e.isDirectory() && e.name.endsWith('.rendered')).map((e) => join(dir, e.name));
  const meant = inside.find((d) => d === join(dir, basename(defaultSnapshotDir(inv)))) ?? inside[0];
  throw new UsageError(`--against ${dir}: not a stored render (no <host>/rules.v4 in it)${meant ? ` (did you mean "${meant}"?)` : ''}`);
}

export async function cmdPlanOffline(opts: InventoryOptions & PlanOutputOptions & { against?: string }, sink?: PlanSink): Promise<ExitCodeValue> {
  const format = parseFormat(opts.format);
  const markdownLimit = markdownLimitOf(opts.markdownLimit);
  const { inv, display, rendered } = loadFleet({ ...opts, withoutInventory: PLAN_OFFLINE });
  const parsed = parseFleet(rendered);
  const dir = opts.against ?? defaultSnapshotDir(inv);
  if (opts.against !== undefined) checkStoredRender(opts.against, inv);
  else if (!existsSync(dir)) err(`fleetfw: no stored render at ${dir}: every host is new (write one with \`fleetfw render --out ${dir}\`, or name one with --against)`);
  const selected = new Set(selectHosts(inv, opts.limit).map((h) => h.name));
  // The same checks as a live plan's: management paths, lint, and every intent a planned host is an end of.
  const findings = fleetFindings(inv, parsed, selected);
  const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : undefined);
  const byName = new Map(rendered.filter((r) => selected.has(r.host)).map((r) => [r.host, r]));
  // Each host's plan is made when it is needed and dropped when written: no plan is too large.
  const planHost = (name: string) => planOfflineHost(byName.get(name)!, { v4: read(join(dir, name, 'rules.v4')), v6: read(join(dir, name, 'rules.v6')), ipsets: read(join(dir, name, 'ipsets')) });
  const sshPort = sshPortOf(inv);
  const plan = streamPlan('offline', display, [...byName.keys()], planHost, { sshPort });
  const saved = sink?.(plan, inv, rendered);
  // Made only for hosts with a stored render: a new host's sets can name the whole fleet.
  const byHost = new Map(rendered.map((r) => [r.host, r]));
  const texts = (h: string) => {
    const r = byHost.get(h);
    return r && { v4: r.v4.text, v6: r.v6.text, ipsets: formatIpSets(r.ipsets ?? []) };
  };
  const reach = planReach(inv, parsed, texts, (h): RulesBefore => {
    const v4 = read(join(dir, h, 'rules.v4'));
    const stored = v4 === undefined ? undefined : { v4, v6: read(join(dir, h, 'rules.v6')) ?? '', ipsets: read(join(dir, h, 'ipsets')) ?? '' };
    // A host left out by --limit keeps what it has: its stored render, or nothing yet.
    if (!selected.has(h)) return stored ? { kept: stored } : 'gone';
    return stored ?? 'absent';
  });
  findings.push(...reachFindings(reach, opts));
  const code = planExitCode(plan, findings);
  await printPlan(plan, format, opts.color, code === ExitCode.changes, { limit: markdownLimit, fullPlan: opts.out, sshPort, reach });
  printFindings(findings, opts.color);
  if (saved) err(saved);
  return code;
}

/** "templates/roles/db.v4:3, db/rules.v4 line 14: -A TCP …" */
export function describeRule(rule: Rule): string {
  return `${describeOrigin(rule)}${formatRule(rule)}`;
}

export function cmdVerify(opts: InventoryOptions & { format?: string; color?: boolean }): ExitCodeValue {
  const format = parseFormat(opts.format, REPORT_FORMATS);
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

/** `--port`, `--sport`: a port number, 1 to 65535. */
export function portOf(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 65535) throw new UsageError(`${flag} must be a port number from 1 to 65535, not "${value}"`);
  return Number(value);
}

/** Where an explained packet comes from: a host, an external, or an address (maybe standing for a range). */
interface ExplainSource {
  name?: string;
  host?: HostSpec;
  ext?: ExternalSpec;
  address?: string;
}

interface ExplainSources {
  sources: ExplainSource[];
  family: Family;
  /** Said before the traces: a group expanded, a range represented by one address. */
  notes: string[];
  /** `--from` was a CIDR: the range and the address that stands for it. */
  range?: { cidr: string; address: string };
}

/**
 * `--from`: a host, an external, a group (one packet from each member but the
 * receiving host), an address, or a CIDR (one representative packet: the
 * proofs of `verify` cover ranges, explain traces one packet).
 */
export function explainSources(inv: Inventory, target: HostSpec, from: string, ipv6: boolean): ExplainSources {
  const family: Family = ipv6 ? 6 : 4;
  const host = inv.hosts.find((h) => h.name === from);
  if (host) return { sources: [{ name: from, host }], family, notes: [] };
  const ext = inv.externals.find((e) => e.name === from);
  if (ext) return { sources: [{ name: from, ext }], family, notes: [] };
  const members = inv.hosts.filter((h) => h.groups.includes(from));
  if (members.length > 0) {
    const others = members.filter((h) => h.name !== target.name);
    if (others.length === 0) throw new UsageError(`--from ${from}: the group's only member is ${target.name} itself: name another source`);
    const listed = others.length <= 8 ? others.map((h) => h.name).join(', ') : `${others.length} hosts`;
    const self = others.length < members.length ? `; ${target.name} itself left out` : '';
    const notes = [`--from ${from} is a group: one packet from each member (${listed}${self})`];
    return { sources: others.map((h) => ({ name: h.name, host: h })), family, notes };
  }
  const addrFamily = familyOf(from);
  if (addrFamily === undefined) {
    const names = [...inv.hosts.map((h) => h.name), ...inv.externals.map((e) => e.name), ...new Set(inv.hosts.flatMap((h) => h.groups))];
    const looksLikeAddress = /^[\d.]+(\/\d*)?$/.test(from) || /^[\da-f:]*:[\da-f:.]*(\/\d*)?$/i.test(from);
    if (looksLikeAddress) throw new UsageError(`--from ${from}: not a valid IPv4 or IPv6 address or CIDR`);
    throw new UsageError(`--from ${from}: not a host, group or external of the inventory, nor an address or CIDR${didYouMean(suggest(from, names))}`);
  }
  if (ipv6 && addrFamily === 4) throw new UsageError(`--from ${from} is IPv4, but --ipv6 asks for an IPv6 packet`);
  const canon = canonicaliseCidr(from, addrFamily);
  if ('error' in canon) throw new UsageError(`--from ${from}: ${canon.error}`);
  const whole = canon.cidr.endsWith(addrFamily === 4 ? '/32' : '/128');
  // An IPv6 source makes an IPv6 packet: --ipv6 goes without saying.
  if (whole) return { sources: [{ address: canon.cidr.replace(/\/\d+$/, '') }], family: addrFamily, notes: [] };
  const address = pickFirstUsable(canon.cidr);
  const notes = [`--from ${canon.cidr} is a range: this traces one packet, from ${address} (its first address); other addresses of the range can meet other rules (the checks of verify cover whole ranges; explain traces one packet)`];
  return { sources: [{ address }], family: addrFamily, notes, range: { cidr: canon.cidr, address } };
}

export function cmdExplain(
  hostName: string,
  opts: InventoryOptions & { from: string; port?: string; sport?: string; proto?: string; via?: string; state?: string; ipv6?: boolean; color?: boolean; format?: string },
): ExitCodeValue {
  const proto = (opts.proto ?? 'tcp') as Proto;
  if (!['tcp', 'udp', 'icmp'].includes(proto)) throw new UsageError('--proto must be tcp, udp or icmp');
  const port = portOf(opts.port, '--port');
  const sport = portOf(opts.sport, '--sport') ?? LINUX_CLIENT_PORTS[0];
  if (proto === 'icmp' && (opts.port !== undefined || opts.sport !== undefined)) throw new UsageError('--port and --sport are for tcp and udp: --proto icmp traces an echo request');
  if (proto !== 'icmp' && port === undefined) throw new UsageError(`--port is required with --proto ${proto}: the destination port, 1 to 65535`);
  const { inv, rendered } = loadFleet(opts);
  const host = hostNamed(inv, hostName, 'explain');
  const { sources, family, notes, range } = explainSources(inv, host, opts.from, Boolean(opts.ipv6));
  const parsed = parseFleet(rendered.filter((r) => r.host === hostName)).get(hostName)!;
  const state = (opts.state ?? 'NEW') as CtState;
  const tcpFlags = proto !== 'tcp' ? undefined : state === 'NEW' ? TCP_FLAG.SYN : TCP_FLAG.ACK;
  const skipped: string[] = [];
  const traces = sources.flatMap((s) => {
    const via: Side = (opts.via as Side | undefined) ?? (s.ext ? s.ext.side : s.host?.private && host.private ? 'private' : 'public');
    const field = family === 6 ? (`${via}6` as const) : via;
    const dst = host[field];
    if (!dst) throw new UsageError(`${hostName} has no ${field} address${family === 6 && !opts.ipv6 ? ` (--from ${opts.from} is IPv6, so the packet is)` : opts.via ? '' : ' (try --via)'}`);
    const src = s.host ? s.host[field] : s.ext ? (family === 6 ? s.ext.address6 : s.ext.address) : s.address;
    if (!src) {
      if (sources.length === 1) throw new UsageError(`--from ${opts.from}: no ${s.ext ? (family === 6 ? 'IPv6 address' : 'address') : `${field} address`}`);
      skipped.push(`${s.name} (no ${field} address)`);
      return [];
    }
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
    return [{ source: s, via, packet, ev }];
  });
  if (skipped.length > 0) notes.push(`left out: ${skipped.join(', ')}`);
  if (traces.length === 0) throw new UsageError(`--from ${opts.from}: no member has a ${family === 6 ? 'IPv6 ' : ''}address to send from`);
  if (opts.format === 'json') {
    const objects = traces.map(({ source, packet, ev }) => ({
      host: hostName,
      ...(source.name ? { from: source.name } : {}),
      ...(range ? { range: range.cidr, representative: range.address } : {}),
      packet,
      verdict: ev.verdict,
      rejectWith: ev.rejectWith,
      hops: ev.hops,
      rewrites: ev.rewrites.map((w) => ({ field: w.field, from: w.from, to: w.to, rule: describeRule(w.outcome.rule) })),
      forwarded: ev.forwarded ?? false,
      decidedBy: ev.decidedBy,
      trace: ev.trace,
    }));
    // A group's traces are an array; one source's trace is one object, as it always was.
    out(JSON.stringify(sources.length > 1 || objects.length > 1 ? objects : objects[0], null, 2));
    return ExitCode.ok;
  }
  const c = chalkFor(process.stdout, opts.color);
  for (const n of notes) out(c.dim(n));
  traces.forEach(({ source, via, packet, ev }, i) => {
    if (i > 0 || notes.length > 0) out('');
    const [left, ...right] = describePacket(packet).split(' -> ');
    out(`${source.name ? `${source.name} ` : ''}${left} -> ${hostName} ${right.join(' -> ')} in ${host.interfaces[via]}`);
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
  });
  if (traces.length > 1) {
    const color = (v: string) => (v === 'ACCEPT' ? c.green(v) : v === 'unknown' ? c.yellow(v) : c.red(v));
    out(`\nverdicts: ${traces.map(({ source, ev }) => `${source.name} ${color(ev.verdict)}`).join(', ')}`);
  }
  return ExitCode.ok;
}
