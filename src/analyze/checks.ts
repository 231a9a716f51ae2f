// Lint a rule set for mistakes iptables itself accepts: jumps to chains that do
// not exist (iptables-restore -t on nft lets them through), rules that can never
// match, closed chains that forget replies or loopback, and options we cannot judge.
import type { AddrMatch, Chain, CtState, NameMatch, PortMatch, Rule, RuleSet, SetMatch, Table } from '../model/ruleset.js';
import { cidrContains, cidrsOverlap } from './cidr.js';
import { formatRule } from './format.js';
import { EXTENSION_TARGETS, VERDICT_TARGETS } from './netfilter-names.js';

export type FindingCode = 'undefined-jump' | 'shadowed-rule' | 'no-established' | 'no-loopback' | 'unknown-match';

export interface Finding {
  severity: 'error' | 'warning';
  code: FindingCode;
  message: string;
  rule?: Rule;
  chain?: string;
}

const ALL_STATES: readonly CtState[] = ['INVALID', 'NEW', 'RELATED', 'ESTABLISHED', 'UNTRACKED'];

const where = (r: Rule): string => (r.origin ? `${r.origin.file} line ${r.origin.line}: ` : '');

// --- superset tests: does every packet matching `b` also match `a`? (false when unsure) ---

function coversAddr(a: AddrMatch | undefined, b: AddrMatch | undefined): boolean {
  if (!a) return true;
  if (!b) return false;
  if (!a.negate && !b.negate) return cidrContains(a.cidr, b.cidr);
  if (a.negate && b.negate) return cidrContains(b.cidr, a.cidr);
  if (a.negate && !b.negate) return !cidrsOverlap(a.cidr, b.cidr);
  return false;
}

function coversIface(a: NameMatch | undefined, b: NameMatch | undefined): boolean {
  if (!a) return true;
  if (!b || a.negate !== b.negate) return false;
  if (a.name === b.name) return true;
  // eth+ covers eth0 (and eth1+); negated wildcards are not worth the reasoning.
  return !a.negate && a.name.endsWith('+') && b.name.startsWith(a.name.slice(0, -1));
}

function coversPorts(a: PortMatch | undefined, b: PortMatch | undefined): boolean {
  if (!a) return true;
  if (!b) return false;
  const inside = (x: PortMatch, y: PortMatch) => y.ranges.every(([lo, hi]) => x.ranges.some(([l, h]) => l <= lo && hi <= h));
  if (!a.negate && !b.negate) return inside(a, b);
  if (a.negate && b.negate) return inside(b, a);
  return false;
}

function coversState(a: Rule['state'], b: Rule['state']): boolean {
  if (!a) return true;
  if (!b) return false;
  const bSet = b.negate ? ALL_STATES.filter((s) => !b.states.includes(s)) : b.states;
  const aSet = a.negate ? ALL_STATES.filter((s) => !a.states.includes(s)) : a.states;
  return bSet.every((s) => aSet.includes(s));
}

/** Set contents are not compared: only the same set (same negation) is known to cover. */
function coversSet(a: SetMatch | undefined, b: SetMatch | undefined): boolean {
  return !a || (b !== undefined && a.name === b.name && a.negate === b.negate);
}

function coversProto(a: Rule['proto'], b: Rule['proto']): boolean {
  if (!a) return true;
  if (!b) return false;
  if (a.negate === b.negate) return a.name === b.name;
  return a.negate && !b.negate && a.name !== b.name;
}

function coversIcmp(a: Rule['icmpType'], b: Rule['icmpType']): boolean {
  if (!a) return true;
  if (a.type === 255 && a.code === undefined && !a.negate) return true;
  if (!b || a.negate || b.negate) return JSON.stringify(a) === JSON.stringify(b);
  return a.type === b.type && (a.code === undefined || a.code === b.code);
}

/** Every constraint of `a` is weaker than (or equal to) the matching one of `b`. */
export function coversRule(a: Rule, b: Rule): boolean {
  return (
    coversAddr(a.src, b.src) &&
    coversAddr(a.dst, b.dst) &&
    coversSet(a.srcSet, b.srcSet) &&
    coversSet(a.dstSet, b.dstSet) &&
    coversIface(a.in, b.in) &&
    coversIface(a.out, b.out) &&
    coversProto(a.proto, b.proto) &&
    coversPorts(a.sport, b.sport) &&
    coversPorts(a.dport, b.dport) &&
    coversPorts(a.ports, b.ports) &&
    coversState(a.state, b.state) &&
    (!a.tcpFlags || JSON.stringify(a.tcpFlags) === JSON.stringify(b.tcpFlags)) &&
    (!a.addrType || JSON.stringify(a.addrType) === JSON.stringify(b.addrType)) &&
    coversIcmp(a.icmpType, b.icmpType)
  );
}

/** A rule after which nothing else in its chain sees the packets it matched. */
function isTerminal(r: Rule): boolean {
  if (r.limit || r.unmodelled.length > 0 || !r.target) return false;
  return VERDICT_TARGETS.has(r.target) || r.goto;
}

