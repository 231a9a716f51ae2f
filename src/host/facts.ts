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
