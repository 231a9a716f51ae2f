// The reachability diff as a reviewer reads it: flows summarised by groups and port
// ranges, like the intents (`+ wordpress-3 -> mysql:3306/tcp`), the ones that matter
// most first (newly exposed to the internet, management paths, wider than any
// group), and the opened flows that no intent covers.
import type { HostSpec, Inventory, IntentSpec } from '../model/inventory.js';
import type { Interval } from '../analyze/prove.js';
import type { ReachChange } from '../analyze/reach.js';

export const REACH_FORMAT = 'fleetfw-reachability';
export const REACH_VERSION = 1;

export type ReachMark = 'internet' | 'management' | 'wide';

export interface ReachLine {
  change: ReachChange['change'];
  /** A host, a group, an external, or CIDRs (any other address). */
  from: string;
  fromKind: ReachChange['from']['kind'];
  to: string;
  proto: ReachChange['proto'];
  ports: string;
  side: ReachChange['side'];
  family: ReachChange['family'];
  marks: ReachMark[];
}

export interface ReachReport {
  format: typeof REACH_FORMAT;
  version: typeof REACH_VERSION;
  lines: ReachLine[];
  /** Opened flows no intent mentions (same shape). */
  uncovered: ReachLine[];
}

const SIGN: Record<ReachChange['change'], string> = { open: '+', close: '-', unknown: '?' };
const MARK_TEXT: Record<ReachMark, string> = { internet: 'newly exposed to the internet', management: 'management path', wide: 'wider than any group' };

export function formatPorts(ports: ReadonlyArray<Interval<number>>): string {
  if (ports.length === 1 && ports[0]![0] <= 1 && ports[0]![1] === 65535) return '*';
  return ports.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
}

type Compress = (names: ReadonlySet<string>, self?: string) => string[];

/** Names as few as possible: whole groups (a member equal to `self` may be missing), then hosts. */
function compressor(inv: Inventory): Compress {
  const hostNames = new Set(inv.hosts.map((h) => h.name));
  const all = inv.hosts.map((h) => h.name);
  const byGroup = new Map<string, string[]>();
  for (const h of inv.hosts) {
    for (const g of h.groups) {
      if (g === 'all' || hostNames.has(g)) continue;
      let members = byGroup.get(g);
      if (!members) byGroup.set(g, (members = []));
      members.push(h.name);
    }
  }
  const groups = [...byGroup].filter(([, m]) => m.length >= 2).sort((a, b) => b[1].length - a[1].length || (a[0] < b[0] ? -1 : 1));
  return (names, self) => {
    const covers = (members: readonly string[]) => members.every((m) => names.has(m) || m === self) && members.some((m) => names.has(m));
    if (all.length > 1 && names.size > 1 && covers(all)) return ['all'];
    const left = new Set(names);
    const out: string[] = [];
    for (const [g, members] of groups) {
      if (!members.every((m) => left.has(m) || m === self) || !members.some((m) => left.has(m))) continue;
      out.push(g);
      for (const m of members) left.delete(m);
    }
    return [...out, ...[...left].sort()];
  };
}

/** Hosts and externals by name; any other address as the ranges it was proven for. */
function sourceName(c: ReachChange): string {
  if (c.from.kind !== 'any') return c.from.name;
  const { cidrs } = c.from;
  return cidrs.length === 1 && cidrs[0] === 'any' ? 'any other address' : `other addresses in ${cidrs.join(',')}`;
}

/** A long list of ranges cut for reading (the JSON keeps it whole). */
function shortSource(from: string): string {
  const list = from.startsWith('other addresses in ') ? from.slice('other addresses in '.length).split(',') : [];
  return list.length > 4 ? `other addresses in ${list.slice(0, 3).join(',')} and ${list.length - 3} more ranges` : from;
}

function marksOf(inv: Inventory, c: ReachChange, hostOf: Map<string, HostSpec>): ReachMark[] {
  if (c.change !== 'open') return [];
  const marks: ReachMark[] = [];
  const external = c.from.kind === 'external' ? inv.externals.find((e) => e.name === (c.from as { name: string }).name) : undefined;
  if ((c.from.kind === 'any' && c.side === 'public') || external?.side === 'public') marks.push('internet');
  const ssh = hostOf.get(c.to)?.ssh.port ?? 22;
  if (c.proto === 'tcp' && c.ports.some(([a, b]) => a <= ssh && ssh <= b)) marks.push('management');
  if (c.from.kind === 'any') marks.push('wide');
  return marks;
}

