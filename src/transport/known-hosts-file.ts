// The known_hosts file on disk: read fail-closed, appended atomically.

import { open, readFile } from 'node:fs/promises';
import { FleetError } from '../errors.js';
import { checkHostKey, formatKnownHostsLine, parseKnownHosts, type HostKey, type KnownHosts } from './known-hosts.js';

/** A missing file is an empty list; any other read failure is an error (fail closed). */
export async function loadKnownHosts(file: string): Promise<KnownHosts> {
  try {
    return parseKnownHosts(await readFile(file, 'utf8'));
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
    const known = await loadKnownHosts(file);
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
