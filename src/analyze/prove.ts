// Proofs over classes of packets, not samples. A class is every connection a
// client may open: any source address of a range, any source port of a range,
// any opening TCP flags of a set. The rules of both hosts cut each field into
// pieces that no rule tells apart (every boundary of every address, port and
// flag match); one connection per combination of pieces stands for all the
// others, so evaluating those is a proof for every packet of the class.
import type { Rule, RuleSet } from '../model/ruleset.js';
import { addressOfValue, addressValue, cidrBounds } from './cidr.js';
import { evaluateConnection, legFlags, OPEN_FLAGS, type Connection, type Flow, type FlowResult } from './flow.js';

export type Interval<T> = [lo: T, hi: T];

export interface FlowClass {
  /** Source addresses of the client; absent = the client's own address only. */
  srcs?: Array<Interval<bigint>>;
  /** Source ports of the client (tcp/udp). */
  sports?: Array<Interval<number>>;
  /** Flags the opening TCP packet may carry. */
  open?: number[];
  /**
   * allow: every packet of every connection of the class must pass (replies and
   * data included); deny: every connection of the class must fail somewhere.
   */
  mode: 'allow' | 'deny';
}

export interface ClassResult {
  ok: boolean;
  /** The counterexample's evaluation when the proof fails; the first connection's when it holds. */
  result: FlowResult;
  /** The connection `result` is of. */
  example: Connection;
  /** The ranges of source addresses and ports the example stands for. */
  range: { src?: Interval<string>; sport?: Interval<number> };
  /** Connections evaluated (one per piece the rules tell apart). */
  connections: number;
}

/** Past this many pieces fleetfw says it cannot tell rather than evaluate them all. */
const MAX_CONNECTIONS = 20_000;

const portCuts = new WeakMap<RuleSet, number[]>();
const addrCuts = new WeakMap<RuleSet, bigint[]>();
const setCuts = new WeakMap<readonly string[], bigint[]>();
const flagKeys = new WeakMap<RuleSet, Array<[number, number]>>();

const byNumber = (a: number, b: number) => a - b;
const byBigInt = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/** Every rule of every chain of every table. */
function* rulesOf(rs: RuleSet): Generator<Rule> {
  for (const t of rs.tables) for (const c of t.chains) yield* c.rules;
}

/** Computed once per rule set and kept with it. */
function cached<T>(memo: WeakMap<RuleSet, T>, rs: RuleSet, make: () => T): T {
  let v = memo.get(rs);
  if (v === undefined) memo.set(rs, (v = make()));
  return v;
}

/** Where port matches of `rs` start and stop (first port inside, first port after). */
export function portBoundaries(rs: RuleSet): number[] {
  return cached(portCuts, rs, () => {
    const set = new Set<number>();
    for (const r of rulesOf(rs)) for (const m of [r.sport, r.dport, r.ports]) if (m) for (const [a, b] of m.ranges) set.add(a).add(b + 1);
    return [...set].sort(byNumber);
  });
}

/** Where address matches of `rs` start and stop: networks, and every member of a set it matches. */
export function addressBoundaries(rs: RuleSet): bigint[] {
  return cached(addrCuts, rs, () => {
    const set = new Set<bigint>();
    for (const r of rulesOf(rs)) {
      for (const m of [r.src, r.dst]) {
        if (!m) continue;
        const [a, b] = cidrBounds(m.cidr);
        set.add(a).add(b + 1n);
      }
      for (const m of [r.srcSet, r.dstSet]) {
        const members = m && rs.sets?.get(m.name)?.members;
        if (members) for (const x of memberCuts(members)) set.add(x);
      }
    }
    return [...set].sort(byBigInt);
  });
}

function memberCuts(members: readonly string[]): bigint[] {
  let cuts = setCuts.get(members);
  if (!cuts) {
    cuts = members.flatMap((m) => {
      const v = addressValue(m);
      return [v, v + 1n];
    });
    setCuts.set(members, cuts);
  }
  return cuts;
}

/** The distinct `--tcp-flags` tests of `rs` (mask, comp). */
function flagTests(rs: RuleSet): Array<[number, number]> {
  return cached(flagKeys, rs, () => {
    const seen = new Map<number, [number, number]>();
    for (const r of rulesOf(rs)) if (r.tcpFlags) seen.set(r.tcpFlags.mask * 64 + r.tcpFlags.comp, [r.tcpFlags.mask, r.tcpFlags.comp]);
    return [...seen.values()];
  });
}

