// The SSH transport: one shared ssh2 connection per bastion, every target
// reached through a forwarded channel on it (see PRIOR-ART.md: forwarded
// channels do not count against MaxSessions, and one connection per bastion
// keeps fleetfw far from MaxStartups and PerSourcePenalties).

import { readFile } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import ssh2, {
  type AgentAuthMethod,
  type ClientChannel,
  type ConnectConfig,
  type ParsedKey,
  type PublicKeyAuthMethod,
} from 'ssh2';
import { FleetError } from '../errors.js';
import { loadKnownHosts, recordHostKey } from './known-hosts-file.js';
import { checkHostKey, fingerprintSha256, formatHostName, knownKeyTypes, readKeyType, type HostKey, type KnownKey } from './known-hosts.js';
import { changedKeyMessage, formatHostKeyAddition, hostKeyAlgorithmsPreferring, type HostKeyAddition } from './host-key-policy.js';
import { createSession, endClient, markClosed } from './session.js';
import { classify } from './ssh-errors.js';
import { TransportError, type HostSession, type OpenOptions, type Transport, type TransportHop, type TransportReason } from './types.js';

// The interface and its error live in types.ts; re-exported for the transport's users.
export * from './types.js';
export { formatHostKeyAddition, hostKeyAlgorithmsPreferring, type HostKeyAddition } from './host-key-policy.js';

// ssh2 is CommonJS: Node's ESM loader does not expose `utils` as a named export.
const { Client, utils } = ssh2;
type Client = InstanceType<typeof Client>;

export interface SshEndpoint {
  name: string;
  address: string;
  port: number;
  user: string;
  identityFile?: string;
  passphrase?: string;
  /** Name of the bastion endpoint; undefined = this IS a bastion, reached directly. */
  bastion?: string;
  /** `HashKnownHosts yes` for this host: its key is recorded hashed even in a plain known_hosts. */
  hashKnownHosts?: boolean;
}

export interface TransportOptions {
  knownHostsFile: string;
  acceptNewHostKeys: boolean;
  agentSocket?: string;
  readyTimeoutMs?: number;
  keepaliveIntervalMs?: number;
  connectRetries?: number;
  forwardTimeoutMs?: number;
  askPassphrase?: (file: string) => Promise<string>;
  /**
   * Told of every key `acceptNewHostKeys` records. Without it the transport
   * prints the addition on stderr itself: a new trusted key is never silent.
   */
  onHostKeyAdded?: (added: HostKeyAddition) => void;
}

const defaults = {
  readyTimeoutMs: 15_000,
  keepaliveIntervalMs: 10_000,
  connectRetries: 3,
  forwardTimeoutMs: 10_000,
};
const backoffBaseMs = 500;

interface Credentials {
  agent?: string;
  privateKey?: ParsedKey;
}

