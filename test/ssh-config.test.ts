// OpenSSH client config, per host, as OpenSSH means it, end to end in a lab of
// its own (S1, with wordpress-2's sshd on port 2222 and mysql-2 logging in as
// deploy). fleetfw runs from the operator's namespace with the lab's ssh-agent
// but without the lab's flags (no FLEETFW_IDENTITY / FLEETFW_KNOWN_HOSTS /
// FLEETFW_SSH_CONFIG): each test's own `--ssh-config` file decides, host by host.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR, type Lab } from '../src/lab/lab.js';
import { ROOT, scratchFleet, startInventoryLab, type CliResult } from './support.js';

const CLI = join(ROOT, 'dist/cli/main.js');
const ADDRESS: Record<string, string> = {
  'tunnel-1': '192.0.2.10',
  'haproxy-www': '192.0.2.11',
  'wordpress-1': '192.0.2.12',
  'wordpress-2': '192.0.2.13',
  'mysql-1': '192.0.2.14',
  'mysql-2': '192.0.2.15',
};

let lab: Lab;
let fleet: ReturnType<typeof scratchFleet>;
/** What fleetfw reads: S1 without the inventory's user, port and known_hosts, so the ssh config decides. */
let inventory = '';
let work = '';
let n = 0;

beforeAll(async () => {
  fleet = scratchFleet('s1');
  work = mkdtempSync(join(tmpdir(), 'ffw-sshcfg-e2e-'));
  const s1 = readFileSync(fleet.inventory, 'utf8');
  expect(s1).toContain('  ssh: { user: root }\n');
  expect(s1).toContain('    ssh: { user: deploy, sudo: true }\n');
  // The lab: wordpress-2's sshd listens on 2222, mysql-2 has the deploy account.
  const labInventory = join(fleet.dir, 'inventories', 'lab.yaml');
  writeFileSync(labInventory, s1.replace('\n  wordpress-2:\n', '\n  wordpress-2:\n    ssh: { port: 2222 }\n'));
  inventory = join(fleet.dir, 'inventories', 'fleet.yaml');
  writeFileSync(inventory, s1.replace('  ssh: { user: root }\n', '').replace('    ssh: { user: deploy, sudo: true }\n', '    ssh: { sudo: true }\n'));
  lab = await startInventoryLab(labInventory);
  expect(lab.agentSocket, 'the lab runs an ssh-agent holding its key').toBeTruthy();
});

afterAll(async () => {
  await lab?.stop();
  fleet?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** fleetfw as the operator runs it, with the lab's agent and nothing else of the lab's. */
function fleetfw(args: string[]): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, SSH_AUTH_SOCK: lab.agentSocket!, HOME: work, XDG_STATE_HOME: join(work, 'state') };
  for (const k of ['FLEETFW_IDENTITY', 'FLEETFW_KNOWN_HOSTS', 'FLEETFW_SSH_CONFIG', 'FLEETFW_INVENTORY']) delete env[k];
  const t0 = Date.now();
  const child = spawn('ip', ['netns', 'exec', lab.netnsOf(OPERATOR), process.execPath, CLI, ...args], { env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr, ms: Date.now() - t0 })));
}

/** `plan --verbose` of some hosts with this ssh config. */
function plan(config: string, hosts: string[], extra: string[] = []): Promise<CliResult> {
  return fleetfw(['plan', '--inventory', inventory, '--limit', hosts.join(','), '--ssh-config', config, '--verbose', ...extra]);
}

/**
 * An ssh config: a block per host (its lines), then what every host shares
 * (the lab's known_hosts, root, the bastion's defaults). Returns the file and
 * the line number of each `host: line` for the `--verbose` sources.
 */
function sshConfig(blocks: Record<string, string[]>, tail: string[] = []): { file: string; at: (host: string, startsWith: string) => string } {
  const file = join(work, `ssh_config.${++n}`);
  const lines: string[] = [`# test ${n}`];
  const where = new Map<string, number>();
  for (const [host, body] of Object.entries(blocks)) {
    lines.push(`Host ${host}`);
    for (const l of body) {
      lines.push(`  ${l}`);
      where.set(`${host}: ${l}`, lines.length);
    }
  }
  lines.push('Host *', ...[`UserKnownHostsFile ${lab.knownHostsFile}`, 'User root', ...tail].map((l) => `  ${l}`), '');
  writeFileSync(file, lines.join('\n'));
  return {
    file,
    at: (host, startsWith) => {
      const hit = [...where.entries()].find(([k]) => k.startsWith(`${host}: ${startsWith}`));
      if (!hit) throw new Error(`no line "${startsWith}" for ${host}`);
      return `${file}:${hit[1]}`;
    },
  };
}

