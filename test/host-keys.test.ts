// Host keys as OpenSSH treats them, end to end in a lab of its own: a target
// whose sshd now shows only a key of another type than the known one is refused
// by plan and apply, with and without --accept-new-host-keys, and nothing reaches
// it; --accept-new-host-keys records an unknown host hashed in a hashed (or
// mixed) known_hosts, plain in a plain one, and prints each addition.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab } from '../src/lab/lab.js';
import { fleetfw, historyLog, inventoryPath, liveRules, startInventoryLab, waitFor } from './support.js';

const S1 = inventoryPath('s1');
const TARGET = 'mysql-1';
const ADDRESS = '192.0.2.14'; // the private address fleetfw reaches it on, through tunnel-1
let lab: Lab;

beforeAll(async () => {
  lab = await startInventoryLab(S1);
});

afterAll(async () => {
  await lab?.stop();
});

const keygen = (...args: string[]): string => execFileSync('ssh-keygen', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
const fingerprintOf = (pub: string): string => keygen('-lf', pub).split(' ')[1] ?? '';
/** The lines ssh-keygen -F finds for a name (real OpenSSH lookup, hashed entries included). */
const linesFor = (file: string, name: string): number[] => {
  const r = spawnSync('ssh-keygen', ['-F', name, '-f', file], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(r.stdout.includes('found: line') ? 0 : 1); // 1: not found
  return [...r.stdout.matchAll(/found: line (\d+)/g)].map((m) => Number(m[1]));
};
const hostDir = (): string => join(lab.dir, TARGET);
const sshdLog = (): string => readFileSync(join(hostDir(), 'sshd.log'), 'utf8');

/** Waits until sshd logged the end of every connection it logged the start of (after `from`). */
async function sshdSettled(from: number): Promise<string> {
  let text = '';
  await waitFor(
    async () => {
      text = sshdLog().slice(from);
      const opened = new Set([...text.matchAll(/Connection from \S+ port (\d+)/g)].map((m) => m[1]));
      const closed = new Set(
        [...text.matchAll(/(?:Disconnected from|Connection closed by|Unable to negotiate with|Connection reset by) \S+ port (\d+)/g)].map((m) => m[1]),
      );
      return [...opened].every((p) => closed.has(p));
    },
    30_000,
    `${TARGET}'s sshd to log the end of every connection`,
  );
  return text;
}

/** Restarts the target's sshd with only `hostKey`; returns a function that puts the original back. */
async function serveOnly(hostKey: string): Promise<() => Promise<void>> {
  const cfg = join(hostDir(), 'sshd_config');
  const original = readFileSync(cfg, 'utf8');
  expect(original.match(/^HostKey /gm)).toHaveLength(1);
  writeFileSync(cfg, original.replace(/^HostKey .*$/m, `HostKey ${hostKey}`));
  await lab.restartSshd(TARGET);
  return async () => {
    writeFileSync(cfg, original);
    await lab.restartSshd(TARGET);
  };
}

describe('a known host showing a key of another type', () => {
  it('is refused by plan and apply, with and without --accept-new-host-keys; nothing reaches it; OpenSSH agrees', async () => {
    const known = lab.knownHostsFile;
    const knownBefore = readFileSync(known);
    const edFingerprint = fingerprintOf(join(hostDir(), 'ssh_host_ed25519_key.pub'));
    const knownLines = [...new Set([...linesFor(known, TARGET), ...linesFor(known, ADDRESS)])].sort((a, b) => a - b);
    expect(knownLines.length).toBeGreaterThan(0);
    const impostorKey = join(hostDir(), 'impostor_ecdsa_key');
    keygen('-q', '-t', 'ecdsa', '-N', '', '-C', 'impostor', '-f', impostorKey);
    const ecFingerprint = fingerprintOf(`${impostorKey}.pub`);
    const rulesBefore = await liveRules(lab, TARGET);
    const historyBefore = await historyLog(lab, TARGET);

    const restore = await serveOnly(impostorKey);
    try {
      // The host really shows only the ECDSA key now.
      const scan = await lab.exec('tunnel-1', ['ssh-keyscan', '-T', '10', ADDRESS], { timeoutMs: 30_000 });
      expect(scan.stdout.trim().split('\n').map((l) => l.split(' ')[1])).toEqual(['ecdsa-sha2-nistp256']);
      // OpenSSH's own verdict under accept-new: a changed key, refused, nothing written.
      const copy = join(lab.dir, 'known_hosts.openssh');
      copyFileSync(known, copy);
      const ssh = await lab.exec(
        'tunnel-1',
        ['ssh', '-F', 'none', '-o', `UserKnownHostsFile=${copy}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=accept-new',
          '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', '-i', lab.identityFile, `root@${ADDRESS}`, 'true'],
        { timeoutMs: 60_000 },
      );
      expect(ssh.code).toBe(255);
      expect(ssh.stderr).toContain('REMOTE HOST IDENTIFICATION HAS CHANGED');
      expect(readFileSync(copy).equals(knownBefore)).toBe(true);

      await sshdSettled(0);
      const from = sshdLog().length;
      const runs: Array<[string, string[]]> = [
        ['plan', ['plan', '--inventory', S1]],
        ['plan --accept-new-host-keys', ['plan', '--inventory', S1, '--limit', TARGET, '--accept-new-host-keys']],
        ['apply --yes', ['apply', '--inventory', S1, '--limit', TARGET, '--yes', '--window', '10']],
        // The whole fleet: the others are applied, the impostor still refused.
        ['apply --yes --accept-new-host-keys', ['apply', '--inventory', S1, '--yes', '--window', '10', '--accept-new-host-keys']],
      ];
      for (const [what, args] of runs) {
        const r = await fleetfw(lab, args);
        const all = r.stdout + r.stderr;
        expect(r.code, `${what}: ${all}`).toBe(5);
        expect(r.stdout, what).toMatch(new RegExp(`! ${TARGET}: unreachable: WARNING: the host key of ${TARGET} \\(${ADDRESS}\\) has CHANGED`));
        expect(r.stdout, what).toContain(`It offered ecdsa-sha2-nistp256 ${ecFingerprint}`);
        expect(r.stdout, what).toContain(`known: ssh-ed25519 ${edFingerprint} (${known} line${knownLines.length > 1 ? 's' : ''} ${knownLines.join(', ')})`);
        expect(all, what).not.toContain('fleetfw: added');
        expect(readFileSync(known).equals(knownBefore), `${what}: known_hosts changed`).toBe(true);
        console.log(`host keys: ${what} refused the impostor in ${r.ms} ms`);
      }
      // The full apply went ahead on the others.
      const status = await fleetfw(lab, ['status', '--inventory', S1, '--limit', 'tunnel-1', '--format', 'json']);
      expect((JSON.parse(status.stdout) as { hosts: Array<{ state: string }> }).hosts[0]?.state).toBe('in sync');

      // Nothing reached the impostor: every connection ended before authentication.
      const log = await sshdSettled(from);
      expect((log.match(/Connection from 192\.0\.2\.10 port/g) ?? []).length).toBeGreaterThanOrEqual(runs.length);
      expect(log).not.toMatch(/Accepted publickey|Starting session|session opened/);
      expect(log.match(/Disconnected from 192\.0\.2\.10 port \d+ \[preauth\]/g)?.length).toBeGreaterThanOrEqual(runs.length);
    } finally {
      await restore();
    }
    expect(await historyLog(lab, TARGET)).toBe(historyBefore);
    expect(await liveRules(lab, TARGET)).toEqual(rulesBefore);
    // The real key is trusted again.
    const back = await fleetfw(lab, ['plan', '--inventory', S1, '--limit', TARGET]);
    expect(back.code, back.stdout + back.stderr).toBe(2);
  });
});

describe('--accept-new-host-keys writes as the file is written', () => {
  /** A copy of the lab's known_hosts without the target, shaped by `shape`. */
  function withoutTarget(name: string, shape: (file: string) => void): string {
    const file = join(lab.dir, `known_hosts.${name}`);
    copyFileSync(lab.knownHostsFile, file);
    for (const n of [TARGET, ADDRESS, '203.0.113.14']) keygen('-R', n, '-f', file);
    shape(file);
    expect(linesFor(file, TARGET)).toEqual([]);
    return file;
  }
  const dataLines = (text: string): string[] => text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
  const plainOnly = (file: string): void => writeFileSync(file, dataLines(readFileSync(file, 'utf8')).filter((l) => !l.startsWith('|')).join('\n') + '\n');

  const cases: Array<[string, (file: string) => void, boolean]> = [
    ['hashed', (file) => keygen('-H', '-f', file), true],
    // The lab's own file: plain and hashed lines. Hashed wins (see README).
    ['mixed', () => undefined, true],
    ['plain', plainOnly, false],
  ];

  for (const [name, shape, hashed] of cases) {
    it(`a ${name} known_hosts gets ${hashed ? 'hashed lines, one per name' : 'one plain line'}, and the addition is printed with its fingerprint`, async () => {
      const file = withoutTarget(name, shape);
      const before = readFileSync(file, 'utf8');
      if (name === 'hashed') expect(dataLines(before).every((l) => l.startsWith('|1|'))).toBe(true);
      if (name === 'mixed') expect(dataLines(before).some((l) => l.startsWith('|1|')) && dataLines(before).some((l) => !l.startsWith('|1|'))).toBe(true);
      const pub = readFileSync(join(hostDir(), 'ssh_host_ed25519_key.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
      const fingerprint = fingerprintOf(join(hostDir(), 'ssh_host_ed25519_key.pub'));

      const r = await fleetfw(lab, ['plan', '--inventory', S1, '--limit', TARGET, '--known-hosts', file, '--accept-new-host-keys']);
      expect(r.code, r.stdout + r.stderr).toBe(2);
      const printed = r.stderr.split('\n').filter((l) => l.startsWith('fleetfw: added'));
      expect(printed).toEqual([`fleetfw: added ${TARGET} (${ADDRESS}) ssh-ed25519 ${fingerprint} to ${file}${hashed ? ' (hashed)' : ''}`]);

      const after = readFileSync(file, 'utf8');
      expect(after.startsWith(before)).toBe(true);
      const added = dataLines(after.slice(before.length));
      if (hashed) {
        expect(added).toHaveLength(2);
        for (const l of added) expect(l).toMatch(new RegExp(`^\\|1\\|\\S+ ${pub.replace(/[+/]/g, '\\$&')}$`));
        expect(after).not.toContain(TARGET);
        expect(after).not.toContain(ADDRESS);
      } else {
        expect(added).toEqual([`${TARGET},${ADDRESS} ${pub}`]);
      }
      // OpenSSH finds the new entries, and only them, under both names.
      const firstNew = before.split('\n').length;
      for (const n of [TARGET, ADDRESS]) {
        const found = linesFor(file, n);
        expect(found).toHaveLength(1);
        expect(found[0]).toBeGreaterThanOrEqual(firstNew);
      }

      // Known now: trusted without the flag, nothing more added.
      const again = await fleetfw(lab, ['plan', '--inventory', S1, '--limit', TARGET, '--known-hosts', file, '--accept-new-host-keys']);
      expect(again.code, again.stdout + again.stderr).toBe(2);
      expect(again.stderr).not.toContain('fleetfw: added');
      expect(readFileSync(file, 'utf8')).toBe(after);
      console.log(`host keys: ${name} known_hosts, accept-new plan ${r.ms} ms`);
    });
  }

  it('a plain known_hosts gets hashed lines when the ssh config says HashKnownHosts yes for the host', async () => {
    const file = withoutTarget('plain-hashknownhosts', plainOnly);
    const before = readFileSync(file, 'utf8');
    const config = join(lab.dir, 'ssh_config.hash');
    writeFileSync(config, `Host ${TARGET}\n  HashKnownHosts yes\n\n${readFileSync(lab.sshConfigFile, 'utf8')}`);
    const fingerprint = fingerprintOf(join(hostDir(), 'ssh_host_ed25519_key.pub'));
    const r = await fleetfw(lab, ['plan', '--inventory', S1, '--limit', TARGET, '--known-hosts', file, '--ssh-config', config, '--accept-new-host-keys']);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('fleetfw: added'))).toEqual([
      `fleetfw: added ${TARGET} (${ADDRESS}) ssh-ed25519 ${fingerprint} to ${file} (hashed)`,
    ]);
    const added = dataLines(readFileSync(file, 'utf8').slice(before.length));
    expect(added).toHaveLength(2);
    expect(added.every((l) => l.startsWith('|1|'))).toBe(true);
    expect(linesFor(file, TARGET)).toHaveLength(1);
    expect(linesFor(file, ADDRESS)).toHaveLength(1);
  });
});
