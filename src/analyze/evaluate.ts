// Walk one packet through one table's chains at one hook. Sound rather than
// clever: whenever the outcome depends on something we do not model (an
// unmodelled match, a rate limit, a target whose effect we do not follow) the
// verdict is "unknown" and names the rule responsible. The order of tables and
// hooks a packet meets is in path.ts.
import type { Family } from '../model/inventory.js';
import type { AddrTypeMatch, Chain, CtState, IpSet, NameMatch, PortMatch, Rule, RuleSet, SetMatch } from '../model/ruleset.js';
import { cidrContains } from './cidr.js';
import { formatRule } from './format.js';
import { targetEffect, type TargetEffect } from './targets.js';

export type Hook = 'PREROUTING' | 'INPUT' | 'FORWARD' | 'OUTPUT' | 'POSTROUTING';

export interface Packet {
  family: Family;
  hook: Hook;
  /** Incoming interface; undefined = not known, so `-i` matches are unknown. The hooks without one ignore it. */
  in?: string;
  /** Outgoing interface; undefined = not known. */
  out?: string;
  src: string;
  dst: string;
  proto: 'tcp' | 'udp' | 'icmp';
  sport?: number;
  dport?: number;
  /** The connection state conntrack gives the packet (not yet known in the raw table). */
  state: CtState;
  /** TCP flags (bits of TCP_FLAG); undefined = not known, so flag matches are unknown. */
  tcpFlags?: number;
  icmpType?: number;
  icmpCode?: number;
}

/** What the evaluator knows of the host beyond its rules. */
export interface HostView {
  /** The host's own addresses: routed to it, and LOCAL for `-m addrtype`. */
  local: ReadonlySet<string>;
}

export type TraceEvent = 'match' | 'no-match' | 'jump' | 'return' | 'policy' | 'log' | 'skip' | 'rewrite' | 'notrack';

export interface TraceStep {
  table: string;
  chain: string;
  rule?: Rule;
  event: TraceEvent;
}

export type DecidedBy =
  | { kind: 'rule'; rule: Rule }
  | { kind: 'policy'; table: string; chain: string }
  | { kind: 'unmodelled'; rule: Rule; option: string };

/** The outcome of one table at one hook. `continue`: the packet goes on to the next table. */
export interface TableOutcome {
  kind: 'continue' | 'drop' | 'reject' | 'unknown';
  decidedBy: DecidedBy;
  rejectWith?: string;
  /** Set when a NOTRACK rule matched (raw). */
  notrack?: Rule;
  /** Set when an address-rewriting rule matched (nat): the new destination or source. */
  nat?: { rule: Rule; effect: Extract<TargetEffect, { kind: 'dnat' | 'snat' }> };
}

// Jumps deeper than the kernel allows, or more steps than any sane rule set needs, mean a loop.
const MAX_DEPTH = 64;
const MAX_STEPS = 100_000;

type MatchResult = true | false | { unknown: string };

const fmtNeg = (negate: boolean): string => (negate ? '! ' : '');

// The hooks that have no incoming or no outgoing interface: the kernel sees the empty name there.
const NO_IN: ReadonlySet<Hook> = new Set(['OUTPUT']);
const NO_OUT: ReadonlySet<Hook> = new Set(['PREROUTING', 'INPUT']);

function matchIface(m: NameMatch | undefined, name: string | undefined, opt: string): MatchResult {
  if (!m) return true;
  if (name === undefined) return { unknown: `${fmtNeg(m.negate)}${opt} ${m.name} (the packet's interface is not known here)` };
  const hit = m.name.endsWith('+') ? name.startsWith(m.name.slice(0, -1)) : name === m.name;
  return hit !== m.negate;
}

function matchPort(m: PortMatch, port: number | undefined, opt: string): MatchResult {
  if (port === undefined) return { unknown: `${opt} (packet port not given)` };
  const hit = m.ranges.some(([a, b]) => port >= a && port <= b);
  return hit !== m.negate;
}

