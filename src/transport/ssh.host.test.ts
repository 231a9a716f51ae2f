// The host key policy through a real ssh2 handshake, against an in-process
// ssh2 server on loopback that shows the host keys each test gives it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, describe, expect, it } from 'vitest';
import { fingerprintSha256 } from './known-hosts.js';
import {
  createSshTransport,
  formatHostKeyAddition,
  hostKeyAlgorithmsPreferring,
  type HostKeyAddition,
  type SshEndpoint,
  type TransportOptions,
} from './ssh.js';

const { Server } = ssh2;
const dir = mkdtempSync(join(tmpdir(), 'ffw-ssh-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keygen(name: string, type: 'ed25519' | 'ecdsa' | 'rsa'): { file: string; pub: string; fingerprint: string } {
  const file = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-f', file]);
  const pub = readFileSync(`${file}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
  return { file, pub, fingerprint: fingerprintSha256(Buffer.from(pub.split(' ')[1] ?? '', 'base64')) };
}

const hostEd = keygen('host_ed25519', 'ed25519');
const hostEc = keygen('host_ecdsa', 'ecdsa');
const client = keygen('id_client', 'ed25519');

/** A server showing `hostKeys`; counts authentication attempts (none may follow a refused key). */
async function withServer<T>(hostKeys: string[], fn: (port: number, auths: () => number) => Promise<T>): Promise<T> {
  let auths = 0;
  const server = new Server({ hostKeys: hostKeys.map((f) => readFileSync(f)) }, (conn) => {
    conn.on('authentication', (ctx) => {
      auths++;
      ctx.accept();
    });
    conn.on('error', () => undefined);
    conn.on('session', (accept) => {
      accept().on('exec', (acceptExec) => {
        const ch = acceptExec();
        ch.exit(0);
        ch.end();
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    return await fn((server.address() as { port: number }).port, () => auths);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

const endpoint = (port: number, extra: Partial<SshEndpoint> = {}): SshEndpoint => ({
  name: 'mysql-1',
  address: '127.0.0.1',
  port,
  user: 'root',
  identityFile: client.file,
  ...extra,
});

async function openAndRun(ep: SshEndpoint, opts: TransportOptions): Promise<{ code: number | null } | { reason: string; message: string }> {
  const t = createSshTransport([ep], { connectRetries: 0, readyTimeoutMs: 10_000, ...opts });
  try {
    const s = await t.open(ep.name);
    return await s.exec('true');
  } catch (err) {
    return err as { reason: string; message: string };
  } finally {
    await t.close();
  }
}

describe('hostKeyAlgorithmsPreferring', () => {
  it('puts the algorithms of the known key types first, RSA as its three signature algorithms', () => {
    expect(hostKeyAlgorithmsPreferring([])).toBeUndefined();
    expect(hostKeyAlgorithmsPreferring(['sk-ssh-ed25519@openssh.com'])).toBeUndefined();
    const known = ['ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];
    expect(hostKeyAlgorithmsPreferring(['ecdsa-sha2-nistp256', 'ssh-rsa'])).toEqual({
      serverHostKey: { remove: known, prepend: known, append: [] },
    });
  });
});

describe('formatHostKeyAddition', () => {
  it('names the host, its address, the key type and fingerprint, the file, and hashing', () => {
    const a: HostKeyAddition = { host: 'mysql-1', address: '192.0.2.14', port: 22, type: 'ssh-ed25519', fingerprint: 'SHA256:abc', file: '/k', hashed: false };
    expect(formatHostKeyAddition(a)).toBe('fleetfw: added mysql-1 (192.0.2.14) ssh-ed25519 SHA256:abc to /k');
    expect(formatHostKeyAddition({ ...a, port: 2222, hashed: true })).toBe('fleetfw: added mysql-1 (192.0.2.14 port 2222) ssh-ed25519 SHA256:abc to /k (hashed)');
  });
});

describe('host keys through a real handshake', () => {
  const knownHosts = (name: string, ...lines: string[]): string => {
    const file = join(dir, name);
    writeFileSync(file, lines.map((l) => `${l}\n`).join(''));
    return file;
  };

  it('a host with several keys shows the known one, even when it is not the first ssh2 would pick', async () => {
    // ssh2 prefers ed25519; a host known only by its ECDSA key must still be asked for that one.
    await withServer([hostEd.file, hostEc.file], async (port) => {
      const file = knownHosts('kh-ecdsa', `[127.0.0.1]:${port} ${hostEc.pub}`);
      expect(await openAndRun(endpoint(port), { knownHostsFile: file, acceptNewHostKeys: false })).toMatchObject({ code: 0 });
      const both = knownHosts('kh-both', `[mysql-1]:${port} ${hostEd.pub}`, `[127.0.0.1]:${port} ${hostEc.pub}`);
      expect(await openAndRun(endpoint(port), { knownHostsFile: both, acceptNewHostKeys: false })).toMatchObject({ code: 0 });
    });
  });

  it('refuses a key of another type than the known one, with or without accept-new, before authentication', async () => {
    await withServer([hostEc.file], async (port, auths) => {
      const file = knownHosts('kh-ed', '# pinned', `[mysql-1]:${port} ${hostEd.pub}`);
      const before = readFileSync(file);
      const added: HostKeyAddition[] = [];
      for (const acceptNewHostKeys of [false, true]) {
        const r = await openAndRun(endpoint(port), { knownHostsFile: file, acceptNewHostKeys, onHostKeyAdded: (a) => added.push(a) });
        expect(r).toMatchObject({ reason: 'hostkey-changed' });
        const message = (r as { message: string }).message;
        expect(message).toContain(`WARNING: the host key of mysql-1 (127.0.0.1) has CHANGED`);
        expect(message).toContain(`It offered ecdsa-sha2-nistp256 ${hostEc.fingerprint}; known: ssh-ed25519 ${hostEd.fingerprint} (${file} line 2)`);
        expect(message).toContain('another type');
      }
      expect(auths()).toBe(0);
      expect(added).toEqual([]);
      expect(readFileSync(file).equals(before)).toBe(true);
    });
  });

  it('accept-new records an unknown host hashed when its ssh config says so, and reports the addition', async () => {
    await withServer([hostEd.file], async (port) => {
      const file = knownHosts('kh-new', `other ${hostEc.pub}`);
      const added: HostKeyAddition[] = [];
      const opts = { knownHostsFile: file, acceptNewHostKeys: true, onHostKeyAdded: (a: HostKeyAddition) => added.push(a) };
      expect(await openAndRun(endpoint(port, { hashKnownHosts: true }), opts)).toMatchObject({ code: 0 });
      expect(added).toEqual([
        { host: 'mysql-1', address: '127.0.0.1', port, type: 'ssh-ed25519', fingerprint: hostEd.fingerprint, file, hashed: true },
      ]);
      const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
      expect(lines).toHaveLength(3);
      expect(lines.slice(1).every((l) => l.startsWith('|1|') && l.endsWith(hostEd.pub))).toBe(true);
      // Known now: the next run adds nothing.
      expect(await openAndRun(endpoint(port), opts)).toMatchObject({ code: 0 });
      expect(added).toHaveLength(1);
    });
  });
});
