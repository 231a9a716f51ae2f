import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2, { type ParsedKey } from 'ssh2';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPrivateKey, openSshPublicBlob, planIdentities, readPublicBlob, type IdentitySources } from './identities.js';

const { utils } = ssh2;
const dir = mkdtempSync(join(tmpdir(), 'ffw-ids-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keyPair(name: string, passphrase?: string): { file: string; pub: ParsedKey } {
  const k = utils.generateKeyPairSync('ed25519', passphrase ? { passphrase, cipher: 'aes256-ctr', rounds: 2 } : {});
  const file = join(dir, name);
  writeFileSync(file, k.private, { mode: 0o600 });
  return { file, pub: utils.parseKey(k.public) as ParsedKey };
}

const good = keyPair('good');
const other = keyPair('other');
const encrypted = keyPair('encrypted', 'sesame');
const agentOnly = keyPair('agent-only');

/** Sources over real files and a fake agent holding `agentKeys`. */
function sources(agentKeys: ParsedKey[] | string = []): IdentitySources {
  return { loadKey: (f) => loadPrivateKey(f, undefined), publicBlob: readPublicBlob, agentKeys: async () => agentKeys };
}
const kinds = (p: Awaited<ReturnType<typeof planIdentities>>) => p.methods.map((m) => m.type);

describe('planIdentities', () => {
  it('tries every identity file in order, skipping an encrypted one it cannot open, then the agent', async () => {
    const p = await planIdentities({ user: 'root', files: [encrypted.file, good.file], identitiesOnly: false, agent: '/agent' }, sources([agentOnly.pub]));
    expect(p.offered).toEqual([`identity file ${good.file}`, '1 ssh-agent key']);
    expect(kinds(p)).toEqual(['publickey', 'agent']);
    expect(p.skipped).toEqual([`identity file ${encrypted.file}: it is encrypted and no passphrase is available (load it into ssh-agent with ssh-add)`]);
  });

  it('uses the agent for an identity file whose key it holds (no passphrase needed), in the file\'s place', async () => {
    const p = await planIdentities({ user: 'root', files: [other.file, encrypted.file], identitiesOnly: false, agent: '/agent' }, sources([agentOnly.pub, encrypted.pub]));
    expect(p.offered).toEqual([`identity file ${other.file}`, `identity file ${encrypted.file} (through ssh-agent)`, '1 other ssh-agent key']);
    expect(p.skipped).toEqual([]);
  });

  it('IdentitiesOnly: only the listed files, even through the agent', async () => {
    const p = await planIdentities({ user: 'root', files: [encrypted.file], identitiesOnly: true, agent: '/agent' }, sources([agentOnly.pub, encrypted.pub]));
    expect(p.offered).toEqual([`identity file ${encrypted.file} (through ssh-agent)`]);
    expect(p.skipped).toEqual(['1 other ssh-agent key(s) (IdentitiesOnly yes)']);
    const none = await planIdentities({ user: 'root', files: [other.file], identitiesOnly: true, agent: '/agent' }, sources([agentOnly.pub]));
    expect(none.offered).toEqual([`identity file ${other.file}`]);
  });

  it('IdentityAgent none: no agent, and says so', async () => {
    const p = await planIdentities({ user: 'root', files: [join(dir, 'missing')], identitiesOnly: false, noAgentReason: 'IdentityAgent none, ssh config /c:3' }, sources());
    expect(p.methods).toEqual([]);
    expect(p.skipped).toEqual([`identity file ${join(dir, 'missing')}: cannot read it (ENOENT)`, 'ssh-agent (IdentityAgent none, ssh config /c:3)']);
  });

  it('without identity files, hands the whole agent over (no listing)', async () => {
    let listed = 0;
    const p = await planIdentities({ user: 'root', files: [], identitiesOnly: false, agent: '/agent' }, { ...sources(), agentKeys: async () => (listed++, []) });
    expect(p.methods).toEqual([{ type: 'agent', username: 'root', agent: '/agent' }]);
    expect(listed).toBe(0);
  });

  it('goes on without an agent that cannot be listed', async () => {
    const p = await planIdentities({ user: 'root', files: [good.file], identitiesOnly: false, agent: '/gone' }, sources('Failed to connect to agent'));
    expect(p.offered).toEqual([`identity file ${good.file}`]);
    expect(p.skipped).toEqual(['ssh-agent /gone: Failed to connect to agent']);
  });
});

describe('public keys of private key files', () => {
  it('reads the clear public key of an encrypted OpenSSH key, and FILE.pub first', async () => {
    expect((await readPublicBlob(encrypted.file))?.equals(encrypted.pub.getPublicSSH())).toBe(true);
    expect(openSshPublicBlob('not a key')).toBeUndefined();
    writeFileSync(`${other.file}.pub`, `${good.pub.type} ${good.pub.getPublicSSH().toString('base64')} c\n`);
    expect((await readPublicBlob(other.file))?.equals(good.pub.getPublicSSH())).toBe(true);
  });

  it('decrypts with a passphrase; an empty or wrong one skips the key', async () => {
    expect(typeof (await loadPrivateKey(encrypted.file, 'sesame'))).toBe('object');
    expect(await loadPrivateKey(encrypted.file, undefined, async () => '')).toBe('it is encrypted and no passphrase was given');
    expect(await loadPrivateKey(encrypted.file, 'wrong')).toBe('cannot decrypt it (wrong passphrase?)');
  });
});
