// Parse what `fleetfw-host.sh outcome TXID` prints: the host's own record of
// one transaction, from which fleetfw decides how it ended. The verb answers (exit 0)
// whenever it can read the host: from the transaction still in txn/, from
// txns/TXID/outcome once it is finished, from history.log once that is pruned, or
// `state=none` when the host has no trace of it (the prepare never took the lock).
// `confirmed-unpersisted`: the host runs the confirmed rules but its persisted files
// are older (the reason says why: disk full, a failed write, files that would not load;
// or a confirm that died before its persist); the next prepare persists them first.
import { keyValues } from './sections.js';

export type TxnState = 'preparing' | 'pending' | 'reverting' | 'confirmed' | 'confirmed-unpersisted' | 'reverted' | 'revert-failed' | 'none';

export interface TxnOutcome {
  txn: string;
  state: TxnState;
  /** A guard of the transaction (watchdog or timer) is still alive. */
  watchdog: boolean;
  /** The host's own reason for a revert or a failed persist. */
  reason?: string;
  generation?: number;
  /** The live rules' canonical hash (empty tables as absent ones), as `facts` prints it. */
  liveHash?: string;
}

const STATES: readonly TxnState[] = ['preparing', 'pending', 'reverting', 'confirmed', 'confirmed-unpersisted', 'reverted', 'revert-failed', 'none'];

export function parseOutcome(stdout: string): TxnOutcome {
  const kv = keyValues(stdout.split('\n'));
  const state = kv.get('state') as TxnState | undefined;
  const out: TxnOutcome = { txn: kv.get('txn') ?? '', state: state && STATES.includes(state) ? state : 'none', watchdog: kv.get('watchdog') === 'yes' };
  const reason = kv.get('reason');
  if (reason) out.reason = reason;
  const gen = Number(kv.get('generation'));
  if (kv.has('generation') && Number.isInteger(gen)) out.generation = gen;
  const hash = kv.get('live_hash');
  if (hash) out.liveHash = hash;
  return out;
}
