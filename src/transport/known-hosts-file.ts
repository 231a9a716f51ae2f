// The known_hosts file on disk: read fail-closed, appended with checked writes.

import { statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { FleetError } from '../errors.js';
import { checkHostKey, formatKnownHostsLines, parseKnownHosts, type HostKey, type HostKeyCheck, type KnownHosts } from './known-hosts.js';

// Every connection checks its host key against the file: parsed once per
// version of the file (size and mtime), not once per connection (a 100-host
// fleet makes 200 connections against a 100-line file).
const parsedFiles = new Map<string, { stamp: string; known: Promise<KnownHosts> }>();

/** The known_hosts file could not be read or written: no host key is trusted. */
export class KnownHostsError extends FleetError {}

/**
 * A missing file is an empty list; any other read failure is an error (fail closed).
 * `fresh`: read the file now (before appending to it).
 */
export async function loadKnownHosts(file: string, fresh = false): Promise<KnownHosts> {
  try {
    // Sync: a stat costs microseconds, its promise a round trip through the thread pool.
    const st = statSync(file);
    const stamp = `${st.size}:${st.mtimeMs}:${st.ino}`;
    const hit = parsedFiles.get(file);
    if (!fresh && hit?.stamp === stamp) return await hit.known;
    const known = readFile(file, 'utf8').then(parseKnownHosts);
    parsedFiles.set(file, { stamp, known });
    known.catch(() => parsedFiles.delete(file));
    return await known;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], notes: [], hashed: false };
    throw new KnownHostsError(
      `cannot read known_hosts file ${file}: ${(err as Error).message}; refusing to trust any host key`,
    );
  }
}

export interface RecordOptions {
  /** Write hashed lines even into a plain file (`HashKnownHosts yes`). */
  hash?: boolean;
}

/** What recording found: the key added now, or the file's verdict when it already knows the host. */
export type RecordOutcome = { status: 'added'; hashed: boolean } | Exclude<HostKeyCheck, { status: 'unknown' }>;

// Serialises appends within this process so concurrent accept-new connections
// to the same host record its key once.
const appendQueues = new Map<string, Promise<unknown>>();

/**
 * Records `key` for `names` only while the file knows no key for them (another
 * connection may have just recorded one: its verdict is returned instead).
 * Hashed lines when the file already has some or `opts.hash`; file created
 * 0600 if missing. A failed write throws and leaves no partial line.
 */
export function recordHostKey(file: string, names: string[], key: HostKey, opts: RecordOptions = {}): Promise<RecordOutcome> {
  const previous = appendQueues.get(file) ?? Promise.resolve();
  const next = previous.catch(() => undefined).then(async (): Promise<RecordOutcome> => {
    const known = await loadKnownHosts(file, true);
    const check = checkHostKey(known.entries, names, key);
    if (check.status !== 'unknown') return check;
    const hashed = opts.hash === true || known.hashed;
    await appendLines(file, formatKnownHostsLines(names, key, hashed));
    return { status: 'added', hashed };
  });
  appendQueues.set(file, next);
  return next;
}

// One O_APPEND write of every line (what ssh does too, so a concurrent ssh
// appending its own line is not lost), checked to the last byte and synced.
async function appendLines(file: string, lines: string[]): Promise<void> {
  const fail = (err: unknown): KnownHostsError =>
    new KnownHostsError(`cannot add a host key to ${file}: ${(err as Error).message}`);
  const handle = await open(file, 'a+', 0o600).catch((err: unknown) => {
    throw fail(err);
  });
  let size = 0;
  let written = 0;
  try {
    size = (await handle.stat()).size;
    let prefix = '';
    if (size > 0) {
      const last = Buffer.alloc(1);
      await handle.read(last, 0, 1, size - 1);
      if (last[0] !== 0x0a) prefix = '\n';
    }
    const data = Buffer.from(`${prefix}${lines.join('\n')}\n`);
    while (written < data.length) {
      const { bytesWritten } = await handle.write(data, written, data.length - written);
      if (bytesWritten <= 0) throw new KnownHostsError('the write made no progress');
      written += bytesWritten;
    }
    await handle.sync();
  } catch (err) {
    // A torn line must not stay behind; cut only what is ours (nothing appended since).
    if (written > 0) {
      const now = await handle.stat().catch(() => undefined);
      if (now?.size === size + written) await handle.truncate(size).catch(() => undefined);
    }
    await handle.close().catch(() => undefined);
    throw fail(err);
  }
  await handle.close().catch((err: unknown) => {
    throw fail(err);
  });
}
