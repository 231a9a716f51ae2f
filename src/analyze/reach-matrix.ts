// Who can reach whom, by groups: the proofs of reach.ts (each end's half per class
// of packets, combined) for every pair of hosts rather than only the pairs a change
// touches, gathered into a matrix of source groups, externals and any other address
// against destination groups, before and after the change.
//
// A cell aggregates the pairs (source host, destination host) of its row and column,
// a host never with itself. A pair reaches a port when some address of the
// destination (public or private side) admits the connection from the source's
// address on that side, for every packet of the class. Per port the cell says
// `all` (every pair reaches it), `some` (some pairs do, every other pair is proven
// denied) or `unknown` (not every pair does, and some pair fleetfw cannot tell).
// A host that does not exist before (or after) is in no pair then. The change of
// a cell is the union of its pairs' changes: ports some pair opens, closes, or
// cannot be told, so a new member reaching what its group already reached shows.
import type { Family, HostSpec, Side } from '../model/inventory.js';
import { addressOfValue, addressValue, cidrBounds } from './cidr.js';
import type { FlowEnd } from './flow.js';
import { ownAddresses } from './lockout.js';
import { splitIntervals, type Interval } from './prove.js';
import {
  addressKey,
  addressPieces,
  ALLOW_ALL,
  changesOf,
  combine,
  DENY_ALL,
  half,
  halfInterner,
  hostEnd,
  MAX_HALVES,
  merge,
  otherAddresses,
  ReachTooLarge,
  signatureOf,
  subtractAddresses,
  WHOLE,
  zipHalves,
  type Half,
  type HostRuleSets,
  type ReachChange,
  type ReachInput,
  type ReachProto,
} from './reach.js';

/** Past this many pairs of hosts (both directions: about 316 hosts, a few seconds), the matrix is not drawn. */
export const MAX_MATRIX_PAIRS = 100_000;

export type MatrixReach = 'all' | 'some' | 'unknown';

export interface MatrixPorts {
  ports: Interval<number>;
  reach: MatrixReach;
}

/** One protocol and family of a cell: the ports reached before and after (merged, sorted), and what changed. */
export interface MatrixEntry {
  proto: ReachProto;
  family: Family;
  before: MatrixPorts[];
  after: MatrixPorts[];
  open: Array<Interval<number>>;
  close: Array<Interval<number>>;
  unknown: Array<Interval<number>>;
}

export interface MatrixCell {
  /** Pairs of hosts (or destination hosts, for an external or any other address) the cell holds. */
  pairs: { before: number; after: number };
  entries: MatrixEntry[];
}

/** A row or column: a group, a host in no group, an external, or any other address on one side. */
export interface MatrixAxis {
  name: string;
  kind: 'group' | 'host' | 'external' | 'any';
  side?: Side;
  /** Hosts in it (after the change), in inventory order; none for externals and any other address. */
  members: string[];
}

export interface ReachMatrix {
  rows: MatrixAxis[];
  columns: MatrixAxis[];
  /** `cells[row][column]`. */
  cells: MatrixCell[][];
}

type When = 'before' | 'after';
type Verdict = Half[number]['v'];
type Changes = Record<ReachChange['change'], Array<Interval<number>>>;

const SIDES: readonly Side[] = ['public', 'private'];
const PROTOS: readonly ReachProto[] = ['tcp', 'udp'];
const FAMILIES: readonly Family[] = [4, 6];
const NO_CHANGE: Changes = { open: [], close: [], unknown: [] };

/** Reached by either address: allowed if either allows, else undecided if either is. */
const either = (x: Verdict, y: Verdict): Verdict => (x === 'allow' || y === 'allow' ? 'allow' : x === 'unknown' || y === 'unknown' ? 'unknown' : 'deny');

