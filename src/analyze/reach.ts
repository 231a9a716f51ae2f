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
export const MAX_HALVES = 50_000;

/** Past this many pairs of hosts to compare, likewise (a pair costs a few array reads; about 2,000 hosts all changing). */
const MAX_PAIRS = 4_000_000;

/** Past this many flows that change (each an object), likewise. */
const MAX_CHANGES = 100_000;

export class ReachTooLarge extends RangeError {}

const PROTOS: readonly ReachProto[] = ['tcp', 'udp'];
const SIDES: readonly Side[] = ['private', 'public'];
const ALL_PORTS: Interval<number> = [1, 65535];

/** Addresses no packet from another machine carries. */
const NEVER_A_SOURCE: Record<Family, string[]> = {
  4: ['0.0.0.0/8', '127.0.0.0/8', '224.0.0.0/4', '240.0.0.0/4'],
  6: ['::/127', '::ffff:0:0/96', 'ff00::/8'],
};
export const WHOLE: Record<Family, string> = { 4: '0.0.0.0/0', 6: '::/0' };

export const addressKey = (side: Side, family: Family) => `${side}${family === 6 ? '6' : ''}` as 'public' | 'private' | 'public6' | 'private6';

/** The whole address space of a family without the addresses given (and those no packet carries). */
export function otherAddresses(family: Family, named: readonly string[]): Array<Interval<bigint>> {
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

export function addressPieces(ranges: Array<Interval<bigint>>, sets: ReadonlyArray<RuleSet | undefined>): Array<Interval<bigint>> {
  const cuts = [...new Set(sets.flatMap((rs) => (rs ? addressBoundaries(rs) : [])))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return splitIntervals(ranges, cuts);
}

/**
 * A connection works when every packet passes the client's rules and every packet
 * passes the server's; each host sees the same packets whatever the other does, so
 * the two halves are proven apart and combined. A half is a verdict per port range.
 */
export type Half = Array<{ ports: Interval<number>; v: Verdict }>;

export const ALLOW_ALL: Half = [{ ports: ALL_PORTS, v: 'allow' }];
export const DENY_ALL: Half = [{ ports: ALL_PORTS, v: 'deny' }];

/** One half: `end` with its rules, the other end a machine that accepts everything. */
export function half(family: Family, proto: ReachProto, client: FlowEnd, server: FlowEnd, own: RuleSet, srcs?: Array<Interval<bigint>>): Half {
  const sports = client.rs || client.name !== 'any' ? LINUX_CLIENT_PORTS : ANY_CLIENT_PORTS;
  return portPieces([own]).map((ports) => {
    const proof = proveFlow({ family, proto, port: ports[0], client, server }, { sports: [sports], open: OPEN_CONNECT, mode: 'allow', ...(srcs ? { srcs } : {}) }, (r) => r.outcome === 'allow');
    return { ports, v: proof.ok ? 'allow' : proof.result.outcome === 'unknown' ? 'unknown' : 'deny' };
  });
}

/** One object per distinct half (same ports, same verdicts), so that halves compare by identity. */
export function halfInterner(): (h: Half) => Half {
  const interned = new Map<string, Half>();
  return (h) => {
    const key = h.map((x) => `${x.ports[0]}-${x.ports[1]}${x.v[0]}`).join(',');
    const known = interned.get(key);
    if (known) return known;
    interned.set(key, h);
    return h;
  };
}

/** Per port, `f` of the two halves' verdicts; neighbouring ports of one verdict merged. */
export function zipHalves(a: Half, b: Half, f: (x: Verdict, y: Verdict) => Verdict): Half {
  const out: Half = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    const lo = Math.max(x.ports[0], y.ports[0]);
    const hi = Math.min(x.ports[1], y.ports[1]);
    if (lo <= hi) {
      const v = f(x.v, y.v);
      const last = out[out.length - 1];
      if (last && last.v === v && last.ports[1] + 1 === lo) last.ports = [last.ports[0], hi];
      else out.push({ ports: [lo, hi], v });
    }
    if (x.ports[1] <= y.ports[1]) i++;
    else j++;
  }
  return out;
}

/** Both ends must admit it: denied if either denies, unknown if either cannot tell, else allowed. */
const both = (x: Verdict, y: Verdict): Verdict => (x === 'deny' || y === 'deny' ? 'deny' : x === 'unknown' || y === 'unknown' ? 'unknown' : 'allow');

/** Both halves, per port. */
export function combine(a: Half, b: Half): Half {
  if (b === ALLOW_ALL) return a;
  if (a === ALLOW_ALL) return b;
  return zipHalves(a, b, both);
}

export function hostEnd(h: HostSpec, sets: HostRuleSets | undefined, side: Side, family: Family): FlowEnd | undefined {
  const addr = h[addressKey(side, family)];
  if (!addr) return undefined;
  return { name: h.name, addr, iface: h.interfaces[side], ...(sets ? { rs: family === 4 ? sets.v4 : sets.v6 } : {}), local: localOf(h) };
}

/** Merge sorted, possibly touching intervals. */
export function merge(xs: Array<Interval<number>>): Array<Interval<number>> {
  const out: Array<Interval<number>> = [];
  for (const [lo, hi] of xs) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

/** What changed between two verdicts per port. */
export function changesOf(before: Half, after: Half): Record<ReachChange['change'], Array<Interval<number>>> {
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

/** A rule set's address tests: the networks its rules match and the sets they match against (their members). */
interface AddressTests {
  ranges: Array<Interval<bigint>>;
  sets: Array<readonly string[]>;
}

const addressTestsOf = new WeakMap<RuleSet, AddressTests>();

/** Every network a rule matches (source or destination), the address types, and every set a rule matches against. */
function addressTests(rs: RuleSet): AddressTests {
  let tests = addressTestsOf.get(rs);
  if (tests) return tests;
  const ranges = new Map<string, Interval<bigint>>();
  const sets = new Map<string, readonly string[]>();
  for (const t of rs.tables) {
    for (const c of t.chains) {
      for (const r of c.rules) {
        for (const m of [r.src, r.dst]) if (m && !ranges.has(m.cidr)) ranges.set(m.cidr, cidrBounds(m.cidr));
        for (const m of [r.srcSet, r.dstSet]) if (m && !sets.has(m.name)) sets.set(m.name, rs.sets?.get(m.name)?.members ?? []);
      }
    }
  }
  tests = { ranges: [...ranges.values(), ...(rs.family === 4 ? ADDRTYPE_RANGES : [])], sets: [...sets.values()] };
  addressTestsOf.set(rs, tests);
  return tests;
}

const valuesOf = new WeakMap<readonly string[], Set<bigint>>();

/** A set's members as numbers, once per member list (the hosts of a group share theirs). */
function memberValues(members: readonly string[]): Set<bigint> {
  let values = valuesOf.get(members);
  if (!values) valuesOf.set(members, (values = new Set(members.map((a) => addressValue(a)))));
  return values;
}

const signatures = new WeakMap<RuleSet, (x: bigint) => string>();

/**
 * Which of the rule set's address tests an address passes. Two addresses with the
 * same signature are told apart by no rule, so a proof for one is a proof for the
 * other: a fleet's hosts in one ipset share one.
 */
export function signatureOf(rs: RuleSet): (x: bigint) => string {
  let sig = signatures.get(rs);
  if (sig) return sig;
  const { ranges } = addressTests(rs);
  const sets = addressTests(rs).sets.map(memberValues);
  const seen = new Map<bigint, string>();
  sig = (x) => {
    let s = seen.get(x);
    if (s === undefined) seen.set(x, (s = ranges.map(([a, b]) => (a <= x && x <= b ? '1' : '0')).join('') + sets.map((m) => (m.has(x) ? '1' : '0')).join('')));
    return s;
  };
  signatures.set(rs, sig);
  return sig;
}

/** The present hosts with an address on one side and family, in inventory order: the ends of host pairs there. */
interface SideHosts {
  specs: HostSpec[];
  values: bigint[];
  /** Position in `specs` by host name. */
  index: Map<string, number>;
  /** Positions ordered by address, and those addresses. */
  byAddress: number[];
  sortedValues: bigint[];
  /** Positions by canonical address, as a set's members are written and matched. */
  positionsOf: Map<string, number[]>;
  /** The positions of each set's members, by the set's member list. */
  memberPositions: Map<readonly string[], number[]>;
}

function sideHosts(hosts: readonly HostSpec[], side: Side, family: Family): SideHosts {
  const specs = hosts.filter((h) => h[addressKey(side, family)]);
  const values = specs.map((h) => addressValue(h[addressKey(side, family)]!));
  const byAddress = values.map((_, i) => i).sort((i, j) => (values[i]! < values[j]! ? -1 : values[i]! > values[j]! ? 1 : i - j));
  const positionsOf = new Map<string, number[]>();
  values.forEach((v, i) => {
    const text = addressOfValue(v, family);
    positionsOf.set(text, [...(positionsOf.get(text) ?? []), i]);
  });
  const index = new Map(specs.map((h, i) => [h.name, i]));
  return { specs, values, index, byAddress, sortedValues: byAddress.map((i) => values[i]!), positionsOf, memberPositions: new Map() };
}

/** Positions of the hosts whose address is in [lo, hi]. */
function hostsWithin(h: SideHosts, lo: bigint, hi: bigint): number[] {
  let i = 0;
  let j = h.sortedValues.length;
  while (i < j) {
    const mid = (i + j) >> 1;
    if (h.sortedValues[mid]! < lo) i = mid + 1;
    else j = mid;
  }
  const out: number[] = [];
  for (; i < h.sortedValues.length && h.sortedValues[i]! <= hi; i++) out.push(h.byAddress[i]!);
  return out;
}

function hostsAmong(h: SideHosts, members: readonly string[]): number[] {
  let out = h.memberPositions.get(members);
  if (!out) h.memberPositions.set(members, (out = members.flatMap((m) => h.positionsOf.get(m) ?? [])));
  return out;
}

/** The hosts classed by a rule set: `of` each host's class, each class's signature (tests passed, in `addressTests` order) and first host. */
interface HostClasses {
  of: Int32Array;
  signatures: string[];
  first: number[];
}

/**
 * The hosts' addresses classed by signature in `rs`, without a signature per
 * address: every test splits the classes of the hosts it holds. Classes are
 * numbered 0, 1, … in order of first host.
 */
function hostClasses(rs: RuleSet, h: SideHosts): HostClasses {
  const { ranges, sets } = addressTests(rs);
  const tests = [...ranges.map(([lo, hi]) => hostsWithin(h, lo, hi)), ...sets.map((members) => hostsAmong(h, members))];
  const of = new Int32Array(h.values.length);
  let next = 1;
  for (const inside of tests) {
    const fresh = new Map<number, number>();
    for (const i of inside) {
      let c = fresh.get(of[i]!);
      if (c === undefined) fresh.set(of[i]!, (c = next++));
      of[i] = c;
    }
  }
  const dense = new Map<number, number>();
  const first: number[] = [];
  for (let i = 0; i < of.length; i++) {
    let c = dense.get(of[i]!);
    if (c === undefined) {
      dense.set(of[i]!, (c = dense.size));
      first.push(i);
    }
    of[i] = c;
  }
  const bits = first.map(() => new Uint8Array(tests.length));
  tests.forEach((inside, t) => inside.forEach((i) => (bits[of[i]!]![t] = 1)));
  return { of, signatures: bits.map((b) => b.join('')), first };
}

const shapes = new WeakMap<RuleSet, string>();

/**
 * Everything of a rule set a proof reads but its sets' members: two rule sets of one
 * shape give one verdict to addresses of one signature (the members decide only
 * the signature), so a host's halves before and after a change of members are one.
 */
function shapeOf(rs: RuleSet): string {
  let shape = shapes.get(rs);
  if (shape === undefined) {
    const rules = JSON.stringify(rs.tables, (k, v: unknown) => (k === 'origin' || k === 'source' ? undefined : v));
    shapes.set(rs, (shape = `${rs.family}|${[...(rs.sets?.keys() ?? [])].sort().join(',')}|${rules}`));
  }
  return shape;
}

/**
 * The addresses of two rule sets of one shape whose signatures may differ: the
 * members of a tested set in one and not in the other. Undefined for two shapes.
 */
function movedMembers(a: RuleSet, b: RuleSet): bigint[] | undefined {
  if (a !== b && shapeOf(a) !== shapeOf(b)) return undefined;
  const setsB = addressTests(b).sets;
  return addressTests(a).sets.flatMap((x, i) => symmetricDifference(x, setsB[i]!));
}

const differences = new WeakMap<readonly string[], WeakMap<readonly string[], bigint[]>>();

/** Members of one list and not the other, once per pair of lists. */
function symmetricDifference(x: readonly string[], y: readonly string[]): bigint[] {
  if (x === y) return [];
  let byY = differences.get(x);
  if (!byY) differences.set(x, (byY = new WeakMap()));
  let out = byY.get(y);
  if (!out) {
    const [inX, inY] = [memberValues(x), memberValues(y)];
    byY.set(y, (out = [...[...inX].filter((v) => !inY.has(v)), ...[...inY].filter((v) => !inX.has(v))]));
  }
  return out;
}

/**
 * `ranges` cut where either rule set tells addresses apart, for a server's rules
 * before and after. Of one shape, only a moved member can change (see
 * `movedMembers`), and both cut around it: the pieces to compare are those members.
 */
function otherPieces(ranges: Array<Interval<bigint>>, before: RuleSet | undefined, after: RuleSet | undefined): Array<Interval<bigint>> {
  const moved = before && after ? movedMembers(before, after) : undefined;
  if (moved) {
    const inside = [...new Set(moved)].filter((v) => ranges.some(([lo, hi]) => lo <= v && v <= hi));
    return inside.sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)).map((v): Interval<bigint> => [v, v]);
  }
  const cut = (xs: Array<Interval<bigint>>, rs: RuleSet | undefined) => (rs ? splitIntervals(xs, addressBoundaries(rs)) : xs);
  return cut(cut(ranges, before), after);
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
  const presentHosts = inv.hosts.filter((h) => present(h.name));
  const changedHosts = new Set(presentHosts.filter((h) => differs(h.name)).map((h) => h.name));
  if (changedHosts.size === 0) return [];
  const n = inv.hosts.length;
  const pairs = changedHosts.size * (n - 1) + (n - changedHosts.size) * changedHosts.size;
  if (pairs > MAX_PAIRS) throw new ReachTooLarge(`${pairs} pairs of hosts (${changedHosts.size} of ${n} hosts change), more than ${MAX_PAIRS}`);
  const out: ReachChange[] = [];
  const add = (c: ReachChange) => {
    if (out.push(c) > MAX_CHANGES) throw new ReachTooLarge(`more than ${MAX_CHANGES} flows that change`);
  };
  let proofs = 0;
  const budgeted = (make: () => Half): Half => {
    if (++proofs > MAX_HALVES) throw new ReachTooLarge(`more than ${MAX_HALVES} distinct classes of flows to prove`);
    return make();
  };
  // The addresses evaluated by name on each side (hosts there, externals of that side):
  // every other address is "any other address" there, named elsewhere or not.
  const sideNamed = (side: Side, family: Family): string[] => [
    ...presentHosts.flatMap((h) => h[addressKey(side, family)] ?? []),
    ...inv.externals.filter((e) => e.side === side).flatMap((e) => (family === 4 ? e.address : e.address6) ?? []),
  ];
  // Halves with the same verdicts are one object: equal halves are then compared by identity.
  const intern = halfInterner();
  // A half is known by its proof's key before it is proven: one end, its rules' shape
  // and the other end's signature in them. Equal keys, equal halves: a pair whose keys
  // did not change is skipped unproven. Keys are numbered; the ends without rules have their own.
  const DENIED = -1;
  const ACCEPTED = -2;
  const UNKNOWN = -3;
  const shapeIds = new Map<string, number>();
  const shapeIdOf = new Map<RuleSet, number>();
  const keyIds = new Map<string, number>();
  const keyOf = (rs: RuleSet, signature: string): number => {
    let shape = shapeIdOf.get(rs);
    if (shape === undefined) {
      const text = shapeOf(rs);
      shape = shapeIds.get(text);
      if (shape === undefined) shapeIds.set(text, (shape = shapeIds.size));
      shapeIdOf.set(rs, shape);
    }
    const key = `${shape}|${signature}`;
    let id = keyIds.get(key);
    if (id === undefined) keyIds.set(key, (id = keyIds.size));
    return id;
  };
  const proven = (memo: Map<number, Half>, key: number, prove: () => Half): Half => {
    if (key === DENIED) return DENY_ALL;
    if (key === ACCEPTED) return ALLOW_ALL;
    let h = memo.get(key);
    if (!h) memo.set(key, (h = intern(budgeted(prove))));
    return h;
  };

  /**
   * An end's keys towards the side's hosts: `keys[of[i]]` for host `i` (its class's
   * key, worked out when first asked), or `fixed` for an end without rules.
   */
  type EndKeys = { fixed: number; of: Int32Array; keys: Int32Array; classes?: HostClasses & { rs: RuleSet } };
  const NO_HOSTS = new Int32Array(0);
  const fixedKeys = (fixed: number): EndKeys => ({ fixed, of: NO_HOSTS, keys: NO_HOSTS });
  const endKey = (e: EndKeys, i: number): number => {
    if (e.fixed !== UNKNOWN) return e.fixed;
    const k = e.of[i]!;
    const key = e.keys[k]!;
    return key === UNKNOWN ? (e.keys[k] = keyOf(e.classes!.rs, e.classes!.signatures[k]!)) : key;
  };

  // Per side and family: the hosts there, the other addresses, each rule set's classes of hosts.
  interface SideState {
    side: Side;
    family: Family;
    hosts: SideHosts;
    /** Positions of the hosts whose rules change, and whether each does. */
    changing: number[];
    changed: Uint8Array;
    other: Array<Interval<bigint>>;
    fillers: Array<Interval<bigint>>;
    classes: Map<RuleSet, EndKeys>;
    /** Each host as a client: its ends, their keys, its halves by key (before and after alike). */
    clients: Array<{ end: Record<When, FlowEnd | undefined>; keys: Record<When, EndKeys>; halves: Record<ReachProto, Map<number, Half>> } | undefined>;
  }
  const perSide = new Map<string, SideState>();
  const sideState = (side: Side, family: Family): SideState => {
    const id = `${side}|${family}`;
    let st = perSide.get(id);
    if (!st) {
      const named = sideNamed(side, family);
      const hosts = sideHosts(presentHosts, side, family);
      const changing = hosts.specs.flatMap((h, i) => (changedHosts.has(h.name) ? [i] : []));
      const changed = new Uint8Array(hosts.specs.length);
      for (const i of changing) changed[i] = 1;
      st = {
        side,
        family,
        hosts,
        changing,
        changed,
        other: otherAddresses(family, named),
        fillers: mergeAddresses([...NEVER_A_SOURCE[family], ...named].map((c) => cidrBounds(c))),
        classes: new Map(),
        clients: [],
      };
      perSide.set(id, st);
    }
    return st;
  };
  /** The keys of an end's halves towards the side's hosts; none: it did not exist (it reached nothing). */
  const endKeys = (st: SideState, end: FlowEnd | undefined): EndKeys => {
    if (!end) return fixedKeys(DENIED);
    const rs = end.rs;
    if (!rs) return fixedKeys(ACCEPTED);
    let c = st.classes.get(rs);
    if (!c) {
      const classes = hostClasses(rs, st.hosts);
      st.classes.set(rs, (c = { fixed: UNKNOWN, of: classes.of, keys: new Int32Array(classes.first.length).fill(UNKNOWN), classes: { ...classes, rs } }));
    }
    return c;
  };

  // Host `i` as a client (towards host `d`, for its half). A host that did not exist reached nothing.
  const clientOf = (st: SideState, i: number) => {
    let c = st.clients[i];
    if (!c) {
      const spec = st.hosts.specs[i]!;
      const end = (when: When) => (rulesOf(when, spec.name) ? hostEnd(spec, rulesOf(when, spec.name), st.side, st.family) : undefined);
      const ends = { before: end('before'), after: end('after') };
      st.clients[i] = c = { end: ends, keys: { before: endKeys(st, ends.before), after: endKeys(st, ends.after) }, halves: { tcp: new Map(), udp: new Map() } };
    }
    return c;
  };
  const clientHalf = (st: SideState, i: number, when: When, proto: ReachProto, d: number, key: number): Half => {
    const c = clientOf(st, i);
    const end = c.end[when]!;
    const dst = st.hosts.specs[d]!;
    return proven(c.halves[proto], key, () => half(st.family, proto, end, { name: dst.name, addr: dst[addressKey(st.side, st.family)]! }, end.rs!));
  };
  // A pair's changes depend only on its four halves: worked out once per combination.
  const halfIds = new Map<Half, number>();
  const idOf = (h: Half) => {
    let id = halfIds.get(h);
    if (id === undefined) halfIds.set(h, (id = halfIds.size));
    return id;
  };
  const pairChanges = new Map<string, ReturnType<typeof changesOf>>();
  const changesOfPair = (cb: Half, sb: Half, ca: Half, sa: Half) => {
    const key = `${idOf(cb)},${idOf(sb)},${idOf(ca)},${idOf(sa)}`;
    let c = pairChanges.get(key);
    if (!c) pairChanges.set(key, (c = changesOf(combine(cb, sb), combine(ca, sa))));
    return c;
  };

  for (const dst of presentHosts) {
    const dstChanged = changedHosts.has(dst.name);
    for (const family of [4, 6] as const) {
      for (const side of SIDES) {
        const server: Record<When, FlowEnd | undefined> = {
          before: before.has(dst.name) ? hostEnd(dst, before.get(dst.name), side, family) : undefined,
          after: hostEnd(dst, after.get(dst.name), side, family),
        };
        if (!server.after && !server.before) continue;
        const st = sideState(side, family);
        const d = st.hosts.index.get(dst.name)!;
        const emit = (from: ReachSource, proto: ReachProto, c: ReturnType<typeof changesOf>) => {
          for (const change of ['open', 'close', 'unknown'] as const) {
            // The ports are the pair's memoised intervals, shared (nothing changes them): a
            // flow is then one small object, also when a plan has 100,000 of them.
            if (c[change].length > 0) add({ change, from, to: dst.name, side, family, proto, ports: c[change] });
          }
        };
        // The server half for sources with no rules of their own sending (hosts, whose own
        // rules make the client half; externals; any other address), by key.
        const serverKey = (when: When, x: bigint): number => {
          const end = server[when];
          if (!end) return DENIED;
          return end.rs ? keyOf(end.rs, signatureOf(end.rs)(x)) : ACCEPTED;
        };
        const serverHalves: Record<'host' | 'any', Record<ReachProto, Map<number, Half>>> = {
          host: { tcp: new Map(), udp: new Map() },
          any: { tcp: new Map(), udp: new Map() },
        };
        // Proven for exactly these sources; kept for any with the same key (no rule tells them apart).
        const serverHalf = (when: When, proto: ReachProto, srcs: Array<Interval<bigint>>, key: number, host: boolean): Half => {
          const end = server[when]!;
          const [lo, hi] = srcs[0]!;
          // One address is the client's own: no source range to cut.
          const range = srcs.length > 1 || lo !== hi ? srcs : undefined;
          return proven(serverHalves[host ? 'host' : 'any'][proto], key, () => half(family, proto, { name: host ? 'host' : 'any', addr: addressOfValue(lo, family) }, end, end.rs!, range));
        };
        const serverKeys: Record<When, EndKeys> = { before: endKeys(st, server.before), after: endKeys(st, server.after) };
        // Sources without rules: the change of each, unproven when its keys did not change.
        const changeFrom = (proto: ReachProto, srcs: Array<Interval<bigint>>) => {
          const kb = serverKey('before', srcs[0]![0]);
          const ka = serverKey('after', srcs[0]![0]);
          return kb === ka ? undefined : changesOf(serverHalf('before', proto, srcs, kb, false), serverHalf('after', proto, srcs, ka, false));
        };
        let otherSources: { others: Array<Interval<bigint>>; fillers: Array<Interval<bigint>> } | undefined;
        // Any other address, piece by piece, pieces that change alike reported together.
        const emitOtherAddresses = (proto: ReachProto): void => {
          if (!otherSources) {
            // A host never takes a packet claiming one of its own addresses as source.
            const own = ownAddresses(dst).filter((a) => a.includes(':') === (family === 6));
            otherSources = { others: otherPieces(subtractAddresses(st.other, own), server.before?.rs, server.after?.rs), fillers: mergeAddresses([...st.fillers, ...own.map((a) => cidrBounds(a))]) };
          }
          const { others, fillers } = otherSources;
          const byChange = new Map<string, { from: Array<Interval<bigint>>; c: ReturnType<typeof changesOf> }>();
          for (const piece of others) {
            const c = changeFrom(proto, [piece]);
            if (!c || c.open.length + c.close.length + c.unknown.length === 0) continue;
            const key = `${portsKey(c.open)}|${portsKey(c.close)}|${portsKey(c.unknown)}`;
            const seen = byChange.get(key);
            if (seen) seen.from.push(piece);
            else byChange.set(key, { from: [piece], c });
          }
          for (const { from, c } of byChange.values()) {
            const merged = mergeAddresses(from);
            const ranges = merged.map(([x, y]): Interval<string> => [addressOfValue(x, family), addressOfValue(y, family)]);
            emit({ kind: 'any', ranges, cidrs: describeRanges(merged, fillers, family) }, proto, c);
          }
        };
        // Other hosts, on this side: all of them to a host that changes, else those that
        // change; those whose four keys did not change are skipped unproven.
        const sources: number[] = [];
        const keys: number[] = [];
        const consider = (i: number) => {
          if (i === d) return;
          const kb = endKey(serverKeys.before, i);
          const ka = endKey(serverKeys.after, i);
          if (kb === ka && st.changed[i] === 0) return;
          const c = clientOf(st, i);
          const ckb = endKey(c.keys.before, d);
          const cka = endKey(c.keys.after, d);
          if (kb === ka && ckb === cka) return;
          sources.push(i);
          keys.push(kb, ka, ckb, cka);
        };
        if (dstChanged) for (let i = 0; i < st.hosts.specs.length; i++) consider(i);
        else for (const i of st.changing) consider(i);
        for (const proto of PROTOS) {
          sources.forEach((i, j) => {
            const [kb, ka, ckb, cka] = keys.slice(4 * j, 4 * j + 4) as [number, number, number, number];
            const v = st.hosts.values[i]!;
            const sb = serverHalf('before', proto, [[v, v]], kb, true);
            const sa = serverHalf('after', proto, [[v, v]], ka, true);
            const cb = clientHalf(st, i, 'before', proto, d, ckb);
            const ca = clientHalf(st, i, 'after', proto, d, cka);
            if (sb === sa && cb === ca) return;
            emit({ kind: 'host', name: st.hosts.specs[i]!.name }, proto, changesOfPair(cb, sb, ca, sa));
          });
          if (!dstChanged) continue;
          // Externals on this side: machines outside the fleet, no rules of their own.
          for (const ext of inv.externals.filter((e) => e.side === side)) {
            const addr = family === 4 ? ext.address : ext.address6;
            if (!addr) continue;
            const v = addressValue(addr);
            const c = changeFrom(proto, [[v, v]]);
            if (c) emit({ kind: 'external', name: ext.name }, proto, c);
          }
          emitOtherAddresses(proto);
        }
      }
    }
  }
  return out;
}

/** Ranges without the given addresses. */
export function subtractAddresses(ranges: Array<Interval<bigint>>, addrs: readonly string[]): Array<Interval<bigint>> {
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
