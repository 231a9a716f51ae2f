// Parse what `fleetfw-host.sh facts` prints: key=value lines, then the live
// dumps, then (optionally) the candidate rules canonicalised by the host.
import { FleetError } from '../errors.js';
import type { Listener } from '../model/listener.js';
import { parseSsListeners } from './listeners.js';

export interface PendingTxn {
  id: string;
  state: string;
  watchdogAlive: boolean;
  started: string;
  user: string;
}

/**
 * Whether a persisted file would load at boot (`iptables-restore -t` of rules.v4,
 * `ip6tables-restore -t` of rules.v6, `ipset restore` of the set file, in a throwaway
 * network namespace as netfilter-persistent loads them): true loads, false fails,
 * undefined when the file is absent (nothing to load), untested (no namespace could
 * be made: sets) or the host script predates the check.
 */
export interface PersistedLoads {
  v4?: boolean;
  v6?: boolean;
  sets?: boolean;
  /** Which file fails and the tool's message, one line (`rules.v4: iptables-restore: COMMIT expected at line 4`). */
  error?: string;
}

/** A finished transaction as the host recorded it (the same states as `outcome`). */
export interface LastTxn {
  id: string;
  state: string;
  generation?: number;
  reason?: string;
}

/** Confirmed rules the host runs but has not persisted (its persist failed); the next prepare persists them first. */
export interface Unpersisted {
  id: string;
  generation?: number;
  reason: string;
}

export interface HostFacts {
  backend: 'nft' | 'legacy' | 'mixed' | 'none';
  systemd: boolean;
  restore: boolean;
  persistent: boolean;
  ipset: boolean;
  generation: number;
  txn?: PendingTxn;
  liveHash: string;
  persistedHash: string;
  bootId: string;
  live: { v4: string; v6: string };
  /** Candidate rules as this host's iptables-save prints them, when asked for. */
  canonical?: { v4: string; v6: string } | { unavailable: string } | { skipped: string };
  /** ipset-persistent's plugin is installed (it loads /etc/iptables/ipsets at boot). */
  ipsetPersistent?: boolean;
  /** fleetfw's live ipsets (fleetfw-*), `ipset save` lines; undefined when the host has no ipset. */
  ipsets?: string;
  /** Listening sockets (`ss -ltnup`); undefined when the host could not list them. */
  listeners?: Listener[];
  /** Would the persisted files load at boot? Undefined from a host script without the check. */
  persistedLoads?: PersistedLoads;
  /** The newest finished transaction on the host (settles a transaction an apply left `unknown`). */
  lastTxn?: LastTxn;
  /** Confirmed but not persisted: the host would boot older rules. */
  unpersisted?: Unpersisted;
}

export function parseFacts(stdout: string): HostFacts {
  const sections = new Map<string, string[]>();
  let current = 'meta';
  sections.set(current, []);
  for (const line of stdout.split('\n')) {
    const m = /^--- (meta|v4|v6|ipsets|listeners|canonical|canonical-v6|end)$/.exec(line);
    if (m) {
      current = m[1]!;
      // `--- meta` goes on with the key=value lines of the start (printed once computed).
      if (current !== 'meta') sections.set(current, []);
    } else {
      sections.get(current)!.push(line);
    }
  }
  const meta = sections.get('meta')!;
  if (meta[0] !== 'fleetfw-facts 1' || !sections.has('end')) {
    throw new FleetError(`unexpected answer from the host script: ${stdout.slice(0, 200)}`);
  }
  const kv = new Map<string, string>();
  for (const l of meta.slice(1)) {
    const eq = l.indexOf('=');
    if (eq > 0) kv.set(l.slice(0, eq), l.slice(eq + 1));
  }
  const text = (name: string) => (sections.get(name) ?? []).join('\n').trim() + '\n';
  const facts: HostFacts = {
    backend: (kv.get('backend') ?? 'none') as HostFacts['backend'],
    systemd: kv.get('systemd') === 'yes',
    restore: kv.get('restore') === 'yes',
    persistent: kv.get('persistent') === 'yes',
    ipset: kv.get('ipset') === 'yes',
    ipsetPersistent: kv.get('ipset_persistent') === 'yes',
    generation: Number(kv.get('generation') ?? 0),
    liveHash: kv.get('live_hash') ?? '',
    persistedHash: kv.get('persisted_hash') ?? '',
    bootId: kv.get('boot_id') ?? '',
    live: { v4: text('v4'), v6: text('v6') },
  };
  if (sections.has('ipsets')) facts.ipsets = sections.get('ipsets')!.filter((l) => l.trim() !== '').map((l) => `${l}\n`).join('');
  const sockets = sections.get('listeners');
  if (sockets && !(sockets[0] ?? '').startsWith('unavailable')) facts.listeners = parseSsListeners(sockets.join('\n'));
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
    const first = sections.get('canonical')![0] ?? '';
    facts.canonical = first.startsWith('unavailable')
      ? { unavailable: first.replace(/^unavailable: ?/, '') }
      : first.startsWith('skipped')
        ? { skipped: first.replace(/^skipped: ?/, '') }
        : { v4: text('canonical'), v6: text('canonical-v6') };
  }
  return facts;
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

/**
 * The persisted files' problem as a plan or status line, naming the host and file;
 * undefined when every persisted file loads (or the host could not tell).
 */
export function persistedLoadProblem(host: string, facts: Pick<HostFacts, 'persistedLoads'>): string | undefined {
  const p = facts.persistedLoads;
  if (!p) return undefined;
  const bad = [p.sets === false && 'ipsets', p.v4 === false && 'rules.v4', p.v6 === false && 'rules.v6'].filter((x): x is string => Boolean(x));
  if (bad.length === 0) return undefined;
  return `${host}: persisted ${bad.join(', ')} would not load at boot (${p.error ?? 'no message'}): the host would come up without its firewall`;
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