/** Per port, how many of the counted halves allow it and how many cannot tell. */
function aggregate(counts: ReadonlyMap<Half, number>): MatrixPorts[] {
  const halves = [...counts.keys()];
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  if (total === 0) return [];
  const cuts = [...new Set(halves.flatMap((h) => h.map((x) => x.ports[0])))].sort((a, b) => a - b);
  const at = halves.map(() => 0);
  const out: MatrixPorts[] = [];
  cuts.forEach((lo, k) => {
    const hi = (cuts[k + 1] ?? 65536) - 1;
    let allow = 0;
    let unknown = 0;
    halves.forEach((h, i) => {
      while (h[at[i]!]!.ports[1] < lo) at[i]!++;
      const v = h[at[i]!]!.v;
      if (v === 'allow') allow += counts.get(h)!;
      else if (v === 'unknown') unknown += counts.get(h)!;
    });
    const reach: MatrixReach | undefined = allow === total ? 'all' : unknown > 0 ? 'unknown' : allow > 0 ? 'some' : undefined;
    if (!reach) return;
    const last = out[out.length - 1];
    if (last && last.reach === reach && last.ports[1] + 1 === lo) last.ports = [last.ports[0], hi];
    else out.push({ ports: [lo, hi], reach });
  });
  return out;
}

/** A cell being filled: per protocol and family, how often each half occurs before and after, and the distinct changes. */
class CellAcc {
  pairs = { before: 0, after: 0 };
  readonly entries = new Map<string, { before: Map<Half, number>; after: Map<Half, number>; changes: Set<Changes> }>();
  add(key: string, b: Half | undefined, a: Half | undefined, c: Changes): void {
    let e = this.entries.get(key);
    if (!e) this.entries.set(key, (e = { before: new Map(), after: new Map(), changes: new Set() }));
    if (b) e.before.set(b, (e.before.get(b) ?? 0) + 1);
    if (a) e.after.set(a, (e.after.get(a) ?? 0) + 1);
    if (c !== NO_CHANGE) e.changes.add(c);
  }
  cell(): MatrixCell {
    const entries: MatrixEntry[] = [];
    for (const family of FAMILIES) {
      for (const proto of PROTOS) {
        const e = this.entries.get(`${family}${proto}`);
        if (!e) continue;
        const union = (k: keyof Changes) => merge([...e.changes].flatMap((c) => c[k].map(([lo, hi]): Interval<number> => [lo, hi])).sort((x, y) => x[0] - y[0]));
        const entry = { proto, family, before: aggregate(e.before), after: aggregate(e.after), open: union('open'), close: union('close'), unknown: union('unknown') };
        if (entry.before.length + entry.after.length + entry.open.length + entry.close.length + entry.unknown.length > 0) entries.push(entry);
      }
    }
    return { pairs: this.pairs, entries };
  }
}

/** A host on one side, with its rules then (one object before and after when they do not change) and its halves. */
interface End {
  flow: FlowEnd;
  value: bigint;
  /** The halves this end's rules give, by role and protocol, then by the signature of the other end's address. */
  memo: Map<string, Map<string, Half>>;
}

