// Seed 003's discovery step, checked against the rules about to be applied:
// for each listening socket of a host, is a NEW connection from the bastion,
// the internet and the host's private peers accepted? A service nobody can
// reach, or one open to the internet without an intent saying so, is worth a
// warning before the apply.
import { isIPv4, isIPv6 } from 'node:net';
import type { Family, HostSpec, Inventory, Side } from '../model/inventory.js';
import type { Listener } from '../model/listener.js';
import type { RuleSet } from '../model/ruleset.js';
import { bastionOf } from '../inventory/query.js';
import { addressSignature } from './evaluate.js';
import { decidedBy } from './explain.js';
import type { FlowResult } from './flow.js';
import type { Outcome } from './intents.js';
import { ownAddresses } from './lockout.js';
import { EVERY_PORT, OPEN_ANY, proveFlow } from './prove.js';

/** Stands in for "anyone on the internet" when the inventory names no public external. */
export const INTERNET_STAND_IN = '198.51.100.254';

export interface Reach {
  /** `bastion tunnel-1`, `internet`, `peer mysql-2`. */
  source: string;
  kind: 'bastion' | 'internet' | 'peer';
  side: Side;
  family: Family;
  outcome: Outcome;
  decidedBy: string;
}

export type ListenerStatus = 'local' | 'management' | 'ok' | 'public' | 'exposed' | 'blocked';

export interface ListenerAssessment {
  listener: Listener;
  /** Sides of the host the socket is bound on (none for loopback or other addresses). */
  sides: Side[];
  reach: Reach[];
  status: ListenerStatus;
  /** One line for people: who gets in, or why it is a warning. */
  summary: string;
}

function isLoopback(addr: string): boolean {
  return addr === '::1' || /^127\./.test(addr) || /^::ffff:127\./.test(addr);
}

/** Families and sides a socket bound to `address` answers on. `*` is a dual-stack wildcard, `::` IPv6 only. */
function bindings(host: HostSpec, l: Listener): Array<{ side: Side; family: Family }> {
  const a = l.address.replace(/^::ffff:/, '');
  const out: Array<{ side: Side; family: Family }> = [];
  for (const side of ['public', 'private'] as const) {
    if (l.device && l.device !== host.interfaces[side]) continue;
    const v4 = host[side];
    const v6 = host[`${side}6`];
    if ((a === '*' || a === '0.0.0.0' || a === v4) && v4) out.push({ side, family: 4 });
    if ((a === '*' || a === '::' || a === v6) && v6) out.push({ side, family: 6 });
  }
  return out;
}

/** Does an `allow` intent from a public external (or `all`) name this host and port? */
function intendedPublic(inv: Inventory, host: HostSpec, l: Listener): boolean {
  const publicFrom = new Set(inv.externals.filter((e) => e.side === 'public').map((e) => e.name));
  return inv.intents.some(
    (i) =>
      i.expect === 'allow' &&
      i.proto === l.proto &&
      i.port === l.port &&
      (i.to === host.name || host.groups.includes(i.to)) &&
      (publicFrom.has(i.from) || i.via === 'public'),
  );
}

/**
 * Who gets in to each listening socket of `host` under `sets`. `firstPeer`: stop
 * trying private peers at the first one let in, for callers that only need the
 * warnings (a blocked socket still tries every peer; an exposed one is told by the
 * internet alone): a fleet's plan then costs O(hosts), not O(hosts²).
 */
