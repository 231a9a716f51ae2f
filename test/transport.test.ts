// End-to-end test of src/transport against real sshd in three private network
// namespaces: operator (203.0.113.100) -> bastion (203.0.113.10 | 192.0.2.10)
// -> target (192.0.2.11-40, one sshd answering as 30 hosts). The ssh2 client
// must live in the operator namespace, so it runs as a child driver process
// (`ip netns exec … node --import tsx driver.mts`) that speaks JSON lines.
// Root and the OpenSSH tools are required: this suite fails, never skips.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SshEndpoint, TransportOptions } from '../src/transport/ssh.js';

const repo = fileURLToPath(new URL('..', import.meta.url));
const sshModule = fileURLToPath(new URL('../src/transport/ssh.ts', import.meta.url));
const tag = `ffwt${randomBytes(3).toString('hex')}`;
const ns = { op: `${tag}-op`, bas: `${tag}-bas`, tgt: `${tag}-tgt` };
const targetCount = 30;
const targets = Array.from({ length: targetCount }, (_, i) => ({ name: `t-${i + 1}`, address: `192.0.2.${11 + i}` }));

let dir = '';
const started: ChildProcess[] = [];
const sshdProcs = new Map<string, ChildProcess>();

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
const inNs = (name: string, cmd: string, ...args: string[]): string => run('ip', ['netns', 'exec', name, cmd, ...args]);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const publicKey = (file: string): { type: string; b64: string } => {
  const [type = '', b64 = ''] = readFileSync(`${file}.pub`, 'utf8').split(' ');
  return { type, b64 };
};
const fingerprint = (file: string): string => run('ssh-keygen', ['-lf', `${file}.pub`]).split(' ')[1] ?? '';
const keyFile = (name: string): string => join(dir, name);

function makeKey(name: string): string {
  const file = keyFile(name);
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
  return file;
}