export function createSshTransport(endpoints: SshEndpoint[], opts: TransportOptions): Transport {
  const cfg = {
    ...opts,
    readyTimeoutMs: opts.readyTimeoutMs ?? defaults.readyTimeoutMs,
    keepaliveIntervalMs: opts.keepaliveIntervalMs ?? defaults.keepaliveIntervalMs,
    connectRetries: opts.connectRetries ?? defaults.connectRetries,
    forwardTimeoutMs: opts.forwardTimeoutMs ?? defaults.forwardTimeoutMs,
  };
  const byName = new Map(endpoints.map((e) => [e.name, e]));
  for (const e of endpoints) {
    if (e.bastion === undefined) continue;
    const b = byName.get(e.bastion);
    if (!b) throw new FleetError(`${e.name}: bastion ${e.bastion} is not a known endpoint`);
    if (b.bastion !== undefined) throw new FleetError(`${e.name}: bastion ${b.name} is itself behind a bastion`);
  }
  const announce = cfg.onHostKeyAdded ?? ((a: HostKeyAddition) => void process.stderr.write(`${formatHostKeyAddition(a)}\n`));
  const shared = new Map<string, Promise<Client>>();
  const live = new Set<Client>();
  const keyCache = new Map<string, Promise<ParsedKey>>();
  let closed = false;

  function endpoint(name: string): SshEndpoint {
    const e = byName.get(name);
    if (!e) throw new FleetError(`unknown host ${name}: not in the transport's endpoints`);
    return e;
  }

  // Decrypting a key (bcrypt KDF) is slow and may prompt: do it once per file.
  function loadKey(ep: SshEndpoint, hop: TransportHop, file: string): Promise<ParsedKey> {
    let p = keyCache.get(file);
    if (!p) {
      p = parseIdentity(ep, hop, file, cfg.askPassphrase);
      keyCache.set(file, p);
      p.catch(() => keyCache.delete(file));
    }
    return p;
  }

  async function credentials(ep: SshEndpoint, hop: TransportHop): Promise<Credentials> {
    const agent = cfg.agentSocket ?? (process.env.SSH_AUTH_SOCK || undefined);
    const privateKey = ep.identityFile ? await loadKey(ep, hop, ep.identityFile) : undefined;
    if (!agent && !privateKey) {
      throw new TransportError(
        `${ep.name}: no identity file and no ssh-agent (SSH_AUTH_SOCK) to authenticate with`,
        ep.name,
        hop,
        'auth',
      );
    }
    return { ...(agent ? { agent } : {}), ...(privateKey ? { privateKey } : {}) };
  }

  /** `dial` opens the forwarded stream for a target; it runs last so no stream waits on local file reads. */
  async function connect(ep: SshEndpoint, hop: TransportHop, dial?: () => Promise<Duplex>): Promise<Client> {
    const [creds, known] = await Promise.all([
      credentials(ep, hop),
      loadKnownHosts(cfg.knownHostsFile).catch((err: Error) => {
        throw new TransportError(err.message, ep.name, hop, 'hostkey-unknown');
      }),
    ]);
    const names = [...new Set([formatHostName(ep.name, ep.port), formatHostName(ep.address, ep.port)])];
    const label = hop === 'target' ? `${ep.name} (${ep.address}, via bastion ${ep.bastion})` : `${ep.name} (${ep.address})`;
    const algorithms = hostKeyAlgorithmsPreferring(knownKeyTypes(known.entries, names));
    let refusal: TransportError | undefined;

    // Runs after key exchange, before anything is sent: a refused key means no auth attempt.
    const hostVerifier = (blob: Buffer, verify: (ok: boolean) => void): void => {
      const key: HostKey = { type: readKeyType(blob) ?? 'unknown', blob };
      const fp = fingerprintSha256(blob);
      const check = checkHostKey(known.entries, names, key);
      const refuse = (message: string, reason: TransportReason): void => {
        refusal = new TransportError(message, ep.name, hop, reason);
        verify(false);
      };
      const changed = (knownKeys: KnownKey[]): void =>
        refuse(changedKeyMessage(ep, names, cfg.knownHostsFile, key, knownKeys), 'hostkey-changed');
      const revoked = (line: number): void =>
        refuse(`the ${key.type} host key ${fp} of ${label} is marked @revoked in ${cfg.knownHostsFile} line ${line}`, 'hostkey-changed');
      switch (check.status) {
        case 'match':
          return verify(true);
        case 'revoked':
          return revoked(check.line);
        case 'changed':
          return changed(check.known);
        case 'unknown':
          if (!cfg.acceptNewHostKeys) {
            return refuse(
              `unknown host key for ${label}: ${key.type} ${fp}. To trust it, check the fingerprint and rerun with ` +
                `--accept-new-host-keys, or add it with ssh-keyscan -p ${ep.port} ${ep.address} >> ${cfg.knownHostsFile}`,
              'hostkey-unknown',
            );
          }
          recordHostKey(cfg.knownHostsFile, names, key, { hash: ep.hashKnownHosts === true }).then(
            (outcome) => {
              switch (outcome.status) {
                case 'added':
                  try {
                    announce({ host: ep.name, address: ep.address, port: ep.port, type: key.type, fingerprint: fp, file: cfg.knownHostsFile, hashed: outcome.hashed });
                  } catch (err) {
                    // Fail closed: a key trusted without a word is what accept-new must never do.
                    return refuse(`recorded the host key of ${label} (${key.type} ${fp}) but could not report it: ${(err as Error).message}`, 'hostkey-unknown');
                  }
                  return verify(true);
                case 'match':
                  return verify(true); // another connection recorded it just now
                case 'revoked':
                  return revoked(outcome.line);
                case 'changed':
                  return changed(outcome.known);
              }
            },
            (err: Error) => refuse(`cannot record the host key of ${label}: ${err.message}`, 'hostkey-unknown'),
          );
          return;
      }
    };

    const authMethods: (PublicKeyAuthMethod | AgentAuthMethod)[] = [];
    if (creds.privateKey) authMethods.push({ type: 'publickey', username: ep.user, key: creds.privateKey });
    if (creds.agent) authMethods.push({ type: 'agent', username: ep.user, agent: creds.agent });
    const sock = dial ? await dial() : undefined;
    const client = new Client();
    const config: ConnectConfig = {
      host: ep.address,
      port: ep.port,
      username: ep.user,
      readyTimeout: cfg.readyTimeoutMs,
      keepaliveInterval: cfg.keepaliveIntervalMs,
      keepaliveCountMax: 3,
      hostVerifier,
      ...(algorithms ? { algorithms } : {}),
      ...(sock ? { sock: sock as ConnectConfig['sock'] } : {}),
      // Explicit methods so the already parsed (decrypted once) key is used as is; the
      // identity file goes first so a crowded agent cannot exhaust MaxAuthTries before it.
      authHandler: authMethods,
    };

    return new Promise<Client>((resolve, reject) => {
      const errors: (Error & { level?: string })[] = [];
      let settled = false;
      // Insurance: ssh2 should close the socket after every fatal error, but never hang on it.
      const guard = setTimeout(() => fail(), cfg.readyTimeoutMs + 5_000);
      const fail = (): void => {
        if (settled) return;
        settled = true;
        clearTimeout(guard);
        client.destroy();
        reject(refusal ?? classify(ep, hop, label, errors));
      };
      // 'error' can fire more than once (agent errors are not even fatal): record, settle on close.
      client.on('error', (err: Error & { level?: string }) => {
        errors.push(err);
        if (settled) live.delete(client);
      });
      client.on('close', () => {
        markClosed(client);
        live.delete(client);
        fail();
      });
      client.on('ready', () => {
        if (settled) return client.end();
        settled = true;
        clearTimeout(guard);
        if (closed) {
          client.end();
          reject(new TransportError(`${ep.name}: transport closed`, ep.name, hop, 'connect'));
          return;
        }
        live.add(client);
        resolve(client);
      });
      try {
        client.connect(config);
      } catch (err) {
        errors.push(err as Error);
        fail();
      }
    }).catch((err: unknown) => {
      sock?.destroy();
      throw err;
    });
  }

  // Lazily dialled, shared, and dropped as soon as it dies so the next open re-dials.
  function bastionConnection(b: SshEndpoint): Promise<Client> {
    let p = shared.get(b.name);
    if (p) return p;
    p = connect(b, 'bastion');
    shared.set(b.name, p);
    const forget = (): void => {
      if (shared.get(b.name) === p) shared.delete(b.name);
    };
    p.then((c) => c.on('close', forget).on('end', forget), forget);
    return p;
  }

  function forward(bastion: Client, b: SshEndpoint, ep: SshEndpoint): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        reject(
          new TransportError(
            `${ep.name}: bastion ${b.name} could not open a connection to ${ep.address}:${ep.port} within ${cfg.forwardTimeoutMs} ms`,
            ep.name,
            'target',
            'timeout',
            true,
          ),
        );
      }, cfg.forwardTimeoutMs);
      const finish = (err: Error | undefined, stream?: ClientChannel): void => {
        if (done) {
          stream?.destroy(); // arrived after the timeout
          return;
        }
        done = true;
        clearTimeout(timer);
        if (err || !stream) {
          reject(
            new TransportError(
              `${ep.name}: bastion ${b.name} could not forward to ${ep.address}:${ep.port}: ${err?.message ?? 'no stream'}`,
              ep.name,
              'target',
              'channel',
              true,
            ),
          );
        } else {
          stream.on('error', () => undefined); // ssh2's client reports it once it owns the stream
          resolve(stream);
        }
      };
      try {
        bastion.forwardOut('127.0.0.1', 0, ep.address, ep.port, finish);
      } catch (err) {
        // "Not connected": the shared connection died under us.
        shared.delete(b.name);
        finish(err as Error);
      }
    });
  }

  async function openOnce(ep: SshEndpoint): Promise<Client> {
    if (ep.bastion === undefined) return connect(ep, 'bastion');
    const b = endpoint(ep.bastion);
    return connect(ep, 'target', async () => forward(await bastionConnection(b), b, ep));
  }

  async function open(host: string, o: OpenOptions = {}): Promise<HostSession> {
    const ep = endpoint(host);
    const retries = o.retries ?? cfg.connectRetries;
    for (let attempt = 0; ; attempt++) {
      if (closed) throw new TransportError(`${host}: transport closed`, host, ep.bastion ? 'target' : 'bastion', 'connect');
      try {
        return createSession(host, ep.bastion ? 'target' : 'bastion', await openOnce(ep), live);
      } catch (err) {
        if (!(err instanceof TransportError) || !err.retryable || attempt >= retries) throw err;
        const delay = backoffBaseMs * 2 ** attempt * (0.75 + Math.random() * 0.5);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async function close(): Promise<void> {
    closed = true;
    shared.clear();
    await Promise.all([...live].map((c) => endClient(c)));
  }

  return { open, close };
}

async function parseIdentity(
  ep: SshEndpoint,
  hop: TransportHop,
  file: string,
  askPassphrase: TransportOptions['askPassphrase'],
): Promise<ParsedKey> {
  const fail = (why: string): TransportError => new TransportError(`${ep.name}: identity file ${file}: ${why}`, ep.name, hop, 'auth');
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (err) {
    throw fail(`cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let key = utils.parseKey(data);
  if (key instanceof Error && /encrypted|passphrase/i.test(key.message)) {
    const passphrase = ep.passphrase ?? (askPassphrase ? await askPassphrase(file) : undefined);
    if (passphrase === undefined) throw fail('it is encrypted and no passphrase is available (load it into ssh-agent with ssh-add)');
    key = utils.parseKey(data, passphrase);
    if (key instanceof Error) throw fail('cannot decrypt it (wrong passphrase?)');
  }
  if (key instanceof Error) throw fail(`not a usable private key (${key.message})`);
  const parsed = Array.isArray(key) ? key[0] : key;
  if (!parsed) throw fail('no key in it');
  return parsed;
}

