// Walk one packet through the filter table of a RuleSet. Sound rather than
// clever: whenever the outcome depends on something we do not model (an
// unmodelled option, a rate limit, a missing packet detail) the verdict is
// "unknown" and names the rule responsible.
import type { Family } from '../model/inventory.js';
import type { Chain, CtState, IpSet, NameMatch, PortMatch, Rule, RuleSet, SetMatch } from '../model/ruleset.js';
import { cidrContains } from './cidr.js';
import { formatRule } from './format.js';
import { VERDICT_TARGETS } from './netfilter-names.js';

export type Hook = 'INPUT' | 'OUTPUT' | 'FORWARD';

export interface Packet {
  family: Family;
  hook: Hook;
  /** Incoming interface (INPUT, FORWARD); undefined = not known, so `-i` matches are unknown. */
  in?: string;
  /** Outgoing interface (OUTPUT, FORWARD). */
  out?: string;
  src: string;
  dst: string;
  proto: 'tcp' | 'udp' | 'icmp';
  sport?: number;
  dport?: number;
  state: 'NEW' | 'ESTABLISHED' | 'RELATED' | 'INVALID';
  /** Bare SYN (SYN set; FIN, RST, ACK clear). Defaults to true for tcp NEW. */
  syn?: boolean;
  icmpType?: number;
  icmpCode?: number;
}

export type TraceEvent = 'match' | 'no-match' | 'jump' | 'return' | 'policy' | 'log';

export interface TraceStep {
  chain: string;
  rule?: Rule;
  event: TraceEvent;
}

export type DecidedBy =
  | { kind: 'rule'; rule: Rule }
  | { kind: 'policy'; table: string; chain: string }
  | { kind: 'unmodelled'; rule: Rule; option: string };

export interface Evaluation {
  verdict: 'ACCEPT' | 'DROP' | 'REJECT' | 'unknown';
  rejectWith?: string;
  decidedBy: DecidedBy;
  trace: TraceStep[];
}

// Jumps deeper than the kernel allows, or more steps than any sane rule set needs, mean a loop.
const MAX_DEPTH = 64;
const MAX_STEPS = 100_000;

type MatchResult = true | false | { unknown: string };

const fmtNeg = (negate: boolean): string => (negate ? '! ' : '');