async function startSshd(which: 'bas' | 'tgt'): Promise<void> {
  const d = join(dir, which);
  mkdirSync(d, { recursive: true });
  const cfg = join(d, 'sshd_config');
  writeFileSync(
    cfg,
    [
      'ListenAddress 0.0.0.0:22',
      `HostKey ${keyFile(`${which}_host`)}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `PidFile ${join(d, 'sshd.pid')}`,
      'StrictModes no',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'AllowTcpForwarding yes',
      // One sshd plays 30 hosts: let their concurrent handshakes through.
      'MaxStartups 100:30:200',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  const proc = spawn('ip', ['netns', 'exec', ns[which], '/usr/sbin/sshd', '-D', '-f', cfg, '-E', join(d, 'log')], {
    stdio: 'ignore',
  });
  started.push(proc);
  sshdProcs.set(which, proc);
  for (let i = 0; i < 100; i++) {
    if (inNs(ns[which], 'ss', '-Hltn', 'sport = :22').trim() !== '') return;
    await sleep(50);
  }
  throw new Error(`sshd in ${ns[which]} did not start: ${readFileSync(join(d, 'log'), 'utf8')}`);
}

/** Every sshd process of a namespace: the listener and its per-connection children. */
function killSshd(which: 'bas' | 'tgt'): void {
  for (const pid of run('ip', ['netns', 'pids', ns[which]]).split('\n').filter(Boolean)) {
    const comm = existsSync(`/proc/${pid}/comm`) ? readFileSync(`/proc/${pid}/comm`, 'utf8').trim() : '';
    if (comm === 'sshd') {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

const sshdLog = (which: 'bas' | 'tgt'): string => readFileSync(join(dir, which, 'log'), 'utf8');
const countMatches = (text: string, re: RegExp): number => text.split('\n').filter((l) => re.test(l)).length;

// The driver: runs createSshTransport inside the operator namespace.
const driverSource = `
import { createHash, randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { createSshTransport } from ${JSON.stringify(sshModule)};
const { endpoints, options, passphraseAnswer } = JSON.parse(process.argv[2]);
let asks = 0;
const askPassphrase = async () => { asks++; return passphraseAnswer; };
const transport = createSshTransport(endpoints, passphraseAnswer === undefined ? options : { ...options, askPassphrase });
const sessions = new Map();
let next = 0;
const serialise = (e) => ({ name: e.name, message: e.message, reason: e.reason, hop: e.hop, host: e.host });
async function openExec(host, command) {
  const s = await transport.open(host);
  const sid = ++next; sessions.set(sid, s);
  return { sid, result: await s.exec(command) };
}
const ops = {
  async open({ host }) { const s = await transport.open(host); const sid = ++next; sessions.set(sid, s); return { sid }; },
  async exec({ sid, command, stdin, stdinBytes, timeoutMs }) {
    const data = stdinBytes ? randomBytes(stdinBytes) : stdin;
    const t0 = performance.now();
    const result = await sessions.get(sid).exec(command, { stdin: data, timeoutMs });
    return { result, ms: performance.now() - t0, sentSha256: data ? createHash('sha256').update(data).digest('hex') : undefined };
  },
  async close({ sid }) { await sessions.get(sid).close(); sessions.delete(sid); return {}; },
  async openExecMany({ hosts, command }) {
    const t0 = performance.now();
    const all = await Promise.allSettled(hosts.map((h) => openExec(h, command)));
    const ms = performance.now() - t0;
    return { ms, results: all.map((r) => r.status === 'fulfilled' ? r.value : { error: serialise(r.reason) }) };
  },
  async closeAll() { await transport.close(); return {}; },
  async stats() { return { asks }; },
};
createInterface({ input: process.stdin }).on('line', async (line) => {
  const req = JSON.parse(line);
  const t0 = performance.now();
  try {
    const res = await ops[req.op](req);
    console.log(JSON.stringify({ id: req.id, ok: true, elapsedMs: performance.now() - t0, ...res }));
  } catch (e) {
    console.log(JSON.stringify({ id: req.id, ok: false, elapsedMs: performance.now() - t0, error: serialise(e) }));
  }
});
`;

interface Reply {
  id: number;
  ok: boolean;
  elapsedMs: number;
  error?: { name: string; message: string; reason: string; hop: string; host: string };
  [k: string]: unknown;
}

class Driver {
  private readonly proc: ChildProcess;
  private readonly pending = new Map<number, (r: Reply) => void>();
  private nextId = 0;
  private stderr = '';

  constructor(endpoints: SshEndpoint[], options: TransportOptions, passphraseAnswer?: string) {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.SSH_AUTH_SOCK; // only what the test passes
    this.proc = spawn(
      'ip',
      ['netns', 'exec', ns.op, process.execPath, '--import', 'tsx', join(dir, 'driver.mts'), JSON.stringify({ endpoints, options, passphraseAnswer })],
      { cwd: repo, env, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    started.push(this.proc);
    this.proc.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      const reply = JSON.parse(line) as Reply;
      this.pending.get(reply.id)?.(reply);
      this.pending.delete(reply.id);
    });
    this.proc.on('exit', () => {
      for (const resolve of this.pending.values()) {
        resolve({ id: -1, ok: false, elapsedMs: 0, error: { name: 'DriverExit', message: this.stderr, reason: '', hop: '', host: '' } });
      }
    });
  }

  request(op: string, args: Record<string, unknown> = {}): Promise<Reply> {
    const id = ++this.nextId;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.proc.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`);
    });
  }

  async ok(op: string, args: Record<string, unknown> = {}): Promise<Reply> {
    const r = await this.request(op, args);
    if (!r.ok) throw new Error(`${op} failed: ${JSON.stringify(r.error)}`);
    return r;
  }

  async stop(): Promise<void> {
    await this.request('closeAll').catch(() => undefined);
    this.proc.stdin!.end();
    await new Promise((r) => (this.proc.exitCode !== null ? r(undefined) : this.proc.once('exit', r)));
  }
}

const bastion = (extra: Partial<SshEndpoint> = {}): SshEndpoint => ({
  name: 'tunnel-1',
  address: '203.0.113.10',
  port: 22,
  user: 'root',
  identityFile: keyFile('id_client'),
  ...extra,
});
const endpoints = (extra: Partial<SshEndpoint> = {}): SshEndpoint[] => [
  bastion(extra),
  ...targets.map((t) => ({ ...bastion(extra), ...t, bastion: 'tunnel-1' })),
];

/** A known_hosts file with the given keys for the bastion and all targets (one wildcard line). */
function knownHosts(name: string, basKey: string, tgtKey: string): string {
  const file = join(dir, name);
  const b = publicKey(basKey);
  const t = publicKey(tgtKey);
  writeFileSync(file, `tunnel-1,203.0.113.10 ${b.type} ${b.b64}\nt-*,192.0.2.* ${t.type} ${t.b64}\n`);
  return file;
}

