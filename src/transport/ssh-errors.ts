// ssh2's errors as fleetfw's: which hop, why, and whether a retry may help.
import { TransportError, type TransportHop } from './types.js';

/** What the connection offered and left out (identities.ts), for an authentication failure. */
export interface AuthAttempt {
  offered: string[];
  skipped: string[];
}

export function classify(ep: { name: string; user: string }, hop: TransportHop, label: string, errors: (Error & { level?: string })[], auth: AuthAttempt): TransportError {
  const fatal = errors.filter((e) => e.level !== 'agent');
  const authFailed = fatal.find((e) => e.level === 'client-authentication' && /authentication methods failed/.test(e.message));
  if (authFailed) {
    const agentNote = errors.find((e) => e.level === 'agent');
    return new TransportError(
      `${label}: authentication as ${ep.user} failed (tried ${auth.offered.join(', ') || 'nothing'}` +
        `${agentNote ? `; ssh-agent failed: ${agentNote.message}` : ''}` +
        `${auth.skipped.length > 0 ? `; not used: ${auth.skipped.join('; ')}` : ''})`,
      ep.name,
      hop,
      'auth',
    );
  }
  const first = fatal[0];
  if (first?.level === 'client-timeout') {
    return new TransportError(`${label}: ${first.message}`, ep.name, hop, 'timeout', true);
  }
  const message = first?.message ?? 'connection closed before the SSH session was ready';
  const code = (first as NodeJS.ErrnoException | undefined)?.code;
  return new TransportError(`${label}: cannot connect: ${message}${code && !message.includes(code) ? ` (${code})` : ''}`, ep.name, hop, 'connect', isTransient(first));
}

// Retry what a busy or restarting server produces; not protocol or algorithm mismatches.
function isTransient(err: (Error & { level?: string }) | undefined): boolean {
  if (!err) return true;
  if (err.level === 'client-socket') return true;
  return /Connection lost before handshake|ECONNRESET|ECONNREFUSED|open failed|socket hang up/i.test(err.message);
}
