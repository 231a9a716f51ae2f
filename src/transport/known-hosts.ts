// OpenSSH known_hosts, parsed and checked without IO. ssh2 reads no
// known_hosts of its own and no maintained npm parser exists, so this follows
// OpenSSH's hostfile.c / match.c semantics directly.

import { createHash, createHmac, randomBytes } from 'node:crypto';
import { hmacSha1 } from './hmac-sha1.js';

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
  /**
   * Some line names its hosts hashed (`|1|…`). Additions are then hashed too,
   * even in a file that also has plain lines: whoever hashed part of it chose
   * to hide those names, and a hashed line is found by every reader alike.
   */
  hashed: boolean;
}

/** One key known for a host, with every line that holds it. */
export interface KnownKey {
  type: string;
  fingerprint: string;
  lines: number[];
}

export type HostKeyCheck =
  | { status: 'match' }
  /** No key of any type is known for the host: the only case `--accept-new-host-keys` may record. */
  | { status: 'unknown' }
  /** The host has known keys and this is none of them, whatever its type. */
  | { status: 'changed'; known: KnownKey[] }
  | { status: 'revoked'; line: number };

/** The name OpenSSH looks up for a host: `host`, or `[host]:port` when the port is not 22. */
export function formatHostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

export function parseKnownHosts(text: string): KnownHosts {
  const entries: KnownHostEntry[] = [];
  const notes: string[] = [];
  let hashed = false;
  text.split('\n').forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const fields = trimmed.split(/\s+/);
    if ((fields[0]?.startsWith('@') ? fields[1] : fields[0])?.startsWith('|1|')) hashed = true;
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
  return { entries, notes, hashed };
}

/**
 * Checks a presented host key against entries for any of `names` (each already
 * formatted with {@link formatHostName}), as OpenSSH does: a host with any
 * known key, of any type, accepts only a known key; anything else is a changed
 * key (OpenSSH refuses an ECDSA key for a host it knows by an ed25519 key, with
 * StrictHostKeyChecking=accept-new too). `@revoked` lines refuse their key but
 * do not make a host known, and `@cert-authority` lines are not read at all:
 * OpenSSH treats a host known only through either as new.
 */
export function checkHostKey(entries: KnownHostEntry[], names: string[], key: HostKey): HostKeyCheck {
  const relevant = entriesFor(entries, names);
  const same = (e: KnownHostEntry): boolean => e.key.type === key.type && e.key.blob.equals(key.blob);
  const revoked = relevant.find((e) => e.marker === 'revoked' && same(e));
  if (revoked) return { status: 'revoked', line: revoked.line };
  const known = relevant.filter((e) => e.marker === undefined);
  if (known.some(same)) return { status: 'match' };
  if (known.length === 0) return { status: 'unknown' };
  return { status: 'changed', known: groupKeys(known) };
}

/** A known key with the file that holds it. */
export interface FileKnownKey extends KnownKey {
  file: string;
}

/** {@link HostKeyCheck} over several files, each verdict naming its file. */
export type HostKeyCheckInFiles =
  | { status: 'match' }
  | { status: 'unknown' }
  | { status: 'changed'; known: FileKnownKey[] }
  | { status: 'revoked'; file: string; line: number };

/**
 * {@link checkHostKey} over every file of UserKnownHostsFile, as OpenSSH reads
 * them: one list. A revoked key is refused wherever it is marked, a key known in
 * any file matches, and a host known in any file accepts only its known keys.
 */
export function checkHostKeyInFiles(files: Array<{ file: string; entries: KnownHostEntry[] }>, names: string[], key: HostKey): HostKeyCheckInFiles {
  const checks = files.map((f) => ({ file: f.file, check: checkHostKey(f.entries, names, key) }));
  for (const { file, check } of checks) if (check.status === 'revoked') return { status: 'revoked', file, line: check.line };
  if (checks.some((c) => c.check.status === 'match')) return { status: 'match' };
  const known = checks.flatMap(({ file, check }) => (check.status === 'changed' ? check.known.map((k) => ({ ...k, file })) : []));
  return known.length > 0 ? { status: 'changed', known } : { status: 'unknown' };
}

