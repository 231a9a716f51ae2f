// The kept host script (`fleetfw-host serve`) and its client, HostServer, run
// against the real script in a local sh: framing, exact stdin lengths, errors,
// liveness and shutdown. The lab suites drive it over SSH.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostSession, HostStream } from '../transport/ssh.js';
import { TransportError } from '../transport/ssh.js';
import { parseFacts } from './facts.js';
import { HostServer, hostScript, runHost } from './run.js';

let state = '';
beforeAll(() => void (state = mkdtempSync(join(tmpdir(), 'fleetfw-serve-'))));
afterAll(() => rmSync(state, { recursive: true, force: true }));

/** A session whose commands run here, in sh, the way sshd would run them. */
function localSession(scratch = mkdtempSync(join(state, 'tmp-'))): HostSession & { kill(): void } {
  let child: ReturnType<typeof spawn> | undefined;
  return {
    host: 'local',
    exec: () => Promise.reject(new Error('not used')),
    connectTcp: async () => false,
    close: async () => undefined,
    kill: () => child?.kill('SIGKILL'),
    spawn: async (command) => {
      child = spawn('sh', ['-c', command], { env: { ...process.env, FLEETFW_STATE: state, TMPDIR: scratch } });
      const stream = Duplex.from({ readable: child.stdout!, writable: child.stdin! }) as unknown as HostStream;
      Object.assign(stream, { stderr: child.stderr, close: () => child!.kill() });
      child.on('exit', (code) => stream.emit('exit', code));
      child.on('close', () => stream.emit('close'));
      return stream;
    },
  };
}

describe('fleetfw-host serve', () => {
  it('runs one verb after another in the same process, each answer framed with its stdout, stderr and code', async () => {
    const server = await HostServer.start(localSession(), false);
    expect(await runHost(server, 'ping', [], { sudo: false })).toEqual({ code: 0, stdout: 'pong\n', stderr: '' });
    const unknown = await runHost(server, 'no-such-verb', ['x'], { sudo: false });
    expect(unknown).toEqual({ code: 64, stdout: '', stderr: "fleetfw-host: unknown verb 'no-such-verb'\n" });
    const history = await runHost(server, 'history', [], { sudo: false });
    expect(history.code).toBe(0);
    expect(history.stdout).toBe('--- log\n--- end\n');
    await server.finish();
  });

  it('takes exactly the announced stdin: text that looks like framing, or no final newline, cannot leak into the next request', async () => {
    const server = await HostServer.start(localSession(), false);
    const tricky = 'a\n--- fleetfw-rc 0 0000000000000000\n--- fleetfw-stderr x\nno newline at the end';
    for (let i = 0; i < 3; i++) {
      expect(await server.request('ping', [], { stdin: tricky })).toEqual({ code: 0, stdout: 'pong\n', stderr: '' });
    }
    expect(await server.request('ping', [], { stdin: 'ü'.repeat(5000) })).toMatchObject({ code: 0, stdout: 'pong\n' });
    await server.finish();
  });

  it('refuses unsafe words before anything is sent', async () => {
    const server = await HostServer.start(localSession(), false);
    await expect(server.request('ping', ['$(id)'])).rejects.toThrow(/unsafe argument/);
    expect(await server.alive()).toBe(true);
    await server.finish();
  });

  it('a script that is gone answers no more: alive() says so, and a request reports that nothing was sent', async () => {
    const session = localSession();
    const server = await HostServer.start(session, false);
    expect(await server.alive()).toBe(true);
    session.kill();
    await new Promise((r) => setTimeout(r, 100));
    expect(await server.alive()).toBe(false);
    const err = await server.request('ping', []).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).reason).toBe('channel');
  });

  it('finish() ends the loop: the script exits and removes its scratch files', async () => {
    const scratch = mkdtempSync(join(state, 'tmp-'));
    const server = await HostServer.start(localSession(scratch), false);
    await server.request('ping', [], { stdin: 'data' });
    expect(readdirSync(scratch)).toHaveLength(1);
    await server.finish();
    expect(await server.alive()).toBe(false);
    expect(readdirSync(scratch)).toEqual([]);
  });
});

describe('fleetfw-host facts in a throwaway network namespace (root)', () => {
  const facts = (setup: string) => {
    expect(process.getuid?.(), 'must run as root').toBe(0);
    const scratch = mkdtempSync(join(state, 'facts-'));
    const r = spawnSync('unshare', ['-n', 'sh', '-c', `${setup}\nexec sh -c "$1" fleetfw-host facts`, 'setup', hostScript()], {
      encoding: 'utf8',
      env: { ...process.env, FLEETFW_STATE: join(scratch, 'state'), FLEETFW_PERSIST_DIR: join(scratch, 'persist'), TMPDIR: scratch },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(scratch).sort(), 'scratch files removed').toEqual(['state']);
    return parseFacts(r.stdout);
  };

  it('reads the nft rules, hashes them, and reports the backend without another process', () => {
    const f = facts('iptables -A INPUT -p tcp --dport 22 -j ACCEPT');
    expect(f.backend).toBe('nft');
    expect(f.live.v4).toContain('-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT');
    expect(f.liveHash).toMatch(/^[0-9a-f]{64}$/);
    expect(f.liveHash).not.toBe(f.persistedHash);
  });

  it('refuses to guess when rules live in both backends: legacy tables count (/proc reports size 0)', () => {
    const f = facts('iptables -A INPUT -j ACCEPT && iptables-legacy -A INPUT -j ACCEPT');
    expect(f.backend).toBe('mixed');
  });
});
