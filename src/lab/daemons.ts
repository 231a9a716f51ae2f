// The long-lived processes of a lab: each node's namespace anchor, each host's
// sshd, the operator's ssh-agent; and what tells whether they are up. Every one
// lives in a lab namespace, so killing the namespaces' processes ends them all.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LabError } from '../errors.js';
import { runProbe } from './probe.js';
import { runCommand, sleep } from './proc.js';
import { track } from './state.js';

const SSHD_READY_MS = 10_000;
const AGENT_READY_MS = 10_000;

/** argv prefix that enters a node through its anchor: network (and by default mount and UTS) namespace. */
export function nsPrefix(anchorPid: number, mount = true): string[] {
  return mount ? ['nsenter', '-t', String(anchorPid), '-n', '-m', '-u', '--'] : ['nsenter', '-t', String(anchorPid), '-n', '--'];
}

// Values arrive as positional parameters, never spliced into the script. The
// hostname goes through /proc: hostname(1) refuses names such as `web_1` that
// the inventory (and the kernel) accept.
const ANCHOR_SCRIPT = [
  'set -e',
  'printf %s "$1" > /proc/sys/kernel/hostname',
  'shift',
  'while [ $# -ge 2 ]; do mount --bind "$1" "$2"; shift 2; done',
  'echo ready',
  'exec sleep infinity </dev/null >/dev/null 2>&1',
].join('\n');

/** Starts the namespace anchor: a private mount + UTS namespace with the node's hostname and bind mounts. */
export function startAnchor(dir: string, ns: string, hostname: string, binds: Array<[string, string]>): Promise<number> {
  const argv = ['netns', 'exec', ns, 'unshare', '--mount', '--uts', '--propagation', 'private', 'sh', '-c', ANCHOR_SCRIPT, 'fleetfw-anchor', hostname, ...binds.flat()];
  return new Promise((resolve, reject) => {
    const child = spawn('ip', argv, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    track(dir, child);
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
    child.on('error', (e) => reject(new LabError(`${hostname}: cannot start namespace anchor: ${e.message}`)));
    const onExit = (code: number | null): void => reject(new LabError(`${hostname}: namespace setup failed (exit ${code}): ${err.trim()}`));
    child.once('exit', onExit);
    // The script closes its stdout when it execs sleep: setup is complete.
    child.stdout.once('end', () => {
      if (!out.includes('ready')) return;
      child.removeListener('exit', onExit);
      child.stderr.destroy();
      child.unref();
      resolve(child.pid as number);
    });
  });
}

/** Starts the host's sshd in its namespaces and waits until it accepts TCP. */
export async function startSshd(dir: string, hostDir: string, anchorPid: number, name: string, port: number): Promise<number> {
  const log = join(hostDir, 'sshd.log');
  await appendFile(log, '');
  const offset = (await readFile(log)).length;
  const argv = [...nsPrefix(anchorPid), '/usr/sbin/sshd', '-D', '-f', join(hostDir, 'sshd_config'), '-E', log];
  const child = spawn(argv[0] as string, argv.slice(1), { detached: true, stdio: 'ignore' });
  child.unref();
  track(dir, child);
  const pid = child.pid;
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  const started = Date.now();
  const tail = async (): Promise<string> => (await readFile(log, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
  while (Date.now() - started < SSHD_READY_MS) {
    if (pid === undefined || exited !== undefined) {
      throw new LabError(`${name}: sshd exited (code ${exited}) before listening on port ${port}; log tail:\n${await tail()}`);
    }
    const text = (await readFile(log)).subarray(offset).toString('utf8');
    if (text.includes('Server listening on')) {
      // Logged right after listen(); confirm it really accepts from inside the namespace.
      const r = await runProbe(nsPrefix(anchorPid, false), '127.0.0.1', 'tcp', port, 1000);
      if (r === 'open') return pid;
    }
    await sleep(20);
  }
  throw new LabError(`${name}: sshd did not accept TCP on port ${port} within ${SSHD_READY_MS / 1000} s; log tail:\n${await tail()}`);
}

/** ssh-agent runs inside the operator namespace so the namespace teardown also ends it. */
export async function startAgent(dir: string, operatorAnchor: number, identityFile: string): Promise<string> {
  const sock = join(dir, 'agent.sock');
  const argv = [...nsPrefix(operatorAnchor, false), 'ssh-agent', '-D', '-a', sock];
  const child = spawn(argv[0] as string, argv.slice(1), { detached: true, stdio: 'ignore' });
  child.unref();
  track(dir, child);
  const started = Date.now();
  while (!existsSync(sock)) {
    if (Date.now() - started > AGENT_READY_MS) throw new LabError(`ssh-agent did not create its socket within ${AGENT_READY_MS / 1000} s`);
    await sleep(10);
  }
  // The socket file appears at bind(), a moment before listen(): retry while refused.
  for (;;) {
    const r = await runCommand(['ssh-add', '-q', identityFile], { env: { SSH_AUTH_SOCK: sock } });
    if (r.code === 0) return sock;
    if (Date.now() - started > AGENT_READY_MS) throw new LabError(`ssh-add into the lab agent failed: ${r.stderr.trim()}`);
    await sleep(20);
  }
}

/** Is pid an sshd in the same network namespace as the node's anchor? */
export function isSshdOf(pid: number, anchorPid: number): boolean {
  try {
    return (
      readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sshd' &&
      readlinkSync(`/proc/${pid}/ns/net`) === readlinkSync(`/proc/${anchorPid}/ns/net`)
    );
  } catch {
    return false;
  }
}

/** Is something bound to the port in the node's namespace? Read from /proc, no process spawned. */
export function isListening(anchorPid: number, proto: 'tcp' | 'udp', port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of proto === 'tcp' ? ['tcp', 'tcp6'] : ['udp', 'udp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${anchorPid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(`:${hex}`) && (proto === 'udp' || f[3] === '0A')) return true;
    }
  }
  return false;
}