// Membership tests on shared member lists: one Set per list, built on first use.
const memberIndex = new WeakMap<readonly string[], ReadonlySet<string>>();

function matchSet(m: SetMatch, addr: string, dir: 'src' | 'dst', sets: RuleSet['sets']): MatchResult {
  const set: IpSet | undefined = sets?.get(m.name);
  if (!set) return { unknown: `${fmtNeg(m.negate)}--match-set ${m.name} ${dir} (contents of set ${m.name} not known)` };
  let index = memberIndex.get(set.members);
  if (!index) memberIndex.set(set.members, (index = new Set(set.members)));
  return index.has(addr) !== m.negate;
}

/** The routing type the host gives an address: its own, multicast, the limited broadcast, or plain unicast. */
export function addressType(addr: string, family: Family, view: HostView | undefined): string {
  if (view?.local.has(addr) || cidrContains(family === 4 ? '127.0.0.0/8' : '::1/128', addr)) return 'LOCAL';
  if (cidrContains(family === 4 ? '224.0.0.0/4' : 'ff00::/8', addr)) return 'MULTICAST';
  if (family === 4 && addr === '255.255.255.255') return 'BROADCAST';
  return 'UNICAST';
}

function matchAddrType(m: AddrTypeMatch | undefined, addr: string, family: Family, view: HostView | undefined): boolean {
  return !m || m.types.includes(addressType(addr, family, view)) !== m.negate;
}

/** The packet's protocol as iptables names it in this family. */
function protoName(pkt: Packet): string {
  return pkt.proto === 'icmp' && pkt.family === 6 ? 'ipv6-icmp' : pkt.proto;
}

/**
 * What `rs` can tell apart about an address: for every rule, whether its source
 * and destination networks, sets and address types match it. Packets that differ
 * only in one address, with equal signatures, meet every rule alike and get the
 * same verdict (the listener check asks this of every private peer of every host).
 */
export function addressSignature(rs: RuleSet, addr: string, view?: HostView): string {
  const bit = (r: MatchResult): string => (r === true ? '1' : r === false ? '0' : '?');
  let sig = '';
  for (const t of rs.tables) {
    for (const c of t.chains) {
      for (const r of c.rules) {
        if (r.src) sig += bit(cidrContains(r.src.cidr, addr));
        if (r.dst) sig += bit(cidrContains(r.dst.cidr, addr));
        if (r.srcSet) sig += bit(matchSet(r.srcSet, addr, 'src', rs.sets));
        if (r.dstSet) sig += bit(matchSet(r.dstSet, addr, 'dst', rs.sets));
        if (r.addrType) sig += addressType(addr, rs.family, view)[0];
      }
    }
  }
  return sig;
}

/** Entries of `unmodelled` that decide nothing for the packets fleetfw reasons about (never fragments). */
function fragmentMatch(entry: string): MatchResult | undefined {
  if (entry === '-f') return false;
  if (entry === '! -f') return true;
  return undefined;
}

/**
 * Does `rule` match `pkt` in `table`? A definite `false` from any modelled match
 * wins over unknowns (matches are ANDed): the first unknown answers only when
 * no later match says false.
 */
