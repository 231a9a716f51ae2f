import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expandSshTokens, parseSshG, readSshConfig } from './ssh-config.js';

const dir = mkdtempSync(join(tmpdir(), 'ffw-sshcfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseSshG', () => {
  it('reads every option fleetfw honours', () => {
    const out = [
      'user deploy',
      'hostname web1.example',
      'port 2222',
      'identityfile ~/.ssh/id_%r',
      'identityfile /keys/second',
      'identitiesonly yes',
      'userknownhostsfile /k/one /k/two',
      'connecttimeout 7',
      'serveraliveinterval 0',
      'identityagent /run/agent.sock',
      'hashknownhosts yes',
      'stricthostkeychecking accept-new',
      'proxyjump root@tunnel-1:22',
    ].join('\n');
    expect(parseSshG(out)).toEqual({
      user: 'deploy',
      port: 2222,
      hostname: 'web1.example',
      identityFiles: [join(homedir(), '.ssh/id_deploy'), '/keys/second'],
      identitiesOnly: true,
      identityAgent: '/run/agent.sock',
      knownHostsFiles: ['/k/one', '/k/two'],
      hashKnownHosts: true,
      strictHostKeyChecking: 'accept-new',
      connectTimeoutMs: 7000,
      proxyJump: 'root@tunnel-1:22',
    });
  });

  it('reads StrictHostKeyChecking as ssh -G prints it (yes as true, no and off as false)', () => {
    const strict = (v: string) => parseSshG(`hostname h\nstricthostkeychecking ${v}\n`).strictHostKeyChecking;
    expect([strict('true'), strict('false'), strict('ask'), strict('accept-new')]).toEqual(['yes', 'no', 'ask', 'accept-new']);
  });

  it('reads IdentityAgent none, and an agent named by an unset variable as none', () => {
    expect(parseSshG('hostname h\nidentityagent none\n').identityAgent).toBe('none');
    delete process.env.FFW_TEST_NO_SUCH_AGENT;
    expect(parseSshG('hostname h\nidentityagent $FFW_TEST_NO_SUCH_AGENT\n').identityAgent).toBe('none');
    expect(parseSshG('hostname h\n').identityAgent).toBeUndefined();
  });

  it('expands tokens', () => {
    expect(expandSshTokens('%d/%h:%p/%r%%', { hostname: 'h', user: 'u', port: 22 })).toBe(`${homedir()}/h:22/u%`);
  });
});

describe('readSshConfig', () => {
  it('is what ssh -G says, with the file and line of each value the config sets', async () => {
    const cfg = join(dir, 'config');
    writeFileSync(cfg, 'Host web*\n  User deploy\n  Port 2222\n  ConnectTimeout 9\n  ProxyJump tunnel-1\n');
    const o = await readSshConfig('web-1', { configFile: cfg });
    expect(o.values).toMatchObject({ user: 'deploy', port: 2222, connectTimeoutMs: 9000, hostname: 'web-1', proxyJump: 'tunnel-1' });
    expect(o.origins?.get('port')).toEqual([`${cfg}:3`]);
    expect(o.origins?.get('stricthostkeychecking')).toBeUndefined();
  });

  it('reads HashKnownHosts per host, as ssh -G resolves it (default no)', async () => {
    const cfg = join(dir, 'config-hash');
    writeFileSync(cfg, 'Host db-*\n  HashKnownHosts yes\n');
    expect((await readSshConfig('db-1', { configFile: cfg })).values.hashKnownHosts).toBe(true);
    expect((await readSshConfig('web-1', { configFile: cfg })).values.hashKnownHosts).toBe(false);
  });

  it('falls back to defaults when ssh is not installed', async () => {
    const o = await readSshConfig('x', { sshCommand: join(dir, 'no-such-ssh') });
    expect(o.builtIn).toBe(true);
    expect(o.values.port).toBe(22);
    expect(o.values.hostname).toBe('x');
    expect(o.values.knownHostsFiles[0]).toBe(join(homedir(), '.ssh/known_hosts'));
  });

  it('reports a broken ssh config instead of guessing', async () => {
    const cfg = join(dir, 'bad');
    writeFileSync(cfg, 'NoSuchKeyword yes\n');
    await expect(readSshConfig('x', { configFile: cfg })).rejects.toThrow(/ssh -G x failed/);
  });
});
