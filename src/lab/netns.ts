// Network-namespace plumbing. Bulk work goes through `ip -batch` so a 100-host
// lab costs a handful of processes, and teardown scans /proc instead of
// spawning `ip netns pids` per namespace (it also has to work inside a
// synchronous process 'exit' handler).
import { spawnSync } from 'node:child_process';
import { readdirSync, readlinkSync, statSync } from 'node:fs';
import { runChecked } from './proc.js';

export const NETNS_DIR = '/run/netns';

/** Runs `ip [-n ns] -batch -` with one command per line (names are lab-generated or validated). */
export async function runIpBatch(lines: string[], ns?: string): Promise<void> {
  if (lines.length === 0) return;
  const argv = ns ? ['ip', '-n', ns, '-batch', '-'] : ['ip', '-batch', '-'];
  await runChecked(argv, { input: lines.join('\n') + '\n' });
}

export async function addNamespaces(names: string[]): Promise<void> {
  await runIpBatch(names.map((n) => `netns add ${n}`));
}

/** Names of existing namespaces starting with prefix. */
export function listNamespaces(prefix: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
  return entries.filter((n) => n.startsWith(prefix)).sort();
}

function namespaceInode(name: string): number | undefined {
  try {
    return statSync(`${NETNS_DIR}/${name}`).ino;
  } catch {
    return undefined;
  }
}

/** Pids of every live process whose network namespace is one of `names`. */
export function findNamespacePids(names: string[]): number[] {
  const inodes = new Set<string>();
  for (const n of names) {
    const ino = namespaceInode(n);
    if (ino !== undefined) inodes.add(`net:[${ino}]`);
  }
  if (inodes.size === 0) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (inodes.has(readlinkSync(`/proc/${entry}/ns/net`))) pids.push(Number(entry));
    } catch {
      // gone, or a zombie whose namespaces are already released
    }
  }
  return pids;
}

/** SIGKILLs every process in the namespaces, rescanning for children forked meanwhile. */
export function killNamespaceProcessesSync(names: string[]): number {
  let killed = 0;
  for (let round = 0; round < 20; round++) {
    const pids = findNamespacePids(names).filter((p) => p !== process.pid);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // already gone
      }
    }
    // Give the kernel a moment to release namespaces before rescanning.
    spawnSync('sleep', ['0.02']);
  }
  return killed;
}

/** Deletes the named namespaces (missing ones are ignored). */
export function deleteNamespacesSync(names: string[]): void {
  const existing = names.filter((n) => namespaceInode(n) !== undefined);
  if (existing.length === 0) return;
  // -force keeps the batch going past a namespace that vanished meanwhile.
  spawnSync('ip', ['-force', '-batch', '-'], {
    input: existing.map((n) => `netns del ${n}`).join('\n') + '\n',
    stdio: ['pipe', 'ignore', 'pipe'],
  });
}
