// Print rules and rule sets exactly as iptables-save v1.8.9 (nft) does, so a
// rendered rule set and a live dump compare textually (see format.test.ts,
// which checks this against the real iptables-save in a network namespace).
import type { AddrTypeMatch, PortMatch, Rule, RuleSet } from '../model/ruleset.js';
import { BUILTIN_CHAINS, formatTcpFlags, TABLE_ORDER } from './netfilter-names.js';

const SAFE_CHARS = /^[A-Za-z0-9_-]+$/;

/** xtables_save_string: bare when only [A-Za-z0-9_-], else double-quoted with \ " ' escaped. */
/**
 * The iptables whose iptables-save output this formatter reproduces byte for
 * byte (format.test.ts checks it against the real tool). Hosts running exactly
 * this version skip the host-side canonicalisation of a live plan.
 */
export const FORMAT_VERIFIED_AGAINST = '1.8.9-nf_tables';

export function saveString(value: string): string {
  return SAFE_CHARS.test(value) ? value : `"${value.replace(/["'\\]/g, (c) => `\\${c}`)}"`;
}

/** Minimal quoting for verbatim tokens: only what our (and iptables') tokenizer needs. */
export function quoteToken(value: string): string {
  return /^[^\s"\\]+$/.test(value) ? value : `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

const not = (negate: boolean): string => (negate ? '! ' : '');

function formatPorts(p: PortMatch): string {
  return p.ranges.map(([a, b]) => (a === b ? String(a) : `${a}:${b}`)).join(',');
}

/**
 * A tcp/udp port option as iptables-nft saves it: a negated range that starts at 0
 * comes back as the equivalent range above it (`! --dport 0:1023` as `--dport 1024:65535`).
 */
function formatPortOption(name: 'sport' | 'dport', p: PortMatch): string {
  const [lo, hi] = p.ranges[0] ?? [0, 0];
  if (p.negate && p.ranges.length === 1 && lo === 0 && hi > 0 && hi < 65535) {
    return `--${name} ${hi + 1 === 65535 ? '65535' : `${hi + 1}:65535`}`;
  }
  return `${not(p.negate)}--${name} ${formatPorts(p)}`;
}

/** Entries of `unmodelled` that live inside the tcp/udp/icmp match (e.g. `--tcp-flags ALL SYN`). */
export function isProtoInnerOption(entry: string): boolean {
  return /^(! )?--/.test(entry);
}

function protoModule(rule: Rule): string {
  const name = rule.proto?.name;
  return name === 'ipv6-icmp' ? 'icmp6' : (name ?? 'tcp');
}

function formatProtoMatch(rule: Rule): string {
  const parts = [`-m ${protoModule(rule)}`];
  const inner = rule.unmodelled.filter(isProtoInnerOption);
  if (rule.sport && !rule.sport.multiport) parts.push(formatPortOption('sport', rule.sport));
  if (rule.dport && !rule.dport.multiport) parts.push(formatPortOption('dport', rule.dport));
  parts.push(...inner);
  const f = rule.tcpFlags;
  if (f) parts.push(`${not(f.negate)}--tcp-flags ${formatTcpFlags(f.mask)} ${formatTcpFlags(f.comp)}`);
  if (rule.icmpType) {
    const { type, code, negate } = rule.icmpType;
    const spec = type === 255 && code === undefined ? 'any' : code === undefined ? String(type) : `${type}/${code}`;
    parts.push(`${not(negate)}--icmp${rule.proto?.name === 'ipv6-icmp' ? 'v6' : ''}-type ${spec}`);
  }
  return parts.join(' ');
}

/** The order used when a rule carries no `matchOrder` (e.g. built by hand). */
function pickDefaultOrder(rule: Rule): string[] {
  const order: string[] = [];
  const plain = (p?: PortMatch): boolean => p !== undefined && !p.multiport;
  if (plain(rule.sport) || plain(rule.dport) || rule.tcpFlags || rule.icmpType || rule.unmodelled.some(isProtoInnerOption)) {
    order.push('proto');
  }
  if (rule.dport?.multiport) order.push('multiport:dports');
  if (rule.sport?.multiport) order.push('multiport:sports');
  if (rule.ports) order.push('multiport:ports');
  if (rule.srcSet) order.push('set:src');
  if (rule.dstSet) order.push('set:dst');
  if (rule.state) order.push('state');
  if (rule.addrType) order.push('addrtype');
  if (rule.limit) order.push('limit');
  if (rule.comment !== undefined) order.push('comment');
  rule.unmodelled.forEach((e, i) => {
    if (!isProtoInnerOption(e)) order.push(`unmodelled:${i}`);
  });
  return order;
}

function formatMatch(rule: Rule, key: string): string | undefined {
  const multiport = (p: PortMatch | undefined, opt: string): string | undefined =>
    p && `-m multiport ${not(p.negate)}--${opt} ${formatPorts(p)}`;
  switch (key) {
    case 'proto':
      return formatProtoMatch(rule);
    case 'multiport:dports':
      return multiport(rule.dport, 'dports');
    case 'multiport:sports':
      return multiport(rule.sport, 'sports');
    case 'multiport:ports':
      return multiport(rule.ports, 'ports');
    case 'set:src':
    case 'set:dst': {
      const m = key === 'set:src' ? rule.srcSet : rule.dstSet;
      return m && `-m set ${not(m.negate)}--match-set ${m.name} ${key.slice(4)}`;
    }
    case 'state': {
      const s = rule.state;
      if (!s) return undefined;
      const opt = s.module === 'state' ? '-m state' : '-m conntrack';
      return `${opt} ${not(s.negate)}--${s.module === 'state' ? 'state' : 'ctstate'} ${s.states.join(',')}`;
    }
    case 'addrtype': {
      const a = rule.addrType;
      const side = (m: AddrTypeMatch | undefined, opt: string) => (m ? [`${not(m.negate)}--${opt} ${m.types.join(',')}`] : []);
      return a && ['-m addrtype', ...side(a.src, 'src-type'), ...side(a.dst, 'dst-type')].join(' ');
    }
    case 'limit':
      return rule.limit && `-m limit --limit ${rule.limit}${rule.limitBurst ? ` --limit-burst ${rule.limitBurst}` : ''}`;
    case 'comment':
      return rule.comment === undefined ? undefined : `-m comment --comment ${saveString(rule.comment)}`;
    default: {
      const m = /^unmodelled:(\d+)$/.exec(key);
      return m ? rule.unmodelled[Number(m[1])] : undefined;
    }
  }
}

function formatTargetArgs(args: string[]): string[] {
  // Free-text values are printed with xtables_save_string; everything else as is.
  return args.map((a, i) => (i > 0 && /^--(log-prefix|comment|nflog-prefix)$/.test(args[i - 1] ?? '') ? saveString(a) : quoteToken(a)));
}

/** The rule as iptables-save prints it, without the leading `-A CHAIN `. */
export function formatRuleSpec(rule: Rule): string {
  const parts: string[] = [];
  if (rule.src) parts.push(`${not(rule.src.negate)}-s ${rule.src.cidr}`);
  if (rule.dst) parts.push(`${not(rule.dst.negate)}-d ${rule.dst.cidr}`);
  if (rule.in) parts.push(`${not(rule.in.negate)}-i ${rule.in.name}`);
  if (rule.out) parts.push(`${not(rule.out.negate)}-o ${rule.out.name}`);
  if (rule.proto) parts.push(`${not(rule.proto.negate)}-p ${rule.proto.name}`);
  for (const key of rule.matchOrder ?? pickDefaultOrder(rule)) {
    const text = formatMatch(rule, key);
    if (text) parts.push(text);
  }
  if (rule.target) parts.push(`${rule.goto ? '-g' : '-j'} ${rule.target}`, ...formatTargetArgs(rule.targetArgs));
  return parts.join(' ');
}

/** One `-A CHAIN …` line. */
export function formatRule(rule: Rule): string {
  const spec = formatRuleSpec(rule);
  return spec ? `-A ${rule.chain} ${spec}` : `-A ${rule.chain}`;
}

const compareBytes = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The whole document as iptables-save prints it: tables in iptables-nft's order, every
 * built-in chain (ACCEPT when undeclared), user chains sorted by name, counters [0:0].
 */
export function formatRuleSet(rs: RuleSet): string {
  const out: string[] = [];
  const tables = [...rs.tables].sort(
    (a, b) => TABLE_ORDER.indexOf(a.name as (typeof TABLE_ORDER)[number]) - TABLE_ORDER.indexOf(b.name as (typeof TABLE_ORDER)[number]),
  );
  for (const table of tables) {
    const builtins = BUILTIN_CHAINS[table.name] ?? [];
    const chains = [
      ...builtins.map((name) => table.chains.find((c) => c.name === name) ?? { name, builtin: true, policy: 'ACCEPT' as const, rules: [] }),
      ...table.chains.filter((c) => !builtins.includes(c.name)).sort((a, b) => compareBytes(a.name, b.name)),
    ];
    out.push(`*${table.name}`);
    for (const c of chains) out.push(`:${c.name} ${builtins.includes(c.name) ? (c.policy ?? 'ACCEPT') : '-'} [0:0]`);
    for (const c of chains) for (const r of c.rules) out.push(formatRule(r));
    out.push('COMMIT');
  }
  return out.length ? `${out.join('\n')}\n` : '';
}

/** Targets whose options this formatter prints as iptables-save does (the rest keep their options as written). */
const FORMATTED_TARGETS = new Set(['ACCEPT', 'DROP', 'REJECT', 'RETURN', 'LOG', 'NOTRACK']);

/**
 * Does this formatter print every rule of `rs` exactly as iptables-save would?
 * Not when a rule keeps options verbatim (an unmodelled match, an extension
 * target's options): those are printed as written, which may be another spelling.
 */
export function isFormatExact(rs: RuleSet): boolean {
  const userChains = new Set(rs.tables.flatMap((t) => t.chains.filter((c) => !c.builtin).map((c) => c.name)));
  return rs.tables.every((t) =>
    t.chains.every((c) =>
      c.rules.every((r) => r.unmodelled.length === 0 && (r.target === undefined || FORMATTED_TARGETS.has(r.target) || (userChains.has(r.target) && r.targetArgs.length === 0))),
    ),
  );
}
