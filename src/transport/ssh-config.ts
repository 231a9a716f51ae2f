// What OpenSSH's client config says for one host alias. `ssh -G` gives
// OpenSSH's own resolution (Match, Include, Host patterns, defaults), which no
// re-implementation of ssh_config would get exactly right; ssh-config-scan.ts
// only says where a value was written and which aliases get the same answer.
// How these values are layered under the inventory and fleetfw's flags is
// ssh-settings.ts.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pLimit from 'p-limit';
import { FleetError } from '../errors.js';
import { scanSshConfig, sshGShare, type ConfigScan } from './ssh-config-scan.js';

/** StrictHostKeyChecking as written (`ssh -G` prints yes as true and no/off as false). */
export type StrictHostKeyChecking = 'yes' | 'accept-new' | 'no' | 'ask';

/** The options fleetfw honours, as `ssh -G` resolved them for one alias. */
export interface SshConfigValues {
  /** HostName (lowercased by ssh), or the alias itself when none is set. */
  hostname: string;
  user: string;
  port: number;
  /** Every IdentityFile, in order, expanded (ssh's default list when none is set). */
  identityFiles: string[];
  identitiesOnly: boolean;
  /** IdentityAgent: a socket path, `none`, or undefined when not set (then SSH_AUTH_SOCK). */
  identityAgent?: string;
  /** Every UserKnownHostsFile: all are read, the first gets additions. */
  knownHostsFiles: string[];
  /** HashKnownHosts: keys recorded for this host are written hashed. */
  hashKnownHosts: boolean;
  strictHostKeyChecking: StrictHostKeyChecking;
  connectTimeoutMs?: number;
  /** ProxyJump as written (undefined for none). */
  proxyJump?: string;
  /** ProxyCommand as written (undefined for none). */
  proxyCommand?: string;
  serverAliveIntervalMs?: number;
}

/** One host's ssh config, with where each value came from when that can be told. */
export interface SshConfigView {
  alias: string;
  values: SshConfigValues;
  /**
   * `file:line`s per lowercase `ssh -G` keyword, for configs ssh-config-scan.ts
   * reads exactly; a keyword missing from the map has ssh's default. Undefined:
   * `ssh -G` alone knows (Match, tokens...), or no ssh is installed (`builtIn`).
   */
  origins?: Map<string, string[]>;
  /** No `ssh` binary: built-in defaults, no config read. */
  builtIn?: boolean;
}

export interface SshConfigReaderOptions {
  /** `ssh -F`: an alternative ssh config file. */
  configFile?: string;
  /** The ssh binary (tests); default `ssh` from PATH. */
  sshCommand?: string;
  /** `ssh -G` processes at once (default 4: each is ~6 ms of CPU). */
  concurrency?: number;
}

export interface SshConfigReader {
  read(alias: string): Promise<SshConfigView>;
  /** `ssh -G` processes started so far. */
  runs(): number;
}

const execFileAsync = promisify(execFile);

/**
 * Reads aliases on demand, each once: one `ssh -G` per set of aliases that
 * ssh-config-scan.ts shows get the same answer but for the hostname (a lab-like
 * config: one run for the whole fleet), one per alias otherwise, at most
 * `concurrency` at a time.
 */
export function createSshConfigReader(opts: SshConfigReaderOptions = {}): SshConfigReader {
  const scan: ConfigScan = scanSshConfig(opts.configFile);
  const limit = pLimit(opts.concurrency ?? 4);
  const shared = new Map<string, Promise<SshConfigValues | undefined>>();
  const byAlias = new Map<string, Promise<SshConfigView>>();
  let runs = 0;
  const run = (alias: string): Promise<SshConfigValues | undefined> =>
    limit(() => {
      runs++;
      return runSshG(alias, opts);
    });
  async function read(alias: string): Promise<SshConfigView> {
    const share = scan.supported ? sshGShare(scan.blocks, alias) : undefined;
    let values: SshConfigValues | undefined;
    if (share) {
      // The first alias of a signature starts the run (synchronously, before any await) and the rest wait for it.
      let p = shared.get(share.signature);
      if (!p) shared.set(share.signature, (p = run(alias)));
      const o = await p;
      values = o && { ...o, identityFiles: [...o.identityFiles], knownHostsFiles: [...o.knownHostsFiles], hostname: share.hostname };
    } else {
      values = await run(alias);
    }
    if (!values) return { alias, values: defaultSshConfig(alias), builtIn: true };
    return { alias, values, ...(share ? { origins: share.origins } : {}) };
  }
  return {
    read(alias) {
      let p = byAlias.get(alias);
      if (!p) byAlias.set(alias, (p = read(alias)));
      return p;
    },
    runs: () => runs,
  };
}

/** One alias, one `ssh -G` (with where values came from when the scan can tell). */
export function readSshConfig(alias: string, opts: SshConfigReaderOptions = {}): Promise<SshConfigView> {
  return createSshConfigReader(opts).read(alias);
}

