// Words for proofs: which packet, which rule (template file:line first), which
// tables it went through, and why a result cannot be shown.
import { describeDecision } from './evaluate.js';
import { describePacket, type FlowLeg, type FlowResult } from './flow.js';
import type { ClassResult } from './prove.js';

const LEG_WORDS: Record<FlowLeg, string> = {
  'client-out': 'NEW, leaving',
  'server-in': 'NEW, arriving',
  'server-reply-out': 'ESTABLISHED reply, leaving',
  'client-reply-in': 'ESTABLISHED reply, arriving',
  'client-ack-out': 'ESTABLISHED, leaving',
  'server-ack-in': 'ESTABLISHED, arriving',
};

/** `would be dropped`, `would be rejected`, `cannot be shown to pass`, `would be diverted`. */
export function outcomeVerb(r: FlowResult): string {
  switch (r.outcome) {
    case 'reject':
      return 'would be rejected';
    case 'drop':
      return 'would be dropped';
    case 'diverted':
      return 'would be diverted';
    case 'allow':
      return 'would be let through';
    default:
      return 'cannot be shown to pass';
  }
}

/** `mysql-1 filter INPUT (NEW, arriving)`: where the deciding leg was decided. */
export function whereDecided(r: FlowResult): string {
  const hop = r.evaluation?.hops[r.evaluation.hops.length - 1];
  return r.leg ? `${r.host}${hop ? ` ${hop}` : ''} (${LEG_WORDS[r.leg]})` : (r.host ?? '');
}

/** The rule or policy that decided, what rewrote the connection on its way, or why nothing could be evaluated. */
export function decidedBy(r: FlowResult): string {
  if (r.reason) return r.reason;
  const rewrote = r.rewrites.map((w) => `${describeDecision({ verdict: 'ACCEPT', decidedBy: { kind: 'rule', rule: w.outcome.rule } })} rewrites ${w.field} ${w.from} to ${w.to}`);
  if (r.outcome === 'diverted' && r.evaluation?.forwarded) rewrote.push(`${r.evaluation.packet.dst} is not ${r.host}'s: routed on`);
  const d = r.evaluation?.decidedBy;
  const rewriter = d && d.kind !== 'policy' && r.rewrites.some((w) => w.outcome.rule === d.rule);
  const deciding = r.evaluation && !rewriter && (r.outcome !== 'diverted' || rewrote.length === 0) ? describeDecision(r.evaluation) : undefined;
  // The rewrite first: it is what an operator changes; then where the rewritten packet ends.
  return [...rewrote, ...(deciding ? [rewrote.length > 0 ? `then ${deciding}` : deciding] : [])].join('; ') || 'no rule set on either side';
}

/** The counterexample: the packet that failed, the range it stands for, and the tables it went through. */
export function describeExample(c: ClassResult): { packet: string; path: string } {
  const { legs } = c.result;
  // The packet that decided; for a connection that got through (a denial that fails), the one the server let in.
  const leg =
    legs.find((l) => l.leg === c.result.leg) ??
    legs.find((l) => l.evaluation.rewrites.length > 0) ??
    legs.find((l) => l.leg === 'server-in') ??
    legs[legs.length - 1];
  const ranges: string[] = [];
  const { src, sport } = c.range;
  if (src && src[0] !== src[1]) ranges.push(`sources ${src[0]}-${src[1]}`);
  if (sport && sport[0] !== sport[1]) ranges.push(`source ports ${sport[0]}-${sport[1]}`);
  const packet = leg ? `${describePacket(leg.packet)}${ranges.length > 0 ? `, as for every packet of ${ranges.join(' and ')}` : ''}` : '';
  const path = leg ? `${leg.host}: ${leg.evaluation.hops.join(' > ') || 'no tables'}` : '';
  return { packet, path };
}