export function assessListeners(inv: Inventory, host: HostSpec, sets: { v4: RuleSet; v6: RuleSet }, listeners: readonly Listener[], opts: { firstPeer?: boolean } = {}): ListenerAssessment[] {
  const bastion = bastionOf(inv, host);
  const internet = inv.externals.find((e) => e.side === 'public');
  const peers = inv.hosts.filter((h) => h.name !== host.name && h.name !== bastion.name && h.network === host.network);
  // An address's signature depends on the rules only: computed once for all listeners.
  const local = new Set(ownAddresses(host));
  const signatures = new Map<string, string>();
  const signatureOf = (rs: RuleSet, addr: string): string => {
    let sig = signatures.get(addr);
    if (sig === undefined) signatures.set(addr, (sig = addressSignature(rs, addr, { local })));
    return sig;
  };
  return listeners.map((l) => {
    const where = bindings(host, l);
    if (where.length === 0) {
      const v6Only = l.address === '::' && !host.public6 && !host.private6;
      const why = isLoopback(l.address)
        ? 'loopback only'
        : v6Only
          ? `IPv6 only, and the inventory gives ${host.name} no IPv6 address`
          : `bound to ${l.address}${l.device ? `%${l.device}` : ''}, not an inventory address of ${host.name}`;
      return { listener: l, sides: [], reach: [], status: 'local', summary: why };
    }
    const reach: Reach[] = [];
    // Sources the rules cannot tell apart get one evaluation (see addressSignature).
    const seen = new Map<string, Pick<Reach, 'outcome' | 'decidedBy'>>();
    const probe = (source: string, kind: Reach['kind'], from: string | undefined, side: Side, family: Family) => {
      const to = family === 4 ? host[side] : host[`${side}6`];
      if (!from || !to || (family === 4 ? !isIPv4(from) : !isIPv6(from))) return;
      const rs = family === 4 ? sets.v4 : sets.v6;
      const key = `${side} ${family} ${signatureOf(rs, from)}`;
      let verdict = seen.get(key);
      if (!verdict) {
        // Does any connection from this source get in? A counterexample to "none does" says which;
        // only when none does, one that cannot be decided makes the answer unknown.
        const flow = { family, proto: l.proto, port: l.port, client: { name: source, addr: from }, server: { name: host.name, addr: to, iface: host.interfaces[side], rs, local } };
        const cls = { sports: [EVERY_PORT], open: OPEN_ANY, mode: 'deny' as const };
        const gets = proveFlow(flow, cls, (x: FlowResult) => x.outcome !== 'allow');
        const { result: r } = gets.ok ? proveFlow(flow, cls, (x: FlowResult) => x.outcome === 'reject' || x.outcome === 'drop') : gets;
        verdict = { outcome: r.outcome, decidedBy: r.evaluation || r.reason ? decidedBy(r) : '' };
        seen.set(key, verdict);
      }
      reach.push({ source, kind, side, family, ...verdict });
    };
    for (const { side, family } of where) {
      if (side === 'private' && bastion.name !== host.name) probe(`bastion ${bastion.name}`, 'bastion', family === 4 ? bastion.private : bastion.private6, side, family);
      if (side === 'public') probe('internet', 'internet', family === 4 ? (internet?.address ?? INTERNET_STAND_IN) : internet?.address6, side, family);
      if (side !== 'private') continue;
      for (const p of peers) {
        if (opts.firstPeer && reach.some((r) => r.kind === 'peer' && r.outcome === 'allow')) break;
        probe(`peer ${p.name}`, 'peer', family === 4 ? p.private : p.private6, side, family);
      }
    }
    return { listener: l, sides: [...new Set(where.map((w) => w.side))], reach, ...classify(inv, host, l, reach) };
  });
}

function classify(inv: Inventory, host: HostSpec, l: Listener, reach: Reach[]): { status: ListenerStatus; summary: string } {
  const allowed = reach.filter((r) => r.outcome === 'allow');
  const peers = reach.filter((r) => r.kind === 'peer');
  const peersIn = peers.filter((r) => r.outcome === 'allow').length;
  const who = [
    ...allowed.filter((r) => r.kind !== 'peer').map((r) => r.source),
    ...(peers.length > 0 && peersIn > 0 ? [`${peersIn} of ${peers.length} private peers`] : []),
  ];
  const unknown = reach.filter((r) => r.outcome === 'unknown');
  const isSsh = l.proto === 'tcp' && l.port === (host.ssh.port ?? 22);
  if (isSsh && allowed.some((r) => r.kind === 'bastion' || (r.kind === 'internet' && bastionOf(inv, host).name === host.name))) {
    return { status: 'management', summary: `management SSH: ${who.join(', ')}` };
  }
  if (allowed.some((r) => r.kind === 'internet')) {
    return intendedPublic(inv, host, l)
      ? { status: 'public', summary: `public by intent: ${who.join(', ')}` }
      : { status: 'exposed', summary: `open to the internet on ${host.interfaces.public} and no intent says so (${allowed.find((r) => r.kind === 'internet')!.decidedBy})` };
  }
  if (allowed.length === 0) {
    const tried = [...new Set(reach.map((r) => r.kind))].join(', ');
    const why = unknown.length > 0 ? `; undecided for ${unknown.map((r) => r.source).join(', ')}: ${unknown[0]!.decidedBy}` : '';
    return { status: 'blocked', summary: `listening but the rules let nobody in (tried ${tried})${why}` };
  }
  return { status: 'ok', summary: `reachable from ${who.join(', ')}` };
}

/** Warnings for a plan: the listeners that would be blocked or exposed. */
export function listenerWarnings(assessments: readonly ListenerAssessment[]): string[] {
  return assessments
    .filter((a) => a.status === 'blocked' || a.status === 'exposed')
    .map((a) => `${a.listener.process ?? 'a service'} listens on ${formatSocket(a.listener)}: ${a.status === 'blocked' ? 'would be blocked' : 'exposed'}: ${a.summary}`);
}

export function formatSocket(l: Listener): string {
  const addr = l.address.includes(':') ? `[${l.address}]` : l.address;
  return `${addr}${l.device ? `%${l.device}` : ''}:${l.port}/${l.proto}`;
}