/** Many aliases through one reader (shared runs), in order. */
export function readSshConfigMany(aliases: string[], opts: SshConfigReaderOptions = {}): Promise<SshConfigView[]> {
  const reader = createSshConfigReader(opts);
  return Promise.all(aliases.map((a) => reader.read(a)));
}

/** Built-in defaults, used when no `ssh` binary is installed. */
export function defaultSshConfig(alias: string): SshConfigValues {
  const home = homedir();
  return {
    hostname: alias,
    user: userInfo().username,
    port: 22,
    identityFiles: ['id_rsa', 'id_ecdsa', 'id_ed25519'].map((f) => join(home, '.ssh', f)),
    identitiesOnly: false,
    knownHostsFiles: [join(home, '.ssh', 'known_hosts'), join(home, '.ssh', 'known_hosts2')],
    hashKnownHosts: false,
    strictHostKeyChecking: 'ask',
  };
}

/** Parses `ssh -G` output (identity files expanded as ssh would, not checked). */
export function parseSshG(text: string): SshConfigValues {
  const values = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(.*)$/.exec(line.trim());
    if (!m?.[1] || m[2] === undefined) continue;
    const key = m[1].toLowerCase();
    values.set(key, [...(values.get(key) ?? []), m[2]]);
  }
  const one = (k: string): string | undefined => values.get(k)?.[0];
  const hostname = one('hostname') ?? '';
  const user = one('user') ?? userInfo().username;
  const port = Number(one('port') ?? 22);
  const expand = (s: string): string => expandSshTokens(s, { hostname, user, port });
  const rawAgent = one('identityagent');
  const agent = rawAgent === undefined || rawAgent === 'none' ? rawAgent : expandAgent(expand(rawAgent));
  const seconds = (k: string): number | undefined => {
    const n = Number(one(k));
    return Number.isFinite(n) && n > 0 ? n * 1000 : undefined; // `none` and 0 mean unset
  };
  const connectTimeoutMs = seconds('connecttimeout');
  const serverAliveIntervalMs = seconds('serveraliveinterval');
  const knownHosts = (one('userknownhostsfile') ?? '').split(/\s+/).filter(Boolean);
  const proxyJump = one('proxyjump');
  const proxyCommand = one('proxycommand');
  return {
    hostname,
    user,
    port,
    identityFiles: (values.get('identityfile') ?? []).map(expand),
    identitiesOnly: one('identitiesonly') === 'yes',
    ...(agent === undefined ? {} : { identityAgent: agent }),
    knownHostsFiles: knownHosts.length > 0 ? knownHosts.map(expand) : [join(homedir(), '.ssh', 'known_hosts')],
    hashKnownHosts: one('hashknownhosts') === 'yes',
    strictHostKeyChecking: strictOf(one('stricthostkeychecking')),
    ...(connectTimeoutMs ? { connectTimeoutMs } : {}),
    ...(proxyJump && proxyJump !== 'none' ? { proxyJump } : {}),
    ...(proxyCommand && proxyCommand !== 'none' ? { proxyCommand } : {}),
    ...(serverAliveIntervalMs ? { serverAliveIntervalMs } : {}),
  };
}

function strictOf(printed: string | undefined): StrictHostKeyChecking {
  switch (printed?.toLowerCase()) {
    case 'true':
    case 'yes':
      return 'yes';
    case 'false':
    case 'no':
    case 'off':
      return 'no';
    case 'accept-new':
      return 'accept-new';
    default:
      return 'ask';
  }
}

/** `~`, `%d %u %h %r %p %%` and `${VAR}` as ssh_config TOKENS describes them (the ones that matter here). */
export function expandSshTokens(s: string, ctx: { hostname: string; user: string; port: number }): string {
  const home = homedir();
  const tilded = s === '~' ? home : s.startsWith('~/') ? join(home, s.slice(2)) : s;
  return tilded
    .replace(/%([%dhurp])/g, (_, t: string) => {
      switch (t) {
        case 'd':
          return home;
        case 'h':
          return ctx.hostname;
        case 'r':
          return ctx.user;
        case 'u':
          return userInfo().username;
        case 'p':
          return String(ctx.port);
        default:
          return '%';
      }
    })
    .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, v: string) => process.env[v] ?? '');
}

// IdentityAgent may name an environment variable instead of a path; an unset one means no agent.
function expandAgent(agent: string): string {
  if (agent === 'SSH_AUTH_SOCK' || agent.startsWith('$')) return process.env[agent.replace(/^\$/, '')] || 'none';
  return agent;
}

/** Whether a default identity file exists (ssh skips missing defaults silently). */
export function existingFiles(files: string[], exists: (f: string) => boolean = existsSync): string[] {
  return files.filter((f) => exists(f));
}

async function runSshG(alias: string, opts: SshConfigReaderOptions): Promise<SshConfigValues | undefined> {
  const args = ['-G', ...(opts.configFile ? ['-F', opts.configFile] : []), '--', alias];
  try {
    const { stdout } = await execFileAsync(opts.sshCommand ?? 'ssh', args, { timeout: 10_000 });
    return parseSshG(stdout);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') return undefined;
    throw new FleetError(`ssh -G ${alias} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}