/** The ports of this flow that an allow intent names (its source, destination, protocol, family and side). */
function coveredPorts(inv: Inventory, c: ReachChange, members: (name: string) => Set<string>, hostOf: Map<string, HostSpec>): Array<Interval<number>> {
  if (c.from.kind === 'any') return [];
  const from = c.from.name;
  const external = inv.externals.find((e) => e.name === from);
  const sideOf = (i: IntentSpec): string => {
    if (i.via) return i.via;
    if (external) return external.side;
    const priv = (h: HostSpec | undefined) => (i.family === 4 ? h?.private : h?.private6);
    return priv(hostOf.get(from)) && priv(hostOf.get(c.to)) ? 'private' : 'public';
  };
  const ports = inv.intents
    .filter((i: IntentSpec) => i.expect === 'allow' && i.proto === c.proto && i.family === c.family && i.port !== undefined && members(i.from).has(from) && members(i.to).has(c.to) && sideOf(i) === c.side)
    .map((i) => i.port!);
  return [...new Set(ports)].sort((a, b) => a - b).map((p) => [p, p]);
}

function subtract(ports: ReadonlyArray<Interval<number>>, minus: ReadonlyArray<Interval<number>>): Array<Interval<number>> {
  let out = ports.map(([a, b]) => [a, b] as Interval<number>);
  for (const [ma, mb] of minus) {
    out = out.flatMap(([a, b]): Array<Interval<number>> => (mb < a || ma > b ? [[a, b]] : [...(ma > a ? [[a, ma - 1] as Interval<number>] : []), ...(mb < b ? [[mb + 1, b] as Interval<number>] : [])]));
  }
  return out;
}

/** Summarise: destinations of one source into groups, then sources of one destination. */
function summarise(inv: Inventory, changes: readonly ReachChange[], hostOf: Map<string, HostSpec>, compress: Compress): ReachLine[] {
  type Draft = Omit<ReachLine, 'to'> & { to: Set<string> };
  const byFrom = new Map<string, Draft>();
  for (const c of changes) {
    const line = { change: c.change, from: sourceName(c), fromKind: c.from.kind, proto: c.proto, ports: formatPorts(c.ports), side: c.side, family: c.family, marks: marksOf(inv, c, hostOf) };
    const key = JSON.stringify({ ...line, to: undefined });
    const d = byFrom.get(key) ?? { ...line, to: new Set<string>() };
    d.to.add(c.to);
    byFrom.set(key, d);
  }
  // Then each destination label's sources (hosts only) into groups.
  const byTo = new Map<string, { line: Omit<ReachLine, 'from'>; from: Set<string>; fromKind: Draft['fromKind'] }>();
  for (const d of byFrom.values()) {
    const self = d.fromKind === 'host' ? d.from : undefined;
    for (const to of compress(d.to, self)) {
      const { to: _to, ...rest } = d;
      const { fromKind } = d;
      const line = { ...rest, to };
      const key = fromKind === 'host' ? JSON.stringify({ ...line, from: undefined }) : JSON.stringify(line);
      const e = byTo.get(key) ?? { line, from: new Set<string>(), fromKind };
      e.from.add(d.from);
      byTo.set(key, e);
    }
  }
  const lines: ReachLine[] = [];
  for (const e of byTo.values()) {
    const self = hostOf.has(e.line.to) ? e.line.to : undefined;
    const froms = e.fromKind === 'host' ? compress(e.from, self) : [...e.from];
    for (const from of froms) lines.push({ ...e.line, from });
  }
  return lines.sort(compareLines);
}

const CHANGE_ORDER: Record<ReachChange['change'], number> = { open: 0, unknown: 1, close: 2 };

function rank(l: ReachLine): number {
  if (l.marks.includes('internet')) return 0;
  if (l.marks.includes('management')) return 1;
  if (l.marks.includes('wide')) return 2;
  return 3;
}

