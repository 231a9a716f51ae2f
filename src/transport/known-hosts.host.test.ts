import { execFileSync, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadKnownHosts, recordHostKey } from './known-hosts-file.js';
import {
  checkHostKey,
  fingerprintSha256,
  formatHostName,
  formatKnownHostsLines,
  hashHostName,
  knownKeyTypes,
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
  it('finds a name on plain, pattern, negated and hashed lines alike, in file order', () => {
    const rsa = makeKey('ssh-rsa');
    const text = [
      line('web-*,!web-9', ecdsa),
      line('Web-1,192.0.2.1', ed),
      `${hashed('web-1')} ${rsa.type} ${rsa.blob.toString('base64')}`,
      line('web-1', ed2),
      line('web-2', rsa),
      line('web-?,!web-1', rsa),
    ].join('\n');
    const known = parseKnownHosts(text);
    expect(knownKeyTypes(known.entries, ['web-1'])).toEqual(['ecdsa-sha2-nistp256', 'ssh-ed25519', 'ssh-rsa']);
    expect(knownKeyTypes(known.entries, ['192.0.2.1'])).toEqual(['ssh-ed25519']);
    expect(knownKeyTypes(known.entries, ['web-9'])).toEqual(['ssh-rsa']);
    expect(checkHostKey(known.entries, ['web-1'], ed2)).toEqual({ status: 'match' });
    expect(checkHostKey(known.entries, ['web-2'], rsa)).toEqual({ status: 'match' });
    expect(checkHostKey(known.entries, ['web-3'], ecdsa)).toEqual({ status: 'match' });
    expect(checkHostKey(known.entries, ['db-1'], ed)).toEqual({ status: 'unknown' });
  });

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
      known: [{ type: 'ssh-ed25519', fingerprint: fingerprintSha256(ed.blob), lines: [2] }],
    });
  });

  it('a key of another type than the known ones is changed, not new (as ssh has it)', () => {
    // Known by name on one line and by its address, hashed, on another.
    const { entries } = parseKnownHosts(`${line('mysql-1', ed)}\n${line('web-1', ecdsa)}\n${line(hashed('192.0.2.14'), ed)}`);
    expect(checkHostKey(entries, ['mysql-1', '192.0.2.14'], ecdsa)).toEqual({
      status: 'changed',
      known: [{ type: 'ssh-ed25519', fingerprint: fingerprintSha256(ed.blob), lines: [1, 3] }],
    });
    // Through either name alone, and through [host]:port entries alike.
    expect(checkHostKey(entries, ['192.0.2.14'], ecdsa).status).toBe('changed');
    const ported = parseKnownHosts(line(hashed('[mysql-1]:2222'), ed)).entries;
    expect(checkHostKey(ported, [formatHostName('mysql-1', 2222)], ecdsa).status).toBe('changed');
    expect(checkHostKey(ported, ['mysql-1'], ecdsa).status).toBe('unknown');
  });

  it('a host known by several key types accepts any of them and lists them all when refusing', () => {
    const rsa = makeKey('ssh-rsa');
    const { entries } = parseKnownHosts(`${line('h', ed)}\n${line('h', ecdsa)}`);
    expect(checkHostKey(entries, ['h'], ecdsa).status).toBe('match');
    expect(checkHostKey(entries, ['h'], ed).status).toBe('match');
    const refused = checkHostKey(entries, ['h'], rsa);
    expect(refused.status === 'changed' && refused.known.map((k) => [k.type, k.lines])).toEqual([
      ['ssh-ed25519', [1]],
      ['ecdsa-sha2-nistp256', [2]],
    ]);
    expect(knownKeyTypes(entries, ['h'])).toEqual(['ssh-ed25519', 'ecdsa-sha2-nistp256']);
    expect(knownKeyTypes(entries, ['other'])).toEqual([]);
  });

  it('a matching key among several of the same type is accepted (OpenSSH does)', () => {
    const { entries } = parseKnownHosts(`${line('h', ed2)}\n${line('h', ed)}`);
    expect(checkHostKey(entries, ['h'], ed).status).toBe('match');
  });

  it('refuses @revoked keys even when a plain entry also lists them', () => {
    const { entries } = parseKnownHosts(`${line('h', ed)}\n@revoked * ${ed.type} ${ed.blob.toString('base64')}`);
    expect(checkHostKey(entries, ['h'], ed)).toEqual({ status: 'revoked', line: 2 });
    expect(checkHostKey(entries, ['h'], ed2).status).toBe('changed');
  });

  it('a host covered only by @revoked or @cert-authority lines has no known key (ssh treats it as new)', () => {
    const text = `@revoked * ${ed.type} ${ed.blob.toString('base64')}\n@cert-authority * ${ed2.type} ${ed2.blob.toString('base64')}`;
    const { entries } = parseKnownHosts(text);
    expect(checkHostKey(entries, ['h'], ecdsa).status).toBe('unknown');
    expect(checkHostKey(entries, ['h'], ed).status).toBe('revoked');
    expect(knownKeyTypes(entries, ['h'])).toEqual([]);
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

  it('formats plain (one line for all names) and hashed (one line per name) lines that parse back to a match', () => {
    const plain = formatKnownHostsLines(['tunnel-1', '203.0.113.10'], ed, false);
    expect(plain).toEqual([`tunnel-1,203.0.113.10 ssh-ed25519 ${ed.blob.toString('base64')}`]);
    const hashedLines = formatKnownHostsLines(['tunnel-1', '[203.0.113.10]:2222'], ed, true);
    expect(hashedLines).toHaveLength(2);
    for (const l of hashedLines) expect(l).toMatch(/^\|1\|[A-Za-z0-9+/]{27}=\|[A-Za-z0-9+/]{27}= ssh-ed25519 /);
    expect(hashedLines.join('\n')).not.toContain('tunnel-1');
    for (const [lines, name] of [[plain, '203.0.113.10'], [hashedLines, '[203.0.113.10]:2222'], [hashedLines, 'TUNNEL-1']] as const) {
      expect(checkHostKey(parseKnownHosts(lines.join('\n')).entries, [name], ed).status).toBe('match');
    }
  });

  it('calls a file hashed when any line names its hosts hashed', () => {
    expect(parseKnownHosts(line('a', ed)).hashed).toBe(false);
    expect(parseKnownHosts(`${line(hashed('a'), ed)}\n${line(hashed('b'), ed)}`).hashed).toBe(true);
    expect(parseKnownHosts(`${line('a', ed)}\n${line(hashed('b'), ed)}`).hashed).toBe(true); // mixed: hashed
    expect(parseKnownHosts(`@revoked ${hashed('a')} ${ed.type} ${ed.blob.toString('base64')}`).hashed).toBe(true);
    expect(parseKnownHosts('# |1|x|y ssh-ed25519 AAAA\n').hashed).toBe(false);
  });

  it('hashes names as ssh-keygen -H does (ssh-keygen -F finds them)', () => {
    const file = join(dir, 'hash-check');
    const pub = keygen('hash-check-key', 'ecdsa');
    writeFileSync(file, formatKnownHostsLines(['mysql-1', '[192.0.2.14]:2222'], pub, true).join('\n') + '\n');
    for (const [name, lineNo] of [['mysql-1', 1], ['[192.0.2.14]:2222', 2]] as const) {
      const found = execFileSync('ssh-keygen', ['-F', name, '-f', file], { encoding: 'utf8' });
      expect(found).toContain(`found: line ${lineNo}`);
    }
    expect(hashHostName('x', Buffer.alloc(20))).toBe(`|1|${Buffer.alloc(20).toString('base64')}|${createHmac('sha1', Buffer.alloc(20)).update('x').digest('base64')}`);
  });
});