export function matchRule(rule: Rule, pkt: Packet, table: string, sets?: RuleSet['sets'], view?: HostView): MatchResult {
  let unknown: { unknown: string } | undefined;
  let r: MatchResult;
  if (rule.src && cidrContains(rule.src.cidr, pkt.src) === rule.src.negate) return false;
  if (rule.dst && cidrContains(rule.dst.cidr, pkt.dst) === rule.dst.negate) return false;
  if (rule.srcSet) {
    r = matchSet(rule.srcSet, pkt.src, 'src', sets);
    if (r === false) return false;
    if (r !== true) unknown ??= r;
  }
  if (rule.dstSet) {
    r = matchSet(rule.dstSet, pkt.dst, 'dst', sets);
    if (r === false) return false;
    if (r !== true) unknown ??= r;
  }
  if (rule.in) {
    // A hook without that interface (OUTPUT has no in) has the empty name.
    r = matchIface(rule.in, NO_IN.has(pkt.hook) ? '' : pkt.in, '-i');
    if (r === false) return false;
    if (r !== true) unknown ??= r;
  }
  if (rule.out) {
    r = matchIface(rule.out, NO_OUT.has(pkt.hook) ? '' : pkt.out, '-o');
    if (r === false) return false;
    if (r !== true) unknown ??= r;
  }
  if (rule.proto && (rule.proto.name === protoName(pkt)) === rule.proto.negate) return false;
  if (rule.sport || rule.dport || rule.ports) {
    // Port matches only exist with -p tcp/udp, so a portless packet cannot match.
    if (pkt.proto !== 'tcp' && pkt.proto !== 'udp') return false;
    if (rule.sport) {
      r = matchPort(rule.sport, pkt.sport, '--sport');
      if (r === false) return false;
      if (r !== true) unknown ??= r;
    }
    if (rule.dport) {
      r = matchPort(rule.dport, pkt.dport, '--dport');
      if (r === false) return false;
      if (r !== true) unknown ??= r;
    }
    if (rule.ports) {
      r = matchEitherPort(rule.ports, pkt);
      if (r === false) return false;
      if (r !== true) unknown ??= r;
    }
  }
  if (rule.state) {
    // Conntrack runs after the raw table: a state match there sees no connection yet.
    if (table === 'raw') unknown ??= { unknown: `${rule.state.module === 'state' ? '-m state' : '-m conntrack'} in the raw table (before conntrack has seen the packet)` };
    else if (rule.state.states.includes(pkt.state) === rule.state.negate) return false;
  }
  if (rule.tcpFlags) {
    if (pkt.proto !== 'tcp') return false;
    const { mask, comp, negate } = rule.tcpFlags;
    if (pkt.tcpFlags === undefined) unknown ??= { unknown: '--tcp-flags (packet flags not given)' };
    else if (((pkt.tcpFlags & mask) === comp) === negate) return false;
  }
  if (rule.icmpType) {
    if (pkt.proto !== 'icmp') return false;
    const { type, code, negate } = rule.icmpType;
    if (type === 255 && code === undefined && pkt.family === 4) {
      if (negate) return false;
    } else if (pkt.icmpType === undefined || (code !== undefined && pkt.icmpCode === undefined)) {
      unknown ??= { unknown: '--icmp-type (packet ICMP type/code not given)' };
    } else if ((pkt.icmpType === type && (code === undefined || pkt.icmpCode === code)) === negate) {
      return false;
    }
  }
  if (rule.addrType) {
    if (!matchAddrType(rule.addrType.src, pkt.src, pkt.family, view)) return false;
    if (!matchAddrType(rule.addrType.dst, pkt.dst, pkt.family, view)) return false;
  }
  for (const entry of rule.unmodelled) {
    const frag = fragmentMatch(entry);
    if (frag === false) return false;
    if (frag === undefined) unknown ??= { unknown: entry };
  }
  return unknown ?? true;
}

/** `-m multiport --ports`: the source or the destination port. */
function matchEitherPort(m: PortMatch, pkt: Packet): MatchResult {
  const inRange = (port: number) => m.ranges.some(([a, b]) => port >= a && port <= b);
  if (pkt.sport !== undefined && inRange(pkt.sport)) return !m.negate;
  if (pkt.dport !== undefined && inRange(pkt.dport)) return !m.negate;
  if (pkt.sport === undefined || pkt.dport === undefined) return { unknown: '--ports (packet port not given)' };
  return m.negate;
}

interface Frame {
  chain: Chain;
  /** Next rule index (0-based). */
  pos: number;
}

