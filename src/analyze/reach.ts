// Who can reach whom, before and after a change: for every destination host, every
// source (another host, an external, or any other address) and each protocol, the
// destination ports a connection is admitted on, proven for every packet of the
// class (prove.ts), under the old rule sets and the new ones. The difference is the
// change's meaning: flows it opens, flows it closes, and flows fleetfw cannot tell.
import type { Family, HostSpec, Inventory, Side } from '../model/inventory.js';
import type { RuleSet } from '../model/ruleset.js';
import { addressOfValue, addressValue, cidrBounds } from './cidr.js';
import type { FlowEnd } from './flow.js';
import { localOf, ownAddresses } from './lockout.js';
import { addressBoundaries, ANY_CLIENT_PORTS, LINUX_CLIENT_PORTS, OPEN_CONNECT, portBoundaries, proveFlow, splitIntervals, type Interval } from './prove.js';

export interface HostRuleSets {
  v4: RuleSet;
  v6: RuleSet;
}

export interface ReachInput {
  inv: Inventory;
  /** Each host's rules before the change; a host absent here did not exist (nothing reached it). */
  before: ReadonlyMap<string, HostRuleSets>;
  /** Each host's rules after the change (every inventory host). */
  after: ReadonlyMap<string, HostRuleSets>;
}

export type ReachProto = 'tcp' | 'udp';

/** Where a flow comes from: a host, an external, or addresses no host or external has. */
export type ReachSource =
  | { kind: 'host'; name: string }
  | { kind: 'external'; name: string }
  /** `cidrs`: the ranges with the named addresses in them filled in, as a reviewer reads them (`192.0.2.0/24`, or `any`). */
  | { kind: 'any'; ranges: Array<Interval<string>>; cidrs: string[] };

export interface ReachChange {
  change: 'open' | 'close' | 'unknown';
  from: ReachSource;
  to: string;
  side: Side;
  family: Family;
  proto: ReachProto;
  /** Destination ports, merged ranges. */
  ports: Array<Interval<number>>;
}

type Verdict = 'allow' | 'deny' | 'unknown';

/** Past this many distinct halves to prove, the diff is not computed (and the plan says so). */
const MAX_HALVES = 50_000;

/** Past this many pairs of hosts to compare, likewise. */
const MAX_PAIRS = 100_000;

export class ReachTooLarge extends RangeError {}

const PROTOS: readonly ReachProto[] = ['tcp', 'udp'];
const SIDES: readonly Side[] = ['private', 'public'];
const ALL_PORTS: Interval<number> = [1, 65535];

/** Addresses no packet from another machine carries. */
const NEVER_A_SOURCE: Record<Family, string[]> = {
  4: ['0.0.0.0/8', '127.0.0.0/8', '224.0.0.0/4', '240.0.0.0/4'],
  6: ['::/127', '::ffff:0:0/96', 'ff00::/8'],
};
const WHOLE: Record<Family, string> = { 4: '0.0.0.0/0', 6: '::/0' };

const addressKey = (side: Side, family: Family) => `${side}${family === 6 ? '6' : ''}` as 'public' | 'private' | 'public6' | 'private6';

/** The whole address space of a family without the addresses given (and those no packet carries). */
function otherAddresses(family: Family, named: readonly string[]): Array<Interval<bigint>> {
  let out: Array<Interval<bigint>> = [cidrBounds(WHOLE[family])];
  for (const m of [...NEVER_A_SOURCE[family], ...named]) {
    const [a, b] = cidrBounds(m);
    out = out.flatMap(([lo, hi]): Array<Interval<bigint>> => {
      if (b < lo || a > hi) return [[lo, hi]];
      return [...(a > lo ? [[lo, a - 1n] as Interval<bigint>] : []), ...(b < hi ? [[b + 1n, hi] as Interval<bigint>] : [])];
    });
  }
  return out;
}

/** [1, 65535] cut wherever a port match of any of the rule sets starts or stops. */
function portPieces(sets: ReadonlyArray<RuleSet | undefined>): Array<Interval<number>> {
  const cuts = [...new Set(sets.flatMap((rs) => (rs ? portBoundaries(rs) : [])))].sort((a, b) => a - b);
  return splitIntervals([ALL_PORTS], cuts);
}

