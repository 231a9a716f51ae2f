// What a host says about itself: `fleetfw-host.sh facts` as src/host/facts.ts
// parses it. Here in the model because plan reads it too, and plan may not
// import src/host.
import type { Listener } from './listener.js';

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
 * be made: sets) or the host script predates the check. Empty files load as nothing:
 * true without a test.
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
  /** The canonical hash of the live rules and fleetfw's sets (what a prepare checks against). */
  liveHash: string;
  /** The persisted files hold the live rules (canonically the same). */
  persistedSame: boolean;
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
