// The kept host script (`fleetfw-host serve`) and its client, HostServer, run
// against the real script in a local sh: framing, exact stdin lengths, errors,
// liveness and shutdown. The lab suites drive it over SSH.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostSession, HostStream } from '../transport/ssh.js';
import { TransportError } from '../transport/ssh.js';
import * as client from './client.js';
import { parseCanonical, parseFacts } from './facts.js';
import { parseOutcome } from './outcome.js';
import { HostServer, hostScript, runHost } from './run.js';

let state = '';
beforeAll(() => void (state = mkdtempSync(join(tmpdir(), 'fleetfw-serve-'))));
afterAll(() => rmSync(state, { recursive: true, force: true }));

/**
 * A session whose commands run here, in sh, the way sshd would run them; with
 * `netns`, in a throwaway network namespace of their own (root).
 */
function localSession(scratch = mkdtempSync(join(state, 'tmp-')), netns?: { persist: string }, extraEnv: Record<string, string> = {}): HostSession & { kill(): void; pid(): number | undefined } {
  let child: ReturnType<typeof spawn> | undefined;
  return {
    host: 'local',
    exec: () => Promise.reject(new Error('not used')),
    connectTcp: async () => false,
    answerOnLoopback: async () => undefined,
    close: async () => undefined,
    kill: () => child?.kill('SIGKILL'),
    pid: () => child?.pid,
    spawn: async (command) => {
      const env = { ...process.env, FLEETFW_STATE: state, FLEETFW_RUN_DIR: scratch, TMPDIR: scratch, ...(netns ? { FLEETFW_PERSIST_DIR: netns.persist } : {}), ...extraEnv };
      child = netns ? spawn('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec ${command}`], { env }) : spawn('sh', ['-c', command], { env });
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

  it('finish() ends the loop: the script exits and empties its scratch files', async () => {
    const scratch = mkdtempSync(join(state, 'tmp-'));
    const server = await HostServer.start(localSession(scratch), false);
    await server.request('ping', [], { stdin: 'data' });
    const sizes = () => readdirSync(scratch).map((f) => statSync(join(scratch, f)).size);
    expect(sizes()).toContain(4);
    await server.finish();
    expect(await server.alive()).toBe(false);
    expect(sizes().length).toBeGreaterThan(0);
    expect(sizes().every((n) => n === 0)).toBe(true);
  });
});

describe('fleetfw-host facts in a throwaway network namespace (root)', () => {
  const facts = (setup: string, args: string[] = [], input = '') => parseFacts(verb('facts', setup, args, input));
  const verb = (name: string, setup: string, args: string[] = [], input = '') => {
    expect(process.getuid?.(), 'must run as root').toBe(0);
    const scratch = mkdtempSync(join(state, 'facts-'));
    const r = spawnSync('unshare', ['-n', 'sh', '-c', `${setup}\nscript=$1; shift\nexec sh -c "$script" fleetfw-host "$@"`, 'setup', hostScript(), name, ...args], {
      encoding: 'utf8',
      input,
      env: { ...process.env, FLEETFW_STATE: join(scratch, 'state'), FLEETFW_PERSIST_DIR: join(scratch, 'persist'), FLEETFW_RUN_DIR: join(scratch, 'run'), TMPDIR: scratch },
    });
    expect(r.status, r.stderr).toBe(0);
    // facts makes its state and run folders; canonical leaves nothing behind.
    expect(readdirSync(scratch).sort(), 'no other scratch files').toEqual(name === 'facts' ? ['run', 'state'] : []);
    if (name !== 'facts') return r.stdout;
    const run = join(scratch, 'run');
    expect(readdirSync(run).filter((f) => statSync(join(run, f)).size > 0), 'scratch files emptied').toEqual([]);
    return r.stdout;
  };

  it('reads the nft rules, hashes them, and reports the backend without another process', () => {
    const f = facts('iptables -A INPUT -p tcp --dport 22 -j ACCEPT');
    expect(f.backend).toBe('nft');
    expect(f.live.v4).toContain('-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT');
    expect(f.liveHash).toMatch(/^[0-9a-f]{64}$/);
    expect(f.persistedSame).toBe(false);
  });

  it('wants the candidate unless it runs the verified iptables, and canonical prints it as its iptables-save does', () => {
    const rules = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -s 192.0.2.1 -j ACCEPT\nCOMMIT\n';
    const candidate = `${rules}# fleetfw-split v6\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n`;
    const version = /^iptables v(\S+) \((\w+)\)/.exec(spawnSync('iptables', ['-V'], { encoding: 'utf8' }).stdout)!;
    const other = facts('iptables -A INPUT -j ACCEPT', ['canonical', '0.0-elsewhere']);
    expect(other.canonical).toBeUndefined();
    expect(other.canonicalWanted).toBe(`iptables ${version[1]}-${version[2]}`);
    const printed = parseCanonical(verb('canonical', 'iptables -A INPUT -j ACCEPT', [], candidate));
    expect('v4' in printed && printed.v4).toContain('-A INPUT -s 192.0.2.1/32 -p tcp -m tcp --dport 22 -j ACCEPT');
    const same = facts('iptables -A INPUT -j ACCEPT', ['canonical', `${version[1]}-${version[2]}`]);
    expect(same.canonical).toEqual({ skipped: `iptables ${version[1]}-${version[2]}` });
    expect(same.canonicalWanted).toBeUndefined();
    // Rules this host cannot load: why, not a canonical text.
    const refused = parseCanonical(verb('canonical', ':', [], candidate.replace('--dport 22', '--dport 22 -m nosuchmatch')));
    expect(refused).toMatchObject({ unavailable: expect.stringMatching(/nosuchmatch|Couldn't load/i) });
  });

  it('hashes an empty table (built-in chains, policy ACCEPT, no rule) as an absent one, live and persisted', () => {
    const plain = facts('iptables -A INPUT -j ACCEPT');
    const emptied = 'iptables -t nat -A POSTROUTING -j ACCEPT && iptables -t nat -F && ip6tables -t raw -A OUTPUT -j ACCEPT && ip6tables -t raw -F';
    const withEmpty = facts(`iptables -A INPUT -j ACCEPT && ${emptied} && iptables-save | grep -qx '\\*nat'`);
    expect(withEmpty.live.v4).toContain('*nat');
    expect(withEmpty.liveHash).toBe(plain.liveHash);
    // Not empty: a policy other than ACCEPT, or a user chain.
    expect(facts('iptables -A INPUT -j ACCEPT && iptables -t raw -P OUTPUT DROP').liveHash).not.toBe(plain.liveHash);
    expect(facts('iptables -A INPUT -j ACCEPT && iptables -t nat -N MINE').liveHash).not.toBe(plain.liveHash);
    // Persisted files carrying an empty table the live rules lack (counters and all) are the live rules.
    const persisted = facts(
      [
        'iptables -A INPUT -j ACCEPT',
        'export FLEETFW_PERSIST_DIR="$FLEETFW_STATE/persist"',
        'mkdir -p "$FLEETFW_PERSIST_DIR"',
        `{ printf '*raw\\n:PREROUTING ACCEPT [7:420]\\n:OUTPUT ACCEPT [0:0]\\nCOMMIT\\n'; iptables-save; } >"$FLEETFW_PERSIST_DIR/rules.v4"`,
        'ip6tables-save >"$FLEETFW_PERSIST_DIR/rules.v6"',
      ].join(' && '),
    );
    expect(persisted.liveHash).toBe(plain.liveHash);
    expect(persisted.persistedSame).toBe(true);
  });

  it('removes the scratch files of processes gone in one rm once more than 256 are there, never those of a live one', () => {
    const scratch = mkdtempSync(join(state, 'gc-'));
    const run = join(scratch, 'run');
    mkdirSync(run, { mode: 0o700 });
    const gone = 4194304 + 1; // above any pid_max: never a live process
    for (let i = 0; i < 300; i++) writeFileSync(join(run, `${gone}.${i}.facts.4`), '');
    writeFileSync(join(run, `${process.pid}.1.facts.4`), 'live');
    writeFileSync(join(run, 'other'), '');
    const env = { ...process.env, FLEETFW_STATE: join(scratch, 'state'), FLEETFW_PERSIST_DIR: join(scratch, 'persist'), FLEETFW_RUN_DIR: run };
    const r = spawnSync('unshare', ['-n', 'sh', '-c', hostScript(), 'fleetfw-host', 'facts'], { encoding: 'utf8', env });
    expect(r.status, r.stderr).toBe(0);
    const left = readdirSync(run);
    expect(left.filter((f) => f.startsWith(`${gone}.`))).toEqual([]);
    expect(left).toContain(`${process.pid}.1.facts.4`);
    expect(left).toContain('other');
    expect(readFileSync(join(run, `${process.pid}.1.facts.4`), 'utf8')).toBe('live');
  });

  it('a run directory that is not root\'s own plain directory is not used: a mktemp directory instead', () => {
    const scratch = mkdtempSync(join(state, 'link-'));
    mkdirSync(join(scratch, 'elsewhere'));
    const linked = join(scratch, 'run');
    spawnSync('ln', ['-s', join(scratch, 'elsewhere'), linked]);
    const env = { ...process.env, FLEETFW_STATE: join(scratch, 'state'), FLEETFW_PERSIST_DIR: join(scratch, 'persist'), FLEETFW_RUN_DIR: linked, TMPDIR: scratch };
    const r = spawnSync('unshare', ['-n', 'sh', '-c', hostScript(), 'fleetfw-host', 'facts'], { encoding: 'utf8', env });
    expect(r.status, r.stderr).toBe(0);
    expect(parseFacts(r.stdout).liveHash).toMatch(/^[0-9a-f]{64}$/);
    expect(readdirSync(join(scratch, 'elsewhere'))).toEqual([]);
    expect(readdirSync(scratch).sort()).toEqual(['elsewhere', 'run', 'state']);
  });

  it('does not run `ipset save` where the kernel lists its modules without ip_set: no set can exist', () => {
    const scratch = mkdtempSync(join(state, 'sets-'));
    const bin = join(scratch, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'ipset'), `#!/bin/sh\necho "$*" >>"${join(scratch, 'ipset.calls')}"\necho "create fleetfw-x hash:ip family inet"\n`, { mode: 0o755 });
    const run = (modules: string[]) => {
      const dir = mkdtempSync(join(scratch, 'modules-'));
      for (const m of modules) mkdirSync(join(dir, m));
      const env = {
        ...process.env,
        PATH: `${bin}:${process.env.PATH}`,
        FLEETFW_STATE: join(scratch, 'state'),
        FLEETFW_PERSIST_DIR: join(scratch, 'persist'),
        FLEETFW_RUN_DIR: join(scratch, 'run'),
        FLEETFW_MODULES_DIR: dir,
      };
      const r = spawnSync('unshare', ['-n', 'sh', '-c', hostScript(), 'fleetfw-host', 'facts'], { encoding: 'utf8', env });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    };
    const calls = () => readFileSync(join(scratch, 'ipset.calls'), 'utf8').split('\n').filter(Boolean);
    expect(run(['ip_set', 'x_tables'])).toContain('--- ipsets\ncreate fleetfw-x hash:ip family inet\n');
    expect(calls()).toEqual(['save']);
    const without = run(['x_tables']);
    expect(without).toContain('ipset=yes');
    expect(without).not.toContain('create fleetfw-x');
    expect(calls()).toEqual(['save']);
  });

  it('refuses to guess when rules live in both backends: legacy tables count (/proc reports size 0)', () => {
    const f = facts('iptables -A INPUT -j ACCEPT && iptables-legacy -A INPUT -j ACCEPT');
    expect(f.backend).toBe('mixed');
  });
});

describe('prepare in a kept host script: the stale check against the text facts hashed (root, throwaway namespace)', () => {
  const rules = (port: number) => `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport ${port} -j ACCEPT\nCOMMIT\n`;
  const candidate = (port: number) => `${rules(port)}# fleetfw-split v6\n${rules(port)}`;
  const start = async () => {
    expect(process.getuid?.(), 'must run as root').toBe(0);
    const scratch = mkdtempSync(join(state, 'ns-'));
    const session = localSession(scratch, { persist: join(scratch, 'persist') });
    const server = await HostServer.start(session, false);
    const facts = async () => parseFacts((await runHost(server, 'facts', [], { sudo: false })).stdout);
    const prepare = (txid: string, expected: string, port: number) =>
      runHost(server, 'prepare', [txid, '60', expected, 'tester', 'planhash'], { sudo: false, stdin: candidate(port) });
    return { server, facts, prepare, session };
  };

  it('loads when the live rules are still those facts hashed, and refuses (76) once they changed', async () => {
    const { server, facts, prepare } = await start();
    const seen = await facts();
    const first = await prepare('20261121T000001-aaaaaa', seen.liveHash, 9100);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe('loaded txid=20261121T000001-aaaaaa\n');
    expect((await runHost(server, 'confirm', ['20261121T000001-aaaaaa', '5', 'apply'], { sudo: false })).code).toBe(0);
    // The rules changed since this script's facts: its text no longer matches, nor its hash.
    const stale = await prepare('20261121T000002-bbbbbb', seen.liveHash, 9200);
    expect(stale.code).toBe(76);
    expect(stale.stderr).toContain(`expected ${seen.liveHash}, found ${(await facts()).liveHash}`);
    await server.finish();
  });

  it('a revert that leaves behind an empty table the host did not have restores the hash the host had', async () => {
    const { server, facts } = await start();
    const before = await facts();
    expect(before.live.v4).not.toContain('*nat');
    const txid = '20261121T000008-0a0b0c';
    const nat = '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE\nCOMMIT\n';
    const loaded = await runHost(server, 'prepare', [txid, '60', before.liveHash, 'tester', 'planhash'], { sudo: false, stdin: `${rules(9700)}${nat}# fleetfw-split v6\n${rules(9700)}` });
    expect(loaded.code, loaded.stderr).toBe(0);
    expect((await runHost(server, 'abort', [txid, 'test-done'], { sudo: false })).code).toBe(0);
    const after = await facts();
    // The backup emptied the table it had no copy of: it stays, empty.
    expect(after.live.v4).toMatch(/^\*nat$/m);
    expect(after.live.v4).not.toContain('MASQUERADE');
    expect(after.liveHash).toBe(before.liveHash);
    await server.finish();
  });

  it('a generation left half-written by a confirm that died is replaced whole, not merged', async () => {
    const { server, facts, prepare } = await start();
    const current = Number(readFileSync(join(state, 'current'), 'utf8').trim());
    const next = join(state, 'generations', String(current + 1).padStart(6, '0'));
    mkdirSync(next, { recursive: true });
    writeFileSync(join(next, 'ipsets'), 'create fleetfw-stale hash:ip family inet\n');
    const txid = '20261121T000006-ffffff';
    expect((await prepare(txid, (await facts()).liveHash, 9500)).code).toBe(0);
    const confirmed = await runHost(server, 'confirm', [txid, '5', 'apply'], { sudo: false });
    expect(confirmed.stdout).toBe(`confirmed generation=${current + 1}\n`);
    expect(readdirSync(next).sort()).toEqual(['meta', 'rules.v4', 'rules.v6']);
    expect(readFileSync(join(next, 'rules.v4'), 'utf8')).toContain('--dport 9500');
    await server.finish();
  });

  it("with `read` (fleetfw hashed this script's read and found the expected hash), compares texts and hashes nothing; a change since the read is still refused", async () => {
    expect(process.getuid?.(), 'must run as root').toBe(0);
    const scratch = mkdtempSync(join(state, 'ns-'));
    const bin = join(scratch, 'bin');
    mkdirSync(bin);
    const calls = join(scratch, 'sha256sum.calls');
    writeFileSync(join(bin, 'sha256sum'), `#!/bin/sh\necho "$*" >>"${calls}"\nexec /usr/bin/sha256sum "$@"\n`, { mode: 0o755 });
    const server = await HostServer.start(localSession(scratch, { persist: join(scratch, 'persist') }, { PATH: `${bin}:${process.env.PATH}` }), false);
    const args = (txid: string, expectedHash: string) => ({ txid, window: 60, expectedHash, user: 'tester', planHash: 'planhash' });
    const seen = await client.facts(server, false);
    expect(server.readHash).toBe(seen.liveHash);
    await client.prepare(server, false, args('20261121T000011-aaaaaa', seen.liveHash), { v4: rules(9800), v6: rules(9800) }, 60_000);
    expect(existsSync(calls)).toBe(false);
    await client.confirm(server, false, { txid: '20261121T000011-aaaaaa', keep: 5, source: 'apply' }, 60_000);
    // The rules changed since the read: its text no longer matches, and the hash says so.
    const stale = client.prepare(server, false, args('20261121T000012-bbbbbb', seen.liveHash), { v4: rules(9900), v6: rules(9900) }, 60_000);
    await expect(stale).rejects.toMatchObject({ code: 76 });
    await server.finish();
  });

  it('without facts of its own (a reviewed plan), the expected hash alone decides', async () => {
    const { server, facts, prepare } = await start();
    const bogus = 'f'.repeat(64);
    expect((await prepare('20261121T000003-cccccc', bogus, 9300)).code).toBe(76);
    // facts ran, then the hash of a plan read elsewhere: the same rules, so the same hash.
    const ok = await prepare('20261121T000004-dddddd', (await facts()).liveHash, 9300);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await runHost(server, 'confirm', ['20261121T000004-dddddd', '5', 'apply'], { sudo: false })).code).toBe(0);
    const live = (await facts()).liveHash;
    expect((await prepare('20261121T000005-eeeeee', live, 9400)).code).toBe(0);
    // Reverted on the spot, its watchdog ended with it: nothing outlives the test.
    expect((await runHost(server, 'abort', ['20261121T000005-eeeeee', 'test-done'], { sudo: false })).code).toBe(0);
    expect((await facts()).liveHash).toBe(live);
    await server.finish();
  });

  it('answers `outcome` for any transaction id: none without a trace, then the record of one that ran; the live hash as facts has it', async () => {
    const { server, facts, prepare } = await start();
    const unknown = await runHost(server, 'outcome', ['20261121T000009-999999'], { sudo: false });
    expect(unknown.code, unknown.stderr).toBe(0);
    const live = (await facts()).liveHash;
    expect(parseOutcome(unknown.stdout)).toEqual({ txn: '20261121T000009-999999', state: 'none', watchdog: false, liveHash: live });
    expect((await runHost(server, 'outcome', ['../etc'], { sudo: false })).code).toBe(64);
    const txid = '20261121T000010-0b0b0b';
    expect((await prepare(txid, live, 9800)).code).toBe(0);
    expect(parseOutcome((await runHost(server, 'outcome', [txid], { sudo: false })).stdout)).toMatchObject({ state: 'pending', watchdog: true });
    expect((await runHost(server, 'abort', [txid, 'test-done'], { sudo: false })).code).toBe(0);
    expect(parseOutcome((await runHost(server, 'outcome', [txid], { sudo: false })).stdout)).toEqual({ txn: txid, state: 'reverted', watchdog: false, reason: 'test-done', liveHash: live });
    expect((await facts()).lastTxn).toEqual({ id: txid, state: 'reverted', reason: 'test-done' });
    await server.finish();
  });

  it('confirms with a port and token only once the token comes back through that loopback port (what the new connection answers)', async () => {
    const { server, facts, prepare, session } = await start();
    const txid = '20261121T000007-abcdef';
    expect((await prepare(txid, (await facts()).liveHash, 9600)).code).toBe(0);
    const token = 'c0ffee'.repeat(5);
    const confirm = () => runHost(server, 'confirm', [txid, '5', 'apply', '47001', token], { sudo: false });
    // What the new connection's sshd would do: answer one connection on loopback 47001, in the host's namespace.
    const inHost = ['-t', String(session.pid()), '-n'];
    const answer = async (line: string) => {
      const p = spawn('nsenter', [...inHost, 'socat', 'TCP-LISTEN:47001,bind=127.0.0.1,reuseaddr', `SYSTEM:echo ${line}`]);
      const listening = () => spawnSync('nsenter', [...inHost, 'ss', '-Hltn', 'sport = :47001'], { encoding: 'utf8' }).stdout.trim() !== '';
      for (let i = 0; i < 100 && !listening(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(listening(), 'socat listens on 47001').toBe(true);
      return p;
    };
    const nobody = await confirm();
    expect(nobody.code).toBe(78);
    expect(nobody.stderr).toContain('no answer through the new connection on loopback port 47001');
    const impostor = await answer('not-the-token');
    expect((await confirm()).code).toBe(78);
    // It was answered (socat serves one connection, then exits): the token was read and refused.
    const served = await new Promise<number | null>((r) => {
      if (impostor.exitCode !== null) return r(impostor.exitCode);
      const timer = setTimeout(() => r(null), 5_000);
      impostor.once('exit', (code) => (clearTimeout(timer), r(code)));
    });
    impostor.kill();
    expect(served).toBe(0);
    // Refused twice, still pending: the window decides, not these attempts.
    expect((await facts()).txn?.id).toBe(txid);
    const real = await answer(token);
    const ok = await confirm();
    real.kill();
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^confirmed generation=\d+\n$/);
    await server.finish();
  });
});