function addressPieces(ranges: Array<Interval<bigint>>, sets: ReadonlyArray<RuleSet | undefined>): Array<Interval<bigint>> {
  const cuts = [...new Set(sets.flatMap((rs) => (rs ? addressBoundaries(rs) : [])))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return splitIntervals(ranges, cuts);
}

/**
 * A connection works when every packet passes the client's rules and every packet
 * passes the server's; each host sees the same packets whatever the other does, so
 * the two halves are proven apart and combined. A half is a verdict per port range.
 */
type Half = Array<{ ports: Interval<number>; v: Verdict }>;

const ALLOW_ALL: Half = [{ ports: ALL_PORTS, v: 'allow' }];
const DENY_ALL: Half = [{ ports: ALL_PORTS, v: 'deny' }];

/** One half: `end` with its rules, the other end a machine that accepts everything. */
function half(family: Family, proto: ReachProto, client: FlowEnd, server: FlowEnd, own: RuleSet, srcs?: Array<Interval<bigint>>): Half {
  const sports = client.rs || client.name !== 'any' ? LINUX_CLIENT_PORTS : ANY_CLIENT_PORTS;
  return portPieces([own]).map((ports) => {
    const proof = proveFlow({ family, proto, port: ports[0], client, server }, { sports: [sports], open: OPEN_CONNECT, mode: 'allow', ...(srcs ? { srcs } : {}) }, (r) => r.outcome === 'allow');
    return { ports, v: proof.ok ? 'allow' : proof.result.outcome === 'unknown' ? 'unknown' : 'deny' };
  });
}

/** Both halves: denied if either denies, unknown if either cannot tell, else allowed; per port. */
function combine(a: Half, b: Half): Half {
  if (b === ALLOW_ALL) return a;
  if (a === ALLOW_ALL) return b;
  const out: Half = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    const lo = Math.max(x.ports[0], y.ports[0]);
    const hi = Math.min(x.ports[1], y.ports[1]);
    if (lo <= hi) out.push({ ports: [lo, hi], v: x.v === 'deny' || y.v === 'deny' ? 'deny' : x.v === 'unknown' || y.v === 'unknown' ? 'unknown' : 'allow' });
    if (x.ports[1] <= y.ports[1]) i++;
    else j++;
  }
  return out;
}

function hostEnd(h: HostSpec, sets: HostRuleSets | undefined, side: Side, family: Family): FlowEnd | undefined {
  const addr = h[addressKey(side, family)];
  if (!addr) return undefined;
  return { name: h.name, addr, iface: h.interfaces[side], ...(sets ? { rs: family === 4 ? sets.v4 : sets.v6 } : {}), local: localOf(h) };
}

