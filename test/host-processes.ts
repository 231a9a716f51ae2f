// The processes of one lab host, found through /proc by its network namespace (the lab
// has no pid namespaces: pids are the machine's, and other labs' processes are there too).
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from '../src/lab/lab.js';
import { NETNS_DIR } from '../src/lab/netns.js';

export interface HostProcess {
  pid: number;
  ppid: number;
  /** The command line, NULs as spaces. */
  cmd: string;
}

export function hostProcesses(lab: Lab, host: string): HostProcess[] {
  const ns = `net:[${statSync(join(NETNS_DIR, lab.netnsOf(host))).ino}]`;
  const out: HostProcess[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readlinkSync(`/proc/${p}/ns/net`) !== ns) continue;
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      out.push({ pid: Number(p), ppid, cmd: readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The guards of transaction txid on host: each watchdog shell, with its sleep when it has one. */
export function guardsOf(lab: Lab, host: string, txid: string): Array<{ pid: number; sleep?: number }> {
  const all = hostProcesses(lab, host);
  return all
    .filter((p) => p.cmd.includes(`revert.sh ${txid} guard`))
    .map((g) => {
      const s = all.find((p) => p.ppid === g.pid && p.cmd.startsWith('sleep'));
      return { pid: g.pid, ...(s ? { sleep: s.pid } : {}) };
    });
}
