// Check the inventory's intents (`wordpress -> mysql:3306 allow`) against the
// rendered rule sets: expand groups into host pairs, pick the addresses a real
// connection would use, and evaluate each pair as a four-leg flow.
import type { ExternalSpec, Family, HostSpec, IntentSpec, Inventory, Side } from '../model/inventory.js';
import type { RuleSet } from '../model/ruleset.js';
import { decidedBy, describeExample } from './explain.js';
import type { FlowEnd, FlowResult, Outcome as FlowOutcome } from './flow.js';
import { localOf } from './lockout.js';
import { ANY_CLIENT_PORTS, EVERY_PORT, LINUX_CLIENT_PORTS, OPEN_ANY, OPEN_CONNECT, proveFlow } from './prove.js';

export type Outcome = FlowOutcome;

export interface IntentPair {
  from: string;
  to: string;
  outcome: Outcome;
  expected: IntentSpec['expect'];
  /** `mysql-1 rules.v4 line 12: -A INPUT -s 192.0.2.12/32 -j ACCEPT`; empty when not evaluated. */
  decidedBy: string;
  /** Why the outcome is unknown without evaluating (no address of that family, no rule set). */
  reason?: string;
  /** The addresses a real probe of this pair uses. */
  fromAddr?: string;
  toAddr?: string;
  /** When it fails: the packet that behaves otherwise, and the range of packets it stands for. */
  counterexample?: string;
  /** When it fails: the tables that packet went through on the deciding host. */
  path?: string;
  ok: boolean;
}

export interface IntentResult {
  intent: IntentSpec;
  ok: boolean;
  pairs: IntentPair[];
  /** Set when the intent expands to no pair at all. */
  reason?: string;
}

type Endpoint = { kind: 'host'; host: HostSpec } | { kind: 'external'; ext: ExternalSpec };

const endpointName = (e: Endpoint): string => (e.kind === 'host' ? e.host.name : e.ext.name);

/** A host, an external, or a group's members (sorted by name). */
function expandEndpoint(inv: Inventory, name: string): Endpoint[] {
  const host = inv.hosts.find((h) => h.name === name);
  if (host) return [{ kind: 'host', host }];
  const ext = inv.externals.find((e) => e.name === name);
  if (ext) return [{ kind: 'external', ext }];
  return inv.hosts
    .filter((h) => h.groups.includes(name))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((h) => ({ kind: 'host', host: h }));
}

/** `via` wins; an external decides by its side; two hosts with private addresses talk privately. */
function chooseSide(intent: IntentSpec, from: Endpoint, to: Endpoint): Side {
  if (intent.via) return intent.via;
  if (to.kind === 'external') return to.ext.side;
  if (from.kind === 'external') return from.ext.side;
  const priv = (h: HostSpec) => (intent.family === 4 ? h.private : h.private6);
  return priv(from.host) && priv(to.host) ? 'private' : 'public';
}

function addressOf(e: Endpoint, side: Side, family: Family): string | undefined {
  if (e.kind === 'external') return family === 4 ? e.ext.address : e.ext.address6;
  const key = `${side}${family === 6 ? '6' : ''}` as 'public' | 'private' | 'public6' | 'private6';
  return e.host[key];
}

function verifyPair(
  intent: IntentSpec,
  from: Endpoint,
  to: Endpoint,
  ruleSets: Map<string, { v4: RuleSet; v6: RuleSet }>,
): IntentPair {
  const base = { from: endpointName(from), to: endpointName(to), expected: intent.expect };
  const unknown = (reason: string): IntentPair => ({ ...base, outcome: 'unknown', decidedBy: '', reason, ok: false });
  const side = chooseSide(intent, from, to);
  const ends: FlowEnd[] = [];
  for (const e of [from, to]) {
    const addr = addressOf(e, side, intent.family);
    if (!addr) {
      const what = e.kind === 'external' ? '' : `${side} `;
      return unknown(`${endpointName(e)} has no ${what}IPv${intent.family} address`);
    }
    if (e.kind === 'external') {
      ends.push({ name: e.ext.name, addr });
      continue;
    }
    const sets = ruleSets.get(e.host.name);
    if (!sets) return unknown(`no rule set for ${e.host.name}`);
    ends.push({ name: e.host.name, addr, iface: e.host.interfaces[side], rs: intent.family === 4 ? sets.v4 : sets.v6, local: localOf(e.host) });
  }
  const [client, server] = ends as [FlowEnd, FlowEnd];
  const allow = intent.expect === 'allow';
  // An allowed connection must work from every port the client may pick; a denied one from every port at all.
  const sports = !allow ? EVERY_PORT : from.kind === 'host' ? LINUX_CLIENT_PORTS : ANY_CLIENT_PORTS;
  const proof = proveFlow(
    { family: intent.family, proto: intent.proto, ...(intent.port === undefined ? {} : { port: intent.port }), client, server },
    { sports: [sports], open: allow ? OPEN_CONNECT : OPEN_ANY, mode: allow ? 'allow' : 'deny' },
    (r: FlowResult) => isExpected(intent.expect, r.outcome),
  );
  const r = proof.result;
  const decided = r.host ? `${r.host} ${decidedBy(r)}` : r.reason ?? '';
  const pair: IntentPair = { ...base, outcome: r.outcome, decidedBy: decided, fromAddr: client.addr, toAddr: server.addr, ok: proof.ok };
  if (!proof.ok) {
    const { packet, path } = describeExample(proof);
    if (packet) pair.counterexample = packet;
    if (path) pair.path = path;
  }
  return pair;
}

export function isExpected(expect: IntentSpec['expect'], outcome: Outcome): boolean {
  switch (expect) {
    case 'allow':
      return outcome === 'allow';
    case 'deny':
      return outcome === 'reject' || outcome === 'drop';
    default:
      return outcome === expect;
  }
}

/** Evaluate every intent of the inventory over the fleet's rule sets (keyed by host name). */
export function verifyIntents(inv: Inventory, ruleSets: Map<string, { v4: RuleSet; v6: RuleSet }>): IntentResult[] {
  return inv.intents.map((intent) => {
    const pairs: IntentPair[] = [];
    for (const from of expandEndpoint(inv, intent.from)) {
      for (const to of expandEndpoint(inv, intent.to)) {
        if (endpointName(from) === endpointName(to)) continue;
        pairs.push(verifyPair(intent, from, to, ruleSets));
      }
    }
    if (pairs.length === 0) return { intent, ok: false, pairs, reason: `no pair of endpoints: ${intent.from} -> ${intent.to}` };
    return { intent, ok: pairs.every((p) => p.ok), pairs };
  });
}