/** The key types known for a host, in file order: the ones to ask the server for first. */
export function knownKeyTypes(entries: KnownHostEntry[], names: string[]): string[] {
  return [...new Set(entriesFor(entries, names).filter((e) => e.marker === undefined).map((e) => e.key.type))];
}

function groupKeys(known: KnownHostEntry[]): KnownKey[] {
  const byKey = new Map<string, KnownKey>();
  for (const e of known) {
    const id = `${e.key.type} ${e.key.blob.toString('base64')}`;
    const k = byKey.get(id);
    if (k) k.lines.push(e.line);
    else byKey.set(id, { type: e.key.type, fingerprint: fingerprintSha256(e.key.blob), lines: [e.line] });
  }
  return [...byKey.values()];
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
  if (!relevant) {
    const { literal, others } = indexOf(entries);
    const bytes = lowered.map((n) => Buffer.from(n));
    const found = new Set(lowered.flatMap((n) => literal.get(n) ?? []));
    for (const e of others) if (lowered.some((n, i) => matchesHost(e.matcher, n, bytes[i]!))) found.add(e);
    byNames.set(key, (relevant = entries.filter((e) => found.has(e))));
  }
  return relevant;
}

// Lines that name hosts by plain names only (no wildcard, no negation) are found by
// name; the rest (hashed, patterns) are tried one by one: a fleet's lookups are
// then not O(hosts × plain lines).
const indexes = new WeakMap<KnownHostEntry[], { literal: Map<string, KnownHostEntry[]>; others: KnownHostEntry[] }>();

function indexOf(entries: KnownHostEntry[]): { literal: Map<string, KnownHostEntry[]>; others: KnownHostEntry[] } {
  let index = indexes.get(entries);
  if (index) return index;
  index = { literal: new Map(), others: [] };
  for (const e of entries) {
    const m = e.matcher;
    if (m.kind === 'patterns' && m.patterns.every((p) => !p.negated && !/[*?]/.test(p.glob))) {
      for (const p of new Set(m.patterns.map((x) => x.glob.toLowerCase()))) {
        const list = index.literal.get(p);
        if (list) list.push(e);
        else index.literal.set(p, [e]);
      }
    } else index.others.push(e);
  }
  indexes.set(entries, index);
  return index;
}

// A hashed line's HMAC with its salt's pads hashed once: looked up by every host's names.
const macs = new WeakMap<HostMatcher, (msg: Uint8Array) => Buffer>();

function macOf(matcher: HostMatcher & { kind: 'hashed' }): (msg: Uint8Array) => Buffer {
  let mac = macs.get(matcher);
  if (!mac) {
    // A salt longer than a SHA-1 block (never written by ssh) goes through crypto's HMAC.
    mac = matcher.salt.length <= 64 ? hmacSha1(matcher.salt) : (msg) => createHmac('sha1', matcher.salt).update(msg).digest();
    macs.set(matcher, mac);
  }
  return mac;
}

/** `SHA256:…` exactly as `ssh-keygen -lf` prints it (unpadded base64). */
export function fingerprintSha256(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/**
 * The known_hosts lines (no newlines) that record `key` for `names`: one plain
 * line for all the names, or hashed, one line per name, as ssh writes them.
 */
export function formatKnownHostsLines(names: string[], key: HostKey, hashed: boolean): string[] {
  const tail = `${key.type} ${key.blob.toString('base64')}`;
  return hashed ? names.map((n) => `${hashHostName(n)} ${tail}`) : [`${names.join(',')} ${tail}`];
}

/** OpenSSH's hashed form of a name: |1|base64(salt)|base64(HMAC-SHA1(salt, name)). */
export function hashHostName(name: string, salt: Buffer = randomBytes(20)): string {
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name.toLowerCase()).digest('base64')}`;
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
function matchesHost(matcher: HostMatcher, name: string, bytes: Uint8Array): boolean {
  if (matcher.kind === 'hashed') return macOf(matcher)(bytes).equals(matcher.hash);
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
