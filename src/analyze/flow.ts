// A connection works only if every packet it needs passes both hosts, each along
// its kernel path (path.ts): the client's first packet out and in at the server
// (NEW), the server's replies out and in at the client (ESTABLISHED), and for TCP
// the client's further packets (ESTABLISHED: the handshake's ACK and the data).
// The first packet that does not pass decides the outcome.
import type { Family } from '../model/inventory.js';
import type { RuleSet } from '../model/ruleset.js';
import type { HostView, Packet } from './evaluate.js';
import { evaluatePath, type PathResult, type Rewrite } from './path.js';
import { formatTcpFlags, TCP_FLAG } from './netfilter-names.js';

export interface FlowEnd {
  name: string;
  addr: string;
  iface?: string;
  /** Undefined for a machine outside the fleet: it accepts everything. */
  rs?: RuleSet;
  /** The host's own addresses (default: `addr`): what it keeps, and what `-m addrtype` calls LOCAL. */
  local?: ReadonlySet<string>;
}

export interface Flow {
  family: Family;
  proto: 'tcp' | 'udp' | 'icmp';
  /** Destination port (tcp/udp). */
  port?: number;
  client: FlowEnd;
  server: FlowEnd;
}

export type FlowLeg = 'client-out' | 'server-in' | 'server-reply-out' | 'client-reply-in' | 'client-ack-out' | 'server-ack-in';

/** `diverted`: a nat rule sends the connection somewhere else than the server's address. */
export type Outcome = 'allow' | 'reject' | 'drop' | 'unknown' | 'diverted';

export interface LegResult {
  leg: FlowLeg;
  /** Host whose rule set was evaluated. */
  host: string;
  packet: Packet;
  evaluation: PathResult;
}

export interface FlowResult {
  outcome: Outcome;
  /** The leg that denied (or could not be evaluated, or was diverted). */
  leg?: FlowLeg;
  /** Host whose rule set decided. */
  host?: string;
  /** The deciding leg's evaluation; for `allow`, the server's first packet in (else the client's out). */
  evaluation?: PathResult;
  /** Every leg that was evaluated, in packet order. */
  legs: LegResult[];
  /** Address rewrites on the way (a REDIRECT at the server: the connection reaches another local port). */
  rewrites: Rewrite[];
  /** Why nothing was evaluated (the class is too fine-grained to prove one packet at a time). */
  reason?: string;
}

const F = TCP_FLAG as Record<'FIN' | 'SYN' | 'RST' | 'PSH' | 'ACK' | 'URG', number>;
/** The flags a real client opens with, and those an attacker's opening SYN may carry (Linux accepts PSH and URG on it). */
export const OPEN_FLAGS = { connect: [F.SYN], any: [F.SYN, F.SYN | F.PSH, F.SYN | F.URG, F.SYN | F.PSH | F.URG] };
/** What every later packet of a working connection carries: the handshake's answers, data and the close. */
const DATA = [F.ACK, F.PSH | F.ACK, F.FIN | F.ACK, F.FIN | F.PSH | F.ACK];
const SYN_ACK = F.SYN | F.ACK;

const ICMP_ECHO = { 4: { request: 8, reply: 0 }, 6: { request: 128, reply: 129 } } as const;

/** One concrete connection: its source, source port, and the TCP flags each leg's packets may have. */
export interface Connection {
  src: string;
  sport?: number;
  flags?: { open: number[]; reply: number[]; ack: number[] };
  /** Only the request must arrive (UDP denied: a datagram that arrives was delivered, answered or not). */
  requestOnly?: boolean;
}

const viewOf = (end: FlowEnd): HostView => ({ local: end.local ?? new Set([end.addr]) });

interface LegSpec {
  leg: FlowLeg;
  server: boolean;
  /** Client to server (the connection's original direction). */
  forward: boolean;
  dir: 'in' | 'out';
  state: 'NEW' | 'ESTABLISHED';
  flags: 'open' | 'reply' | 'ack';
}

const LEGS: readonly LegSpec[] = [
  { leg: 'client-out', server: false, forward: true, dir: 'out', state: 'NEW', flags: 'open' },
  { leg: 'server-in', server: true, forward: true, dir: 'in', state: 'NEW', flags: 'open' },
  { leg: 'server-reply-out', server: true, forward: false, dir: 'out', state: 'ESTABLISHED', flags: 'reply' },
  { leg: 'client-reply-in', server: false, forward: false, dir: 'in', state: 'ESTABLISHED', flags: 'reply' },
  { leg: 'client-ack-out', server: false, forward: true, dir: 'out', state: 'ESTABLISHED', flags: 'ack' },
  { leg: 'server-ack-in', server: true, forward: true, dir: 'in', state: 'ESTABLISHED', flags: 'ack' },
];

const NO_FLAGS: ReadonlyArray<number | undefined> = [undefined];

/** One connection's evaluation so far. */
interface Progress {
  legs: LegResult[];
  rewrites: Rewrite[];
  /** The server's side of the connection after a rewrite at the server (where the client's packets land). */
  mapping?: { dst: string; dport?: number };
}