/** Cut each interval where a boundary falls inside it. */
export function splitIntervals<T extends number | bigint>(intervals: Array<Interval<T>>, cuts: readonly T[]): Array<Interval<T>> {
  const out: Array<Interval<T>> = [];
  for (const [lo, hi] of intervals) {
    let start = lo;
    // First cut above lo (binary search).
    let i = 0;
    let j = cuts.length;
    while (i < j) {
      const mid = (i + j) >> 1;
      if ((cuts[mid] as T) <= lo) i = mid + 1;
      else j = mid;
    }
    for (; i < cuts.length && (cuts[i] as T) <= hi; i++) {
      const cut = cuts[i] as T;
      out.push([start, (typeof cut === 'bigint' ? cut - 1n : (cut as number) - 1) as T]);
      start = cut;
    }
    out.push([start, hi]);
  }
  return out;
}

/** One value per group of values that every flag test treats alike. */
function flagGroups(values: readonly number[], tests: ReadonlyArray<[number, number]>): number[] {
  const seen = new Set<string>();
  return values.filter((v) => {
    const sig = tests.map(([mask, comp]) => ((v & mask) === comp ? '1' : '0')).join('');
    if (seen.has(sig)) return false;
    seen.add(sig);
    return true;
  });
}

/** Where `-m addrtype` answers change: loopback, multicast, the limited broadcast. */
const ADDRTYPE_CUTS = ['127.0.0.0/8', '224.0.0.0/4', '255.255.255.255/32'].flatMap((c) => {
  const [a, b] = cidrBounds(c);
  return [a, b + 1n];
});

/** Cuts of a class of source addresses: every address boundary, and where address types change. */
function sourceCuts(client: RuleSet | undefined, server: RuleSet | undefined, local: ReadonlySet<string>): bigint[] {
  const cuts = cutsOf(addressBoundaries, client, server, byBigInt);
  const typed = [client, server].some((rs) => rs !== undefined && [...rulesOf(rs)].some((r) => r.addrType));
  if (!typed) return cuts;
  const extra = [...ADDRTYPE_CUTS, ...[...local].filter((a) => !a.includes(':')).flatMap((a) => [addressValue(a), addressValue(a) + 1n])];
  return [...new Set([...cuts, ...extra])].sort(byBigInt);
}

/** The boundaries of both ends' rule sets (most flows have one rule set, or the same cuts twice). */
function cutsOf<T extends number | bigint>(of: (rs: RuleSet) => T[], a: RuleSet | undefined, b: RuleSet | undefined, by: (x: T, y: T) => number): T[] {
  const x = a ? of(a) : [];
  const y = b ? of(b) : [];
  if (y.length === 0) return x;
  if (x.length === 0) return y;
  return [...new Set([...x, ...y])].sort(by);
}

/**
 * The flags of the connections to evaluate: allow, one connection carries every
 * opening variant; deny, each variant is its own attacker's packet. Values no
 * flag test tells apart are evaluated once.
 */
function tcpVariants(cls: FlowClass, tests: Array<[number, number]>): Array<NonNullable<Connection['flags']>> {
  const opens = flagGroups(cls.open ?? [2], tests);
  const group = (f: NonNullable<Connection['flags']>): NonNullable<Connection['flags']> =>
    tests.length === 0 ? { open: f.open, reply: f.reply.slice(0, 1), ack: f.ack.slice(0, 1) } : { open: f.open, reply: flagGroups(f.reply, tests), ack: flagGroups(f.ack, tests) };
  if (cls.mode === 'allow') return [{ ...group(legFlags('allow', opens[0] ?? 2)), open: opens }];
  // The attacker also picks the handshake's last packet: Linux completes it on a bare ACK or one carrying data.
  const acks = flagGroups(legFlags('allow', 2).ack, tests);
  return opens.flatMap((o) => acks.map((a) => ({ ...group(legFlags('deny', o)), ack: [a] })));
}

/**
 * Is `want` true of every connection of the class? Stops at the first that is
 * not (the counterexample).
 */
