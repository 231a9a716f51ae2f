// Where every lab node sits on the lab's two bridges. Inventory addresses carry
// no prefix length, so each side's subnets are derived from the addresses
// themselves: per documentation range, the widest subnet that holds that side's
// addresses and none of the other side's (the whole /24 when a side has a range
// to itself; a /64 for IPv6 unless the sides must be cut finer). A side may span
// several ranges (hosts on 198.51.100.0/24, the operator on 203.0.113.0/24): each
// node on that bridge gets on-link routes to the side's other subnets, as if a
// router joined them. Nothing outside the documentation ranges is ever routed.
import ipaddr from 'ipaddr.js';
import { ExitCode, LabError } from '../errors.js';
import type { LabOperator, LabSpec, Side } from './spec.js';

type Family = 4 | 6;

interface Net {
  family: Family;
  base: bigint;
  prefix: number;
}

const BITS = { 4: 32, 6: 128 } as const;
/** Preferred subnet length when nothing forces a longer one. */
const PREFERRED = { 4: 24, 6: 64 } as const;

/** Documentation ranges (RFC 5737, RFC 3849), in the order the operator's place is sought. */
export const DOC_RANGES_V4 = ['203.0.113.0/24', '198.51.100.0/24', '192.0.2.0/24'];
export const DOC_RANGE_V6 = '2001:db8::/32';
const V4_RANGES = DOC_RANGES_V4.map((c) => parseNet(c) as Net);
const V6_RANGE = parseNet(DOC_RANGE_V6) as Net;
const DOC_TEXT = `${['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'].join(', ')}`;

/** The legacy operator address (x.y.z.250) is tried first in a /24. */
const OPERATOR_HOST = 250n;
const OPERATOR_HOST6 = 0x250n;

function parseAddr(text: string): { family: Family; value: bigint } | undefined {
  if (!ipaddr.isValid(text)) return undefined;
  const a = ipaddr.parse(text);
  const family: Family = a.kind() === 'ipv4' ? 4 : 6;
  if (family === 4 && !ipaddr.IPv4.isValidFourPartDecimal(text)) return undefined;
  return { family, value: a.toByteArray().reduce((acc, b) => (acc << 8n) | BigInt(b), 0n) };
}

function parseNet(text: string): Net | undefined {
  const [addr = '', len] = text.split('/');
  const a = parseAddr(addr);
  if (!a) return undefined;
  const prefix = len === undefined ? BITS[a.family] : Number(len);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > BITS[a.family]) return undefined;
  return { family: a.family, base: a.value & mask(a.family, prefix), prefix };
}

function mask(family: Family, prefix: number): bigint {
  const all = (1n << BigInt(BITS[family])) - 1n;
  return all ^ ((1n << BigInt(BITS[family] - prefix)) - 1n);
}

function formatAddr(family: Family, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join('.');
  const parts = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  return (ipaddr.fromByteArray(parts.flatMap((p) => [p >> 8, p & 255])) as ipaddr.IPv6).toRFC5952String();
}

const formatNet = (n: Net): string => `${formatAddr(n.family, n.base)}/${n.prefix}`;
const netOf = (family: Family, value: bigint, prefix: number): Net => ({ family, base: value & mask(family, prefix), prefix });
const contains = (n: Net, family: Family, value: bigint): boolean => n.family === family && (value & mask(family, n.prefix)) === n.base;
const lastOf = (n: Net): bigint => n.base | ((1n << BigInt(BITS[n.family] - n.prefix)) - 1n);

/** Length of the longest prefix common to every value (values non-empty). */
function commonPrefix(family: Family, values: bigint[]): number {
  let p = BITS[family];
  const first = values[0] as bigint;
  for (const v of values) while (p > 0 && (v & mask(family, p)) !== (first & mask(family, p))) p--;
  return p;
}

/** The documentation range an address lies in, if any. */
function docRangeOf(family: Family, value: bigint): Net | undefined {
  return family === 4 ? V4_RANGES.find((r) => contains(r, 4, value)) : contains(V6_RANGE, 6, value) ? V6_RANGE : undefined;
}

/** One address of one node on one side, as the spec gives it. */
interface Placed {
  node: string;
  side: Side;
  iface: string;
  family: Family;
  value: bigint;
  text: string;
  where: string;
}

