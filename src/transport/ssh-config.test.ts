import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expandSshTokens, parseSshG, resolveSshOptions } from './ssh-config.js';

const dir = mkdtempSync(join(tmpdir(), 'ffw-sshcfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseSshG', () => {
  it('reads the fields fleetfw uses and keeps only existing identity files', () => {
    const out = [
      'user deploy',
      'hostname web1.example',
      'port 2222',
      'identityfile ~/.ssh/id_%r',
      'identityfile /keys/exists',
      'userknownhostsfile /k/one /k/two',
      'connecttimeout 7',
      'serveraliveinterval 0',
      'identityagent /run/agent.sock',
      'hashknownhosts yes',
    ].join('\n');
    const o = parseSshG(out, (f) => f === '/keys/exists' || f === join(homedir(), '.ssh/id_deploy'));
    expect(o).toEqual({
      user: 'deploy',
      port: 2222,
      hostname: 'web1.example',
      identityFiles: [join(homedir(), '.ssh/id_deploy'), '/keys/exists'],
      identityAgent: '/run/agent.sock',
      knownHostsFile: '/k/one',
      hashKnownHosts: true,
      connectTimeoutMs: 7000,
    });
  });

  it('expands tokens', () => {
    expect(expandSshTokens('%d/%h:%p/%r%%', { hostname: 'h', user: 'u', port: 22 })).toBe(`${homedir()}/h:22/u%`);
  });
});

describe('resolveSshOptions', () => {
  it('layers explicit options over ssh -G over defaults', async () => {
    const cfg = join(dir, 'config');
    writeFileSync(cfg, 'Host web*\n  User deploy\n  Port 2222\n  ConnectTimeout 9\n');
    const o = await resolveSshOptions('web-1', { port: 22, user: undefined }, { configFile: cfg });
    expect(o.user).toBe('deploy');
    expect(o.port).toBe(22);
    expect(o.connectTimeoutMs).toBe(9000);
    expect(o.hostname).toBe('web-1');
  });

  it('reads HashKnownHosts per host, as ssh -G resolves it (default no)', async () => {
    const cfg = join(dir, 'config-hash');
    writeFileSync(cfg, 'Host db-*\n  HashKnownHosts yes\n');
    expect((await resolveSshOptions('db-1', {}, { configFile: cfg })).hashKnownHosts).toBe(true);
    expect((await resolveSshOptions('web-1', {}, { configFile: cfg })).hashKnownHosts).toBe(false);
  });

  it('falls back to defaults when ssh is not installed', async () => {
    const o = await resolveSshOptions('x', {}, { sshCommand: join(dir, 'no-such-ssh') });
    expect(o.port).toBe(22);
    expect(o.hostname).toBe('x');
    expect(o.knownHostsFile).toBe(join(homedir(), '.ssh/known_hosts'));
  });

  it('reports a broken ssh config instead of guessing', async () => {
    const cfg = join(dir, 'bad');
    writeFileSync(cfg, 'NoSuchKeyword yes\n');
    await expect(resolveSshOptions('x', {}, { configFile: cfg })).rejects.toThrow(/ssh -G x failed/);
  });
});