/** The matrix of `input` (reach.ts's input: the inventory, each host's rules before and after). */
export function reachMatrix(input: ReachInput): ReachMatrix {
  const { inv, before, after } = input;
  const maps: Record<When, ReadonlyMap<string, HostRuleSets>> = { before, after };
  const hosts = inv.hosts.filter((h) => before.has(h.name) || after.has(h.name));
  const pairCount = hosts.length * (hosts.length - 1);
  if (pairCount > MAX_MATRIX_PAIRS) throw new ReachTooLarge(`${pairCount} pairs of hosts, more than ${MAX_MATRIX_PAIRS}`);
  const differs = hosts.map((h) => {
    const b = before.get(h.name);
    const a = after.get(h.name);
    return !b || !a || b.v4 !== a.v4 || b.v6 !== a.v6;
  });

  // The axes: groups as intents name them (not `all`), a host in none by its name.
  const hostNames = new Set(inv.hosts.map((h) => h.name));
  const groupsOf = (h: HostSpec): string[] => {
    const gs = h.groups.filter((g) => g !== 'all' && !hostNames.has(g));
    return gs.length > 0 ? gs : [h.name];
  };
  const members = new Map<string, string[]>();
  for (const h of hosts) for (const g of groupsOf(h)) members.set(g, [...(members.get(g) ?? []), h.name]);
  const columns: MatrixAxis[] = [...members.keys()].sort().map((name) => ({ name, kind: hostNames.has(name) ? 'host' : 'group', members: members.get(name)! }));
  const rows: MatrixAxis[] = [
    ...SIDES.map((side): MatrixAxis => ({ name: `any other address (${side})`, kind: 'any', side, members: [] })),
    ...inv.externals.map((e): MatrixAxis => ({ name: e.name, kind: 'external', side: e.side, members: [] })),
    ...columns,
  ];
  const grid = rows.map(() => columns.map(() => new CellAcc()));
  const column = new Map(columns.map((c, i) => [c.name, i]));
  const anyRow = (side: Side) => SIDES.indexOf(side);
  const groupRow = 2 + inv.externals.length;
  // Each host's columns, and its rows as a source.
  const into = hosts.map((h) => groupsOf(h).map((g) => column.get(g)!));
  const from = into.map((cs) => cs.map((c) => grid[groupRow + c]!));

  // Halves with the same verdicts are one object: pairs are then compared, counted and combined by identity.
  let proofs = 0;
  const intern = halfInterner();
  const memo2 = <T>(store: Map<Half, Map<Half, T>>, a: Half, b: Half, make: () => T): T => {
    let inner = store.get(a);
    if (!inner) store.set(a, (inner = new Map()));
    let v = inner.get(b);
    if (v === undefined) inner.set(b, (v = make()));
    return v;
  };
  const combined = new Map<Half, Map<Half, Half>>();
  const eithers = new Map<Half, Map<Half, Half>>();
  const changeMemo = new Map<Half, Map<Half, Changes>>();
  /** A pair's changes; undecided ports are said when an end's rules changed, as the diff says them. */
  const changes = (b: Half | undefined, a: Half | undefined, rulesChanged: boolean): Changes => {
    const x = b ?? DENY_ALL;
    const y = a ?? DENY_ALL;
    if (x !== y) return memo2(changeMemo, x, y, () => changesOf(x, y));
    if (!rulesChanged || !x.some((p) => p.v === 'unknown')) return NO_CHANGE;
    return memo2(changeMemo, x, y, () => ({ open: [], close: [], unknown: merge(x.filter((p) => p.v === 'unknown').map((p) => p.ports)) }));
  };

  // ends[when][side][family][host]
  const ends = (['before', 'after'] as const).map((when) =>
    SIDES.map((side) =>
      FAMILIES.map((family) =>
        hosts.map((h): End | undefined => {
          const flow = maps[when].has(h.name) ? hostEnd(h, maps[when].get(h.name), side, family) : undefined;
          return flow && { flow, value: addressValue(flow.addr), memo: new Map() };
        }),
      ),
    ),
  );
  // An end whose rules did not change is the same end before and after: its halves are proven once.
  ends[1]!.forEach((bySide, s) => bySide.forEach((byFamily, f) => byFamily.forEach((e, i) => {
    const b = ends[0]![s]![f]![i];
    if (e && b && e.flow.rs === b.flow.rs) byFamily[i] = b;
  })));
  const halfOf = (end: End, role: string, other: bigint, make: () => Half): Half => {
    let memo = end.memo.get(role);
    if (!memo) end.memo.set(role, (memo = new Map()));
    const key = signatureOf(end.flow.rs!)(other);
    let h = memo.get(key);
    if (!h) {
      if (++proofs > MAX_HALVES) throw new ReachTooLarge(`more than ${MAX_HALVES} distinct classes of flows to prove`);
      memo.set(key, (h = intern(make())));
    }
    return h;
  };
  // A host's half as client towards another host's address.
  const clientHalf = (src: End, family: Family, proto: ReachProto, dst: End): Half =>
    src.flow.rs ? halfOf(src, `client ${proto}`, dst.value, () => half(family, proto, src.flow, { name: dst.flow.name, addr: dst.flow.addr }, src.flow.rs!)) : ALLOW_ALL;
  // A host's half as server for sources that are machines with no rules of their own (`host`: a fleet host's client ports).
  const serverHalf = (end: End, family: Family, proto: ReachProto, srcs: Array<Interval<bigint>>, host: boolean): Half =>
    end.flow.rs ? halfOf(end, `server ${proto} ${host}`, srcs[0]![0], () => half(family, proto, { name: host ? 'host' : 'any', addr: addressOfValue(srcs[0]![0], family) }, end.flow, end.flow.rs!, srcs)) : ALLOW_ALL;

  /** From host `s` to host `d`, by either address of `d`; undefined when the pair does not exist then or has no address of the family. */
  const pairHalf = (w: number, s: number, d: number, f: number, family: Family, proto: ReachProto): Half | undefined => {
    let out: Half | undefined;
    for (let side = 0; side < SIDES.length; side++) {
      const server = ends[w]![side]![f]![d];
      const client = ends[w]![side]![f]![s];
      if (!server || !client) continue;
      const c = clientHalf(client, family, proto, server);
      const sv = serverHalf(server, family, proto, [[client.value, client.value]], true);
      const h = memo2(combined, c, sv, () => intern(combine(c, sv)));
      out = out ? memo2(eithers, out, h, () => intern(zipHalves(out!, h, either))) : h;
    }
    return out;
  };

  // The addresses named on each side (its hosts, its externals): every other address is "any other address" there.
  const others = SIDES.map((side) =>
    FAMILIES.map((family) => {
      const named = [...hosts.flatMap((h) => h[addressKey(side, family)] ?? []), ...inv.externals.filter((e) => e.side === side).flatMap((e) => (family === 4 ? e.address : e.address6) ?? [])];
      return otherAddresses(family, named);
    }),
  );

  hosts.forEach((_, d) => {
    (['before', 'after'] as const).forEach((when) => {
      if (!maps[when].has(hosts[d]!.name)) return;
      const others = hosts.filter((h, s) => s !== d && maps[when].has(h.name));
      for (const c of into[d]!) {
        for (const h of others) for (const g of groupsOf(h)) grid[groupRow + column.get(g)!]![c]!.pairs[when]++;
        for (let r = 0; r < groupRow; r++) grid[r]![c]!.pairs[when]++;
      }
    });
  });

  FAMILIES.forEach((family, f) => {
    for (const proto of PROTOS) {
      const key = `${family}${proto}`;
      hosts.forEach((dst, d) => {
        const cols = into[d]!;
        const add = (rows: CellAcc[][], b: Half | undefined, a: Half | undefined, c: Changes) => {
          for (const row of rows) for (const col of cols) row[col]!.add(key, b, a, c);
        };
        for (let s = 0; s < hosts.length; s++) {
          if (s === d) continue;
          const b = pairHalf(0, s, d, f, family, proto);
          const a = pairHalf(1, s, d, f, family, proto);
          if (b || a) add(from[s]!, b, a, changes(b, a, differs[s]! || differs[d]!));
        }
        inv.externals.forEach((ext, e) => {
          const addr = family === 4 ? ext.address : ext.address6;
          const side = SIDES.indexOf(ext.side);
          const sb = ends[0]![side]![f]![d];
          const sa = ends[1]![side]![f]![d];
          if (!addr || (!sb && !sa)) return;
          const v = addressValue(addr);
          const b = sb && serverHalf(sb, family, proto, [[v, v]], false);
          const a = sa && serverHalf(sa, family, proto, [[v, v]], false);
          add([grid[2 + e]!], b, a, changes(b, a, differs[d]!));
        });
        // Any other address, piece by piece (cut where either rule set tells addresses apart); each piece counts as a source.
        SIDES.forEach((side, i) => {
          const sb = ends[0]![i]![f]![d];
          const sa = ends[1]![i]![f]![d];
          if (!sb && !sa) return;
          const pieces = addressPieces([cidrBounds(WHOLE[family])], [sb?.flow.rs, sa?.flow.rs]);
          // A host never takes a packet claiming one of its own addresses as source.
          const own = ownAddresses(dst).filter((x) => x.includes(':') === (family === 6));
          for (const piece of splitIntervals(subtractAddresses(others[i]![f]!, own), pieces.slice(1).map((p) => p[0]))) {
            const b = sb && serverHalf(sb, family, proto, [piece], false);
            const a = sa && serverHalf(sa, family, proto, [piece], false);
            add([grid[anyRow(side)]!], b, a, changes(b, a, differs[d]!));
          }
        });
      });
    }
  });
  return { rows, columns, cells: grid.map((row) => row.map((acc) => acc.cell())) };
}
