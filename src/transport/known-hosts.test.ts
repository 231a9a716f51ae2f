import { execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadKnownHosts, recordHostKey } from './known-hosts-file.js';
import {
  checkHostKey,
  fingerprintSha256,
  formatHostName,
  formatKnownHostsLine,
  matchGlob,
  parseKnownHosts,
  readKeyType,
  type HostKey,
} from './known-hosts.js';

const dir = mkdtempSync(join(tmpdir(), 'ffw-kh-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A well-formed fake key blob: string(type) || random bytes.
function makeKey(type: string): HostKey {
  const name = Buffer.from(type);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(name.length);
  return { type, blob: Buffer.concat([len, name, randomBytes(32)]) };
}
const line = (hosts: string, k: HostKey): string => `${hosts} ${k.type} ${k.blob.toString('base64')}`;
const hashed = (host: string): string => {
  const salt = randomBytes(20);
  const hash = createHmac('sha1', salt).update(host).digest();
  return `|1|${salt.toString('base64')}|${hash.toString('base64')}`;
};

const ed = makeKey('ssh-ed25519');
const ed2 = makeKey('ssh-ed25519');
const ecdsa = makeKey('ecdsa-sha2-nistp256');

describe('parseKnownHosts + checkHostKey', () => {
  it('matches plain entries by any of the names, case-insensitively', () => {
    const { entries } = parseKnownHosts(`# comment\n\n${line('mysql-1,192.0.2.11', ed)}\n`);
    expect(checkHostKey(entries, ['MYSQL-1'], ed)).toEqual({ status: 'match' });
    expect(checkHostKey(entries, ['other', '192.0.2.11'], ed)).toEqual({ status: 'match' });
    expect(checkHostKey(entries, ['other'], ed)).toEqual({ status: 'unknown' });
  });

  it('matches hashed entries (HMAC-SHA1 of the name, keyed by the salt)', () => {
    const { entries } = parseKnownHosts(`${line(hashed('tunnel-1'), ed)}\n${line(hashed('[192.0.2.10]:2222'), ecdsa)}`);
    expect(checkHostKey(entries, ['tunnel-1'], ed).status).toBe('match');
    expect(checkHostKey(entries, ['tunnel-2'], ed).status).toBe('unknown');
    expect(checkHostKey(entries, [formatHostName('192.0.2.10', 2222)], ecdsa).status).toBe('match');
    expect(checkHostKey(entries, ['192.0.2.10'], ecdsa).status).toBe('unknown');
  });

  it('keeps [host]:port distinct from the port-22 name', () => {
    expect(formatHostName('h', 22)).toBe('h');
    expect(formatHostName('h', 2222)).toBe('[h]:2222');
    const { entries } = parseKnownHosts(line('[web]:2222', ed));
    expect(checkHostKey(entries, ['[web]:2222'], ed).status).toBe('match');
    expect(checkHostKey(entries, ['web'], ed).status).toBe('unknown');
  });

  it('supports * and ? wildcards and ! negation with OpenSSH semantics', () => {
    const { entries } = parseKnownHosts(line('db-*,!db-9,web-?', ed));
    expect(checkHostKey(entries, ['db-1'], ed).status).toBe('match');
    expect(checkHostKey(entries, ['db-9'], ed).status).toBe('unknown'); // negation vetoes
    expect(checkHostKey(entries, ['web-1'], ed).status).toBe('match');
    expect(checkHostKey(entries, ['web-10'], ed).status).toBe('unknown');
    // A negation alone never matches anything.
    expect(checkHostKey(parseKnownHosts(line('!x', ed)).entries, ['y'], ed).status).toBe('unknown');
    expect(matchGlob('a*b*c', 'axxbyyc')).toBe(true);
    expect(matchGlob('a*b', 'ab')).toBe(true);
    expect(matchGlob('a?', 'a')).toBe(false);
    expect(matchGlob('*', '')).toBe(true);
  });

  it('reports a different key of the same type as changed, with the line', () => {
    const { entries } = parseKnownHosts(`${line('other', ed2)}\n${line('mysql-1', ed)}`);
    expect(checkHostKey(entries, ['mysql-1', '192.0.2.11'], ed2)).toEqual({
      status: 'changed',
      expectedFingerprint: fingerprintSha256(ed.blob),
      line: 2,
    });
  });

  it('treats known keys of other types only as unknown', () => {
    const { entries } = parseKnownHosts(line('mysql-1', ecdsa));
    expect(checkHostKey(entries, ['mysql-1'], ed).status).toBe('unknown');
  });

  it('a matching key among several of the same type is accepted (OpenSSH does)', () => {
    const { entries } = parseKnownHosts(`${line('h', ed2)}\n${line('h', ed)}`);
    expect(checkHostKey(entries, ['h'], ed).status).toBe('match');
  });

  it('refuses @revoked keys even when a plain entry also lists them', () => {
    const { entries } = parseKnownHosts(`${line('h', ed)}\n@revoked * ${ed.type} ${ed.blob.toString('base64')}`);
    expect(checkHostKey(entries, ['h'], ed).status).toBe('revoked');
    expect(checkHostKey(entries, ['h'], ed2).status).toBe('changed');
  });

  it('ignores @cert-authority and malformed lines with a note', () => {
    const text = [
      `@cert-authority *.example ${ed.type} ${ed.blob.toString('base64')}`,
      'garbage',
      `h ssh-rsa ${ed.blob.toString('base64')}`, // type field disagrees with the blob
      line('ok', ed),
    ].join('\n');
    const kh = parseKnownHosts(text);
    expect(kh.entries.map((e) => e.line)).toEqual([4]);
    expect(kh.notes).toHaveLength(3);
    expect(kh.notes[0]).toMatch(/line 1: @cert-authority .*not supported/);
  });

  it('formats a line that parses back to a match', () => {
    const text = formatKnownHostsLine(['tunnel-1', '203.0.113.10'], ed);
    expect(checkHostKey(parseKnownHosts(text).entries, ['203.0.113.10'], ed).status).toBe('match');
  });
});

describe('fingerprintSha256', () => {
  it('equals ssh-keygen -lf for a generated key', () => {
    const key = join(dir, 'id');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const pub = readFileSync(`${key}.pub`, 'utf8').split(' ');
    const blob = Buffer.from(pub[1] ?? '', 'base64');
    expect(readKeyType(blob)).toBe('ssh-ed25519');
    const printed = execFileSync('ssh-keygen', ['-lf', `${key}.pub`], { encoding: 'utf8' }).split(' ')[1];
    expect(fingerprintSha256(blob)).toBe(printed);
  });
});

describe('known_hosts file', () => {
  it('treats a missing file as empty but fails closed on an unreadable one', async () => {
    expect((await loadKnownHosts(join(dir, 'missing'))).entries).toEqual([]);
    await expect(loadKnownHosts(dir)).rejects.toThrow(/cannot read known_hosts/); // EISDIR
  });

  it('records a new key once, creating the file 0600, and never overwrites a different key', async () => {
    const file = join(dir, 'known_hosts');
    expect(await Promise.all([recordHostKey(file, ['a', '192.0.2.1'], ed), recordHostKey(file, ['a', '192.0.2.1'], ed)])).toEqual([
      true,
      true,
    ]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(1);
    expect(await recordHostKey(file, ['a'], ed2)).toBe(false);
    writeFileSync(file, readFileSync(file, 'utf8').trimEnd()); // appending must add the missing newline
    expect(await recordHostKey(file, ['b'], ed2)).toBe(true);
    const kh = await loadKnownHosts(file);
    expect(kh.entries).toHaveLength(2);
    expect(checkHostKey(kh.entries, ['b'], ed2).status).toBe('match');
  });
});
