// How host keys are asked for and reported: the algorithms of the known key
// types first (as ssh orders them), a changed key's message, an added key's line.
import type { ConnectConfig, ServerHostKeyAlgorithm } from 'ssh2';
import { fingerprintSha256, type FileKnownKey, type HostKey } from './known-hosts.js';

/** A host key `--accept-new-host-keys` recorded. */
export interface HostKeyAddition {
  host: string;
  address: string;
  port: number;
  type: string;
  /** `SHA256:…` as ssh prints it. */
  fingerprint: string;
  file: string;
  hashed: boolean;
}

/** `fleetfw: added mysql-1 (192.0.2.14) ssh-ed25519 SHA256:… to FILE (hashed)` */
export function formatHostKeyAddition(a: HostKeyAddition): string {
  const where = a.port === 22 ? a.address : `${a.address} port ${a.port}`;
  return `fleetfw: added ${a.host} (${where}) ${a.type} ${a.fingerprint} to ${a.file}${a.hashed ? ' (hashed)' : ''}`;
}

// Host key algorithms ssh2 supports, by the key type each produces.
const hostKeyAlgorithms: Record<string, ServerHostKeyAlgorithm[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
  'ssh-dss': ['ssh-dss'],
};

/**
 * ssh2's host key preference with the algorithms of the host's known key types
 * first, as ssh orders them: a host that has several keys then shows one we
 * know, and any other key it shows is a changed key, never a new one.
 */
export function hostKeyAlgorithmsPreferring(knownTypes: string[]): ConnectConfig['algorithms'] | undefined {
  const known = [...new Set(knownTypes.flatMap((t) => hostKeyAlgorithms[t] ?? []))];
  if (known.length === 0) return undefined;
  // `remove` runs first, so `prepend` moves them to the front of ssh2's default order.
  return { serverHostKey: { remove: known, prepend: known, append: [] } };
}

export function changedKeyMessage(ep: { name: string; address: string }, names: string[], offered: HostKey, known: FileKnownKey[]): string {
  const lines = (k: FileKnownKey): string => `${k.file} line${k.lines.length > 1 ? 's' : ''} ${k.lines.join(', ')}`;
  const knownText = known.map((k) => `${k.type} ${k.fingerprint} (${lines(k)})`).join('; ');
  const otherType = known.every((k) => k.type !== offered.type);
  const files = [...new Set(known.map((k) => k.file))];
  const removals = files.flatMap((file) => names.map((n) => `ssh-keygen -R ${n.startsWith('[') ? `'${n}'` : n} -f ${file}`));
  return (
    `WARNING: the host key of ${ep.name} (${ep.address}) has CHANGED: possible man-in-the-middle attack ` +
    `(or the host was reinstalled). It offered ${offered.type} ${fingerprintSha256(offered.blob)}; known: ${knownText}.` +
    (otherType ? ' A key of another type than the known ones is a changed key too.' : '') +
    ` fleetfw never overrides a known key, with or without --accept-new-host-keys or StrictHostKeyChecking: verify the new key ` +
    `out of band, then remove the old entries (${removals.join('; ')}).`
  );
}