function placedAddresses(spec: LabSpec, operator: LabOperator, operatorNode: string): { placed: Placed[]; problems: string[] } {
  const placed: Placed[] = [];
  const problems: string[] = [];
  const add = (node: string, side: Side, iface: string, text: string | undefined, family: Family, where: string): void => {
    if (text === undefined) return;
    const a = parseAddr(text);
    if (!a || a.family !== family) return void problems.push(`${where}: ${JSON.stringify(text)} is not an IPv${family} address`);
    if (!docRangeOf(a.family, a.value)) {
      return void problems.push(`${where}: ${text} is not in a documentation range (${family === 4 ? DOC_TEXT : DOC_RANGE_V6}); the lab runs on those only`);
    }
    placed.push({ node, side, iface, family, value: a.value, text, where });
  };
  for (const h of spec.hosts) {
    const w = `host ${h.name}`;
    add(h.name, 'public', h.interfaces.public, h.public, 4, w);
    add(h.name, 'private', h.interfaces.private, h.private, 4, w);
    add(h.name, 'public', h.interfaces.public, h.public6, 6, w);
    add(h.name, 'private', h.interfaces.private, h.private6, 6, w);
  }
  for (const e of spec.externals) {
    add(e.name, e.side, 'eth0', e.address, 4, `external ${e.name}`);
    add(e.name, e.side, 'eth0', e.address6, 6, `external ${e.name}`);
  }
  add(operatorNode, 'public', 'eth0', operator.address, 4, 'operator');
  add(operatorNode, 'public', 'eth0', operator.address6, 6, 'operator');
  const seen = new Map<string, string>();
  for (const p of placed) {
    const key = `${p.family}/${p.value}`;
    const first = seen.get(key);
    if (first !== undefined) problems.push(`${p.where}: address ${p.text} is also ${first}'s`);
    else seen.set(key, p.where);
  }
  return { placed, problems };
}

/** An interface of a lab node: its addresses (with prefix length) and on-link routes. */
export interface LabInterface {
  name: string;
  /** `198.51.100.10/24`, `2001:db8::10/64`. */
  addresses: string[];
  /** Other subnets of the same side, reached on-link through this interface. */
  routes: string[];
}

export interface Addressing {
  /** Per side, every subnet the lab puts on that side's bridge. */
  subnets: Record<Side, string[]>;
  /** Per node name, its interfaces (none for a node without an address on a side). */
  interfaces: Record<string, LabInterface[]>;
}

/** The subnets and every node's interfaces; throws LabError naming every problem at once. */
export function planAddressing(spec: LabSpec, operator: LabOperator, operatorNode: string): Addressing {
  const { placed, problems } = placedAddresses(spec, operator, operatorNode);
  const subnets: Array<{ side: Side; net: Net }> = [];
  const ranges = [...V4_RANGES, V6_RANGE];
  for (const range of ranges) {
    const inRange = placed.filter((p) => contains(range, p.family, p.value));
    for (const side of ['public', 'private'] as const) {
      const mine = inRange.filter((p) => p.side === side);
      const theirs = inRange.filter((p) => p.side !== side);
      if (mine.length === 0) continue;
      const net = sideSubnet(range, mine, theirs, problems);
      if (net) subnets.push({ side, net });
    }
  }
  for (const { net } of subnets) {
    if (net.family !== 4 || net.prefix > 30) continue;
    for (const p of placed) {
      if (p.value === net.base && contains(net, 4, p.value)) problems.push(`${p.where}: ${p.text} is the network address of the lab subnet ${formatNet(net)}`);
      if (p.value === lastOf(net) && contains(net, 4, p.value)) problems.push(`${p.where}: ${p.text} is the broadcast address of the lab subnet ${formatNet(net)}`);
    }
  }
  if (problems.length > 0) throw new LabError(`the lab cannot place these addresses:\n${problems.join('\n')}`, ExitCode.usage);

  const interfaces: Record<string, LabInterface[]> = {};
  for (const p of placed) {
    const own = subnets.find((s) => s.side === p.side && contains(s.net, p.family, p.value)) as { net: Net };
    const list = (interfaces[p.node] ??= []);
    let iface = list.find((i) => i.name === p.iface);
    if (!iface) list.push((iface = { name: p.iface, addresses: [], routes: [] }));
    iface.addresses.push(`${p.text}/${own.net.prefix}`);
    for (const s of subnets) {
      const text = formatNet(s.net);
      if (s.side === p.side && s.net.family === p.family && s.net !== own.net && !iface.routes.includes(text)) iface.routes.push(text);
    }
  }
  return {
    subnets: {
      public: subnets.filter((s) => s.side === 'public').map((s) => formatNet(s.net)),
      private: subnets.filter((s) => s.side === 'private').map((s) => formatNet(s.net)),
    },
    interfaces,
  };
}

