// Sessions kept open between a plan's read and the transaction that follows it,
// so that an apply costs two connections per host (read + prepare on the first,
// confirmation on a NEW one) instead of three. SSH handshakes dominate the cost
// of a rollout (see PERFORMANCE.md).
import { TransportError, type HostSession, type Transport } from '../transport/ssh.js';

export class SessionPool {
  private readonly parked = new Map<string, HostSession>();

  /** Keep `s` for the host's next transaction (replacing, and closing, any older one). */
  park(s: HostSession): void {
    const old = this.parked.get(s.host);
    this.parked.set(s.host, s);
    if (old && old !== s) void old.close().catch(() => undefined);
  }

  /** The parked session, or a new one; `reused` says which (a parked one may have died meanwhile). */
  async take(transport: Transport, host: string): Promise<{ session: HostSession; reused: boolean }> {
    const s = this.parked.get(host);
    this.parked.delete(host);
    return s ? { session: s, reused: true } : { session: await transport.open(host), reused: false };
  }

  /** Close every parked session but those of `keep`. */
  async release(keep: ReadonlySet<string> = new Set()): Promise<void> {
    const gone = [...this.parked].filter(([host]) => !keep.has(host));
    for (const [host] of gone) this.parked.delete(host);
    await Promise.all(gone.map(([, s]) => s.close().catch(() => undefined)));
  }
}

/** A channel that never opened ran nothing: on a parked session that died, retrying on a new one is safe. */
export function isDeadSession(err: unknown): boolean {
  return err instanceof TransportError && err.reason === 'channel';
}
