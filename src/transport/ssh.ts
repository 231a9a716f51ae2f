// The SSH transport: one shared ssh2 connection per bastion, every target
// reached through a forwarded channel on it (see PRIOR-ART.md: forwarded
// channels do not count against MaxSessions, and one connection per bastion
// keeps fleetfw far from MaxStartups and PerSourcePenalties).

import type { Duplex } from 'node:stream';
import ssh2, { type ClientChannel, type ConnectConfig, type ParsedKey } from 'ssh2';
import { FleetError } from '../errors.js';
import { loadKnownHosts, recordHostKey } from './known-hosts-file.js';
import { listAgentKeys, loadPrivateKey, planIdentities, readPublicBlob, type IdentityPlan, type IdentitySources } from './identities.js';
import { checkHostKeyInFiles, fingerprintSha256, formatHostName, knownKeyTypes, readKeyType, type FileKnownKey, type HostKey } from './known-hosts.js';
import { unknownKeyAdvice } from './host-key-advice.js';
import { changedKeyMessage, formatHostKeyAddition, hostKeyAlgorithmsPreferring, type HostKeyAddition } from './host-key-policy.js';
import { createSession, endClient, markClosed } from './session.js';
import { classify } from './ssh-errors.js';
import { TransportError, type HostSession, type OpenOptions, type Transport, type TransportHop, type TransportReason } from './types.js';

// The interface and its error live in types.ts; re-exported for the transport's users.
export * from './types.js';
export { formatHostKeyAddition, hostKeyAlgorithmsPreferring, type HostKeyAddition } from './host-key-policy.js';

// ssh2 is CommonJS: Node's ESM loader does not expose `Client` as a named export.
const { Client } = ssh2;
type Client = InstanceType<typeof Client>;

export interface SshEndpoint {
  name: string;
  address: string;
  port: number;
  user: string;
  /** One private key file (shorthand for `identityFiles: [file]`). */
  identityFile?: string;
  /** Private key files, tried in order (IdentityFile); wins over identityFile. */
  identityFiles?: string[];
  /** IdentitiesOnly: offer no ssh-agent key but those of the identity files. */
  identitiesOnly?: boolean;
  /** This host's agent socket; null: no agent (IdentityAgent none); undefined: TransportOptions.agentSocket or SSH_AUTH_SOCK. */
  agentSocket?: string | null;
  /** Why agentSocket is null, for messages (e.g. `IdentityAgent none, ssh config FILE:LINE`). */
  noAgentReason?: string;
  passphrase?: string;
  /** Name of the bastion endpoint; undefined = this IS a bastion, reached directly. */
  bastion?: string;
  /** This host's known_hosts files (UserKnownHostsFile): all are read, new keys go to the first. Default: TransportOptions.knownHostsFile. */
  knownHostsFiles?: string[];
  /** Record a key never seen for this host (StrictHostKeyChecking accept-new). Default: TransportOptions.acceptNewHostKeys. */
  acceptNewHostKeys?: boolean;
  /** `HashKnownHosts yes` for this host: its key is recorded hashed even in a plain known_hosts. */
  hashKnownHosts?: boolean;
  /** ConnectTimeout: the handshake (and, for a target, the bastion's channel to it) within this. Default: TransportOptions.readyTimeoutMs. */
  readyTimeoutMs?: number;
}

/**
 * Endpoints given lazily: called once per host name on first use; a rejection
 * (a TransportError with reason `config`) refuses that host before anything is sent.
 */
export type EndpointResolver = (name: string) => Promise<SshEndpoint>;

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

/** Used where neither the endpoint nor the options say otherwise. */
export const SSH_DEFAULTS = {
  readyTimeoutMs: 15_000,
  keepaliveIntervalMs: 10_000,
  connectRetries: 3,
  forwardTimeoutMs: 10_000,
};
const backoffBaseMs = 500;