/** Evaluate one connection, leg by leg; the first packet that does not pass decides. */
export function evaluateConnection(f: Flow, c: Connection, views?: { client: HostView; server: HostView }): FlowResult {
  const v = views ?? { client: viewOf(f.client), server: viewOf(f.server) };
  const p: Progress = { legs: [], rewrites: [] };
  // UDP denied: only the request must arrive. ICMP and UDP have no handshake ACK.
  const count = c.requestOnly ? 2 : f.proto === 'tcp' ? 6 : 4;
  for (let i = 0; i < count; i++) {
    const spec = LEGS[i] as LegSpec;
    const denied = runLeg(f, c, spec, spec.server ? v.server : v.client, p);
    if (denied) return denied;
  }
  const { legs, rewrites } = p;
  const deciding = legs.find((l) => l.leg === 'server-in') ?? legs.find((l) => l.leg === 'client-out') ?? legs[0];
  return deciding ? { outcome: 'allow', host: deciding.host, evaluation: deciding.evaluation, legs, rewrites } : { outcome: 'allow', legs, rewrites };
}

function runLeg(f: Flow, c: Connection, spec: LegSpec, view: HostView, p: Progress): FlowResult | undefined {
  const end = spec.server ? f.server : f.client;
  if (!end.rs) return undefined;
  const flags = f.proto === 'tcp' && c.flags ? c.flags[spec.flags] : NO_FLAGS;
  for (const tcpFlags of flags) {
    const packet = packetOf(f, c, spec, end.iface, tcpFlags, p.mapping);
    const mapping = spec.server && spec.forward && spec.state === 'ESTABLISHED' ? p.mapping : undefined;
    const evaluation = evaluatePath(end.rs, packet, spec.dir, view, mapping ? { mapping } : {});
    p.legs.push({ leg: spec.leg, host: end.name, packet, evaluation });
    if (spec.state === 'NEW' && evaluation.rewrites.length > 0) p.rewrites.push(...evaluation.rewrites);
    if (evaluation.verdict !== 'ACCEPT') {
      const outcome = evaluation.verdict === 'REJECT' ? 'reject' : evaluation.verdict === 'DROP' ? 'drop' : 'unknown';
      return { outcome, leg: spec.leg, host: end.name, evaluation, legs: p.legs, rewrites: p.rewrites };
    }
    if (spec.state === 'NEW' && evaluation.rewrites.length > 0) {
      // Sent somewhere else by the client, or routed on by the server: not this connection.
      if (!spec.server || evaluation.forwarded) return { outcome: 'diverted', leg: spec.leg, host: end.name, evaluation, legs: p.legs, rewrites: p.rewrites };
      const d = evaluation.packet;
      p.mapping = d.dport !== undefined ? { dst: d.dst, dport: d.dport } : { dst: d.dst };
    } else if (evaluation.forwarded) {
      return { outcome: 'diverted', leg: spec.leg, host: end.name, evaluation, legs: p.legs, rewrites: p.rewrites };
    }
  }
  return undefined;
}

// Every packet is built with the same fields in the same order (absent ones
// undefined): the evaluator then sees one object shape, which V8 keeps fast.
function packetOf(f: Flow, c: Connection, spec: LegSpec, iface: string | undefined, tcpFlags: number | undefined, mapping: Progress['mapping']): Packet {
  const icmp = f.proto === 'icmp';
  const echo = ICMP_ECHO[f.family];
  const forward = spec.forward;
  // The server answers from the address and port the connection reached.
  const serverAddr = spec.server && !forward && mapping ? mapping.dst : f.server.addr;
  const serverPort = spec.server && !forward && mapping?.dport !== undefined ? mapping.dport : f.port;
  return {
    family: f.family,
    hook: spec.dir === 'in' ? 'PREROUTING' : 'OUTPUT',
    in: spec.dir === 'in' ? iface : '',
    out: spec.dir === 'out' ? iface : '',
    src: forward ? c.src : serverAddr,
    dst: forward ? f.server.addr : c.src,
    proto: f.proto,
    sport: icmp ? undefined : forward ? c.sport : serverPort,
    dport: icmp ? undefined : forward ? f.port : c.sport,
    state: spec.state,
    tcpFlags,
    icmpType: icmp ? (forward ? echo.request : echo.reply) : undefined,
    icmpCode: icmp ? 0 : undefined,
  };
}

/** The flags each leg needs for a connection that must work (`allow`) or for one attacker's packet (`deny`). */
export function legFlags(mode: 'allow' | 'deny', open: number): NonNullable<Connection['flags']> {
  return mode === 'allow' ? { open: [open], reply: [SYN_ACK, ...DATA], ack: DATA } : { open: [open], reply: [SYN_ACK], ack: [F.ACK] };
}

/** `192.0.2.10:32768 -> 192.0.2.14:22/tcp SYN (NEW)`, as a person reads a packet. */
export function describePacket(p: Packet): string {
  const at = (addr: string, port: number | undefined) => (port === undefined ? addr : `${p.family === 6 ? `[${addr}]` : addr}:${port}`);
  const proto = p.proto === 'icmp' ? `icmp${p.family === 6 ? 'v6' : ''} type ${p.icmpType ?? '?'}` : p.proto;
  const flags = p.tcpFlags === undefined ? '' : ` ${formatTcpFlags(p.tcpFlags)}`;
  return `${at(p.src, p.sport)} -> ${at(p.dst, p.dport)}/${proto}${flags} (${p.state})`;
}