/** A real key pair from ssh-keygen, as a HostKey. */
function keygen(name: string, type: 'ed25519' | 'ecdsa'): HostKey {
  const key = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', key]);
  const [t = '', b64 = ''] = readFileSync(`${key}.pub`, 'utf8').split(' ');
  return { type: t, blob: Buffer.from(b64, 'base64') };
}

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
      { status: 'added', hashed: false },
      { status: 'match' },
    ]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(1);
    expect((await recordHostKey(file, ['a'], ed2)).status).toBe('changed');
    writeFileSync(file, readFileSync(file, 'utf8').trimEnd()); // appending must add the missing newline
    expect(await recordHostKey(file, ['b'], ed2)).toEqual({ status: 'added', hashed: false });
    const kh = await loadKnownHosts(file);
    expect(kh.entries).toHaveLength(2);
    expect(checkHostKey(kh.entries, ['b'], ed2).status).toBe('match');
  });

  it('never records a key of another type for a known host, and leaves the file as it was', async () => {
    const file = join(dir, 'known_hosts_types');
    writeFileSync(file, `${line('a', ed)}\n${line(hashed('192.0.2.1'), ed)}\n`);
    const before = readFileSync(file);
    for (const names of [['a', '192.0.2.1'], ['a'], ['192.0.2.1']]) {
      const outcome = await recordHostKey(file, names, ecdsa);
      expect(outcome.status).toBe('changed');
    }
    expect(await recordHostKey(file, ['a'], ecdsa, { hash: true })).toMatchObject({ status: 'changed' });
    expect(readFileSync(file).equals(before)).toBe(true);
  });

  it('writes hashed lines into a hashed (or mixed) file, or when asked to; plain lines otherwise', async () => {
    const cases: Array<[string, string, boolean | undefined, boolean]> = [
      ['plain', line('x', ed2), undefined, false],
      ['hashed', line(hashed('x'), ed2), undefined, true],
      ['mixed', `${line('x', ed2)}\n${line(hashed('y'), ed2)}`, undefined, true],
      ['plain-hash-yes', line('x', ed2), true, true],
      ['hashed-hash-no', line(hashed('x'), ed2), false, true],
      ['missing-hash-yes', '', true, true],
    ];
    for (const [name, text, hash, expectHashed] of cases) {
      const file = join(dir, `kh-${name}`);
      if (text) writeFileSync(file, `${text}\n`);
      const before = text ? readFileSync(file, 'utf8') : '';
      const outcome = await recordHostKey(file, ['mysql-1', '192.0.2.14'], ed, hash === undefined ? {} : { hash });
      expect(outcome, name).toEqual({ status: 'added', hashed: expectHashed });
      const after = readFileSync(file, 'utf8');
      expect(after.startsWith(before), name).toBe(true);
      const added = after.slice(before.length).trimEnd().split('\n');
      if (expectHashed) {
        expect(added, name).toHaveLength(2);
        expect(added.every((l) => l.startsWith('|1|')), name).toBe(true);
        expect(after, name).not.toContain('mysql-1');
      } else {
        expect(added, name).toEqual([`mysql-1,192.0.2.14 ssh-ed25519 ${ed.blob.toString('base64')}`]);
      }
      const kh = await loadKnownHosts(file);
      for (const n of ['mysql-1', '192.0.2.14']) expect(checkHostKey(kh.entries, [n], ed).status, name).toBe('match');
    }
  });

  it('a failed write is an error and leaves no torn line behind', () => {
    // A file size limit makes the append stop part way (a short write, then EFBIG), as a full disk would.
    const file = join(dir, 'known_hosts_full');
    const first = `${line('a', ed)}\n`;
    writeFileSync(file, first);
    const limit = first.length + 20;
    const script = `
      import { recordHostKey } from ${JSON.stringify(fileURLToPath(new URL('./known-hosts-file.ts', import.meta.url)))};
      const blob = Buffer.from(${JSON.stringify(ed2.blob.toString('base64'))}, 'base64');
      recordHostKey(${JSON.stringify(file)}, ['b', '192.0.2.2'], { type: 'ssh-ed25519', blob }).then(
        (o) => console.log(JSON.stringify(o)),
        (e) => { console.log(JSON.stringify({ name: e.name, message: e.message })); process.exitCode = 1; });`;
    const r = spawnSync('prlimit', [`--fsize=${limit}`, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(1);
    const reported = JSON.parse(r.stdout.trim()) as { name: string; message: string };
    expect(reported.name).toBe('KnownHostsError');
    expect(reported.message).toMatch(new RegExp(`cannot add a host key to ${file}: .*EFBIG`));
    expect(readFileSync(file, 'utf8')).toBe(first);
    appendFileSync(file, ''); // still a usable file
  });
});
