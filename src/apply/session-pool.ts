// Sessions kept open between a plan's read and the transaction that follows it,
// so that an apply costs two connections per host (read, prepare and confirm on
// the first, the proof of a NEW one on the second) instead of three, and one
// login shell. Connections and login shells dominate the cost of a rollout (see
// PERFORMANCE.md).
import { TransportError, type HostSession, type Transport } from '../transport/types.js';
import type { HostServer } from '../host/run.js';

export interface Taken {
  session: HostSession;
  /** The host script still running on it from the read, ready for the next verb. */
  server?: HostServer;
  /** A parked session (it may have died meanwhile) rather than a new one. */
  reused: boolean;
}

export class SessionPool {
  private readonly parked = new Map<string, { session: HostSession; server?: HostServer }>();

  /** Keep `s` (and its running host script) for the host's next transaction, replacing and closing any older one. */
  park(s: HostSession, server?: HostServer): void {
    const old = this.parked.get(s.host);
    this.parked.set(s.host, { session: s, server });
    if (old && old.session !== s) void old.session.close().catch(() => undefined);
  }

  /** The parked session, or a new one. */
  async take(transport: Transport, host: string): Promise<Taken> {
    const p = this.parked.get(host);
    this.parked.delete(host);
    return p ? { ...p, reused: true } : { session: await transport.open(host), reused: false };
  }

  /** Close every parked session but those of `keep`. */
  async release(keep: ReadonlySet<string> = new Set()): Promise<void> {
    const gone = [...this.parked].filter(([host]) => !keep.has(host));
    for (const [host] of gone) this.parked.delete(host);
    await Promise.all(gone.map(([, p]) => p.session.close().catch(() => undefined)));
  }
}

/** A channel that never opened ran nothing: on a parked session that died, retrying on a new one is safe. */
export function isDeadSession(err: unknown): boolean {
  return err instanceof TransportError && err.reason === 'channel';
}
