// A connection works only if four packets pass: the client's first packet out and
// in at the server (NEW), and the server's reply out and in at the client
// (ESTABLISHED). The first leg that does not accept decides the outcome.
import type { Family } from '../model/inventory.js';
import type { RuleSet } from '../model/ruleset.js';
import { evaluatePacket, type Evaluation, type Packet } from './evaluate.js';

export interface FlowEnd {
  name: string;
  addr: string;
  iface?: string;
  /** Undefined for a machine outside the fleet: it accepts everything. */
  rs?: RuleSet;
}

export interface Flow {
  family: Family;
  proto: 'tcp' | 'udp' | 'icmp';
  /** Destination port (tcp/udp). */
  port?: number;
  /** ICMP echo (the only ICMP flow we model). */
  icmp?: true;
  client: FlowEnd;
  server: FlowEnd;
}

export type FlowLeg = 'client-out' | 'server-in' | 'server-reply-out' | 'client-reply-in';

export interface LegResult {
  leg: FlowLeg;
  /** Host whose rule set was evaluated. */
  host: string;
  packet: Packet;
  evaluation: Evaluation;
}

export interface FlowResult {
  outcome: 'allow' | 'reject' | 'drop' | 'unknown';
  /** The leg that denied (or could not be evaluated). */
  leg?: FlowLeg;
  /** Host whose rule set decided. */
  host?: string;
  /** The deciding leg's evaluation; for `allow`, the server's INPUT (else the client's OUTPUT). Absent when no side has rules. */
  evaluation?: Evaluation;
  /** Every leg that was evaluated, in packet order. */
  legs: LegResult[];
}

/** The client's source port: any ephemeral port; rules rarely care. */
export const EPHEMERAL_PORT = 40000;

const ICMP_ECHO = { 4: { request: 8, reply: 0 }, 6: { request: 128, reply: 129 } } as const;

/** Describe the four packets of a flow. */
export function buildFlowPackets(f: Flow): Array<{ leg: FlowLeg; end: FlowEnd; packet: Packet }> {
  const { family, proto } = f;
  const echo = ICMP_ECHO[family];
  const ports = (forward: boolean): Partial<Packet> =>
    proto === 'icmp'
      ? { icmpType: forward ? echo.request : echo.reply, icmpCode: 0 }
      : forward
        ? { sport: EPHEMERAL_PORT, ...(f.port === undefined ? {} : { dport: f.port }) }
        : { dport: EPHEMERAL_PORT, ...(f.port === undefined ? {} : { sport: f.port }) };
  const fwd = { family, proto, src: f.client.addr, dst: f.server.addr, ...ports(true) };
  const back = { family, proto, src: f.server.addr, dst: f.client.addr, ...ports(false) };
  const opt = (k: 'in' | 'out', v: string | undefined) => (v === undefined ? {} : { [k]: v });
  return [
    { leg: 'client-out', end: f.client, packet: { ...fwd, hook: 'OUTPUT', state: 'NEW', ...opt('out', f.client.iface) } },
    { leg: 'server-in', end: f.server, packet: { ...fwd, hook: 'INPUT', state: 'NEW', ...opt('in', f.server.iface) } },
    { leg: 'server-reply-out', end: f.server, packet: { ...back, hook: 'OUTPUT', state: 'ESTABLISHED', syn: false, ...opt('out', f.server.iface) } },
    { leg: 'client-reply-in', end: f.client, packet: { ...back, hook: 'INPUT', state: 'ESTABLISHED', syn: false, ...opt('in', f.client.iface) } },
  ];
}

export function evaluateFlow(f: Flow): FlowResult {
  const legs: LegResult[] = [];
  for (const { leg, end, packet } of buildFlowPackets(f)) {
    if (!end.rs) continue;
    const evaluation = evaluatePacket(end.rs, packet);
    legs.push({ leg, host: end.name, packet, evaluation });
    if (evaluation.verdict !== 'ACCEPT') {
      const outcome = evaluation.verdict === 'REJECT' ? 'reject' : evaluation.verdict === 'DROP' ? 'drop' : 'unknown';
      return { outcome, leg, host: end.name, evaluation, legs };
    }
  }
  const deciding = legs.find((l) => l.leg === 'server-in') ?? legs.find((l) => l.leg === 'client-out') ?? legs[0];
  return deciding ? { outcome: 'allow', host: deciding.host, evaluation: deciding.evaluation, legs } : { outcome: 'allow', legs };
}