const isChainJump = (r: Rule): boolean =>
  r.target !== undefined && !VERDICT_TARGETS.has(r.target) && !EXTENSION_TARGETS.has(r.target);

/** Chains reachable from `start` by jumps (including itself), in walk order. */
function collectReachable(table: Table, start: Chain): Chain[] {
  const seen = new Set<Chain>([start]);
  const queue = [start];
  for (const c of queue) {
    for (const r of c.rules) {
      const next = r.target && table.chains.find((x) => x.name === r.target && !x.builtin);
      if (next && !seen.has(next)) {
        seen.add(next);
        queue.push(next);
      }
    }
  }
  return queue;
}

const isUnconditional = (r: Rule): boolean =>
  !r.src && !r.dst && !r.srcSet && !r.dstSet && !r.in && !r.out && !r.proto && !r.sport && !r.dport && !r.ports && !r.state && !r.tcpFlags && !r.addrType && !r.icmpType && !r.limit && r.unmodelled.length === 0;

/** Policy DROP, or a final unconditional DROP/REJECT: either way unmatched packets die. */
function isClosed(chain: Chain): boolean {
  const last = chain.rules[chain.rules.length - 1];
  return chain.policy === 'DROP' || (last !== undefined && isUnconditional(last) && (last.target === 'DROP' || last.target === 'REJECT'));
}

function acceptsEstablished(r: Rule): boolean {
  if (r.target !== 'ACCEPT' || r.limit || r.unmodelled.length > 0) return false;
  if (isUnconditional(r)) return true;
  // Lenient on purpose: a per-protocol or per-interface ESTABLISHED accept is a deliberate choice.
  const s = r.state;
  return s !== undefined && s.negate !== s.states.includes('ESTABLISHED');
}

function acceptsLoopback(r: Rule): boolean {
  if (r.target !== 'ACCEPT' || r.limit || r.unmodelled.length > 0) return false;
  return isUnconditional(r) || (r.in?.name === 'lo' && !r.in.negate && !r.state && !r.proto && !r.src && !r.dst && !r.srcSet && !r.dstSet);
}

export function lintRuleSet(rs: RuleSet): Finding[] {
  const findings: Finding[] = [];
  for (const table of rs.tables) {
    for (const chain of table.chains) {
      chain.rules.forEach((r, i) => {
        if (isChainJump(r) && !table.chains.some((c) => c.name === r.target)) {
          findings.push({
            severity: 'error',
            code: 'undefined-jump',
            message: `${where(r)}${formatRule(r)}: ${r.goto ? 'goto' : 'jump'} to chain ${r.target}, which is not declared in *${table.name}`,
            rule: r,
            chain: chain.name,
          });
        }
        const shadow = chain.rules.slice(0, i).find((earlier) => isTerminal(earlier) && coversRule(earlier, r));
        if (shadow) {
          findings.push({
            severity: 'warning',
            code: 'shadowed-rule',
            message: `${where(r)}${formatRule(r)}: never matches, rule ${shadow.index} (${where(shadow)}${formatRule(shadow)}) takes all its packets first`,
            rule: r,
            chain: chain.name,
          });
        }
        if (r.unmodelled.length > 0) {
          findings.push({
            severity: 'warning',
            code: 'unknown-match',
            message: `${where(r)}${formatRule(r)}: fleetfw does not model ${r.unmodelled.join(' ')}; packets reaching this rule cannot be evaluated`,
            rule: r,
            chain: chain.name,
          });
        }
      });
    }
    if (table.name !== 'filter') continue;
    // A table whose INPUT and OUTPUT accept nothing but loopback is closed on
    // purpose (seed 004's IPv6): no connection at all, so no reply to lose.
    const sealed = ['INPUT', 'OUTPUT'].every((name) => {
      const chain = table.chains.find((c) => c.name === name);
      return chain !== undefined && isClosed(chain) && collectReachable(table, chain)
        .flatMap((c) => c.rules)
        .every((r) => r.target !== 'ACCEPT' || r.in?.name === 'lo' || r.out?.name === 'lo');
    });
    for (const name of ['INPUT', 'OUTPUT']) {
      const chain = table.chains.find((c) => c.name === name);
      if (!chain || !isClosed(chain)) continue;
      const rules = collectReachable(table, chain).flatMap((c) => c.rules);
      if (!sealed && !rules.some(acceptsEstablished)) {
        findings.push({
          severity: 'warning',
          code: 'no-established',
          message: `chain ${name} drops what it does not accept, but no rule accepts ESTABLISHED,RELATED packets: replies to ${name === 'INPUT' ? 'outgoing' : 'incoming'} connections will be dropped`,
          chain: name,
        });
      }
      if (name === 'INPUT' && !rules.some(acceptsLoopback)) {
        findings.push({
          severity: 'warning',
          code: 'no-loopback',
          message: 'chain INPUT drops what it does not accept, but no rule accepts -i lo: local services talking over loopback will break',
          chain: name,
        });
      }
    }
  }
  return findings;
}
