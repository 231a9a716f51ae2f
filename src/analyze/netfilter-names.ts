// Name tables of iptables 1.8.9 (libxt_icmp, libip6t_icmp6, libxt_REJECT, libxt_LOG,
// /etc/protocols), so that parse and format agree with what iptables-save prints.
import type { Family } from '../model/inventory.js';

/** Built-in chains per table, in the order iptables-save prints them. */
export const BUILTIN_CHAINS: Readonly<Record<string, readonly string[]>> = {
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  security: ['INPUT', 'FORWARD', 'OUTPUT'],
  raw: ['PREROUTING', 'OUTPUT'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
};

/** iptables-nft prints tables in this order (its table enum), whatever the input order. */
export const TABLE_ORDER = ['mangle', 'security', 'raw', 'filter', 'nat'] as const;

/** Targets the evaluator decides on; anything else that is not a chain is an extension. */
export const VERDICT_TARGETS = new Set(['ACCEPT', 'DROP', 'REJECT', 'RETURN']);

/** Extension targets that exist in iptables (so `-j NAME` is not a jump to a missing chain). */
export const EXTENSION_TARGETS = new Set([
  'LOG', 'NFLOG', 'NFQUEUE', 'QUEUE', 'MARK', 'CONNMARK', 'CT', 'NOTRACK', 'TRACE', 'MASQUERADE',
  'SNAT', 'DNAT', 'REDIRECT', 'NETMAP', 'TCPMSS', 'CLASSIFY', 'DSCP', 'TOS', 'TTL', 'HL', 'TEE',
  'AUDIT', 'CHECKSUM', 'SET', 'SECMARK', 'CONNSECMARK', 'IDLETIMER', 'LED', 'SYNPROXY', 'TPROXY',
  'ULOG', 'CLUSTERIP', 'ECN', 'RATEEST', 'HMARK', 'TCPOPTSTRIP', 'DNPT', 'SNPT',
]);

/**
 * Match extensions of iptables 1.8.9 (libxt_*, libipt_*, libip6t_*): `-m NAME` with any
 * other name fails to load. The analysis keeps unknown modules of live rules verbatim
 * (fail closed); a template naming one is a mistake.
 */
export const MATCH_MODULES: ReadonlySet<string> = new Set([
  'addrtype', 'ah', 'bpf', 'cgroup', 'cluster', 'comment', 'connbytes', 'connlabel', 'connlimit', 'connmark',
  'conntrack', 'cpu', 'dccp', 'devgroup', 'dscp', 'dst', 'ecn', 'esp', 'eui64', 'frag', 'hashlimit', 'hbh',
  'helper', 'hl', 'icmp', 'icmp6', 'ipcomp', 'iprange', 'ipv6header', 'ipvs', 'length', 'limit', 'mac', 'mark',
  'mh', 'multiport', 'nfacct', 'osf', 'owner', 'physdev', 'pkttype', 'policy', 'quota', 'rateest', 'realm',
  'recent', 'rpfilter', 'rt', 'sctp', 'set', 'socket', 'srh', 'state', 'statistic', 'string', 'tcp', 'tcpmss',
  'time', 'tos', 'ttl', 'u32', 'udp',
]);

export interface IcmpName {
  type: number;
  code?: number;
}

// Code undefined = every code of that type (iptables prints just the type).
const ICMP4: Record<string, IcmpName> = {
  any: { type: 255 },
  'echo-reply': { type: 0 },
  pong: { type: 0 },
  'destination-unreachable': { type: 3 },
  'network-unreachable': { type: 3, code: 0 },
  'host-unreachable': { type: 3, code: 1 },
  'protocol-unreachable': { type: 3, code: 2 },
  'port-unreachable': { type: 3, code: 3 },
  'fragmentation-needed': { type: 3, code: 4 },
  'source-route-failed': { type: 3, code: 5 },
  'network-unknown': { type: 3, code: 6 },
  'host-unknown': { type: 3, code: 7 },
  'network-prohibited': { type: 3, code: 9 },
  'host-prohibited': { type: 3, code: 10 },
  'TOS-network-unreachable': { type: 3, code: 11 },
  'TOS-host-unreachable': { type: 3, code: 12 },
  'communication-prohibited': { type: 3, code: 13 },
  'host-precedence-violation': { type: 3, code: 14 },
  'precedence-cutoff': { type: 3, code: 15 },
  'source-quench': { type: 4 },
  redirect: { type: 5 },
  'network-redirect': { type: 5, code: 0 },
  'host-redirect': { type: 5, code: 1 },
  'TOS-network-redirect': { type: 5, code: 2 },
  'TOS-host-redirect': { type: 5, code: 3 },
  'echo-request': { type: 8 },
  ping: { type: 8 },
  'router-advertisement': { type: 9 },
  'router-solicitation': { type: 10 },
  'time-exceeded': { type: 11 },
  'ttl-exceeded': { type: 11 },
  'ttl-zero-during-transit': { type: 11, code: 0 },
  'ttl-zero-during-reassembly': { type: 11, code: 1 },
  'parameter-problem': { type: 12 },
  'ip-header-bad': { type: 12, code: 0 },
  'required-option-missing': { type: 12, code: 1 },
  'timestamp-request': { type: 13 },
  'timestamp-reply': { type: 14 },
  'address-mask-request': { type: 17 },
  'address-mask-reply': { type: 18 },
};

const ICMP6: Record<string, IcmpName> = {
  'destination-unreachable': { type: 1 },
  'no-route': { type: 1, code: 0 },
  'communication-prohibited': { type: 1, code: 1 },
  'beyond-scope': { type: 1, code: 2 },
  'address-unreachable': { type: 1, code: 3 },
  'port-unreachable': { type: 1, code: 4 },
  'failed-policy': { type: 1, code: 5 },
  'reject-route': { type: 1, code: 6 },
  'packet-too-big': { type: 2 },
  'time-exceeded': { type: 3 },
  'ttl-exceeded': { type: 3 },
  'ttl-zero-during-transit': { type: 3, code: 0 },
  'ttl-zero-during-reassembly': { type: 3, code: 1 },
  'parameter-problem': { type: 4 },
  'bad-header': { type: 4, code: 0 },
  'unknown-header-type': { type: 4, code: 1 },
  'unknown-option': { type: 4, code: 2 },
  'echo-request': { type: 128 },
  ping: { type: 128 },
  'echo-reply': { type: 129 },
  pong: { type: 129 },
  'router-solicitation': { type: 133 },
  'router-advertisement': { type: 134 },
  'neighbour-solicitation': { type: 135 },
  'neighbor-solicitation': { type: 135 },
  'neighbour-advertisement': { type: 136 },
  'neighbor-advertisement': { type: 136 },
  redirect: { type: 137 },
};

export function listIcmpNames(family: Family): string[] {
  return Object.keys(family === 4 ? ICMP4 : ICMP6);
}

/** `echo-request`, `8`, `3/4` → type/code; undefined when not a valid spec. */
export function lookupIcmpType(spec: string, family: Family): IcmpName | undefined {
  const named = (family === 4 ? ICMP4 : ICMP6)[spec];
  if (named) return named;
  const m = /^(\d{1,3})(?:\/(\d{1,3}))?$/.exec(spec);
  if (!m) return undefined;
  const type = Number(m[1]);
  const code = m[2] === undefined ? undefined : Number(m[2]);
  if (type > 255 || (code !== undefined && code > 255)) return undefined;
  return code === undefined ? { type } : { type, code };
}

const REJECT4: Record<string, string> = {
  'icmp-net-unreachable': 'icmp-net-unreachable',
  'net-unreach': 'icmp-net-unreachable',
  'icmp-host-unreachable': 'icmp-host-unreachable',
  'host-unreach': 'icmp-host-unreachable',
  'icmp-proto-unreachable': 'icmp-proto-unreachable',
  'proto-unreach': 'icmp-proto-unreachable',
  'icmp-port-unreachable': 'icmp-port-unreachable',
  'port-unreach': 'icmp-port-unreachable',
  'icmp-net-prohibited': 'icmp-net-prohibited',
  'net-prohib': 'icmp-net-prohibited',
  'icmp-host-prohibited': 'icmp-host-prohibited',
  'host-prohib': 'icmp-host-prohibited',
  'tcp-reset': 'tcp-reset',
  'tcp-rst': 'tcp-reset',
  'icmp-admin-prohibited': 'icmp-admin-prohibited',
  'admin-prohib': 'icmp-admin-prohibited',
};

const REJECT6: Record<string, string> = {
  'icmp6-no-route': 'icmp6-no-route',
  'no-route': 'icmp6-no-route',
  'icmp6-adm-prohibited': 'icmp6-adm-prohibited',
  'adm-prohibited': 'icmp6-adm-prohibited',
  'icmp6-addr-unreachable': 'icmp6-addr-unreachable',
  'addr-unreach': 'icmp6-addr-unreachable',
  'icmp6-port-unreachable': 'icmp6-port-unreachable',
  'port-unreach': 'icmp6-port-unreachable',
  'tcp-reset': 'tcp-reset',
  'icmp6-policy-fail': 'icmp6-policy-fail',
  'policy-fail': 'icmp6-policy-fail',
  'icmp6-reject-route': 'icmp6-reject-route',
  'reject-route': 'icmp6-reject-route',
};

export function listRejectNames(family: Family): string[] {
  return Object.keys(family === 4 ? REJECT4 : REJECT6);
}

export function canonicaliseRejectWith(name: string, family: Family): string | undefined {
  return (family === 4 ? REJECT4 : REJECT6)[name];
}

export function defaultRejectWith(family: Family): string {
  return family === 4 ? 'icmp-port-unreachable' : 'icmp6-port-unreachable';
}

/** syslog levels accepted by --log-level; iptables-save prints the number, omitting 4. */
export const LOG_LEVELS: Readonly<Record<string, number>> = {
  emerg: 0, panic: 0, alert: 1, crit: 2, error: 3, warning: 4, notice: 5, info: 6, debug: 7,
};
export const DEFAULT_LOG_LEVEL = 4;

/** LOG flags in the order iptables-save prints them. */
export const LOG_FLAGS = ['--log-tcp-sequence', '--log-tcp-options', '--log-ip-options', '--log-uid', '--log-macdecode'];

// /etc/protocols of Debian 12 for the numbers iptables-save turns into names.
const PROTO_BY_NUMBER: Record<number, string> = {
  1: 'icmp', 2: 'igmp', 4: 'ipencap', 6: 'tcp', 17: 'udp', 41: 'ipv6', 47: 'gre', 50: 'esp', 51: 'ah',
  58: 'ipv6-icmp', 89: 'ospf', 103: 'pim', 112: 'vrrp', 132: 'sctp', 136: 'udplite',
};
const PROTO_ALIASES: Record<string, string> = { icmpv6: 'ipv6-icmp', 'ipv6-icmp': 'ipv6-icmp' };

/** `TCP`, `6`, `icmpv6` → canonical name; `all`/`0` → 'all'; undefined when unknown. */
export function canonicaliseProto(spec: string): string | undefined {
  const s = spec.toLowerCase();
  if (s === 'all' || s === '0') return 'all';
  if (/^\d{1,3}$/.test(s)) {
    const n = Number(s);
    if (n > 255) return undefined;
    return PROTO_BY_NUMBER[n] ?? String(n);
  }
  if (PROTO_ALIASES[s]) return PROTO_ALIASES[s];
  return Object.values(PROTO_BY_NUMBER).includes(s) ? s : undefined;
}

/** TCP flag bits as libxt_tcp names them, in the order iptables-save prints them. */
export const TCP_FLAG: Readonly<Record<string, number>> = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16, URG: 32 };
export const TCP_FLAG_ALL = 63;

