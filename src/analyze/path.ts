// The path netfilter takes a packet through the tables of one host, in the
// kernel's order (hook priorities):
//   arriving:  raw PREROUTING, conntrack, mangle PREROUTING, nat PREROUTING (first
//              packet only), routing, then to this host: mangle INPUT, filter INPUT,
//              security INPUT, nat INPUT; or on: mangle FORWARD, filter FORWARD,
//              security FORWARD, mangle POSTROUTING, nat POSTROUTING;
//   leaving:   raw OUTPUT, conntrack, mangle OUTPUT, nat OUTPUT, filter OUTPUT,
//              security OUTPUT, mangle POSTROUTING, nat POSTROUTING.
// The nat table sees only a connection's first packet (NEW, tracked); an
// UNTRACKED packet (NOTRACK in raw) skips it and matches `--ctstate UNTRACKED`.
import type { CtState, RuleSet } from '../model/ruleset.js';
import { cidrContains } from './cidr.js';
import { walkTable, type DecidedBy, type Hook, type HostView, type Packet, type TableOutcome, type TraceStep } from './evaluate.js';

export type Direction = 'in' | 'out';

/** An address or port changed by a nat rule. */
export interface Rewrite {
  outcome: NonNullable<TableOutcome['nat']>;
  field: 'dst' | 'dport' | 'src';
  from: string;
  to: string;
}

export interface PathResult {
  verdict: 'ACCEPT' | 'DROP' | 'REJECT' | 'unknown';
  rejectWith?: string;
  /** The deciding rule or policy; for ACCEPT, the filter table's decision (else the last table's). */
  decidedBy: DecidedBy;
  /** Every rule the packet met (only when asked for: proofs do not need it). */
  trace: TraceStep[];
  /** The tables visited, `raw PREROUTING`, ..., up to the deciding one. */
  hops: string[];
  /** The packet as this host delivers it (arriving) or sends it (leaving), after any rewrite. */
  packet: Packet;
  rewrites: Rewrite[];
  /** Arriving, but routed on to another machine (its destination is not this host's). */
  forwarded?: boolean;
}

type Stage = readonly [table: string, hook: Hook, label: string];

const stage = (table: string, hook: Hook): Stage => [table, hook, `${table} ${hook}`];
const ARRIVE: readonly Stage[] = [stage('raw', 'PREROUTING'), stage('mangle', 'PREROUTING'), stage('nat', 'PREROUTING')];
const DELIVER: readonly Stage[] = [stage('mangle', 'INPUT'), stage('filter', 'INPUT'), stage('security', 'INPUT'), stage('nat', 'INPUT')];
const FORWARD: readonly Stage[] = [stage('mangle', 'FORWARD'), stage('filter', 'FORWARD'), stage('security', 'FORWARD'), stage('mangle', 'POSTROUTING'), stage('nat', 'POSTROUTING')];
const LEAVE: readonly Stage[] = [
  stage('raw', 'OUTPUT'), stage('mangle', 'OUTPUT'), stage('nat', 'OUTPUT'), stage('filter', 'OUTPUT'), stage('security', 'OUTPUT'), stage('mangle', 'POSTROUTING'), stage('nat', 'POSTROUTING'),
];

// Shared by results without a trace or rewrites (never written to).
const NONE: never[] = [];

// Which tables a rule set has, looked up once per rule set: most have only filter.
const tablesOf = new WeakMap<RuleSet, ReadonlySet<string>>();
function hasTable(rs: RuleSet, table: string): boolean {
  let names = tablesOf.get(rs);
  if (!names) tablesOf.set(rs, (names = new Set(rs.tables.map((t) => t.name))));
  return names.has(table);
}

/** Is `addr` this host's (delivered locally rather than routed on)? */
export function isLocal(addr: string, pkt: Packet, view: HostView): boolean {
  return view.local.has(addr) || cidrContains(pkt.family === 4 ? '127.0.0.0/8' : '::1/128', addr);
}

export interface PathOptions {
  /** For a later packet of a connection whose first packet was rewritten here: the rewrite conntrack applies at the nat hook. */
  mapping?: { dst: string; dport?: number };
  /** Record every rule met (explain). */
  trace?: boolean;
}

/**
 * Evaluate `start` along the path it takes through `rs`, arriving at the host
 * (`in`) or leaving it (`out`). `start.state` is the state conntrack gives it;
 * NOTRACK turns it UNTRACKED.
 */
