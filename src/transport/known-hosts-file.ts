// The known_hosts file on disk: read fail-closed, appended atomically.

import { statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { FleetError } from '../errors.js';
import { checkHostKey, formatKnownHostsLine, parseKnownHosts, type HostKey, type KnownHosts } from './known-hosts.js';

// Every connection checks its host key against the file: parsed once per
// version of the file (size and mtime), not once per connection (a 100-host
// fleet makes 200 connections against a 100-line file).
const parsedFiles = new Map<string, { stamp: string; known: Promise<KnownHosts> }>();

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
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], notes: [] };
    throw new FleetError(
      `cannot read known_hosts file ${file}: ${(err as Error).message}; refusing to trust any host key`,
    );
  }
}

// Serialises appends within this process so concurrent accept-new connections
// to the same host record its key once.
const appendQueues = new Map<string, Promise<unknown>>();

/**
 * Records `key` for `names` unless an entry already matches (another connection
 * may have just recorded it). One O_APPEND write, file created 0600 if missing.
 * Returns false when the file now holds a different key (never overwritten).
 */
export function recordHostKey(file: string, names: string[], key: HostKey): Promise<boolean> {
  const previous = appendQueues.get(file) ?? Promise.resolve();
  const next = previous.catch(() => undefined).then(async () => {
    const known = await loadKnownHosts(file, true);
    const status = checkHostKey(known.entries, names, key).status;
    if (status === 'match') return true;
    if (status !== 'unknown') return false;
    const handle = await open(file, 'a+', 0o600);
    try {
      const { size } = await handle.stat();
      let prefix = '';
      if (size > 0) {
        const last = Buffer.alloc(1);
        await handle.read(last, 0, 1, size - 1);
        if (last[0] !== 0x0a) prefix = '\n';
      }
      await handle.write(`${prefix}${formatKnownHostsLine(names, key)}\n`);
    } finally {
      await handle.close();
    }
    return true;
  });
  appendQueues.set(file, next);
  return next;
}