/** `SYN,ACK`, `ALL`, `NONE` → bits; undefined when a name is unknown. */
export function parseTcpFlags(list: string): number | undefined {
  let bits = 0;
  for (const name of list.toUpperCase().split(',')) {
    if (name === 'ALL') bits |= TCP_FLAG_ALL;
    else if (name === 'NONE') continue;
    else if (TCP_FLAG[name] !== undefined) bits |= TCP_FLAG[name];
    else return undefined;
  }
  return bits;
}

/** Bits → `FIN,SYN,RST,ACK` (or `NONE`), as iptables-save prints them. */
export function formatTcpFlags(bits: number): string {
  const names = Object.entries(TCP_FLAG).filter(([, b]) => (bits & b) !== 0).map(([n]) => n);
  return names.length === 0 ? 'NONE' : names.join(',');
}

/** Address types of `-m addrtype`, in the order iptables-save prints them. */
export const ADDR_TYPES = ['UNSPEC', 'UNICAST', 'LOCAL', 'BROADCAST', 'ANYCAST', 'MULTICAST', 'BLACKHOLE', 'UNREACHABLE', 'PROHIBIT', 'THROW', 'NAT', 'XRESOLVE'];

/** Tables whose chains the kernel path visits, and the hooks each has (its built-in chains). */
export type TableName = 'raw' | 'mangle' | 'nat' | 'filter' | 'security';