/** Merge sorted, possibly touching intervals. */
function merge(xs: Array<Interval<number>>): Array<Interval<number>> {
  const out: Array<Interval<number>> = [];
  for (const [lo, hi] of xs) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

/** What changed between two verdicts per port. */
function changesOf(before: Half, after: Half): Record<ReachChange['change'], Array<Interval<number>>> {
  const out: Record<ReachChange['change'], Array<Interval<number>>> = { open: [], close: [], unknown: [] };
  if (before === after) return out;
  let i = 0;
  let j = 0;
  while (i < before.length && j < after.length) {
    const x = before[i]!;
    const y = after[j]!;
    const lo = Math.max(x.ports[0], y.ports[0]);
    const hi = Math.min(x.ports[1], y.ports[1]);
    // Undecided on either side is said, also when it was undecided before: the rules changed.
    if (lo <= hi && (x.v !== y.v || x.v === 'unknown')) {
      const kind = x.v === 'unknown' || y.v === 'unknown' ? 'unknown' : y.v === 'allow' ? 'open' : 'close';
      out[kind].push([lo, hi]);
    }
    if (x.ports[1] <= y.ports[1]) i++;
    else j++;
  }
  return { open: merge(out.open), close: merge(out.close), unknown: merge(out.unknown) };
}

const portsKey = (ps: Array<Interval<number>>) => ps.map(([a, b]) => `${a}-${b}`).join(',');

type When = 'before' | 'after';

/** Ranges where `-m addrtype` answers change (loopback, multicast, broadcast). */
const ADDRTYPE_RANGES = ['127.0.0.0/8', '224.0.0.0/4', '255.255.255.255/32'].map((c) => cidrBounds(c));

const signatures = new WeakMap<RuleSet, (x: bigint) => string>();

/**
 * Which of the rule set's address tests an address passes: every network a rule
 * matches (source or destination), every set it matches against, the address
 * types. Two addresses with the same signature are told apart by no rule, so a
 * proof for one is a proof for the other: a fleet's hosts in one ipset share one.
 */
function signatureOf(rs: RuleSet): (x: bigint) => string {
  let sig = signatures.get(rs);
  if (sig) return sig;
  const ranges = new Map<string, Interval<bigint>>();
  const sets = new Map<string, Set<bigint>>();
  for (const t of rs.tables) {
    for (const c of t.chains) {
      for (const r of c.rules) {
        for (const m of [r.src, r.dst]) if (m && !ranges.has(m.cidr)) ranges.set(m.cidr, cidrBounds(m.cidr));
        for (const m of [r.srcSet, r.dstSet]) {
          if (!m || sets.has(m.name)) continue;
          sets.set(m.name, new Set((rs.sets?.get(m.name)?.members ?? []).map((a) => addressValue(a))));
        }
      }
    }
  }
  const tests = [...ranges.values(), ...(rs.family === 4 ? ADDRTYPE_RANGES : [])];
  const members = [...sets.values()];
  const seen = new Map<bigint, string>();
  sig = (x) => {
    let s = seen.get(x);
    if (s === undefined) seen.set(x, (s = tests.map(([a, b]) => (a <= x && x <= b ? '1' : '0')).join('') + members.map((m) => (m.has(x) ? '1' : '0')).join('')));
    return s;
  };
  signatures.set(rs, sig);
  return sig;
}

/**
 * Every flow the change opens, closes, or leaves fleetfw unable to tell: between
 * hosts (where either end's rules differ), and from externals and any other
 * address to hosts whose rules differ.
 */
export function reachChanges(input: ReachInput): ReachChange[] {
  const { inv, before, after } = input;
  const rulesOf = (when: When, name: string) => (when === 'before' ? before : after).get(name);
  const differs = (name: string): boolean => {
    const b = before.get(name);
    const a = after.get(name);
    return !b || !a || b.v4 !== a.v4 || b.v6 !== a.v6;
  };
  // A host in neither map is not in this comparison at all.
  const present = (name: string) => before.has(name) || after.has(name);
  const changedHosts = new Set(inv.hosts.filter((h) => present(h.name) && differs(h.name)).map((h) => h.name));
  if (changedHosts.size === 0) return [];
  const n = inv.hosts.length;
  const pairs = changedHosts.size * (n - 1) + (n - changedHosts.size) * changedHosts.size;
  if (pairs > MAX_PAIRS) throw new ReachTooLarge(`${pairs} pairs of hosts (${changedHosts.size} of ${n} hosts change), more than ${MAX_PAIRS}`);
  const out: ReachChange[] = [];
  let proofs = 0;
  const budgeted = (make: () => Half): Half => {
    if (++proofs > MAX_HALVES) throw new ReachTooLarge(`more than ${MAX_HALVES} distinct classes of flows to prove`);
    return make();
  };
  // The addresses evaluated by name on each side (hosts there, externals of that side):
  // every other address is "any other address" there, named elsewhere or not.
  const sideNamed = (side: Side, family: Family): string[] => [
    ...inv.hosts.filter((h) => present(h.name)).flatMap((h) => h[addressKey(side, family)] ?? []),
    ...inv.externals.filter((e) => e.side === side).flatMap((e) => (family === 4 ? e.address : e.address6) ?? []),
  ];
  const perSide = new Map<string, { other: Array<Interval<bigint>>; fillers: Array<Interval<bigint>> }>();
  const sideRanges = (side: Side, family: Family) => {
    const key = `${side}|${family}`;
    let r = perSide.get(key);
    if (!r) {
      const named = sideNamed(side, family);
      perSide.set(key, (r = { other: otherAddresses(family, named), fillers: mergeAddresses([...NEVER_A_SOURCE[family], ...named].map((c) => cidrBounds(c))) }));
    }
    return r;
  };
  const whole: Record<Family, Array<Interval<bigint>>> = { 4: [cidrBounds(WHOLE[4])], 6: [cidrBounds(WHOLE[6])] };

  // The client half of a host towards a destination address: per piece of the address
  // space its rules tell apart. Kept by rule set: a host whose rules did not change
  // gives the same half before and after, and the pair is skipped.
  // Halves with the same verdicts are one object: equal halves are then compared by identity.
  const interned = new Map<string, Half>();
  const intern = (h: Half): Half => {
    const key = h.map((x) => `${x.ports[0]}-${x.ports[1]}${x.v[0]}`).join(',');
    const known = interned.get(key);
    if (known) return known;
    interned.set(key, h);
    return h;
  };
  type ClientSide = { end: FlowEnd; rs: RuleSet; sig: (x: bigint) => string; halves: Record<ReachProto, Map<string, Half>> } | undefined;
  const clients = new Map<string, ClientSide>();
  const clientHalf = (src: HostSpec, when: When, side: Side, family: Family, proto: ReachProto, dst: FlowEnd, dstValue: bigint): Half => {
    const id = `${src.name}|${when}|${side}|${family}`;
    let c = clients.get(id);
    if (c === undefined && !clients.has(id)) {
      const end = hostEnd(src, rulesOf(when, src.name), side, family);
      c = end?.rs ? { end, rs: end.rs, sig: signatureOf(end.rs), halves: { tcp: new Map(), udp: new Map() } } : undefined;
      clients.set(id, c);
    }
    if (!c) return ALLOW_ALL;
    const key = c.sig(dstValue);
    let h = c.halves[proto].get(key);
    if (!h) c.halves[proto].set(key, (h = intern(budgeted(() => half(family, proto, c!.end, { name: dst.name, addr: dst.addr }, c!.rs)))));
    return h;
  };

  for (const dst of inv.hosts.filter((h) => present(h.name))) {
    const dstChanged = changedHosts.has(dst.name);
    for (const family of [4, 6] as const) {
      for (const side of SIDES) {
        const server: Record<When, FlowEnd | undefined> = {
          before: before.has(dst.name) ? hostEnd(dst, before.get(dst.name), side, family) : undefined,
          after: hostEnd(dst, after.get(dst.name), side, family),
        };
        if (!server.after && !server.before) continue;
        const pieces = addressPieces(whole[family], [server.before?.rs, server.after?.rs]);
        const { other, fillers: sideFillers } = sideRanges(side, family);
        // A host never takes a packet claiming one of its own addresses as source.
        const own = ownAddresses(dst).filter((a) => a.includes(':') === (family === 6));
        const others = splitIntervals(subtractAddresses(other, own), pieces.slice(1).map((p) => p[0]));
        const fillers = mergeAddresses([...sideFillers, ...own.map((a) => cidrBounds(a))]);
        // The server half for a piece of source addresses (a machine with no rules of its
        // own sending), kept by rule set like the client's.
        const serverHalves = new Map<RuleSet, Map<string, Half>>();
        const serverHalf = (when: When, proto: ReachProto, srcs: Array<Interval<bigint>>, host: boolean): Half => {
          const end = server[when];
          if (!end) return DENY_ALL;
          if (!end.rs) return ALLOW_ALL;
          let memo = serverHalves.get(end.rs);
          if (!memo) serverHalves.set(end.rs, (memo = new Map()));
          // Proven for exactly these sources; kept for any with the same signature (no rule tells them apart).
          const key = `${proto}|${host}|${signatureOf(end.rs)(srcs[0]![0])}`;
          let h = memo.get(key);
          if (!h) memo.set(key, (h = intern(budgeted(() => half(family, proto, { name: host ? 'host' : 'any', addr: addressOfValue(srcs[0]![0], family) }, end, end.rs!, srcs)))));
          return h;
        };
        const one = (addr: string): Array<Interval<bigint>> => {
          const v = addressValue(addr);
          return [[v, v]];
        };
        const emit = (from: ReachSource, proto: ReachProto, b: Half, a: Half) => {
          const c = changesOf(b, a);
          for (const change of ['open', 'close', 'unknown'] as const) {
            if (c[change].length > 0) out.push({ change, from, to: dst.name, side, family, proto, ports: c[change] });
          }
        };
        for (const proto of PROTOS) {
          // Other hosts, on this side.
          for (const src of inv.hosts) {
            if (src.name === dst.name || !present(src.name) || (!dstChanged && !changedHosts.has(src.name))) continue;
            const addr = src[addressKey(side, family)];
            if (!addr || !hostEnd(src, after.get(src.name), side, family)) continue;
            const sb = serverHalf('before', proto, one(addr), true);
            const sa = serverHalf('after', proto, one(addr), true);
            if (sb === sa && !changedHosts.has(src.name)) continue;
            const target = (server.after ?? server.before)!;
            const targetValue = addressValue(target.addr);
            // A host that did not exist reached nothing.
            const cb = before.has(src.name) ? clientHalf(src, 'before', side, family, proto, target, targetValue) : DENY_ALL;
            const ca = clientHalf(src, 'after', side, family, proto, target, targetValue);
            if (sb === sa && cb === ca) continue;
            emit({ kind: 'host', name: src.name }, proto, combine(cb, sb), combine(ca, sa));
          }
          if (!dstChanged) continue;
          // Externals on this side: machines outside the fleet, no rules of their own.
          for (const ext of inv.externals.filter((e) => e.side === side)) {
            const addr = family === 4 ? ext.address : ext.address6;
            if (!addr) continue;
            emit({ kind: 'external', name: ext.name }, proto, serverHalf('before', proto, one(addr), false), serverHalf('after', proto, one(addr), false));
          }
          // Any other address, piece by piece, pieces that change alike reported together.
          const byChange = new Map<string, { from: Array<Interval<bigint>>; b: Half; a: Half }>();
          for (const piece of others) {
            const b = serverHalf('before', proto, [piece], false);
            const a = serverHalf('after', proto, [piece], false);
            const c = changesOf(b, a);
            if (c.open.length + c.close.length + c.unknown.length === 0) continue;
            const key = `${portsKey(c.open)}|${portsKey(c.close)}|${portsKey(c.unknown)}`;
            const seen = byChange.get(key);
            if (seen) seen.from.push(piece);
            else byChange.set(key, { from: [piece], b, a });
          }
          for (const { from, b, a } of byChange.values()) {
            const merged = mergeAddresses(from);
            const ranges = merged.map(([x, y]): Interval<string> => [addressOfValue(x, family), addressOfValue(y, family)]);
            emit({ kind: 'any', ranges, cidrs: describeRanges(merged, fillers, family) }, proto, b, a);
          }
        }
      }
    }
  }
  return out;
}

/** Ranges without the given addresses. */
function subtractAddresses(ranges: Array<Interval<bigint>>, addrs: readonly string[]): Array<Interval<bigint>> {
  let out = ranges;
  for (const a of addrs) {
    const v = addressValue(a);
    out = out.flatMap(([lo, hi]): Array<Interval<bigint>> => (v < lo || v > hi ? [[lo, hi]] : [...(v > lo ? [[lo, v - 1n] as Interval<bigint>] : []), ...(v < hi ? [[v + 1n, hi] as Interval<bigint>] : [])]));
  }
  return out;
}

function mergeAddresses(xs: Array<Interval<bigint>>): Array<Interval<bigint>> {
  const sorted = [...xs].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: Array<Interval<bigint>> = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1n) last[1] = last[1] > hi ? last[1] : hi;
    else out.push([lo, hi]);
  }
  return out;
}

