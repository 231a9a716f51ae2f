// What a rule's target does to a packet, as far as reachability goes: a verdict,
// a jump, a rewrite of its addresses, conntrack bypass, nothing at all, or
// something fleetfw does not follow (then every verdict it reaches is unknown).
import type { Chain, Rule } from '../model/ruleset.js';
import { canonicaliseCidr, familyOf } from './cidr.js';

export type TargetEffect =
  | { kind: 'verdict'; verdict: 'ACCEPT' | 'DROP' | 'REJECT' }
  | { kind: 'return' }
  | { kind: 'chain'; chain: Chain }
  /** No target, or one that changes nothing the model decides on (LOG, MARK, DSCP ...). */
  | { kind: 'continue' }
  /** The packet skips connection tracking: UNTRACKED, and the nat table never sees it. */
  | { kind: 'notrack' }
  /** New destination: `addr` undefined = the receiving interface's address (REDIRECT); `port` undefined = unchanged. */
  | { kind: 'dnat'; addr?: string; port?: number }
  /** New source: `addr` undefined = the outgoing interface's address (MASQUERADE). */
  | { kind: 'snat'; addr?: string }
  | { kind: 'undecided'; why: string };

/**
 * Targets that leave a packet's fate and the fields fleetfw matches on as they
 * were (marks, TOS/DSCP and MSS are only ever read by matches fleetfw does not
 * model, and those fail closed themselves).
 */
const NO_EFFECT = new Set([
  'LOG', 'NFLOG', 'ULOG', 'AUDIT', 'TRACE', 'MARK', 'CONNMARK', 'SECMARK', 'CONNSECMARK', 'DSCP', 'TOS',
  'ECN', 'TCPMSS', 'TCPOPTSTRIP', 'CLASSIFY', 'CHECKSUM', 'IDLETIMER', 'LED', 'RATEEST', 'HMARK', 'TEE',
]);

/** Why a known target is not followed. */
const UNDECIDED: Record<string, string> = {
  QUEUE: 'a userspace program decides the verdict',
  NFQUEUE: 'a userspace program decides the verdict',
  TPROXY: 'transparent proxying diverts the packet to a local socket',
  SYNPROXY: 'the SYN proxy answers the handshake itself',
  CLUSTERIP: 'cluster IP answering depends on the node',
  SET: 'it changes an ipset while packets pass',
  NETMAP: 'prefix mapping rewrites addresses per packet',
  DNPT: 'prefix translation rewrites addresses per packet',
  SNPT: 'prefix translation rewrites addresses per packet',
  TTL: 'a changed TTL can end the packet on its way',
  HL: 'a changed hop limit can end the packet on its way',
};

const memo = new WeakMap<Rule, TargetEffect>();

const CONTINUE: TargetEffect = { kind: 'continue' };

/** `chains`: the table's user chains by name. */
export function targetEffect(rule: Rule, chains: ReadonlyMap<string, Chain>): TargetEffect {
  const target = rule.target;
  if (target === undefined) return CONTINUE;
  // A user chain of the same name wins over a target (iptables refuses such names anyway).
  const chain = chains.get(target);
  if (chain) return { kind: 'chain', chain };
  let effect = memo.get(rule);
  if (!effect) memo.set(rule, (effect = decodeTarget(rule)));
  return effect;
}

function decodeTarget(rule: Rule): TargetEffect {
  const target = rule.target as string;
  const args = rule.targetArgs;
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i < 0 ? undefined : args[i + 1];
  };
  switch (target) {
    case 'ACCEPT':
    case 'DROP':
    case 'REJECT':
      return { kind: 'verdict', verdict: target };
    case 'RETURN':
      return { kind: 'return' };
    case 'NOTRACK':
      return { kind: 'notrack' };
    case 'CT':
      return args.length === 1 && args[0] === '--notrack' ? { kind: 'notrack' } : { kind: 'undecided', why: `-j CT ${args.join(' ')} (connection tracking templates are not modelled)` };
    case 'DNAT':
      return decodeDnat(opt('--to-destination'));
    case 'REDIRECT': {
      const to = opt('--to-ports');
      if (to === undefined) return { kind: 'dnat' };
      return /^\d+$/.test(to) ? { kind: 'dnat', port: Number(to) } : { kind: 'undecided', why: `-j REDIRECT --to-ports ${to} (a port range picks ports per connection)` };
    }
    case 'SNAT': {
      const to = opt('--to-source') ?? '';
      const f = familyOf(to);
      return f && !to.includes('/') && !to.includes('-') ? { kind: 'snat', addr: canonicalAddress(to, f) } : { kind: 'undecided', why: `-j SNAT --to-source ${to} (ranges and ports pick per connection)` };
    }
    case 'MASQUERADE':
      return args.length === 0 ? { kind: 'snat' } : { kind: 'undecided', why: `-j MASQUERADE ${args.join(' ')} (port ranges pick per connection)` };
    default:
      if (NO_EFFECT.has(target)) return { kind: 'continue' };
      return { kind: 'undecided', why: `-j ${target}${UNDECIDED[target] ? ` (${UNDECIDED[target]})` : ' (not a chain of this table, nor a target fleetfw models)'}` };
  }
}

/** `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]:80`: one address and at most one port, else undecided. */
function decodeDnat(to: string | undefined): TargetEffect {
  const undecided: TargetEffect = { kind: 'undecided', why: `-j DNAT --to-destination ${to ?? ''} (ranges pick per connection)` };
  if (to === undefined) return undecided;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(to);
  const v4 = /^([0-9.]+)(?::(\d+))?$/.exec(to);
  const m = v6 ?? v4;
  if (!m || !m[1]) return undecided;
  const family = familyOf(m[1]);
  if (!family) return undecided;
  return { kind: 'dnat', addr: canonicalAddress(m[1], family), ...(m[2] ? { port: Number(m[2]) } : {}) };
}

function canonicalAddress(addr: string, family: 4 | 6): string {
  const c = canonicaliseCidr(addr, family);
  return 'cidr' in c ? c.cidr.replace(/\/\d+$/, '') : addr;
}