export function proveFlow(flow: Flow, cls: FlowClass, want: (r: FlowResult) => boolean): ClassResult {
  const { client, server } = flow;
  const family = flow.family;
  const views = { client: { local: client.local ?? new Set([client.addr]) }, server: { local: server.local ?? new Set([server.addr]) } };
  const srcPieces: Array<Interval<bigint> | undefined> = cls.srcs ? splitIntervals(cls.srcs, sourceCuts(client.rs, server.rs, views.server.local)) : [undefined];
  const portPieces: Array<Interval<number> | undefined> =
    flow.proto !== 'icmp' && cls.sports ? splitIntervals(cls.sports, cutsOf(portBoundaries, client.rs, server.rs, byNumber)) : [undefined];
  const variants = flow.proto === 'tcp' ? tcpVariants(cls, [...(client.rs ? flagTests(client.rs) : []), ...(server.rs ? flagTests(server.rs) : [])]) : [undefined];
  const total = srcPieces.length * portPieces.length * variants.length;
  let first: ClassResult | undefined;
  if (total > MAX_CONNECTIONS) {
    const example: Connection = { src: flow.client.addr };
    const result: FlowResult = { outcome: 'unknown', legs: [], rewrites: [], reason: `the rules cut this class into ${total} pieces; fleetfw proves at most ${MAX_CONNECTIONS}` };
    return { ok: false, result, example, range: {}, connections: 0 };
  }
  let connections = 0;
  for (const src of srcPieces) {
    for (const sport of portPieces) {
      for (const flags of variants) {
        const example: Connection = {
          src: src ? addressOfValue(src[0], family) : flow.client.addr,
          ...(sport ? { sport: sport[0] } : {}),
          ...(flags ? { flags } : {}),
          ...(cls.mode === 'deny' && flow.proto === 'udp' ? { requestOnly: true } : {}),
        };
        const result = evaluateConnection(flow, example, views);
        connections++;
        const range = {
          ...(src ? { src: [addressOfValue(src[0], family), addressOfValue(src[1], family)] as Interval<string> } : {}),
          ...(sport ? { sport } : {}),
        };
        if (!want(result)) return { ok: false, result, example, range, connections };
        first ??= { ok: true, result, example, range, connections: 0 };
      }
    }
  }
  return { ...(first as ClassResult), connections };
}

/** The opening flags of a connection a client makes, and of any opening an attacker may send. */
export const OPEN_CONNECT = OPEN_FLAGS.connect;
export const OPEN_ANY = OPEN_FLAGS.any;

/** Linux's default ephemeral ports (net.ipv4.ip_local_port_range): what a fleet host's client uses. */
export const LINUX_CLIENT_PORTS: Interval<number> = [32768, 60999];
/** Linux's ephemeral ports and the dynamic range (49152-65535) other systems use: what a machine outside the fleet may pick. */
export const ANY_CLIENT_PORTS: Interval<number> = [32768, 65535];
/** Every port: what an attacker may use. */
export const EVERY_PORT: Interval<number> = [0, 65535];

/** Addresses no packet from another machine carries: unspecified, loopback, multicast, reserved. */
const NEVER_A_SOURCE = ['0.0.0.0/8', '127.0.0.0/8', '224.0.0.0/4', '240.0.0.0/4'];
/** Networks that are not on the internet (private, shared, link-local): excluded from "anywhere". */
const NOT_ON_THE_INTERNET = ['10.0.0.0/8', '100.64.0.0/10', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16'];

/**
 * The source addresses of an IPv4 CIDR a packet can really come from, without
 * `own` (a host drops packets claiming its own address). The whole space stands
 * for the internet: its private networks are left out.
 */
export function sourceRange(cidr: string, own: readonly string[]): Array<Interval<bigint>> {
  const minus = [...NEVER_A_SOURCE, ...(cidr.endsWith('/0') ? NOT_ON_THE_INTERNET : []), ...own];
  let out: Array<Interval<bigint>> = [cidrBounds(cidr)];
  for (const m of minus) {
    const [a, b] = cidrBounds(m);
    out = out.flatMap(([lo, hi]): Array<Interval<bigint>> => {
      if (b < lo || a > hi) return [[lo, hi]];
      return [...(a > lo ? [[lo, a - 1n] as Interval<bigint>] : []), ...(b < hi ? [[b + 1n, hi] as Interval<bigint>] : [])];
    });
  }
  return out;
}