function compareLines(a: ReachLine, b: ReachLine): number {
  return CHANGE_ORDER[a.change] - CHANGE_ORDER[b.change] || rank(a) - rank(b) || cmp(a.to, b.to) || cmp(a.from, b.from) || cmp(a.proto, b.proto) || cmp(a.ports, b.ports) || cmp(a.side, b.side) || a.family - b.family;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The report of a set of changes: summarised lines, and the opened flows no intent covers. */
export function reachReport(inv: Inventory, changes: readonly ReachChange[]): ReachReport {
  const hostOf = new Map(inv.hosts.map((h) => [h.name, h]));
  const groupMembers = new Map<string, Set<string>>();
  const members = (name: string): Set<string> => {
    let m = groupMembers.get(name);
    if (!m) {
      m = hostOf.has(name) || inv.externals.some((e) => e.name === name) ? new Set([name]) : new Set(inv.hosts.filter((h) => h.groups.includes(name)).map((h) => h.name));
      groupMembers.set(name, m);
    }
    return m;
  };
  const uncovered = changes
    .filter((c) => c.change === 'open')
    .map((c) => ({ ...c, ports: subtract(c.ports, coveredPorts(inv, c, members, hostOf)) }))
    .filter((c) => c.ports.length > 0);
  const compress = compressor(inv);
  return { format: REACH_FORMAT, version: REACH_VERSION, lines: summarise(inv, changes, hostOf, compress), uncovered: summarise(inv, uncovered, hostOf, compress) };
}

/** One line: `+ wordpress-3 -> mysql:3306/tcp  (newly exposed to the internet)`. */
export function formatReachLine(l: ReachLine): string {
  // An external's side is its own; a host or any other address may come either way.
  const external = l.fromKind === 'external';
  const how = [l.side === 'public' && !external && !l.marks.includes('internet') ? 'via public' : '', l.family === 6 ? 'IPv6' : ''].filter(Boolean).join(', ');
  const marks = l.marks.map((m) => MARK_TEXT[m]);
  const notes = [how, ...marks].filter(Boolean);
  return `${SIGN[l.change]} ${shortSource(l.from)} -> ${l.to}:${l.ports}/${l.proto}${notes.length ? `  (${notes.join('; ')})` : ''}`;
}

export function reachCounts(r: ReachReport): string {
  const n = (c: ReachChange['change']) => r.lines.filter((l) => l.change === c).length;
  const unknown = n('unknown');
  return `${n('open')} opened, ${n('close')} closed${unknown ? `, ${unknown} fleetfw cannot tell` : ''}; ${r.uncovered.length} opened flow${r.uncovered.length === 1 ? '' : 's'} no intent covers`;
}

/** The text section of a plan. */
export function formatReachText(r: ReachReport & { skipped?: boolean }): string {
  if (r.skipped) return 'Reachability: not compared (see the note above).\n';
  if (r.lines.length === 0) return 'Reachability: no flow opened or closed.\n';
  const out = [`Reachability: ${reachCounts(r)}.`, ...r.lines.map((l) => `  ${formatReachLine(l)}`)];
  if (r.uncovered.length > 0) out.push('Not covered by any intent:', ...r.uncovered.map((l) => `  ${formatReachLine(l)}`));
  return `${out.join('\n')}\n`;
}

/** The markdown section (first in a pull-request comment), at most `max` characters. */
export function formatReachMarkdown(r: ReachReport & { notes?: string[]; skipped?: boolean }, max: number): string {
  const head = `#### Reachability: ${r.skipped ? 'not compared' : r.lines.length === 0 ? 'no flow opened or closed' : reachCounts(r)}\n\n`;
  if (r.lines.length === 0 && !r.notes?.length) return head;
  const notes = (r.notes ?? []).map((n) => `- ${n}\n`).join('');
  const block = (lines: ReachLine[], room: number): string => {
    let body = '';
    let shown = 0;
    for (const l of lines) {
      const text = `${formatReachLine(l)}\n`;
      if (body.length + text.length > room) break;
      body += text;
      shown++;
    }
    const more = shown < lines.length ? `_… and ${lines.length - shown} more: in the full plan._\n\n` : '';
    return `\`\`\`diff\n${body}\`\`\`\n\n${more}`;
  };
  const room = Math.max(0, max - head.length - notes.length - 400);
  const main = r.lines.length > 0 ? block(r.lines, Math.floor(room * 0.7)) : '';
  const uncovered = r.uncovered.length > 0 ? `<details><summary>${r.uncovered.length} opened flow${r.uncovered.length === 1 ? '' : 's'} no intent covers</summary>\n\n${block(r.uncovered, Math.floor(room * 0.3))}</details>\n\n` : '';
  return `${head}${notes ? `${notes}\n` : ''}${main}${uncovered}`;
}
