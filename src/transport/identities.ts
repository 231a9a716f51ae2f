// Which keys a connection offers, in which order, as OpenSSH chooses them:
// every IdentityFile in order (through ssh-agent when the agent holds that key,
// so an encrypted file the agent has unlocked needs no passphrase), then the
// agent's other keys unless IdentitiesOnly. A file that cannot be used (missing,
// encrypted without a passphrase, not a key) is skipped with its reason, as ssh
// skips it, and the next one is tried. Files come before unrelated agent keys,
// so a crowded agent cannot exhaust the server's MaxAuthTries before them.

import { readFile } from 'node:fs/promises';
import ssh2, { type AgentAuthMethod, type ParsedKey, type PublicKeyAuthMethod, type SignCallback, type SigningRequestOptions } from 'ssh2';

const { utils, BaseAgent, OpenSSHAgent } = ssh2;

export type AuthMethod = PublicKeyAuthMethod | AgentAuthMethod;

export interface IdentityChoice {
  /** Login user. */
  user: string;
  /** IdentityFile list, in order. */
  files: string[];
  identitiesOnly: boolean;
  /** The agent socket; undefined: no agent. */
  agent?: string;
  /** Why there is no agent, when that was chosen (`IdentityAgent none`). */
  noAgentReason?: string;
}

/** The transport's caches: each file and agent is read once per run. */
export interface IdentitySources {
  /** A usable private key, or why the file cannot be used. */
  loadKey(file: string): Promise<ParsedKey | string>;
  /** The file's public key blob (from FILE.pub or the private key's clear header), if it can be known. */
  publicBlob(file: string): Promise<Buffer | undefined>;
  /** The agent's keys, or why they cannot be listed. */
  agentKeys(socket: string): Promise<ParsedKey[] | string>;
}

export interface IdentityPlan {
  methods: AuthMethod[];
  /** What is offered, in order, for messages. */
  offered: string[];
  /** What was left out and why, for messages. */
  skipped: string[];
}

export async function planIdentities(c: IdentityChoice, src: IdentitySources): Promise<IdentityPlan> {
  const methods: AuthMethod[] = [];
  const offered: string[] = [];
  const skipped: string[] = [];
  let agentKeys: ParsedKey[] | undefined;
  if (c.agent && (c.files.length > 0 || c.identitiesOnly)) {
    const listed = await src.agentKeys(c.agent);
    if (typeof listed === 'string') skipped.push(`ssh-agent ${c.agent}: ${listed}`);
    else agentKeys = listed;
  }
  const used = new Set<string>();
  for (const file of c.files) {
    const blob = agentKeys && agentKeys.length > 0 ? await src.publicBlob(file) : undefined;
    const inAgent = blob && agentKeys!.find((k) => k.getPublicSSH().equals(blob));
    if (inAgent && c.agent) {
      used.add(inAgent.getPublicSSH().toString('base64'));
      methods.push({ type: 'agent', username: c.user, agent: new SelectedKeysAgent(c.agent, [inAgent]) });
      offered.push(`identity file ${file} (through ssh-agent)`);
      continue;
    }
    const key = await src.loadKey(file);
    if (typeof key === 'string') {
      skipped.push(`identity file ${file}: ${key}`);
      continue;
    }
    methods.push({ type: 'publickey', username: c.user, key });
    offered.push(`identity file ${file}`);
  }
  if (c.agent && !c.identitiesOnly) {
    if (agentKeys === undefined && c.files.length === 0) {
      methods.push({ type: 'agent', username: c.user, agent: c.agent });
      offered.push('ssh-agent keys');
    } else if (agentKeys) {
      const rest = agentKeys.filter((k) => !used.has(k.getPublicSSH().toString('base64')));
      if (rest.length > 0) {
        methods.push({ type: 'agent', username: c.user, agent: new SelectedKeysAgent(c.agent, rest) });
        offered.push(`${rest.length} ${used.size > 0 ? 'other ' : ''}ssh-agent key${rest.length > 1 ? 's' : ''}`);
      }
    }
  } else if (c.agent && agentKeys && agentKeys.length > used.size) {
    skipped.push(`${agentKeys.length - used.size} other ssh-agent key(s) (IdentitiesOnly yes)`);
  }
  if (!c.agent && c.noAgentReason) skipped.push(`ssh-agent (${c.noAgentReason})`);
  return { methods, offered, skipped };
}

