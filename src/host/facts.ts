// Parse what `fleetfw-host.sh facts` prints: key=value lines, then the live
// dumps, then (optionally) the candidate rules canonicalised by the host.
import { FleetError } from '../errors.js';
import type { HostFacts, LastTxn, PendingTxn, PersistedLoads } from '../model/host-facts.js';
import { canonHash } from './canon.js';
import { parseProcSockets, parseSsListeners } from './listeners.js';
import { keyValues, parseSections } from './sections.js';

// The types (and persistedLoadProblem) live in the model, which plan may import.
export { persistedLoadProblem, type HostFacts, type LastTxn, type PendingTxn, type PersistedLoads, type Unpersisted } from '../model/host-facts.js';

const FACT_SECTIONS = ['meta', 'v4', 'v6', 'ipsets', 'sockets', 'listeners', 'canonical', 'canonical-v6', 'end'];

/** What facts says when the host must print the candidate itself (the `canonical` verb then does). */
export type FactsAnswer = HostFacts & { canonicalWanted?: string };

export function parseFacts(stdout: string): FactsAnswer {
  const sections = new Map<string, string[]>();
  // The opening key=value lines and `--- meta` (printed once the hashes are computed) are one part.
  for (const sec of parseSections(stdout, FACT_SECTIONS)) {
    const name = sec.name === '' ? 'meta' : sec.name;
    sections.set(name, [...(sections.get(name) ?? []), ...sec.lines]);
  }
  const meta = sections.get('meta') ?? [];
  if (meta[0] !== 'fleetfw-facts 1' || !sections.has('end')) {
    throw new FleetError(`unexpected answer from the host script: ${stdout.slice(0, 200)}`);
  }
  const kv = keyValues(meta.slice(1));
  const text = (name: string) => (sections.get(name) ?? []).join('\n').trim() + '\n';
  const lines = (name: string) => sections.get(name) ?? [];
  const facts: FactsAnswer = {
    backend: (kv.get('backend') ?? 'none') as HostFacts['backend'],
    systemd: kv.get('systemd') === 'yes',
    restore: kv.get('restore') === 'yes',
    persistent: kv.get('persistent') === 'yes',
    ipset: kv.get('ipset') === 'yes',
    ipsetPersistent: kv.get('ipset_persistent') === 'yes',
    generation: Number(kv.get('generation') ?? 0),
    liveHash: kv.get('live_hash') ?? ownHash(lines('v4'), lines('v6'), lines('ipsets')),
    persistedSame: kv.get('persisted_same') === 'yes',
    bootId: kv.get('boot_id') ?? '',
    live: { v4: text('v4'), v6: text('v6') },
  };
  if (sections.has('ipsets')) facts.ipsets = sections.get('ipsets')!.filter((l) => l.trim() !== '').map((l) => `${l}\n`).join('');
  // From /proc/net where the host could read it, else from ss.
  const proc = sections.get('sockets');
  const ss = sections.get('listeners');
  if (proc) facts.listeners = parseProcSockets(proc.join('\n'));
  else if (ss && !(ss[0] ?? '').startsWith('unavailable')) facts.listeners = parseSsListeners(ss.join('\n'));
  const txn = kv.get('txn');
  if (txn && txn !== 'none') facts.txn = parseTxn(txn);
  if (kv.has('persisted_v4') || kv.has('persisted_v6') || kv.has('persisted_sets')) {
    const loads = (v: string | undefined) => (v === 'loads' ? true : v === 'fails' ? false : undefined);
    const p: PersistedLoads = {};
    const v4 = loads(kv.get('persisted_v4'));
    const v6 = loads(kv.get('persisted_v6'));
    const sets = loads(kv.get('persisted_sets'));
    if (v4 !== undefined) p.v4 = v4;
    if (v6 !== undefined) p.v6 = v6;
    if (sets !== undefined) p.sets = sets;
    const error = kv.get('persisted_error');
    if (error) p.error = error;
    facts.persistedLoads = p;
  }
  const last = kv.get('last_txn');
  if (last) facts.lastTxn = parseLastTxn(last);
  const unpersisted = kv.get('unpersisted');
  if (unpersisted) {
    const f = parseWords(unpersisted);
    facts.unpersisted = { id: f.id, reason: f.reason ?? '', ...(f.generation !== undefined ? { generation: f.generation } : {}) };
  }
  if (sections.has('canonical')) {
    const c = canonicalOf(sections);
    if ('wanted' in c) facts.canonicalWanted = c.wanted;
    else facts.canonical = c;
  }
  return facts;
}