export function createSshTransport(endpoints: SshEndpoint[] | EndpointResolver, opts: TransportOptions): Transport {
  const cfg = {
    ...opts,
    readyTimeoutMs: opts.readyTimeoutMs ?? SSH_DEFAULTS.readyTimeoutMs,
    keepaliveIntervalMs: opts.keepaliveIntervalMs ?? SSH_DEFAULTS.keepaliveIntervalMs,
    connectRetries: opts.connectRetries ?? SSH_DEFAULTS.connectRetries,
    forwardTimeoutMs: opts.forwardTimeoutMs ?? SSH_DEFAULTS.forwardTimeoutMs,
  };
  const resolved = new Map<string, Promise<SshEndpoint>>();
  let resolve: EndpointResolver;
  if (Array.isArray(endpoints)) {
    const byName = new Map(endpoints.map((e) => [e.name, e]));
    for (const e of endpoints) checkBastion(e, byName.get(e.bastion ?? ''));
    resolve = async (name) => {
      const e = byName.get(name);
      if (!e) throw new FleetError(`unknown host ${name}: not in the transport's endpoints`);
      return e;
    };
  } else {
    resolve = async (name) => {
      const e = await endpoints(name);
      if (e.bastion !== undefined) checkBastion(e, await endpoints(e.bastion));
      return e;
    };
  }
  const announce = cfg.onHostKeyAdded ?? ((a: HostKeyAddition) => void process.stderr.write(`${formatHostKeyAddition(a)}\n`));
  const shared = new Map<string, Promise<Client>>();
  const live = new Set<Client>();
  const keyCache = new Map<string, Promise<ParsedKey | string>>();
  const blobCache = new Map<string, Promise<Buffer | undefined>>();
  const agentCache = new Map<string, Promise<ParsedKey[] | string>>();
  let closed = false;

  function endpoint(name: string): Promise<SshEndpoint> {
    let p = resolved.get(name);
    if (!p) resolved.set(name, (p = resolve(name)));
    return p;
  }

  const once = <T>(cache: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> => {
    let p = cache.get(key);
    if (!p) cache.set(key, (p = make()));
    return p;
  };
  // Decrypting a key (bcrypt KDF) is slow and may prompt: once per file. An agent is listed once per run.
  const sources: IdentitySources = {
    loadKey: (file) => once(keyCache, file, () => loadPrivateKey(file, undefined, cfg.askPassphrase)),
    publicBlob: (file) => once(blobCache, file, () => readPublicBlob(file)),
    agentKeys: (socket) => once(agentCache, socket, () => listAgentKeys(socket)),
  };

  async function identities(ep: SshEndpoint, hop: TransportHop): Promise<IdentityPlan> {
    const agent = ep.agentSocket === null ? undefined : (ep.agentSocket ?? cfg.agentSocket ?? (process.env.SSH_AUTH_SOCK || undefined));
    const files = ep.identityFiles ?? (ep.identityFile ? [ep.identityFile] : []);
    const plan = await planIdentities(
      {
        user: ep.user,
        files,
        identitiesOnly: ep.identitiesOnly === true,
        ...(agent ? { agent } : {}),
        ...(ep.agentSocket === null ? { noAgentReason: ep.noAgentReason ?? 'IdentityAgent none' } : {}),
      },
      ep.passphrase === undefined ? sources : { ...sources, loadKey: (file) => loadPrivateKey(file, ep.passphrase) },
    );
    if (plan.methods.length === 0) {
      const why = plan.skipped.length > 0 ? plan.skipped.join('; ') : 'no identity file';
      const agentNote = agent || ep.agentSocket === null ? '' : '; no ssh-agent (SSH_AUTH_SOCK)';
      throw new TransportError(`${ep.name}: ${why}${agentNote}: nothing left to authenticate with`, ep.name, hop, 'auth');
    }
    return plan;
  }

  /** `dial` opens the forwarded stream for a target; it runs last so no stream waits on local file reads. */
  async function connect(ep: SshEndpoint, hop: TransportHop, dial?: () => Promise<Duplex>): Promise<Client> {
    const knownFiles = ep.knownHostsFiles && ep.knownHostsFiles.length > 0 ? ep.knownHostsFiles : [cfg.knownHostsFile];
    const recordTo = knownFiles[0]!;
    const acceptNew = ep.acceptNewHostKeys ?? cfg.acceptNewHostKeys;
    const readyTimeoutMs = ep.readyTimeoutMs ?? cfg.readyTimeoutMs;
    const [auth, known] = await Promise.all([
      identities(ep, hop),
      Promise.all(knownFiles.map(async (file) => ({ file, entries: (await loadKnownHosts(file)).entries }))).catch((err: Error) => {
        throw new TransportError(err.message, ep.name, hop, 'hostkey-unknown');
      }),
    ]);
    const names = [...new Set([formatHostName(ep.name, ep.port), formatHostName(ep.address, ep.port)])];
    const label = hop === 'target' ? `${ep.name} (${ep.address}, via bastion ${ep.bastion})` : `${ep.name} (${ep.address})`;
    // A host behind a bastion has its key fetched through it (the unknown-key advice).
    const bastionEp = ep.bastion === undefined ? undefined : await endpoint(ep.bastion);
    const jumpHost = bastionEp && { ...bastionEp, identityFile: bastionEp.identityFile ?? bastionEp.identityFiles?.[0] };
    const algorithms = hostKeyAlgorithmsPreferring([...new Set(known.flatMap((f) => knownKeyTypes(f.entries, names)))]);
    const fileList = knownFiles.join(', ');
    let refusal: TransportError | undefined;

    // Runs after key exchange, before anything is sent: a refused key means no auth attempt.
    const hostVerifier = (blob: Buffer, verify: (ok: boolean) => void): void => {
      const key: HostKey = { type: readKeyType(blob) ?? 'unknown', blob };
      const fp = fingerprintSha256(blob);
      const refuse = (message: string, reason: TransportReason): void => {
        refusal = new TransportError(message, ep.name, hop, reason);
        verify(false);
      };
      const changed = (knownKeys: FileKnownKey[]): void => refuse(changedKeyMessage(ep, names, key, knownKeys), 'hostkey-changed');
      const revoked = (file: string, line: number): void =>
        refuse(`the ${key.type} host key ${fp} of ${label} is marked @revoked in ${file} line ${line}`, 'hostkey-changed');
      const check = checkHostKeyInFiles(known, names, key);
      switch (check.status) {
        case 'match':
          return verify(true);
        case 'revoked':
          return revoked(check.file, check.line);
        case 'changed':
          return changed(check.known);
        case 'unknown':
          if (!acceptNew) {
            return refuse(
              `unknown host key for ${label}: ${key.type} ${fp} (not in ${fileList}). To trust it, check the fingerprint and rerun with ` +
                `--accept-new-host-keys (or StrictHostKeyChecking accept-new for this host), ${unknownKeyAdvice(ep, recordTo, jumpHost)}`,
              'hostkey-unknown',
            );
          }
          recordHostKey(recordTo, names, key, { hash: ep.hashKnownHosts === true }).then(
            (outcome) => {
              switch (outcome.status) {
                case 'added':
                  try {
                    announce({ host: ep.name, address: ep.address, port: ep.port, type: key.type, fingerprint: fp, file: recordTo, hashed: outcome.hashed });
                  } catch (err) {
                    // Fail closed: a key trusted without a word is what accept-new must never do.
                    return refuse(`recorded the host key of ${label} (${key.type} ${fp}) but could not report it: ${(err as Error).message}`, 'hostkey-unknown');
                  }
                  return verify(true);
                case 'match':
                  return verify(true); // another connection recorded it just now
                case 'revoked':
                  return revoked(recordTo, outcome.line);
                case 'changed':
                  return changed(outcome.known.map((k) => ({ ...k, file: recordTo })));
              }
            },
            (err: Error) => refuse(`cannot record the host key of ${label}: ${err.message}`, 'hostkey-unknown'),
          );
          return;
      }
    };

    const sock = dial ? await dial() : undefined;
    const client = new Client();
    const config: ConnectConfig = {
      host: ep.address,
      port: ep.port,
      username: ep.user,
      readyTimeout: readyTimeoutMs,
      keepaliveInterval: cfg.keepaliveIntervalMs,
      keepaliveCountMax: 3,
      hostVerifier,
      ...(algorithms ? { algorithms } : {}),
      ...(sock ? { sock: sock as ConnectConfig['sock'] } : {}),
      // Explicit methods, in OpenSSH's order (identities.ts): parsed (decrypted once) keys are used as is.
      authHandler: auth.methods,
    };

    return new Promise<Client>((resolve, reject) => {
      const errors: (Error & { level?: string })[] = [];
      let settled = false;
      // Insurance: ssh2 should close the socket after every fatal error, but never hang on it.
      const guard = setTimeout(() => fail(), readyTimeoutMs + 5_000);
      const fail = (): void => {
        if (settled) return;
        settled = true;
        clearTimeout(guard);
        client.destroy();
        reject(refusal ?? classify(ep, hop, label, errors, auth));
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
    // ConnectTimeout bounds the bastion's TCP connection to the target too.
    const timeoutMs = ep.readyTimeoutMs ?? cfg.forwardTimeoutMs;
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        reject(
          new TransportError(
            `${ep.name}: bastion ${b.name} could not open a connection to ${ep.address}:${ep.port} within ${timeoutMs} ms`,
            ep.name,
            'target',
            'timeout',
            true,
          ),
        );
      }, timeoutMs);
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
    const b = await endpoint(ep.bastion);
    return connect(ep, 'target', async () => forward(await bastionConnection(b), b, ep));
  }

  async function open(host: string, o: OpenOptions = {}): Promise<HostSession> {
    const ep = await endpoint(host);
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

function checkBastion(e: SshEndpoint, b: SshEndpoint | undefined): void {
  if (e.bastion === undefined) return;
  if (!b) throw new FleetError(`${e.name}: bastion ${e.bastion} is not a known endpoint`);
  if (b.bastion !== undefined) throw new FleetError(`${e.name}: bastion ${b.name} is itself behind a bastion`);
}
