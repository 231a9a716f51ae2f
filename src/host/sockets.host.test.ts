// sockets.awk on a real /proc/net, decoded by parseProcSockets, against what
// `ss -ltnu` says of the same sockets (root, throwaway network namespace): real
// listening sockets of every kind the facts must tell apart, read under every awk
// found here (mawk, the hosts' awk, is required).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../model/listener.js';
import { parseProcSockets, parseSsListeners } from './listeners.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const SOCKETS_AWK = readFileSync(join(HERE, 'sockets.awk'), 'utf8');

const AWKS = [['mawk'], ['gawk'], ['busybox', 'awk']].filter((argv) => spawnSync(argv[0]!, [...argv.slice(1), 'BEGIN { exit 0 }']).status === 0);

/**
 * The sockets: `[kind, address, port, ipv6Only]`, opened by one node process. Node
 * (libuv) sets IPV6_V6ONLY on every IPv6 socket, on or off as asked, whatever
 * bindv6only says. Ports are per namespace, so fixed ones are free.
 */
const SOCKETS: Array<[kind: 'tcp' | 'udp4' | 'udp6', address: string, port: number, ipv6Only: boolean]> = [
  ['tcp', '0.0.0.0', 8001, false], // beside an IPv6-only wildcard: ss says 0.0.0.0 and [::]
  ['tcp', '::', 8001, true],
  ['tcp', '::', 8002, false], // dual stack, alone on its port: ss says *
  ['tcp', '127.0.0.1', 8003, false],
  ['tcp', '::1', 8004, false],
  ['tcp', '192.0.2.10', 8005, false],
  ['tcp', '2001:db8::10', 8006, false],
  ['udp4', '0.0.0.0', 8007, false],
  ['udp6', '::', 8008, false], // dual stack, alone on its port: ss says *
  ['tcp', '::ffff:192.0.2.10', 8009, false], // IPv4-mapped
  ['udp6', '::', 8010, true], // IPv6 only, beside an IPv4 socket on one address
  ['udp4', '192.0.2.10', 8010, false],
  ['udp6', '2001:db8::10', 8011, false],
];
const EXPECTED = [
  'tcp 0.0.0.0 8001',
  'tcp :: 8001',
  'tcp * 8002',
  'tcp 127.0.0.1 8003',
  'tcp ::1 8004',
  'tcp 192.0.2.10 8005',
  'tcp 2001:db8::10 8006',
  'udp 0.0.0.0 8007',
  'udp * 8008',
  'tcp ::ffff:192.0.2.10 8009',
  'udp :: 8010',
  'udp 192.0.2.10 8010',
  'udp 2001:db8::10 8011',
].sort();

/** Opens SOCKETS, prints `listening` once all are, and exits when its stdin closes. */
const OPENER = `
const net = require('node:net'), dgram = require('node:dgram');
const sockets = ${JSON.stringify(SOCKETS)};
let left = sockets.length;
const up = () => { if (--left === 0) process.stdout.write('listening\\n'); };
const fail = (e) => { process.stderr.write(String(e) + '\\n'); process.exit(1); };
for (const [kind, host, port, ipv6Only] of sockets) {
  if (kind === 'tcp') net.createServer().on('error', fail).listen({ host, port, ipv6Only }, up);
  else dgram.createSocket({ type: kind, ipv6Only }).on('error', fail).bind({ address: host, port }, up);
}
process.stdin.on('end', () => process.exit(0)).resume();
`;

const key = (l: Listener) => `${l.proto} ${l.address} ${l.port}`;