interface TableIndex {
  /** User chains by name (jump targets). */
  chains: ReadonlyMap<string, Chain>;
  /** Built-in chains by hook. */
  hooks: ReadonlyMap<string, Chain>;
}

// Looked up once per rule set and table: evaluation asks for them for every packet.
const indexes = new WeakMap<RuleSet, Map<string, TableIndex | null>>();

/** A table's chains; undefined when the rule set has no such table. */
function tableIndex(rs: RuleSet, table: string): TableIndex | undefined {
  let byTable = indexes.get(rs);
  if (!byTable) indexes.set(rs, (byTable = new Map()));
  let idx = byTable.get(table);
  if (idx === undefined) {
    const t = rs.tables.find((x) => x.name === table);
    idx = t
      ? { chains: new Map(t.chains.filter((c) => !c.builtin).map((c) => [c.name, c])), hooks: new Map(t.chains.filter((c) => c.builtin).map((c) => [c.name, c])) }
      : null;
    byTable.set(table, idx);
  }
  return idx ?? undefined;
}

/**
 * Evaluate `pkt` against `table`'s chain for its hook. A missing table or chain
 * lets the packet through (`continue`, decided by the absent chain's policy ACCEPT).
 * `trace`, when given, receives every rule the packet meets.
 */
export function walkTable(rs: RuleSet, table: string, pkt: Packet, trace: TraceStep[] | undefined, view?: HostView): TableOutcome {
  const idx = tableIndex(rs, table);
  const base = idx?.hooks.get(pkt.hook);
  if (!idx || !base) return { kind: 'continue', decidedBy: { kind: 'policy', table, chain: pkt.hook } };
  const chains = idx.chains;
  let notrack: Rule | undefined;
  const stack: Frame[] = [{ chain: base, pos: 0 }];
  let steps = 0;
  for (;;) {
    const frame = stack[stack.length - 1];
    // Returned out of the base chain (RETURN after a goto from it): its policy decides.
    if (!frame) return policyOutcome(base, table, notrack, trace);
    const rule = frame.chain.rules[frame.pos];
    if (!rule) {
      if (stack.length === 1) return policyOutcome(base, table, notrack, trace);
      // User chain ran out: implicit RETURN.
      trace?.push({ table, chain: frame.chain.name, event: 'return' });
      stack.pop();
      continue;
    }
    frame.pos++;
    if (++steps > MAX_STEPS) return unknownOutcome(rule, 'too many steps (jump loop?)');
    const effect = targetEffect(rule, chains);
    const m = matchRule(rule, pkt, table, rs.sets, view);
    if (m === false) {
      trace?.push({ table, chain: frame.chain.name, rule, event: 'no-match' });
      continue;
    }
    // A rule that changes nothing we model is skipped whether or not it matches.
    if (effect.kind === 'continue') {
      trace?.push({ table, chain: frame.chain.name, rule, event: m === true ? (rule.target === undefined ? 'match' : 'log') : 'skip' });
      continue;
    }
    if (m !== true) {
      trace?.push({ table, chain: frame.chain.name, rule, event: 'match' });
      return unknownOutcome(rule, m.unknown);
    }
    // A rate limit may let the packet through unmatched: if it would decide anything, we cannot know.
    if (rule.limit) {
      trace?.push({ table, chain: frame.chain.name, rule, event: 'match' });
      return unknownOutcome(rule, `-m limit --limit ${rule.limit}`);
    }
    switch (effect.kind) {
      case 'verdict': {
        trace?.push({ table, chain: frame.chain.name, rule, event: 'match' });
        const decidedBy: DecidedBy = { kind: 'rule', rule };
        if (effect.verdict === 'ACCEPT') return notrack ? { kind: 'continue', decidedBy, notrack } : { kind: 'continue', decidedBy };
        return effect.verdict === 'DROP' ? { kind: 'drop', decidedBy } : { kind: 'reject', decidedBy, rejectWith: rule.targetArgs[1] ?? '' };
      }
      case 'return':
        trace?.push({ table, chain: frame.chain.name, rule, event: 'return' });
        if (stack.length === 1) return policyOutcome(base, table, notrack, trace);
        stack.pop();
        continue;
      case 'notrack':
        trace?.push({ table, chain: frame.chain.name, rule, event: 'notrack' });
        notrack = rule;
        continue;
      case 'dnat':
      case 'snat':
        trace?.push({ table, chain: frame.chain.name, rule, event: 'rewrite' });
        return { kind: 'continue', decidedBy: { kind: 'rule', rule }, nat: { rule, effect } };
      case 'undecided':
        trace?.push({ table, chain: frame.chain.name, rule, event: 'match' });
        return unknownOutcome(rule, effect.why);
      case 'chain': {
        trace?.push({ table, chain: frame.chain.name, rule, event: 'jump' });
        if (rule.goto) stack.pop();
        if (stack.length >= MAX_DEPTH) return unknownOutcome(rule, `-j ${rule.target} (jumps nest deeper than ${MAX_DEPTH}: loop?)`);
        stack.push({ chain: effect.chain, pos: 0 });
        continue;
      }
    }
  }
}