const sshdLog = (host: string): string => readFileSync(join(lab.hostDir(host), 'sshd.log'), 'utf8');
const hostPub = (host: string): string => readFileSync(join(lab.hostDir(host), 'ssh_host_ed25519_key.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
/** A known_hosts with exactly these hosts (name and the address fleetfw dials). */
function knownHosts(name: string, hosts: string[]): string {
  const file = join(work, `known_hosts.${name}`);
  writeFileSync(file, hosts.map((h) => `${h},${ADDRESS[h]} ${hostPub(h)}\n`).join(''));
  return file;
}
const reached = (r: CliResult, host: string): boolean => new RegExp(`^[~=] ${host}: `, 'm').test(r.stdout);
const refusedLine = (r: CliResult, host: string): string => r.stdout.split('\n').find((l) => l.startsWith(`! ${host}: `)) ?? '';
const verbose = (r: CliResult, host: string, what: string): string => r.stderr.split('\n').find((l) => l.startsWith(`fleetfw: ssh ${host}: ${what} `)) ?? '';
const keygen = (...args: string[]): void => void execFileSync('ssh-keygen', args, { stdio: 'ignore' });
const timed = (what: string, r: CliResult): void => console.log(`ssh config: ${what}: ${r.ms} ms`);

describe('~/.ssh/config per host, as OpenSSH reads it', () => {
  it('UserKnownHostsFile: each host checked against its own file', async () => {
    const a = knownHosts('a', ['haproxy-www']);
    const b = knownHosts('b', ['wordpress-1']);
    const cfg = sshConfig({
      'haproxy-www': [`UserKnownHostsFile ${a}`],
      'wordpress-1': [`UserKnownHostsFile ${b}`],
      'mysql-1': [`UserKnownHostsFile ${a}`], // a file without mysql-1
    });
    const r = await plan(cfg.file, ['haproxy-www', 'wordpress-1', 'mysql-1']);
    timed('UserKnownHostsFile', r);
    expect(r.code, r.stdout + r.stderr).toBe(5);
    expect(reached(r, 'haproxy-www') && reached(r, 'wordpress-1'), r.stdout).toBe(true);
    expect(refusedLine(r, 'mysql-1')).toContain(`unknown host key for mysql-1 (192.0.2.14, via bastion tunnel-1): ssh-ed25519`);
    expect(refusedLine(r, 'mysql-1')).toContain(`(not in ${a})`);
    expect(verbose(r, 'haproxy-www', 'known_hosts')).toBe(`fleetfw: ssh haproxy-www: known_hosts ${a} (ssh config ${cfg.at('haproxy-www', 'UserKnownHostsFile')})`);
    expect(verbose(r, 'wordpress-1', 'known_hosts')).toBe(`fleetfw: ssh wordpress-1: known_hosts ${b} (ssh config ${cfg.at('wordpress-1', 'UserKnownHostsFile')})`);
    // Nothing was added anywhere: no host here accepts new keys.
    expect(readFileSync(a, 'utf8').trim().split('\n')).toHaveLength(1);
  });

  it('IdentityAgent none and IdentitiesOnly, host by host', async () => {
    const stranger = join(work, 'id_stranger');
    keygen('-q', '-t', 'ed25519', '-N', '', '-C', 'stranger', '-f', stranger);
    // The lab's key, encrypted: the agent holds its key, so OpenSSH (and fleetfw) sign with the agent for it.
    const locked = join(work, 'id_lab_locked');
    copyFileSync(lab.identityFile, locked);
    keygen('-q', '-p', '-N', 'not-given', '-f', locked);
    const cfg = sshConfig({
      'haproxy-www': ['IdentityAgent none', `IdentityFile ${lab.identityFile}`],
      'wordpress-1': ['IdentityAgent none', `IdentityFile ${stranger}`],
      'mysql-1': [`IdentityFile ${stranger}`], // the agent is still there
      'wordpress-2': ['Port 2222', `IdentityFile ${stranger}`, 'IdentitiesOnly yes'],
      'mysql-2': ['User deploy', `IdentityFile ${locked}`, 'IdentitiesOnly yes'],
    });
    const r = await plan(cfg.file, ['haproxy-www', 'wordpress-1', 'mysql-1', 'wordpress-2', 'mysql-2']);
    timed('IdentityAgent none, IdentitiesOnly', r);
    expect(r.code, r.stdout + r.stderr).toBe(5);
    expect(reached(r, 'haproxy-www'), r.stdout).toBe(true);
    expect(reached(r, 'mysql-1'), r.stdout).toBe(true);
    expect(reached(r, 'mysql-2'), r.stdout).toBe(true);
    const noAgent = refusedLine(r, 'wordpress-1');
    expect(noAgent).toContain(`authentication as root failed (tried identity file ${stranger}; not used: ssh-agent (IdentityAgent none, ssh config ${cfg.at('wordpress-1', 'IdentityAgent')}))`);
    expect(refusedLine(r, 'wordpress-2')).toContain(`authentication as root failed (tried identity file ${stranger}; not used: 1 other ssh-agent key(s) (IdentitiesOnly yes))`);
    expect(verbose(r, 'haproxy-www', 'ssh-agent')).toBe(`fleetfw: ssh haproxy-www: ssh-agent none (ssh config ${cfg.at('haproxy-www', 'IdentityAgent')})`);
    expect(verbose(r, 'mysql-1', 'ssh-agent')).toBe(`fleetfw: ssh mysql-1: ssh-agent ${lab.agentSocket} (SSH_AUTH_SOCK)`);
    expect(verbose(r, 'mysql-2', 'identities only')).toBe(`fleetfw: ssh mysql-2: identities only yes (ssh config ${cfg.at('mysql-2', 'IdentitiesOnly')})`);
    expect(sshdLog('mysql-2')).toMatch(/Accepted publickey for deploy from 192\.0\.2\.10/);
  });

  it('every IdentityFile in order: an encrypted first key is skipped, the good second one logs in', async () => {
    const locked = join(work, 'id_first_locked');
    copyFileSync(lab.identityFile, locked);
    keygen('-q', '-p', '-N', 'not-given', '-f', locked);
    const cfg = sshConfig({ 'wordpress-1': ['IdentityAgent none', `IdentityFile ${locked}`, `IdentityFile ${lab.identityFile}`] });
    const r = await plan(cfg.file, ['wordpress-1']);
    timed('encrypted first IdentityFile', r);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(reached(r, 'wordpress-1')).toBe(true);
    expect(verbose(r, 'wordpress-1', 'identity files')).toBe(
      `fleetfw: ssh wordpress-1: identity files ${locked}, ${lab.identityFile} (ssh config ${cfg.at('wordpress-1', `IdentityFile ${locked}`)}, ${cfg.at('wordpress-1', `IdentityFile ${lab.identityFile}`)})`,
    );
    // Only the second one alone fails the same way the issue describes, so the order matters: the first is really tried.
    const onlyLocked = sshConfig({ 'wordpress-1': ['IdentityAgent none', `IdentityFile ${locked}`] });
    const r2 = await plan(onlyLocked.file, ['wordpress-1']);
    expect(r2.code).toBe(5);
    expect(refusedLine(r2, 'wordpress-1')).toContain(`identity file ${locked}: it is encrypted and no passphrase is available (load it into ssh-agent with ssh-add)`);
  });

  it('HostName: the inventory address (or another address of the same host) is accepted; another machine is refused, nothing sent', async () => {
    const cfg = sshConfig({
      'wordpress-1': ['HostName 192.0.2.12'],
      'haproxy-www': ['HostName 203.0.113.11'], // its public address: the same host, reached on its private one
      'mysql-1': ['HostName 192.0.2.99'],
    });
    const before = sshdLog('mysql-1').length;
    const r = await plan(cfg.file, ['wordpress-1', 'haproxy-www', 'mysql-1']);
    timed('HostName', r);
    expect(r.code, r.stdout + r.stderr).toBe(5);
    expect(reached(r, 'wordpress-1') && reached(r, 'haproxy-www'), r.stdout).toBe(true);
    expect(verbose(r, 'wordpress-1', 'address')).toBe(
      `fleetfw: ssh wordpress-1: address 192.0.2.12 through bastion tunnel-1 (inventory private address; HostName 192.0.2.12 (ssh config ${cfg.at('wordpress-1', 'HostName')}) is the same address)`,
    );
    expect(verbose(r, 'haproxy-www', 'address')).toContain('HostName 203.0.113.11');
    expect(verbose(r, 'haproxy-www', 'address')).toContain('is its public address, the same host');
    expect(refusedLine(r, 'mysql-1')).toBe(
      `! mysql-1: unreachable: mysql-1: not contacted: ssh config ${cfg.at('mysql-1', 'HostName')} gives HostName 192.0.2.99, an address, which is not mysql-1 in the inventory ` +
        `(public 203.0.113.14, private 192.0.2.14): fleetfw connects to the inventory's private address 192.0.2.14 through bastion tunnel-1, and would not reach the machine ssh reaches; ` +
        `make HostName one of the inventory's addresses (or remove it), or fix the inventory`,
    );
    expect(sshdLog('mysql-1').slice(before)).not.toContain('Connection from');
  });

  it('User and Port from the ssh config; without the Port, the host is not reached', async () => {
    const cfg = sshConfig({ 'mysql-2': ['User deploy'], 'wordpress-2': ['Port 2222'] });
    const before = sshdLog('mysql-2').length;
    const r = await plan(cfg.file, ['mysql-2', 'wordpress-2']);
    timed('User, Port', r);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(verbose(r, 'mysql-2', 'user')).toBe(`fleetfw: ssh mysql-2: user deploy (ssh config ${cfg.at('mysql-2', 'User')})`);
    expect(verbose(r, 'wordpress-2', 'port')).toBe(`fleetfw: ssh wordpress-2: port 2222 (ssh config ${cfg.at('wordpress-2', 'Port')})`);
    expect(sshdLog('mysql-2').slice(before)).toMatch(/Accepted publickey for deploy from 192\.0\.2\.10/);
    const noPort = await plan(sshConfig({}).file, ['wordpress-2']);
    expect(noPort.code).toBe(5);
    expect(refusedLine(noPort, 'wordpress-2')).toMatch(/could not forward to 192\.0\.2\.13:22/);
  });

  it('ProxyJump naming the bastion is the same path; naming anything else is refused, nothing sent', async () => {
    const cfg = sshConfig({
      'wordpress-1': ['ProxyJump tunnel-1'],
      'haproxy-www': ['ProxyJump root@203.0.113.10:22'],
      'mysql-1': ['ProxyJump jump-2'], // no such host anywhere: ssh would fail, fleetfw must not "work"
      'mysql-2': ['User deploy', 'ProxyJump admin@tunnel-1'],
    });
    const logs = { 'mysql-1': sshdLog('mysql-1').length, 'mysql-2': sshdLog('mysql-2').length };
    const r = await plan(cfg.file, ['wordpress-1', 'haproxy-www', 'mysql-1', 'mysql-2']);
    timed('ProxyJump', r);
    expect(r.code, r.stdout + r.stderr).toBe(5);
    expect(reached(r, 'wordpress-1') && reached(r, 'haproxy-www'), r.stdout).toBe(true);
    expect(verbose(r, 'wordpress-1', 'proxy jump')).toBe(
      `fleetfw: ssh wordpress-1: proxy jump tunnel-1: the bastion tunnel-1, the path fleetfw takes (ssh config ${cfg.at('wordpress-1', 'ProxyJump')})`,
    );
    expect(refusedLine(r, 'mysql-1')).toBe(
      `! mysql-1: unreachable: mysql-1: not contacted: ssh config ${cfg.at('mysql-1', 'ProxyJump')} says ProxyJump jump-2, but fleetfw reaches mysql-1 only through its bastion tunnel-1 (203.0.113.10), ` +
        "and jump-2 is not it: make it ProxyJump tunnel-1 (or remove it), or change mysql-1's bastion in the inventory",
    );
    expect(refusedLine(r, 'mysql-2')).toContain('says ProxyJump admin@tunnel-1, but that logs in to the bastion tunnel-1 as admin, and fleetfw logs in to it as root');
    expect(sshdLog('mysql-1').slice(logs['mysql-1'])).not.toContain('Connection from');
    expect(sshdLog('mysql-2').slice(logs['mysql-2'])).not.toContain('Connection from');
  });

  it('StrictHostKeyChecking: accept-new records a new key, yes refuses it, no is accept-new that still refuses a changed key (said once)', async () => {
    const empty = (name: string) => {
      const f = join(work, `known_hosts.${name}`);
      writeFileSync(f, '');
      return f;
    };
    const acceptNew = empty('accept-new');
    const strict = empty('strict');
    const noNew = empty('no-new');
    // mysql-1 known under another key: changed, whatever the config says.
    const impostor = join(work, 'impostor');
    keygen('-q', '-t', 'ed25519', '-N', '', '-f', impostor);
    const changed = join(work, 'known_hosts.changed');
    writeFileSync(changed, `mysql-1,192.0.2.14 ${readFileSync(`${impostor}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`);
    const cfg = sshConfig({
      'haproxy-www': [`UserKnownHostsFile ${acceptNew}`, 'StrictHostKeyChecking accept-new'],
      'wordpress-1': [`UserKnownHostsFile ${strict}`, 'StrictHostKeyChecking yes'],
      'mysql-2': ['User deploy', `UserKnownHostsFile ${noNew}`, 'StrictHostKeyChecking no'],
      'mysql-1': [`UserKnownHostsFile ${changed}`, 'StrictHostKeyChecking no'],
    });
    const r = await plan(cfg.file, ['haproxy-www', 'wordpress-1', 'mysql-2', 'mysql-1']);
    timed('StrictHostKeyChecking', r);
    expect(r.code, r.stdout + r.stderr).toBe(5);
    expect(reached(r, 'haproxy-www') && reached(r, 'mysql-2'), r.stdout).toBe(true);
    const added = r.stderr.split('\n').filter((l) => l.startsWith('fleetfw: added')).sort();
    expect(added).toEqual([expect.stringMatching(new RegExp(`^fleetfw: added haproxy-www \\(192\\.0\\.2\\.11\\) ssh-ed25519 SHA256:\\S+ to ${acceptNew}$`)), expect.stringMatching(/^fleetfw: added mysql-2 .* to .*known_hosts\.no-new$/)]);
    expect(readFileSync(acceptNew, 'utf8')).toContain(hostPub('haproxy-www'));
    expect(refusedLine(r, 'wordpress-1')).toContain('unknown host key for wordpress-1');
    expect(readFileSync(strict, 'utf8')).toBe('');
    expect(refusedLine(r, 'mysql-1')).toContain('WARNING: the host key of mysql-1 (192.0.2.14) has CHANGED');
    expect(r.stderr.match(/StrictHostKeyChecking no for/g)).toHaveLength(1);
    expect(verbose(r, 'wordpress-1', 'host keys')).toBe(`fleetfw: ssh wordpress-1: host keys known only (StrictHostKeyChecking yes, ssh config ${cfg.at('wordpress-1', 'StrictHostKeyChecking')})`);
    // The flag wins over the config's `yes`.
    const flagged = await plan(cfg.file, ['wordpress-1'], ['--accept-new-host-keys']);
    expect(flagged.code, flagged.stdout + flagged.stderr).toBe(2);
    expect(verbose(flagged, 'wordpress-1', 'host keys')).toBe('fleetfw: ssh wordpress-1: host keys accept new, never a changed one (--accept-new-host-keys)');
    expect(readFileSync(strict, 'utf8')).toContain(hostPub('wordpress-1'));
  });

  it('ConnectTimeout bounds each attempt on a host that does not answer', async () => {
    const host = 'wordpress-1';
    const drop = ['INPUT', '-p', 'tcp', '--dport', '22', '-j', 'DROP'];
    const added = await lab.exec(host, ['iptables', '-I', ...drop]);
    expect(added.code, added.stderr).toBe(0);
    try {
      const cfg = sshConfig({ [host]: ['ConnectTimeout 2'] });
      const r = await plan(cfg.file, [host]);
      timed('ConnectTimeout 2 on a silent host', r);
      expect(r.code, r.stdout + r.stderr).toBe(5);
      expect(refusedLine(r, host)).toContain('bastion tunnel-1 could not open a connection to 192.0.2.12:22 within 2000 ms');
      expect(verbose(r, host, 'connect timeout')).toBe(`fleetfw: ssh ${host}: connect timeout 2 s (ssh config ${cfg.at(host, 'ConnectTimeout')})`);
      // Four attempts (fleetfw retries a connection 3 times, 0.5 + 1 + 2 s apart, with jitter) of 2 s each,
      // and the CLI's start: far from the 10 s per attempt of the default.
      expect(r.ms).toBeLessThan(4 * 2_000 + 4_400 + 3_000);
    } finally {
      await lab.exec(host, ['iptables', '-D', ...drop]);
    }
  });
});