describe('sockets.awk against ss (root, throwaway network namespace)', () => {
  const ns = `ffwsock-${randomBytes(4).toString('hex')}`;
  let created = false;
  let opener: ChildProcess | undefined;
  const inNs = (argv: string[], input?: string) => {
    const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', input, env: { ...process.env, LC_ALL: 'C' }, timeout: 30_000 });
    expect(r.status, `${argv.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  beforeAll(async () => {
    // Root and ip netns are required: this test fails, it does not skip.
    expect(process.getuid?.(), 'must run as root').toBe(0);
    expect(AWKS.map((a) => a.join(' ')), 'mawk, the awk of the hosts').toContain('mawk');
    expect(spawnSync('ip', ['netns', 'add', ns]).status).toBe(0);
    created = true;
    inNs(['ip', 'link', 'set', 'lo', 'up']);
    // The specific addresses sit on lo: no module needed (a dummy interface is not always there).
    inNs(['ip', 'addr', 'add', '192.0.2.10/32', 'dev', 'lo']);
    inNs(['ip', 'addr', 'add', '2001:db8::10/128', 'dev', 'lo', 'nodad']);
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', OPENER], { stdio: ['pipe', 'pipe', 'pipe'] });
    opener = child;
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    // Up once the opener says so; its exit, or 20 s, ends the wait too.
    const up = await new Promise<boolean>((resolve) => {
      let out = '';
      const done = (ok: boolean) => {
        clearTimeout(timer);
        resolve(ok);
      };
      const timer = setTimeout(() => done(false), 20_000);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('listening\n')) done(true);
      });
      child.on('exit', () => done(false));
    });
    expect(up, `the socket opener did not listen: ${err}`).toBe(true);
  });

  afterAll(() => {
    // Only what this test made: its own process and its own namespace.
    if (opener && opener.exitCode === null) {
      opener.stdin?.end();
      opener.kill('SIGKILL');
    }
    if (created) spawnSync('ip', ['netns', 'del', ns]);
  });

  it('ss lists the sockets this test opened, as expected', () => {
    const ss = parseSsListeners(inNs(['ss', '-ltnu']));
    expect(ss.map(key).sort()).toEqual(EXPECTED);
    expect(ss.filter((l) => l.device !== undefined)).toEqual([]);
  });

  for (const awk of AWKS) {
    it(`${awk.join(' ')}: /proc/net decoded gives the listeners ss gives`, () => {
      const header = `byteorder=${inNs(['cat', '/sys/kernel/cpu_byteorder']).trim()}`;
      expect(header).toMatch(/^byteorder=(little|big)$/);
      const lines = inNs([...awk, `${SOCKETS_AWK}BEGIN { proc_sockets("/proc/net"); exit }`]);
      expect(lines).toMatch(/^((tcp|udp)6? [0-9A-F]+:[0-9A-F]{4}\n)+$/);
      const proc = parseProcSockets(`${header}\n${lines}`);
      const ss = parseSsListeners(inNs(['ss', '-ltnu']));
      // The one difference, on the side of more warnings: an IPv6-only wildcard beside
      // IPv4 sockets on single addresses is taken to take IPv4 too (/proc cannot tell).
      const asProc = (k: string) => (k === 'udp :: 8010' ? 'udp * 8010' : k);
      expect(proc.map(key).sort()).toEqual(ss.map(key).map(asProc).sort());
      expect(proc.map(key).sort()).toEqual(EXPECTED.map(asProc).sort());
    });
  }

  it('skips the files that are missing (a host without IPv6 has no tcp6)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetfw-sockets-'));
    try {
      writeFileSync(join(dir, 'tcp'), inNs(['cat', '/proc/net/tcp']));
      const r = spawnSync('mawk', [`${SOCKETS_AWK}BEGIN { proc_sockets("${dir}"); exit }`], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
      expect([r.status, r.stderr]).toEqual([0, '']);
      const header = `byteorder=${readFileSync('/sys/kernel/cpu_byteorder', 'utf8').trim()}`;
      expect(parseProcSockets(`${header}\n${r.stdout}`).map(key).sort()).toEqual(['tcp 0.0.0.0 8001', 'tcp 127.0.0.1 8003', 'tcp 192.0.2.10 8005']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
