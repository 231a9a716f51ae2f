import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { renderClientConfig } from '../lab/sshd.js';
import { hostMatches, scanSshConfig, sshConfigOrigins, sshGShare, type ConfigBlock, type ScanPaths } from './ssh-config-scan.js';
import { createSshConfigReader, readSshConfig, readSshConfigMany } from './ssh-config.js';

const dir = mkdtempSync(join(tmpdir(), 'ffw-sshscan-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

/** Writes `text` to a fresh file under the temp dir. */
function file(text: string, name = `config-${n++}`): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function blocksOf(text: string): ConfigBlock[] {
  const scan = scanSshConfig(file(text));
  if (!scan.supported) throw new Error(scan.reason);
  return scan.blocks;
}

/** Aliases grouped as the reader groups them. */
function groups(text: string, aliases: string[]): string[][] {
  const blocks = blocksOf(text);
  const by = new Map<string, string[]>();
  for (const a of aliases) {
    const key = sshGShare(blocks, a)?.signature ?? `alone:${a}`;
    by.set(key, [...(by.get(key) ?? []), a]);
  }
  return [...by.values()];
}

const key = file('not a key', 'id_test');

/** The real ssh behind a wrapper that counts its runs. */
function countingSsh(): { ssh: string; runs: () => number } {
  const counter = file('');
  const ssh = file(`#!/bin/sh\necho >> '${counter}'\nexec ssh "$@"\n`);
  chmodSync(ssh, 0o755);
  return { ssh, runs: () => readFileSync(counter, 'utf8').length };
}

const labHosts = (count: number, user = (_: number) => 'deploy') =>
  Array.from({ length: count }, (_, i) => ({ name: `web-${i}`, hostName: `192.0.2.${i + 1}`, user: user(i), port: 22 + (i % 2) * 2200 }));
const labConfig = (hosts: ReturnType<typeof labHosts>) => renderClientConfig(hosts, key, join(dir, 'known_hosts'));

describe('hostMatches', () => {
  it('follows ssh_config PATTERNS: wildcards, negation, whole-name match', () => {
    expect(hostMatches(['web-?'], 'web-1')).toBe(true);
    expect(hostMatches(['web-?'], 'web-12')).toBe(false);
    expect(hostMatches(['*.example'], 'a.b.example')).toBe(true);
    expect(hostMatches(['*.example'], 'example')).toBe(false);
    expect(hostMatches(['*.example', '!bad.example'], 'good.example')).toBe(true);
    expect(hostMatches(['*.example', '!bad.example'], 'bad.example')).toBe(false);
    expect(hostMatches(['!bad.example'], 'good.example')).toBe(false); // no positive match
    expect(hostMatches(['a.c'], 'abc')).toBe(false); // `.` is literal
    expect(hostMatches(['Web'], 'web')).toBe(false); // OpenSSH 9.2 is case-sensitive here
    expect(hostMatches(['Web'], 'web', true)).toBe(true);
  });
});

describe('sshGShare', () => {
  it('puts a lab-like config (a block per host, then Host *) in one group', () => {
    const aliases = labHosts(20).map((h) => h.name);
    // Ports differ per host in these blocks but sit in the signature: so make them equal here.
    const text = labConfig(labHosts(20).map((h) => ({ ...h, port: 22 })));
    expect(groups(text, aliases)).toEqual([aliases]);
    expect(sshGShare(blocksOf(text), 'web-3')?.hostname).toBe('192.0.2.4');
  });

  it('separates hosts whose settings differ', () => {
    const hosts = labHosts(4, (i) => (i < 2 ? 'deploy' : 'admin')).map((h) => ({ ...h, port: 22 }));
    expect(groups(labConfig(hosts), hosts.map((h) => h.name))).toEqual([
      ['web-0', 'web-1'],
      ['web-2', 'web-3'],
    ]);
  });

  it('predicts the hostname ssh prints, or leaves the alias alone', () => {
    const blocks = blocksOf('Host up\n  HostName Web.Example\nHost odd\n  HostName 127.1\nHost v6\n  HostName 2001:DB8::1\nHost v6c\n  HostName 2001:db8:1::b\nHost v6long\n  HostName 2001:db8:0:0:1:0:0:1\n');
    expect(sshGShare(blocks, 'up')?.hostname).toBe('web.example');
    expect(sshGShare(blocks, 'Plain')?.hostname).toBe('plain');
    expect(sshGShare(blocks, 'odd')).toBeUndefined();
    expect(sshGShare(blocks, 'v6')).toBeUndefined();
    // An IPv6 address in its RFC 5952 form is printed as written; any other form is left to ssh.
    expect(sshGShare(blocks, 'v6c')?.hostname).toBe('2001:db8:1::b');
    expect(sshGShare(blocks, 'v6long')).toBeUndefined();
    expect(sshGShare(blocks, '123')).toBeUndefined();
    expect(sshGShare(blocks, 'root@up')).toBeUndefined();
    expect(sshGShare(blocksOf('Host Up\n  User x\n'), 'up')).toBeUndefined(); // would depend on case rules
  });

  it('is order-sensitive: ssh keeps the first value', () => {
    const text = 'Host a\n  User one\nHost *\n  User two\nHost b\n  User one\n';
    expect(groups(text, ['a', 'b'])).toEqual([['a'], ['b']]);
  });
});

describe('scanSshConfig', () => {
  it.each([
    ['Match', 'Match host x\n  User u\n'],
    ['Include inside Host', `Host a\n  Include ${join(dir, 'nothing')}\n`],
    ['CanonicalizeHostname', 'CanonicalizeHostname=yes\n'],
    ['% token', 'Host *\n  IdentityFile ~/.ssh/%h\n'],
    ['${} variable', 'Host *\n  IdentityFile ${HOME}/k\n'],
    ['quoted Host pattern', 'Host "a b"\n  User u\n'],
    ['trailing comment on Host', 'Host a # note\n  User u\n'],
    ['Host pattern list', 'Host a,b\n  User u\n'],
    ['quoted HostName', 'Host a\n  HostName "x"\n'],
    ['keyword without value', 'Host\n'],
  ])('is unsupported with %s', (_, text) => {
    expect(scanSshConfig(file(text)).supported).toBe(false);
  });

  it('is unsupported when a file cannot be read, but not when it is missing', () => {
    mkdirSync(join(dir, 'a-dir'));
    expect(scanSshConfig(file(`Include ${join(dir, 'a-dir')}\n`)).supported).toBe(false);
    expect(scanSshConfig(file(`Include ${join(dir, 'missing')} ${join(dir, 'missing-dir', '*')}\n`)).supported).toBe(true);
    expect(scanSshConfig(join(dir, 'missing-F')).supported).toBe(false); // ssh -F fails: leave that to ssh
  });

  it('follows top-level Include, in place, relative to ~/.ssh, glob sorted, hidden files skipped', () => {
    const home = join(dir, 'home');
    mkdirSync(join(home, '.ssh', 'conf.d'), { recursive: true });
    writeFileSync(join(home, '.ssh', 'conf.d', 'b.conf'), 'Port 2\n');
    writeFileSync(join(home, '.ssh', 'conf.d', 'a.conf'), 'Port 1\nHost x\n  User inner\n');
    writeFileSync(join(home, '.ssh', 'conf.d', '.hidden.conf'), 'Port 3\n');
    writeFileSync(join(home, '.ssh', 'config'), 'User first\nInclude conf.d/*.conf\nUser after\n');
    const system = file('Include ~/x\n');
    const paths: ScanPaths = { home, includeHome: home, systemConfig: join(dir, 'no-system-config') };
    const scan = scanSshConfig(undefined, paths);
    expect(scan.supported).toBe(true);
    const lines = (alias: string) => (scan.supported ? sshGShare(scan.blocks, alias)?.signature : undefined);
    expect(lines('x')).toBe('user first\nport 1\nuser inner\nport 2\nuser after');
    // The Host block of an included file ends with that file.
    expect(lines('y')).toBe('user first\nport 1\nport 2\nuser after');
    // `~` is refused in the system file, as ssh does.
    expect(scanSshConfig(undefined, { ...paths, systemConfig: system }).supported).toBe(false);
  });
});

// The proof that grouping changes nothing: the real ssh, per host and grouped.
describe('readSshConfigMany against ssh -G', () => {
  const incDir = join(dir, 'inc');
  mkdirSync(incDir);
  writeFileSync(join(incDir, '10-users.conf'), 'Host db-*\n  User dbadmin\nHost *\n  ServerAliveInterval 15\n');
  writeFileSync(join(incDir, '20-ports.conf'), 'Host *-2\n  Port 2200\n');
  // runs: how many `ssh -G` the grouped path needs (the groups are spelled out in each case).
  const configs: Record<string, { text: string; aliases: string[]; runs: number }> = {
    // 2 users x 2 ports in the per-host blocks, and web-12/13 only under Host *.
    lab: { text: labConfig(labHosts(12, (i) => (i % 3 ? 'deploy' : 'ops'))), aliases: labHosts(14).map((h) => h.name), runs: 5 },
    patterns: {
      text: [
        'Host *.example !bad.example',
        '  User ex',
        '  HostName Upper.Example',
        'Host bad.example',
        '  Port 2022',
        'Host db? Web-?',
        '  IdentityFile ' + key,
        'Host num',
        '  HostName 127.1',
        'Host *',
        '  ConnectTimeout 5',
        '',
      ].join('\n'),
      aliases: ['a.example', 'b.example', 'bad.example', 'db1', 'db12', 'Web-1', 'web-1', 'WEB-2', 'num', '10.0.0.1', '127.1', 'plain'],
      // Shared: a/b.example, db1/Web-1, db12/10.0.0.1/plain (Host * only). Alone: bad.example, web-1 and WEB-2
      // (case-dependent), num and 127.1 (numeric forms ssh rewrites).
      runs: 8,
    },
    include: {
      text: [
        '# top-level first',
        'UserKnownHostsFile=/tmp/kh-top',
        `Include ${incDir}/*.conf ${join(dir, 'absent.conf')}`,
        'IdentityAgent none',
        'Host web-*',
        '  HostName web.internal',
        '  User web',
        '',
      ].join('\n'),
      aliases: ['db-1', 'db-2', 'db-3', 'web-1', 'web-2', 'web-3', 'other', 'more'],
      runs: 5,
    },
    unsupported: { text: 'Match host web-*\n  User m\n', aliases: ['web-1', 'db-1'], runs: 2 },
  };

  it.each(Object.entries(configs))('gives what per-host ssh -G gives: %s', async (_, { text, aliases, runs }) => {
    const configFile = file(text);
    const perHost = await Promise.all(aliases.map((a) => readSshConfig(a, { configFile })));
    const { ssh, runs: counted } = countingSsh();
    const grouped = await readSshConfigMany(aliases, { configFile, sshCommand: ssh });
    expect(grouped).toEqual(perHost);
    expect(counted()).toBe(runs);
  });

  it("gives what per-host ssh -G gives with this machine's own config files", async () => {
    const aliases = ['web-1', 'web-2', 'Db', '127.1'];
    const perHost = await Promise.all(aliases.map((a) => readSshConfig(a)));
    expect(await readSshConfigMany(aliases)).toEqual(perHost);
  });

  it('runs ssh -G once for a 100-host lab-like config', async () => {
    const { ssh, runs } = countingSsh();
    const hosts = labHosts(100).map((h) => ({ ...h, port: 22 }));
    const configFile = file(labConfig(hosts));
    const aliases = hosts.map((h) => h.name);
    const grouped = await readSshConfigMany(aliases, { configFile, sshCommand: ssh });
    expect(runs()).toBe(1);
    expect(grouped.map((o) => o.values.hostname)).toEqual(hosts.map((h) => h.hostName));
    expect(new Set(grouped.map((o) => `${o.values.user}:${o.values.port}`))).toEqual(new Set(['deploy:22']));
  });

  it('reads each alias once, on demand, and at most `concurrency` at a time', async () => {
    const { ssh, runs } = countingSsh();
    const configFile = file('Match host *\n  User m\n'); // unsupported: one run per alias
    const reader = createSshConfigReader({ configFile, sshCommand: ssh, concurrency: 2 });
    const views = await Promise.all(['a', 'b', 'a', 'c', 'b'].map((x) => reader.read(x)));
    expect(views.map((v) => v.values.user)).toEqual(['m', 'm', 'm', 'm', 'm']);
    expect(views[0]?.origins).toBeUndefined(); // ssh -G alone knows: "ssh config"
    expect(runs()).toBe(3);
    expect(reader.runs()).toBe(3);
  });
});

describe('sshConfigOrigins', () => {
  it('names the file and line of each value ssh keeps: the first, or every IdentityFile', () => {
    const inc = file('Host db-*\n  User dbadmin\n  IdentityFile /k/inc\n', 'origins-inc.conf');
    const cfg = file(
      ['UserKnownHostsFile /kh/top', `Include ${inc}`, 'Host db-1', '  HostName 192.0.2.5', '  User first', '  IdentityFile /k/one', 'Host *', '  User later', '  IdentityFile /k/all', ''].join('\n'),
      'origins.conf',
    );
    const scan = scanSshConfig(cfg);
    expect(scan.supported).toBe(true);
    if (!scan.supported) return;
    const o = sshConfigOrigins(scan.blocks, 'db-1')!;
    expect(o.get('userknownhostsfile')).toEqual([`${cfg}:1`]);
    expect(o.get('user')).toEqual([`${inc}:2`]); // the Include comes first, and ssh keeps the first User
    expect(o.get('identityfile')).toEqual([`${inc}:3`, `${cfg}:6`, `${cfg}:9`]);
    expect(o.get('hostname')).toEqual([`${cfg}:4`]);
    expect(o.get('port')).toBeUndefined(); // ssh's default
    expect(sshConfigOrigins(scan.blocks, 'web-1')!.get('user')).toEqual([`${cfg}:8`]);
    // An alias the scan cannot predict gets no origins (then: "ssh config").
    expect(sshConfigOrigins(scan.blocks, '127.1')).toBeUndefined();
  });
});