/**
 * Ranges of other addresses as CIDRs, with the gaps between them that only named
 * or impossible addresses fill closed (`192.0.2.0/24` rather than the dozen pieces
 * around the hosts in it; `any` for the whole space); the named hosts have lines of
 * their own.
 */
function describeRanges(ranges: Array<Interval<bigint>>, fillers: Array<Interval<bigint>>, family: Family): string[] {
  const inside = (set: Array<Interval<bigint>>, x: bigint) => set.find(([a, b]) => a <= x && x <= b);
  const never = mergeAddresses(NEVER_A_SOURCE[family].map((c) => cidrBounds(c)));
  const top = cidrBounds(WHOLE[family])[1];
  // A gap the named (or impossible) addresses fill entirely.
  const covered = (from: bigint, to: bigint): boolean => {
    for (let x = from; x <= to; ) {
      const f = inside(fillers, x);
      if (!f) return false;
      x = f[1] + 1n;
    }
    return true;
  };
  const out: Array<Interval<bigint>> = [];
  for (const [lo0, hi0] of ranges) {
    let lo = lo0;
    let hi = hi0;
    // The ends grow only over addresses no packet carries: a named host at an end is not claimed.
    for (let f = lo > 0n ? inside(never, lo - 1n) : undefined; f && f[0] < lo; f = lo > 0n ? inside(never, lo - 1n) : undefined) lo = f[0];
    for (let f = hi < top ? inside(never, hi + 1n) : undefined; f && f[1] > hi; f = hi < top ? inside(never, hi + 1n) : undefined) hi = f[1];
    const last = out[out.length - 1];
    if (last && (lo <= last[1] + 1n || covered(last[1] + 1n, lo - 1n))) last[1] = last[1] > hi ? last[1] : hi;
    else out.push([lo, hi]);
  }
  const cidrs = out.flatMap(([a, b]) => rangeToCidrs(addressOfValue(a, family), addressOfValue(b, family)));
  return cidrs.length === 1 && cidrs[0]!.endsWith('/0') ? ['any'] : cidrs;
}

/** The fewest CIDRs that cover exactly [lo, hi]. */
export function rangeToCidrs(lo: string, hi: string): string[] {
  const family: Family = lo.includes(':') ? 6 : 4;
  const bits = family === 4 ? 32 : 128;
  let a = addressValue(lo);
  const b = addressValue(hi);
  const out: string[] = [];
  while (a <= b) {
    let size = 0;
    while (size < bits && (a & ((1n << BigInt(size + 1)) - 1n)) === 0n && a + (1n << BigInt(size + 1)) - 1n <= b) size++;
    out.push(`${addressOfValue(a, family)}/${bits - size}`);
    a += 1n << BigInt(size);
  }
  return out;
}
