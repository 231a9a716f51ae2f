// OpenSSH known_hosts, parsed and checked without IO. ssh2 reads no
// known_hosts of its own and no maintained npm parser exists, so this follows
// OpenSSH's hostfile.c / match.c semantics directly.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export interface HostKey {
  /** Key type as in known_hosts and the key blob, e.g. `ssh-ed25519`. */
  type: string;
  /** The public key blob (SSH wire format). */
  blob: Buffer;
}

type HostMatcher =
  | { kind: 'patterns'; patterns: { negated: boolean; glob: string }[] }
  | { kind: 'hashed'; salt: Buffer; hash: Buffer };

export interface KnownHostEntry {
  /** 1-based line number in the file. */
  line: number;
  marker?: 'revoked';
  matcher: HostMatcher;
  key: HostKey;
}

export interface KnownHosts {
  entries: KnownHostEntry[];
  /** Lines that were skipped, with why (`@cert-authority`, malformed lines). */
  notes: string[];
}

export type HostKeyCheck =
  | { status: 'match' }
  | { status: 'unknown' }
  | { status: 'changed'; expectedFingerprint: string; line: number }
  | { status: 'revoked' };

/** The name OpenSSH looks up for a host: `host`, or `[host]:port` when the port is not 22. */
export function formatHostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

export function parseKnownHosts(text: string): KnownHosts {
  const entries: KnownHostEntry[] = [];
  const notes: string[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const fields = trimmed.split(/\s+/);
    let marker: 'revoked' | undefined;
    if (fields[0]?.startsWith('@')) {
      const m = fields.shift();
      if (m === '@cert-authority') {
        notes.push(`line ${line}: @cert-authority entries are not supported (ignored)`);
        return;
      }
      if (m !== '@revoked') {
        notes.push(`line ${line}: unknown marker ${m} (ignored)`);
        return;
      }
      marker = 'revoked';
    }
    const [hosts, type, b64] = fields;
    const matcher = hosts === undefined ? undefined : parseMatcher(hosts);
    const blob = b64 === undefined ? undefined : decodeBase64Strict(b64);
    if (!matcher || type === undefined || !blob || readKeyType(blob) !== type) {
      notes.push(`line ${line}: malformed entry (ignored)`);
      return;
    }
    entries.push({ line, ...(marker ? { marker } : {}), matcher, key: { type, blob } });
  });
  return { entries, notes };
}

/**
 * Checks a presented host key against entries for any of `names` (each already
 * formatted with {@link formatHostName}). Keys are compared per type, as OpenSSH
 * does: a known key of the same type that differs is `changed`; known keys of
 * other types only make it `unknown`.
 */
export function checkHostKey(entries: KnownHostEntry[], names: string[], key: HostKey): HostKeyCheck {
  const relevant = entriesFor(entries, names);
  const same = (e: KnownHostEntry): boolean => e.key.type === key.type && e.key.blob.equals(key.blob);
  if (relevant.some((e) => e.marker === 'revoked' && same(e))) return { status: 'revoked' };
  const known = relevant.filter((e) => e.marker === undefined);
  if (known.some(same)) return { status: 'match' };
  const differing = known.find((e) => e.key.type === key.type);
  if (differing) {
    return {
      status: 'changed',
      expectedFingerprint: fingerprintSha256(differing.key.blob),
      line: differing.line,
    };
  }
  return { status: 'unknown' };
}

// The entries for a host, per parsed file: an apply checks every host's key
// twice (its two connections), and a hashed entry costs an HMAC per lookup.
const relevantCache = new WeakMap<KnownHostEntry[], Map<string, KnownHostEntry[]>>();

function entriesFor(entries: KnownHostEntry[], names: string[]): KnownHostEntry[] {
  const lowered = names.map((n) => n.toLowerCase());
  const key = lowered.join('\n');
  let byNames = relevantCache.get(entries);
  if (!byNames) relevantCache.set(entries, (byNames = new Map()));
  let relevant = byNames.get(key);
  if (!relevant) byNames.set(key, (relevant = entries.filter((e) => lowered.some((n) => matchesHost(e.matcher, n)))));
  return relevant;
}

/** `SHA256:…` exactly as `ssh-keygen -lf` prints it (unpadded base64). */
export function fingerprintSha256(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** One plain known_hosts line (no newline) for the given names. */
export function formatKnownHostsLine(names: string[], key: HostKey): string {
  return `${names.join(',')} ${key.type} ${key.blob.toString('base64')}`;
}

/** The key type embedded at the start of an SSH public key blob. */
export function readKeyType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > blob.length) return undefined;
  return blob.subarray(4, 4 + len).toString('latin1');
}

function parseMatcher(hosts: string): HostMatcher | undefined {
  if (hosts.startsWith('|')) {
    const parts = hosts.split('|'); // ['', '1', salt, hash]
    if (parts.length !== 4 || parts[1] !== '1') return undefined;
    const salt = decodeBase64Strict(parts[2] ?? '');
    const hash = decodeBase64Strict(parts[3] ?? '');
    if (!salt || !hash || hash.length !== 20) return undefined;
    return { kind: 'hashed', salt, hash };
  }
  const patterns = hosts
    .split(',')
    .filter((p) => p !== '')
    .map((p) => (p.startsWith('!') ? { negated: true, glob: p.slice(1) } : { negated: false, glob: p }));
  return patterns.length > 0 ? { kind: 'patterns', patterns } : undefined;
}

// match_hostname(): a negated pattern that matches vetoes the whole list.
function matchesHost(matcher: HostMatcher, name: string): boolean {
  if (matcher.kind === 'hashed') {
    const digest = createHmac('sha1', matcher.salt).update(name).digest();
    return timingSafeEqual(digest, matcher.hash);
  }
  let positive = false;
  for (const p of matcher.patterns) {
    if (matchGlob(p.glob.toLowerCase(), name)) {
      if (p.negated) return false;
      positive = true;
    }
  }
  return positive;
}

/** OpenSSH match_pattern(): `*` any run, `?` any one character, nothing else special. */
export function matchGlob(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let star = -1;
  let mark = 0;
  while (t < text.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === text[t])) {
      p++;
      t++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = t;
    } else if (star !== -1) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

function decodeBase64Strict(s: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s)) return undefined;
  const buf = Buffer.from(s, 'base64');
  return buf.length > 0 ? buf : undefined;
}
