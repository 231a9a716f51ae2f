// The parsed form of an iptables-restore / iptables-save document, shared by
// render (provenance), analyze (evaluation, checks), plan (diff) and apply (merge).
import type { Family } from './inventory.js';

/** Where a rule came from: a template line, or a line of a live dump. */
export interface Origin {
  file: string;
  line: number;
}

export type Verdict = 'ACCEPT' | 'DROP' | 'REJECT' | 'RETURN';

export interface AddrMatch {
  /** CIDR in canonical form, e.g. 192.0.2.10/32, 0.0.0.0/0, 2001:db8::/64 */
  cidr: string;
  negate: boolean;
}

export interface NameMatch {
  /** Interface name; a trailing `+` is a prefix wildcard. */
  name: string;
  negate: boolean;
}

export interface PortMatch {
  /** Inclusive ranges. */
  ranges: Array<[number, number]>;
  negate: boolean;
  /** Written with `-m multiport` (--dports/--sports/--ports) rather than --dport/--sport. */
  multiport?: boolean;
}

/** `-m set --match-set NAME src|dst`: the address is (not) in the host's ipset NAME. */
export interface SetMatch {
  name: string;
  negate: boolean;
}

/**
 * An ipset (hash:ip) shipped with a host's rules: the members of a large group,
 * so that a group reference is one rule instead of one rule per member. Objects
 * are shared between hosts that get the same set (see render.ts).
 */
export interface IpSet {
  name: string;
  family: Family;
  /** Canonical addresses, sorted. */
  members: readonly string[];
}

/** One side of `-m addrtype`: types in iptables-save's order. */
export interface AddrTypeMatch {
  types: string[];
  negate: boolean;
}

export type CtState = 'NEW' | 'ESTABLISHED' | 'RELATED' | 'INVALID' | 'UNTRACKED';

export interface Rule {
  table: string;
  chain: string;
  /** 1-based position in its chain. */
  index: number;
  /** Matches the evaluator understands. Absent = not constrained. */
  src?: AddrMatch;
  dst?: AddrMatch;
  srcSet?: SetMatch;
  dstSet?: SetMatch;
  in?: NameMatch;
  out?: NameMatch;
  proto?: { name: string; negate: boolean };
  sport?: PortMatch;
  dport?: PortMatch;
  /** `-m multiport --ports`: source OR destination port. */
  ports?: PortMatch;
  /** conntrack --ctstate or state --state (`module` absent = conntrack). */
  state?: { states: CtState[]; negate: boolean; module?: 'conntrack' | 'state' };
  /**
   * tcp --tcp-flags MASK COMP (--syn is FIN,SYN,RST,ACK SYN): the packet's flags
   * under MASK equal COMP. Bits as TCP_FLAG in analyze/netfilter-names.ts.
   */
  tcpFlags?: { mask: number; comp: number; negate: boolean };
  /** ICMP type (numeric), with optional code; type 255 without code is iptables' `any`. */
  icmpType?: { type: number; code?: number; negate: boolean };
  /** -m addrtype --src-type / --dst-type: the address's routing type (LOCAL, UNICAST, ...), as the host sees it. */
  addrType?: { src?: AddrTypeMatch; dst?: AddrTypeMatch };
  /** -m limit: does not change a verdict but the packet may pass unmatched when over the rate.
   *  Canonical rate as iptables-save prints it, e.g. `1/sec`. */
  limit?: string;
  /** -m limit --limit-burst when not the default 5. */
  limitBurst?: number;
  /** -m comment --comment (unquoted value). */
  comment?: string;
  /**
   * Printed order of the match modules, as iptables-save keeps them: `proto` (the
   * tcp/udp/icmp/icmp6 match), `multiport:dports|sports|ports`, `set:src|dst`, `state`, `addrtype`, `limit`,
   * `comment`, `unmodelled:<i>` (index into `unmodelled`). Absent = that order.
   */
  matchOrder?: string[];
  /** Options the evaluator does not model; a packet reaching this rule gets an "unknown" verdict
   *  (unless its target cannot change a verdict).
   *  Each entry is verbatim text: a whole `-m name …` module, or options that belong inside
   *  the proto match (`--tcp-flags ALL SYN`), or a core option such as `-f`. */
  unmodelled: string[];
  /** -j / -g target: a verdict, LOG, or a user chain. */
  target?: string;
  /** `-g` rather than `-j`. */
  goto: boolean;
  /** Target options, e.g. ['--reject-with', 'tcp-reset']. */
  targetArgs: string[];
  /** The rule as iptables-save prints it, without the leading `-A CHAIN `. */
  text: string;
  /** The line of the rendered file or live dump the rule was read from. */
  origin?: Origin;
  /** The template line it was rendered from (set when the rule set is a host's render). */
  source?: Origin;
}

export interface Chain {
  name: string;
  builtin: boolean;
  /** Built-in chains only. */
  policy?: 'ACCEPT' | 'DROP';
  rules: Rule[];
  origin?: Origin;
}

export interface Table {
  name: string;
  /** In declaration order. */
  chains: Chain[];
}

export interface RuleSet {
  family: Family;
  tables: Table[];
  /** The ipsets the rules match against, by name; absent = not known (set matches evaluate to unknown). */
  sets?: ReadonlyMap<string, IpSet>;
}