/** An agent that lists only some of its keys: ssh2 would offer every key an agent lists. */
class SelectedKeysAgent extends BaseAgent<ParsedKey> {
  private readonly inner: InstanceType<typeof OpenSSHAgent>;
  constructor(
    socket: string,
    private readonly keys: ParsedKey[],
  ) {
    super();
    this.inner = new OpenSSHAgent(socket);
  }
  getIdentities(cb: (err: Error | undefined, keys?: ParsedKey[]) => void): void {
    cb(undefined, this.keys);
  }
  sign(pubKey: ParsedKey, data: Buffer, options: SigningRequestOptions | SignCallback, cb?: SignCallback): void {
    if (typeof options === 'function') this.inner.sign(pubKey, data, options);
    else this.inner.sign(pubKey, data, options, cb);
  }
}

/** Lists an agent's keys. */
export function listAgentKeys(socket: string): Promise<ParsedKey[] | string> {
  return new Promise((resolve) => {
    // An OpenSSH agent's identities are parsed keys (the type also allows other agents' entries).
    new OpenSSHAgent(socket).getIdentities((err, keys) => resolve(err ? err.message : ((keys ?? []) as ParsedKey[])));
  });
}

/** The public key blob of a private key file: FILE.pub, else what the file shows without its passphrase. */
export async function readPublicBlob(file: string): Promise<Buffer | undefined> {
  const pub = await readFile(`${file}.pub`).catch(() => undefined);
  if (pub) {
    const k = utils.parseKey(pub);
    if (!(k instanceof Error)) return (Array.isArray(k) ? k[0] : k)?.getPublicSSH();
  }
  const data = await readFile(file).catch(() => undefined);
  if (!data) return undefined;
  const header = openSshPublicBlob(data.toString('latin1'));
  if (header) return header;
  const k = utils.parseKey(data);
  return k instanceof Error ? undefined : (Array.isArray(k) ? k[0] : k)?.getPublicSSH();
}

/** The clear public key of an `openssh-key-v1` private key (encrypted or not). */
export function openSshPublicBlob(text: string): Buffer | undefined {
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (!m?.[1]) return undefined;
  const buf = Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
  const magic = 'openssh-key-v1\0';
  if (buf.subarray(0, magic.length).toString('latin1') !== magic) return undefined;
  let at = magic.length;
  const str = (): Buffer | undefined => {
    if (at + 4 > buf.length) return undefined;
    const len = buf.readUInt32BE(at);
    if (at + 4 + len > buf.length) return undefined;
    const s = buf.subarray(at + 4, at + 4 + len);
    at += 4 + len;
    return s;
  };
  if (!str() || !str() || !str()) return undefined; // cipher, kdf, kdf options
  if (at + 4 > buf.length || buf.readUInt32BE(at) < 1) return undefined;
  at += 4;
  return str();
}

/**
 * A private key, or why it cannot be used. `askPassphrase` is only called for
 * an encrypted key; an empty answer skips the key (as ssh does).
 */
export async function loadPrivateKey(file: string, passphrase: string | undefined, askPassphrase?: (file: string) => Promise<string>): Promise<ParsedKey | string> {
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (err) {
    return `cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
  }
  let key = utils.parseKey(data);
  if (key instanceof Error && /encrypted|passphrase/i.test(key.message)) {
    const secret = passphrase ?? (askPassphrase ? await askPassphrase(file) : undefined);
    if (secret === undefined) return 'it is encrypted and no passphrase is available (load it into ssh-agent with ssh-add)';
    if (secret === '') return 'it is encrypted and no passphrase was given';
    key = utils.parseKey(data, secret);
    if (key instanceof Error) return 'cannot decrypt it (wrong passphrase?)';
  }
  if (key instanceof Error) return `not a usable private key (${key.message})`;
  const parsed = Array.isArray(key) ? key[0] : key;
  return parsed ?? 'no key in it';
}