function unknownOutcome(rule: Rule, option: string): TableOutcome {
  return { kind: 'unknown', decidedBy: { kind: 'unmodelled', rule, option } };
}

function policyOutcome(base: Chain, table: string, notrack: Rule | undefined, trace: TraceStep[] | undefined): TableOutcome {
  trace?.push({ table, chain: base.name, event: 'policy' });
  const decidedBy: DecidedBy = { kind: 'policy', table, chain: base.name };
  if (base.policy === 'DROP') return { kind: 'drop', decidedBy };
  return notrack ? { kind: 'continue', decidedBy, notrack } : { kind: 'continue', decidedBy };
}

export interface Evaluation {
  verdict: 'ACCEPT' | 'DROP' | 'REJECT' | 'unknown';
  rejectWith?: string;
  decidedBy: DecidedBy;
  trace: TraceStep[];
}

/** Evaluate `pkt` against the filter table alone, at its hook (rule-level tests and tools). */
export function evaluatePacket(rs: RuleSet, pkt: Packet, view?: HostView): Evaluation {
  const trace: TraceStep[] = [];
  const o = walkTable(rs, 'filter', pkt, trace, view);
  const verdict = o.kind === 'continue' ? 'ACCEPT' : o.kind === 'drop' ? 'DROP' : o.kind === 'reject' ? 'REJECT' : 'unknown';
  return { verdict, decidedBy: o.decidedBy, trace, ...(o.rejectWith !== undefined ? { rejectWith: o.rejectWith } : {}) };
}

/** `templates/roles/db.v4:3, rules.v4 line 14: -A INPUT -j DROP`; `policy DROP of chain INPUT`; or why it is unknown. */
export function describeDecision(ev: { verdict: string; decidedBy: DecidedBy }): string {
  const d = ev.decidedBy;
  if (d.kind === 'policy') return `policy ${ev.verdict === 'unknown' ? 'ACCEPT' : ev.verdict} of ${d.table === 'filter' ? '' : `${d.table} `}chain ${d.chain}`;
  const text = `${describeOrigin(d.rule)}${formatRule(d.rule)}${d.rule.table === 'filter' ? '' : ` (${d.rule.table} table)`}`;
  return d.kind === 'unmodelled' ? `${text} (cannot evaluate: ${d.option})` : text;
}

/** `templates/roles/db.v4:3, rules.v4 line 14: ` — the template line first when known. */
export function describeOrigin(rule: Rule): string {
  const parts: string[] = [];
  if (rule.source) parts.push(`${rule.source.file}:${rule.source.line}`);
  if (rule.origin) parts.push(`${rule.origin.file} line ${rule.origin.line}`);
  return parts.length > 0 ? `${parts.join(', ')}: ` : '';
}