function matchIface(m: NameMatch | undefined, name: string | undefined, opt: string): MatchResult {
  if (!m) return true;
  if (name === undefined) return { unknown: `${fmtNeg(m.negate)}${opt} ${m.name} (packet interface not given)` };
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

/** The packet's protocol as iptables names it in this family. */
function protoName(pkt: Packet): string {
  return pkt.proto === 'icmp' && pkt.family === 6 ? 'ipv6-icmp' : pkt.proto;
}

/**
 * What `rs` can tell apart about an address: for every rule, whether its source
 * and destination networks and sets match it. Packets that differ only in one
 * address, with equal signatures, meet every rule alike and get the same verdict
 * (the listener check asks this of every private peer of every host: O(N²) flows).
 */
export function addressSignature(rs: RuleSet, addr: string): string {
  const bit = (r: MatchResult): string => (r === true ? '1' : r === false ? '0' : '?');
  let sig = '';
  for (const t of rs.tables) {
    for (const c of t.chains) {
      for (const r of c.rules) {
        if (r.src) sig += bit(cidrContains(r.src.cidr, addr));
        if (r.dst) sig += bit(cidrContains(r.dst.cidr, addr));
        if (r.srcSet) sig += bit(matchSet(r.srcSet, addr, 'src', rs.sets));
        if (r.dstSet) sig += bit(matchSet(r.dstSet, addr, 'dst', rs.sets));
      }
    }
  }
  return sig;
}

/** Does `rule` match `pkt`? A definite `false` from any modelled match wins over unknowns (matches are ANDed). */
export function matchRule(rule: Rule, pkt: Packet, sets?: RuleSet['sets']): MatchResult {
  // The first unknown answers, unless a later modelled match says false.
  let unknown: { unknown: string } | undefined;
  const check = (r: MatchResult): boolean => {
    if (typeof r === 'object') unknown ??= r;
    return r === false;
  };
  if (rule.src && check(cidrContains(rule.src.cidr, pkt.src) !== rule.src.negate)) return false;
  if (rule.dst && check(cidrContains(rule.dst.cidr, pkt.dst) !== rule.dst.negate)) return false;
  if (rule.srcSet && check(matchSet(rule.srcSet, pkt.src, 'src', sets))) return false;
  if (rule.dstSet && check(matchSet(rule.dstSet, pkt.dst, 'dst', sets))) return false;
  // A hook without that interface (INPUT has no out) has the empty name.
  const inName = pkt.hook === 'OUTPUT' ? '' : pkt.in;
  const outName = pkt.hook === 'INPUT' ? '' : pkt.out;
  if (check(matchIface(rule.in, inName, '-i'))) return false;
  if (check(matchIface(rule.out, outName, '-o'))) return false;
  if (rule.proto && check((rule.proto.name === protoName(pkt)) !== rule.proto.negate)) return false;
  const hasPorts = pkt.proto === 'tcp' || pkt.proto === 'udp';
  if (rule.sport || rule.dport || rule.ports) {
    // Port matches only exist with -p tcp/udp, so a portless packet cannot match.
    if (!hasPorts) return false;
    if (rule.sport && check(matchPort(rule.sport, pkt.sport, '--sport'))) return false;
    if (rule.dport && check(matchPort(rule.dport, pkt.dport, '--dport'))) return false;
    if (rule.ports) {
      const either = [matchPort({ ...rule.ports, negate: false }, pkt.sport, '--ports'), matchPort({ ...rule.ports, negate: false }, pkt.dport, '--ports')];
      const unknown = either.find((r) => typeof r === 'object');
      const hit = either.includes(true);
      if (check(unknown && !hit ? unknown : hit !== rule.ports.negate)) return false;
    }
  }
  if (rule.state && check(rule.state.states.includes(pkt.state as CtState) !== rule.state.negate)) return false;
  if (rule.syn) {
    if (pkt.proto !== 'tcp') return false;
    const syn = pkt.syn ?? pkt.state === 'NEW';
    if (check(syn !== rule.syn.negate)) return false;
  }
  if (rule.icmpType) {
    if (pkt.proto !== 'icmp') return false;
    const { type, code, negate } = rule.icmpType;
    if (type === 255 && code === undefined && pkt.family === 4) {
      if (check(!negate)) return false;
    } else if (pkt.icmpType === undefined || (code !== undefined && pkt.icmpCode === undefined)) {
      check({ unknown: '--icmp-type (packet ICMP type/code not given)' });
    } else {
      const hit = pkt.icmpType === type && (code === undefined || pkt.icmpCode === code);
      if (check(hit !== negate)) return false;
    }
  }
  if (unknown) return unknown;
  if (rule.unmodelled.length > 0) return { unknown: rule.unmodelled.join(' ') };
  return true;
}

interface Frame {
  chain: Chain;
  /** Next rule index (0-based). */
  pos: number;
}

/** Evaluate `pkt` against the filter table of `rs`. */
export function evaluatePacket(rs: RuleSet, pkt: Packet): Evaluation {
  const trace: TraceStep[] = [];
  const filter = rs.tables.find((t) => t.name === 'filter');
  const base = filter?.chains.find((c) => c.name === pkt.hook);
  // No filter table (or no such chain) means netfilter accepts.
  if (!filter || !base) {
    trace.push({ chain: pkt.hook, event: 'policy' });
    return { verdict: 'ACCEPT', decidedBy: { kind: 'policy', table: 'filter', chain: pkt.hook }, trace };
  }
  const unknown = (rule: Rule, option: string): Evaluation => ({ verdict: 'unknown', decidedBy: { kind: 'unmodelled', rule, option }, trace });
  const stack: Frame[] = [{ chain: base, pos: 0 }];
  let steps = 0;
  for (;;) {
    const frame = stack[stack.length - 1];
    if (!frame) {
      // Returned out of the base chain (RETURN after a goto from it): its policy decides.
      return policyOf(base);
    }
    const rule = frame.chain.rules[frame.pos];
    if (!rule) {
      if (frame.chain === base && stack.length === 1) return policyOf(base);
      // User chain ran out: implicit RETURN.
      trace.push({ chain: frame.chain.name, event: 'return' });
      stack.pop();
      continue;
    }
    frame.pos++;
    if (++steps > MAX_STEPS) return unknown(rule, 'too many steps (jump loop?)');
    const m = matchRule(rule, pkt, rs.sets);
    if (m === false) {
      trace.push({ chain: frame.chain.name, rule, event: 'no-match' });
      continue;
    }
    if (m !== true) {
      trace.push({ chain: frame.chain.name, rule, event: 'match' });
      return unknown(rule, m.unknown);
    }
    const target = rule.target;
    if (target === undefined) {
      trace.push({ chain: frame.chain.name, rule, event: 'match' }); // counting rule: no effect
      continue;
    }
    if (target === 'LOG') {
      trace.push({ chain: frame.chain.name, rule, event: 'log' });
      continue;
    }
    // A rate limit may let the packet through unmatched: if it would decide anything, we cannot know.
    if (rule.limit) {
      trace.push({ chain: frame.chain.name, rule, event: 'match' });
      return unknown(rule, `-m limit --limit ${rule.limit}`);
    }
    if (target === 'RETURN') {
      trace.push({ chain: frame.chain.name, rule, event: 'return' });
      if (stack.length === 1 && frame.chain === base) return policyOf(base);
      stack.pop();
      continue;
    }
    if (VERDICT_TARGETS.has(target)) {
      trace.push({ chain: frame.chain.name, rule, event: 'match' });
      const verdict = target as 'ACCEPT' | 'DROP' | 'REJECT';
      const ev: Evaluation = { verdict, decidedBy: { kind: 'rule', rule }, trace };
      if (verdict === 'REJECT') ev.rejectWith = rule.targetArgs[1];
      return ev;
    }
    const next = filter.chains.find((c) => c.name === target && !c.builtin);
    if (!next) {
      trace.push({ chain: frame.chain.name, rule, event: 'match' });
      return unknown(rule, `${rule.goto ? '-g' : '-j'} ${target}${filter.chains.some((c) => c.name === target) ? ' (built-in chain)' : ''}`);
    }
    trace.push({ chain: frame.chain.name, rule, event: 'jump' });
    if (rule.goto) stack.pop();
    if (stack.length >= MAX_DEPTH) return unknown(rule, `-j ${target} (jumps nest deeper than ${MAX_DEPTH}: loop?)`);
    stack.push({ chain: next, pos: 0 });
  }

  function policyOf(chain: Chain): Evaluation {
    trace.push({ chain: chain.name, event: 'policy' });
    return { verdict: chain.policy ?? 'ACCEPT', decidedBy: { kind: 'policy', table: 'filter', chain: chain.name }, trace };
  }
}

/** `rules.v4 line 14: -A INPUT -j DROP`, `policy DROP of chain INPUT`, or why it is unknown. */
export function describeDecision(ev: Evaluation): string {
  const d = ev.decidedBy;
  if (d.kind === 'policy') return `policy ${ev.verdict} of chain ${d.chain}`;
  const where = d.rule.origin ? `${d.rule.origin.file} line ${d.rule.origin.line}: ` : '';
  const text = `${where}${formatRule(d.rule)}`;
  return d.kind === 'unmodelled' ? `${text} (cannot evaluate: ${d.option})` : text;
}