const PAST_ASCII = /[\u0080-\uffff]/;

/**
 * The live hash where the host left it to fleetfw (canon.ts). The host hashes a
 * text with bytes past ASCII itself: fleetfw reads it decoded, and a byte that is
 * not UTF-8 would hash as another.
 */
function ownHash(v4: string[], v6: string[], sets: string[]): string {
  if ([v4, v6, sets].some((ls) => ls.some((l) => PAST_ASCII.test(l)))) {
    throw new FleetError('the host script printed rules past ASCII without their hash: fleetfw cannot hash them byte for byte');
  }
  return canonHash(v4, v6, sets);
}

/** `ID [state=S] [generation=N] [reason=TEXT...]`: the reason, last, may hold spaces. */
function parseWords(value: string): { id: string; state?: string; generation?: number; reason?: string } {
  const at = value.indexOf(' reason=');
  const head = at < 0 ? value : value.slice(0, at);
  const [id = 'unknown', ...rest] = head.split(' ');
  const f = new Map(rest.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)] as const));
  const gen = Number(f.get('generation'));
  return {
    id,
    ...(f.has('state') ? { state: f.get('state') } : {}),
    ...(f.has('generation') && Number.isInteger(gen) ? { generation: gen } : {}),
    ...(at >= 0 ? { reason: value.slice(at + ' reason='.length) } : {}),
  };
}

/** `ID state=S [generation=N] [reason=TEXT]` */
function parseLastTxn(value: string): LastTxn {
  const f = parseWords(value);
  return { id: f.id, state: f.state ?? 'unknown', ...(f.generation !== undefined ? { generation: f.generation } : {}), ...(f.reason ? { reason: f.reason } : {}) };
}

/** `ID state=S watchdog=yes started=T user=U` */
function parseTxn(value: string): PendingTxn {
  const [id = 'unknown', ...rest] = value.split(' ');
  const f = new Map(rest.map((p) => p.split('=') as [string, string]));
  return {
    id,
    state: f.get('state') ?? 'unknown',
    watchdogAlive: f.get('watchdog') === 'yes',
    started: f.get('started') ?? 'unknown',
    user: f.get('user') ?? 'unknown',
  };
}

type CanonicalSection = NonNullable<HostFacts['canonical']> | { wanted: string };

function canonicalOf(sections: Map<string, string[]>): CanonicalSection {
  const first = sections.get('canonical')![0] ?? '';
  const text = (name: string) => (sections.get(name) ?? []).join('\n').trim() + '\n';
  if (first.startsWith('unavailable')) return { unavailable: first.replace(/^unavailable: ?/, '') };
  if (first.startsWith('skipped')) return { skipped: first.replace(/^skipped: ?/, '') };
  if (first.startsWith('wanted')) return { wanted: first.replace(/^wanted: ?/, '') };
  return { v4: text('canonical'), v6: text('canonical-v6') };
}

/** What the `canonical` verb prints: the candidate as the host's iptables-save prints it, or why not. */
export function parseCanonical(stdout: string): NonNullable<HostFacts['canonical']> {
  const sections = new Map(parseSections(stdout, ['canonical', 'canonical-v6', 'end']).map((s) => [s.name, s.lines] as const));
  if (!sections.has('canonical') || !sections.has('end')) throw new FleetError(`unexpected answer from the host script: ${stdout.slice(0, 200)}`);
  const c = canonicalOf(sections);
  if ('wanted' in c) throw new FleetError(`unexpected answer from the host script: ${stdout.slice(0, 200)}`);
  return c;
}