/** The widest subnet of `range` holding every address of `mine` and none of `theirs`. */
function sideSubnet(range: Net, mine: Placed[], theirs: Placed[], problems: string[]): Net | undefined {
  const family = range.family;
  const first = (mine[0] as Placed).value;
  const longest = commonPrefix(family, mine.map((p) => p.value));
  const clash = theirs.find((t) => contains(netOf(family, first, longest), family, t.value));
  if (clash) {
    const side = (mine[0] as Placed).side;
    problems.push(
      `${formatNet(range)}: the ${side} side (${mine.map((p) => p.text).join(', ')}) and the ${clash.side} side (${clash.text}) ` +
        `share no subnet that keeps them apart; give each side its own documentation range, or its own part of one (e.g. ${cutExample(range)})`,
    );
    return undefined;
  }
  let prefix = range.prefix;
  while (theirs.some((t) => contains(netOf(family, first, prefix), family, t.value))) prefix++;
  return netOf(family, first, Math.max(prefix, Math.min(PREFERRED[family], longest)));
}

function cutExample(range: Net): string {
  const half = range.prefix + 1;
  const upper = range.base | (1n << BigInt(BITS[range.family] - half));
  return `public in ${formatNet({ ...range, prefix: half })}, private in ${formatNet({ family: range.family, base: upper, prefix: half })}`;
}

/**
 * Where the lab's operator sits: a free address that the inventory's operators
 * let in and that lies in a documentation range, so that the bastions' rules
 * admit it. An exact address (/32) wins, then a range holding the hosts' public
 * side, then one free of the private side. IPv6 only when an operators entry
 * lies inside 2001:db8::/32.
 */
export function chooseOperator(spec: LabSpec, operators: readonly string[]): LabOperator {
  const used = new Set<string>();
  const publicHosts: bigint[] = [];
  const privateSide: bigint[] = [];
  const note = (text: string | undefined, side?: Side, host = false): void => {
    const a = text === undefined ? undefined : parseAddr(text);
    if (!a) return;
    used.add(`${a.family}/${a.value}`);
    if (a.family === 4 && side === 'public' && host) publicHosts.push(a.value);
    if (a.family === 4 && side === 'private') privateSide.push(a.value);
  };
  for (const h of spec.hosts) {
    note(h.public, 'public', true);
    note(h.private, 'private');
    note(h.public6);
    note(h.private6);
  }
  for (const e of spec.externals) {
    note(e.address, e.side);
    note(e.address6);
  }
  const free = (family: Family, v: bigint): boolean => !used.has(`${family}/${v}`);

  const candidates: Array<{ net: Net; rank: number; order: number }> = [];
  operators.forEach((text, i) => {
    const op = parseNet(text);
    if (!op || op.family !== 4) return;
    V4_RANGES.forEach((range, j) => {
      const net = op.prefix >= range.prefix ? (contains(range, 4, op.base) ? op : undefined) : contains(op, 4, range.base) ? range : undefined;
      if (!net) return;
      const rank = net.prefix === 32 ? 0 : publicHosts.some((v) => contains(range, 4, v)) ? 1 : privateSide.some((v) => contains(range, 4, v)) ? 3 : 2;
      candidates.push({ net, rank, order: i * 10 + j });
    });
  });
  candidates.sort((a, b) => a.rank - b.rank || a.order - b.order);
  let address: string | undefined;
  for (const { net } of candidates) {
    const v = pickV4(net, free);
    if (v !== undefined) {
      address = formatAddr(4, v);
      break;
    }
  }
  if (address === undefined) {
    throw new LabError(
      `operators (${operators.join(', ')}): the lab needs a free address for its operator that the operators let in and that lies in a documentation range (${DOC_TEXT}); ` +
        'add one to the inventory\'s operators, e.g. 203.0.113.250/32',
      ExitCode.usage,
    );
  }
  const address6 = chooseOperator6(operators, free);
  return address6 === undefined ? { address } : { address, address6 };
}

function pickV4(net: Net, free: (f: Family, v: bigint) => boolean): bigint | undefined {
  const last = lastOf(net);
  const range = docRangeOf(4, net.base) as Net;
  // Never the network or broadcast address of the range, nor of a smaller operators subnet.
  const usable = (v: bigint): boolean =>
    free(4, v) && v !== range.base && v !== lastOf(range) && (net.prefix > 30 || (v !== net.base && v !== last));
  const legacy = range.base | OPERATOR_HOST;
  if (contains(net, 4, legacy) && usable(legacy)) return legacy;
  for (let v = last; v >= net.base; v--) if (usable(v)) return v;
  return undefined;
}

function chooseOperator6(operators: readonly string[], free: (f: Family, v: bigint) => boolean): string | undefined {
  for (const text of operators) {
    const op = parseNet(text);
    if (!op || op.family !== 6 || op.prefix < V6_RANGE.prefix || !contains(V6_RANGE, 6, op.base)) continue;
    if (op.prefix === 128) {
      if (free(6, op.base)) return formatAddr(6, op.base);
      continue;
    }
    for (let k = 0n; k < 4096n; k++) {
      const v = op.base + OPERATOR_HOST6 + k;
      if (contains(op, 6, v) && free(6, v)) return formatAddr(6, v);
    }
  }
  return undefined;
}