export function evaluatePath(rs: RuleSet, start: Packet, dir: Direction, view: HostView, opts: PathOptions = {}): PathResult {
  const trace: TraceStep[] = opts.trace ? [] : NONE;
  const hops: string[] = [];
  let rewrites: Rewrite[] = NONE;
  // One working copy, its hook and state set per table (the walker reads them).
  const pkt: Packet = dir === 'in' ? { ...start, out: '' } : { ...start, in: '' };
  const state: CtState = start.state;
  let tracked = state;
  let accepted: DecidedBy | undefined;
  let forwarded = false;
  let stages = dir === 'in' ? ARRIVE : LEAVE;
  for (let i = 0; i < stages.length; i++) {
    const [table, hook, label] = stages[i] as Stage;
    if (table === 'nat' && tracked !== 'NEW') {
      // Later packets of a rewritten connection are rewritten at the same point, without the table.
      const m = opts.mapping;
      if (m && (hook === 'PREROUTING' || hook === 'OUTPUT')) {
        pkt.dst = m.dst;
        if (m.dport !== undefined) pkt.dport = m.dport;
      }
    } else if (hasTable(rs, table)) {
      hops.push(label);
      pkt.hook = hook;
      pkt.state = tracked;
      const o = walkTable(rs, table, pkt, opts.trace ? trace : undefined, view);
      if (o.kind !== 'continue') return finish(o, o.kind === 'drop' ? 'DROP' : o.kind === 'reject' ? 'REJECT' : 'unknown');
      if (table === 'filter' || (accepted === undefined && o.decidedBy.kind === 'rule')) accepted = o.decidedBy;
      if (o.notrack) tracked = 'UNTRACKED';
      if (o.nat) {
        if (rewrites === NONE) rewrites = [];
        const why = applyNat(o.nat, hook, pkt, view, rewrites);
        if (why !== undefined) return finish({ kind: 'unknown', decidedBy: { kind: 'unmodelled', rule: o.nat.rule, option: why } }, 'unknown');
      }
    }
    // Routing, once the destination is final: this host, or on to another machine.
    if (dir === 'in' && table === 'nat' && hook === 'PREROUTING') {
      forwarded = !isLocal(pkt.dst, pkt, view);
      stages = [...stages, ...(forwarded ? FORWARD : DELIVER)];
      if (forwarded) pkt.out = undefined;
    }
  }
  pkt.state = state;
  return finish({ kind: 'continue', decidedBy: accepted ?? { kind: 'policy', table: 'filter', chain: dir === 'in' ? (forwarded ? 'FORWARD' : 'INPUT') : 'OUTPUT' } }, 'ACCEPT');

  function finish(o: TableOutcome, verdict: PathResult['verdict']): PathResult {
    const r: PathResult = { verdict, decidedBy: o.decidedBy, trace, hops, packet: pkt, rewrites };
    if (o.rejectWith !== undefined) r.rejectWith = o.rejectWith;
    if (forwarded) r.forwarded = true;
    return r;
  }
}

/** Apply a nat rule to `pkt` in place; returns why the model does not follow it, if it does not. */
function applyNat(nat: NonNullable<TableOutcome['nat']>, hook: Hook, pkt: Packet, view: HostView, rewrites: Rewrite[]): string | undefined {
  const { effect } = nat;
  if (effect.kind === 'dnat') {
    if (hook !== 'PREROUTING' && hook !== 'OUTPUT') return `${nat.rule.target} in ${hook}`;
    // REDIRECT: to the receiving interface's address (this host's), or loopback for its own packets.
    const dst = effect.addr ?? (hook === 'OUTPUT' ? (pkt.family === 4 ? '127.0.0.1' : '::1') : localAddressFor(pkt, view));
    if (dst === undefined) return `REDIRECT to an address of ${pkt.in ?? 'the receiving interface'} that the inventory does not give`;
    const dport = effect.port ?? pkt.dport;
    if (dst !== pkt.dst) rewrites.push({ outcome: nat, field: 'dst', from: pkt.dst, to: dst });
    if (dport !== pkt.dport && dport !== undefined) rewrites.push({ outcome: nat, field: 'dport', from: String(pkt.dport), to: String(dport) });
    pkt.dst = dst;
    if (dport !== undefined) pkt.dport = dport;
    return undefined;
  }
  // Source rewriting to the address the packet already has changes nothing; anything else is not followed.
  const src = effect.addr ?? localAddressFor(pkt, view);
  if (src === pkt.src) return undefined;
  return `${nat.rule.target} rewrites the source ${pkt.src} to ${src ?? 'the interface address'} (fleetfw does not follow rewritten sources)`;
}

/** This host's address on the packet's side: the one the packet is addressed to or sent from. */
function localAddressFor(pkt: Packet, view: HostView): string | undefined {
  if (view.local.has(pkt.dst)) return pkt.dst;
  if (view.local.has(pkt.src)) return pkt.src;
  return undefined;
}