async function withDriver<T>(
  eps: SshEndpoint[],
  options: TransportOptions,
  fn: (d: Driver) => Promise<T>,
  passphraseAnswer?: string,
): Promise<T> {
  const d = new Driver(eps, options, passphraseAnswer);
  try {
    return await fn(d);
  } finally {
    await d.stop();
  }
}

describe('ssh transport through one bastion (network namespaces)', () => {
  let goodKnownHosts = '';

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('the e2e transport test needs root (network namespaces, sshd)');
    for (const tool of ['/usr/sbin/sshd', '/usr/bin/ssh-keygen', '/usr/bin/ssh-agent', '/usr/bin/ssh-add', '/usr/bin/ss']) {
      if (!existsSync(tool)) throw new Error(`the e2e transport test needs ${tool}`);
    }
    run('ip', ['-V']);
    dir = mkdtempSync(join(tmpdir(), `${tag}-`));
    writeFileSync(join(dir, 'driver.mts'), driverSource);
    mkdirSync('/run/sshd', { recursive: true });

    for (const n of Object.values(ns)) {
      run('ip', ['netns', 'add', n]);
      inNs(n, 'ip', 'link', 'set', 'lo', 'up');
    }
    run('ip', ['-n', ns.op, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'pub0', 'netns', ns.bas]);
    run('ip', ['-n', ns.bas, 'link', 'add', 'priv0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.tgt]);
    run('ip', ['-n', ns.op, 'addr', 'add', '203.0.113.100/24', 'dev', 'eth0']);
    run('ip', ['-n', ns.bas, 'addr', 'add', '203.0.113.10/24', 'dev', 'pub0']);
    run('ip', ['-n', ns.bas, 'addr', 'add', '192.0.2.10/24', 'dev', 'priv0']);
    for (const t of targets) run('ip', ['-n', ns.tgt, 'addr', 'add', `${t.address}/24`, 'dev', 'eth0']);
    for (const [n, dev] of [[ns.op, 'eth0'], [ns.bas, 'pub0'], [ns.bas, 'priv0'], [ns.tgt, 'eth0']] as const) {
      run('ip', ['-n', n, 'link', 'set', dev, 'up']);
    }

    for (const k of ['id_client', 'id_agent', 'bas_host', 'tgt_host', 'other_host']) makeKey(k);
    writeFileSync(
      join(dir, 'authorized_keys'),
      ['id_client', 'id_agent'].map((k) => readFileSync(`${keyFile(k)}.pub`, 'utf8')).join(''),
    );
    await Promise.all([startSshd('bas'), startSshd('tgt')]);
    goodKnownHosts = knownHosts('known_hosts', keyFile('bas_host'), keyFile('tgt_host'));
  });

  afterAll(() => {
    for (const p of started) if (p.exitCode === null && p.pid) p.kill('SIGKILL');
    if (dir) {
      for (const which of ['bas', 'tgt'] as const) {
        try {
          killSshd(which);
        } catch {
          // namespace never created
        }
      }
    }
    for (const n of Object.values(ns)) {
      try {
        run('ip', ['netns', 'del', n]);
      } catch {
        // not created
      }
    }
    // FFWT_KEEP=1 keeps the temp dir (sshd logs, keys) for debugging.
    if (dir && !process.env.FFWT_KEEP) rmSync(dir, { recursive: true, force: true });
  });

  const trusted = (): TransportOptions => ({ knownHostsFile: goodKnownHosts, acceptNewHostKeys: false });

  it('runs a command on a target through the bastion, stdin round-trip of 1 MB', async () => {
    await withDriver(endpoints(), trusted(), async (d) => {
      const { sid } = await d.ok('open', { host: 't-1' });
      const big = await d.ok('exec', { sid, command: 'sha256sum', stdinBytes: 1 << 20 });
      const result = big.result as { code: number; stdout: string };
      expect(result.code).toBe(0);
      expect(result.stdout.split(' ')[0]).toBe(big.sentSha256);
      const r = await d.ok('exec', { sid, command: 'echo "$SSH_CONNECTION"; echo oops >&2; exit 3' });
      expect(r.result).toMatchObject({ code: 3, stderr: 'oops\n' });
      expect((r.result as { stdout: string }).stdout).toMatch(/^192\.0\.2\.10 \d+ 192\.0\.2\.11 22\n$/);
      // The bastion itself: a direct connection from the operator.
      const b = await d.ok('open', { host: 'tunnel-1' });
      const rb = await d.ok('exec', { sid: b.sid, command: 'echo "$SSH_CONNECTION"' });
      expect((rb.result as { stdout: string }).stdout).toMatch(/^203\.0\.113\.100 \d+ 203\.0\.113\.10 22\n$/);
      console.log(`transport: 1 MB stdin round-trip ${Math.round(big.ms as number)} ms`);
    });
  });

  it(`opens ${targetCount} targets in parallel over ONE bastion connection`, async () => {
    await withDriver(endpoints(), trusted(), async (d) => {
      await d.ok('open', { host: 't-1' }); // warm the shared bastion connection so the timing is per-target
      const many = await d.ok('openExecMany', { hosts: targets.map((t) => t.name), command: 'echo "$SSH_CONNECTION"' });
      const results = many.results as { result?: { code: number; stdout: string }; error?: unknown }[];
      expect(results.filter((r) => r.error)).toEqual([]);
      results.forEach((r, i) => expect(r.result?.stdout.split(' ')[2]).toBe(targets[i]?.address));
      // Sessions are still open here: the bastion must see one operator connection.
      const conns = inNs(ns.bas, 'ss', '-Htn', 'state', 'established', '( sport = :22 )').trim().split('\n');
      expect(conns.filter((l) => l.includes('203.0.113.100'))).toHaveLength(1);
      const forwarded = inNs(ns.bas, 'ss', '-Htn', 'state', 'established', '( dport = :22 )').trim().split('\n');
      expect(forwarded.length).toBeGreaterThanOrEqual(targetCount);
      console.log(`transport: ${targetCount} parallel opens + exec through one bastion connection: ${Math.round(many.ms as number)} ms`);
    });
  });

  it('refuses an unknown host key with its fingerprint, before any authentication', async () => {
    const empty = join(dir, 'known_hosts_empty');
    writeFileSync(empty, '');
    const basAuthBefore = countMatches(sshdLog('bas'), /publickey/);
    await withDriver(endpoints(), { knownHostsFile: empty, acceptNewHostKeys: false }, async (d) => {
      const r = await d.request('open', { host: 'tunnel-1' });
      expect(r.ok).toBe(false);
      expect(r.error).toMatchObject({ name: 'TransportError', reason: 'hostkey-unknown', hop: 'bastion', host: 'tunnel-1' });
      expect(r.error?.message).toContain(fingerprint(keyFile('bas_host')));
      expect(r.error?.message).toContain('tunnel-1');
      expect(r.error?.message).toMatch(/--accept-new-host-keys/);
      expect(r.error?.message).toMatch(/ssh-keyscan/);
      expect(r.elapsedMs).toBeLessThan(3000); // not retried
    });
    await sleep(200); // let sshd flush its log
    expect(countMatches(sshdLog('bas'), /publickey/)).toBe(basAuthBefore);
    // Known bastion, unknown target: the target hop is refused under its own name.
    const basOnly = join(dir, 'known_hosts_bas_only');
    const b = publicKey(keyFile('bas_host'));
    writeFileSync(basOnly, `tunnel-1 ${b.type} ${b.b64}\n`);
    const tgtAuthBefore = countMatches(sshdLog('tgt'), /publickey/);
    await withDriver(endpoints(), { knownHostsFile: basOnly, acceptNewHostKeys: false }, async (d) => {
      const r = await d.request('open', { host: 't-2' });
      expect(r.error).toMatchObject({ reason: 'hostkey-unknown', hop: 'target', host: 't-2' });
      expect(r.error?.message).toContain(fingerprint(keyFile('tgt_host')));
    });
    await sleep(200);
    expect(countMatches(sshdLog('tgt'), /publickey/)).toBe(tgtAuthBefore);
  });

  it("advises fetching a target's unknown key through the bastion, and that advice works", async () => {
    // The target's address is reached from the bastion only: ssh-keyscan of it from here cannot work.
    const file = join(dir, 'known_hosts_advice');
    const b = publicKey(keyFile('bas_host'));
    writeFileSync(file, `tunnel-1,203.0.113.10 ${b.type} ${b.b64}\n`);
    let advice = '';
    await withDriver(endpoints(), { knownHostsFile: file, acceptNewHostKeys: false }, async (d) => {
      const r = await d.request('open', { host: 't-2' });
      expect(r.error).toMatchObject({ reason: 'hostkey-unknown', hop: 'target', host: 't-2' });
      advice = r.error?.message ?? '';
    });
    expect(advice).not.toMatch(/add it with ssh-keyscan/);
    expect(advice).toContain(`-J root@203.0.113.10:22 -o UserKnownHostsFile=${file} -p 22 root@192.0.2.12 true`);
    const fetch = /fetch it through the bastion \([^)]*\): (ssh .*? >> \S+) \(ssh-keyscan runs on the bastion\)/.exec(advice)?.[1];
    expect(fetch, advice).toContain('root@203.0.113.10 ssh-keyscan -p 22 192.0.2.12');
    // Run it as the operator would (BatchMode: no prompt can hang the test), then connect.
    inNs(ns.op, 'timeout', '30', 'sh', '-c', fetch!.replace(/^ssh /, 'ssh -o BatchMode=yes '));
    expect(readFileSync(file, 'utf8')).toContain(`192.0.2.12 ${publicKey(keyFile('tgt_host')).type}`);
    await withDriver(endpoints(), { knownHostsFile: file, acceptNewHostKeys: false }, async (d) => {
      const { sid } = await d.ok('open', { host: 't-2' });
      expect((await d.ok('exec', { sid, command: 'true' })).result).toMatchObject({ code: 0 });
    });
  });

  it('records new keys with accept-new (file created 0600) and trusts them afterwards', async () => {
    const file = join(dir, 'known_hosts_new');
    await withDriver(endpoints(), { knownHostsFile: file, acceptNewHostKeys: true }, async (d) => {
      const { sid } = await d.ok('open', { host: 't-3' });
      expect((await d.ok('exec', { sid, command: 'true' })).result).toMatchObject({ code: 0 });
    });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain(`tunnel-1,203.0.113.10 ssh-ed25519 ${publicKey(keyFile('bas_host')).b64}`);
    expect(text).toContain(`t-3,192.0.2.13 ssh-ed25519 ${publicKey(keyFile('tgt_host')).b64}`);
    await withDriver(endpoints(), { knownHostsFile: file, acceptNewHostKeys: false }, async (d) => {
      await d.ok('open', { host: 't-3' });
    });
  });

  it('refuses a CHANGED key of the bastion and of a target, even with accept-new', async () => {
    const badBastion = knownHosts('known_hosts_bad_bas', keyFile('other_host'), keyFile('tgt_host'));
    await withDriver(endpoints(), { knownHostsFile: badBastion, acceptNewHostKeys: true }, async (d) => {
      const r = await d.request('open', { host: 't-1' });
      expect(r.error).toMatchObject({ reason: 'hostkey-changed', hop: 'bastion', host: 'tunnel-1' });
      const m = r.error?.message ?? '';
      expect(m).toContain('WARNING: the host key of tunnel-1 (203.0.113.10) has CHANGED');
      expect(m).toContain('man-in-the-middle');
      expect(m).toContain(
        `It offered ssh-ed25519 ${fingerprint(keyFile('bas_host'))}; known: ssh-ed25519 ${fingerprint(keyFile('other_host'))} (${badBastion} line 1)`,
      );
    });
    const badTarget = knownHosts('known_hosts_bad_tgt', keyFile('bas_host'), keyFile('other_host'));
    await withDriver(endpoints(), { knownHostsFile: badTarget, acceptNewHostKeys: true }, async (d) => {
      const r = await d.request('open', { host: 't-4' });
      expect(r.error).toMatchObject({ reason: 'hostkey-changed', hop: 'target', host: 't-4' });
      expect(r.error?.message).toContain('WARNING: the host key of t-4 (192.0.2.14) has CHANGED');
      expect(r.error?.message).toContain(`(${badTarget} line 2)`);
    });
    expect(readFileSync(badTarget, 'utf8').split('\n')).toHaveLength(3); // nothing appended
  });

  it('authenticates with ssh-agent, and fails fast (no retries) without credentials', async () => {
    const sock = join(dir, 'agent.sock');
    // Foreground agent (-D): a child of this process, killed in afterAll with the rest.
    started.push(spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' }));
    for (let i = 0; i < 100 && !existsSync(sock); i++) await sleep(20);
    execFileSync('ssh-add', ['-q', keyFile('id_agent')], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
    const noFile = endpoints({ identityFile: undefined });
    await withDriver(noFile, { ...trusted(), agentSocket: sock }, async (d) => {
      const { sid } = await d.ok('open', { host: 't-5' });
      expect((await d.ok('exec', { sid, command: 'echo agent' })).result).toMatchObject({ stdout: 'agent\n', code: 0 });
    });
    expect(sshdLog('tgt')).toMatch(/Accepted publickey for root .* ED25519 .*/);
    // A key the hosts do not know: an auth failure, reported at once.
    const stranger = makeKey('id_stranger');
    await withDriver(endpoints({ identityFile: stranger }), trusted(), async (d) => {
      const r = await d.request('open', { host: 'tunnel-1' });
      expect(r.error).toMatchObject({ reason: 'auth', hop: 'bastion' });
      expect(r.elapsedMs).toBeLessThan(3000);
    });
  });

  it('asks for the passphrase of an encrypted key once, and keeps it out of errors', async () => {
    const file = keyFile('id_encrypted');
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'sesame-1234', '-f', file]);
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${file}.pub`), { flag: 'a' });
    await withDriver(
      endpoints({ identityFile: file }),
      trusted(),
      async (d) => {
        const opened = await Promise.all(['t-8', 't-9', 'tunnel-1'].map((host) => d.ok('open', { host })));
        expect(opened).toHaveLength(3);
        expect((await d.ok('stats')).asks).toBe(1);
      },
      'sesame-1234',
    );
    await withDriver(
      endpoints({ identityFile: file }),
      trusted(),
      async (d) => {
        const r = await d.request('open', { host: 't-8' });
        expect(r.error).toMatchObject({ reason: 'auth', host: 't-8' });
        expect(r.error?.message).toMatch(/wrong passphrase/);
        expect(r.error?.message).not.toContain('wrong-guess');
      },
      'wrong-guess',
    );
  });

  it('times out a command, and the session stays usable', async () => {
    await withDriver(endpoints(), trusted(), async (d) => {
      const { sid } = await d.ok('open', { host: 't-6' });
      const r = await d.request('exec', { sid, command: 'sleep 30', timeoutMs: 500 });
      expect(r.error).toMatchObject({ reason: 'timeout', host: 't-6' });
      expect(r.error?.message).toMatch(/timed out after 500 ms/);
      expect(r.elapsedMs).toBeLessThan(2000);
      expect((await d.ok('exec', { sid, command: 'echo still' })).result).toMatchObject({ stdout: 'still\n' });
    });
  });

  it('retries a refused connection with backoff until the target comes back', async () => {
    await withDriver(endpoints(), trusted(), async (d) => {
      await d.ok('open', { host: 't-10' });
      killSshd('tgt');
      const pending = d.request('open', { host: 't-10' });
      await sleep(800);
      await startSshd('tgt');
      const r = await pending;
      expect(r.ok).toBe(true);
      expect(r.elapsedMs).toBeGreaterThan(400);
      // Down for good: reported as a channel failure after every retry (0.5 + 1 + 2 s, with jitter).
      killSshd('tgt');
      const failed = await d.request('open', { host: 't-10' });
      expect(failed.error).toMatchObject({ reason: 'channel', hop: 'target', host: 't-10' });
      expect(failed.elapsedMs).toBeGreaterThan(2500);
      await startSshd('tgt');
    });
  });

  it("re-dials the bastion after its sshd restarted", async () => {
    await withDriver(endpoints(), trusted(), async (d) => {
      const first = await d.ok('open', { host: 't-7' });
      await d.ok('exec', { sid: first.sid, command: 'true' });
      killSshd('bas');
      await startSshd('bas');
      const lost = await d.request('exec', { sid: first.sid, command: 'true' });
      expect(lost.ok).toBe(false);
      const again = await d.ok('open', { host: 't-7' });
      expect((await d.ok('exec', { sid: again.sid, command: 'echo back' })).result).toMatchObject({ stdout: 'back\n' });
    });
  });
});
