// What resolving every host's ssh config costs (each host's own `ssh -G`,
// shared where the config provably treats hosts alike), at N hosts:
//   npx tsx bench/ssh-config.ts [--hosts 1000] [--concurrency 2,4,8]
// Three configs: a block per host differing only in HostName (the lab's shape:
// one run), a block per host with its own Port (no two alike: one run each),
// and a Match line (which the scan does not model: one run each).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createSshConfigReader } from '../src/transport/ssh-config.js';

const { values: args } = parseArgs({ options: { hosts: { type: 'string', default: '1000' }, concurrency: { type: 'string', default: '2,4,8' } } });
const N = Number(args.hosts);
const dir = mkdtempSync(join(tmpdir(), 'ffw-bench-sshcfg-'));
const names = Array.from({ length: N }, (_, i) => `web-${i}`);
const address = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const tail = 'Host *\n  User deploy\n  UserKnownHostsFile ~/.ssh/known_hosts\n  ConnectTimeout 10\n';
const configs: Record<string, string> = {
  'HostName per host (shared)': names.map((h, i) => `Host ${h}\n  HostName ${address(i)}\n`).join('') + tail,
  'Port per host (one run each)': names.map((h, i) => `Host ${h}\n  HostName ${address(i)}\n  Port ${2000 + i}\n`).join('') + tail,
  'Match (one run each)': `Match host web-*\n  User deploy\n${tail}`,
};

try {
  for (const [what, text] of Object.entries(configs)) {
    const configFile = join(dir, 'config');
    writeFileSync(configFile, text);
    for (const concurrency of args.concurrency.split(',').map(Number)) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const reader = createSshConfigReader({ configFile, concurrency });
      await Promise.all(names.map((h) => reader.read(h)));
      const wall = performance.now() - t0;
      // The children's CPU is not in process.cpuUsage: /proc/self/stat's cutime/cstime (clock ticks) is.
      const cpu = process.cpuUsage(cpu0);
      console.log(
        `${what.padEnd(30)} concurrency ${String(concurrency).padStart(2)}: ${String(reader.runs()).padStart(5)} ssh -G, ` +
          `${(wall / 1000).toFixed(2)} s wall, node CPU ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
