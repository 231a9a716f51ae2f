// OpenSSH client settings for a host alias, where fleetfw and the inventory are
// silent. `ssh -G` gives OpenSSH's own resolution (Match, Include, defaults),
// which no re-implementation of ssh_config would get exactly right.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pLimit from 'p-limit';
import { FleetError } from '../errors.js';
import { scanSshConfig, sshGShare } from './ssh-config-scan.js';

export interface SshOptions {
  user: string;
  port: number;
  /** Private key files, in the order ssh would try them. */
  identityFiles: string[];
  /** Agent socket from IdentityAgent; undefined = SSH_AUTH_SOCK; `none` = do not use an agent. */
  identityAgent?: string;
  /** The first UserKnownHostsFile. */
  knownHostsFile: string;
  /** HashKnownHosts: keys recorded for this host are written hashed. */
  hashKnownHosts: boolean;
  /** HostName from ssh config (informational: fleetfw connects to the inventory's address). */
  hostname: string;
  connectTimeoutMs?: number;
  serverAliveIntervalMs?: number;
}

export interface ResolveSshOptionsOptions {
  /** `ssh -F`: an alternative ssh config file. */
  configFile?: string;
  /** The ssh binary (tests); default `ssh` from PATH. */
  sshCommand?: string;
}

const execFileAsync = promisify(execFile);

/**
 * Settings for `alias` (the inventory host name). `explicit` holds what fleetfw
 * already knows, a fleetfw option layered over the inventory; its defined
 * fields win over ssh config, which wins over built-in defaults.
 */
export async function resolveSshOptions(
  alias: string,
  explicit: Partial<SshOptions>,
  opts: ResolveSshOptionsOptions = {},
): Promise<SshOptions> {
  return layer((await readSshConfig(alias, opts)) ?? defaultSshOptions(alias), explicit);
}

/**
 * resolveSshOptions for many aliases, with one `ssh -G` per set of aliases that
 * ssh-config-scan.ts shows would get the same answer but for the hostname (a
 * lab-like config: one run for the whole fleet), and one per alias otherwise.
 */
export async function resolveSshOptionsMany(
  aliases: string[],
  explicitFor: (alias: string, index: number) => Partial<SshOptions>,
  opts: ResolveSshOptionsOptions = {},
): Promise<SshOptions[]> {
  const scan = scanSshConfig(opts.configFile);
  const limit = pLimit(8);
  const runs = new Map<string, Promise<SshOptions | undefined>>();
  return Promise.all(
    aliases.map(async (alias, i) => {
      const share = scan.supported ? sshGShare(scan.blocks, alias) : undefined;
      let fromConfig: SshOptions | undefined;
      if (share) {
        // The first alias of a signature starts the run (synchronously, before any await) and the rest wait for it.
        let run = runs.get(share.signature);
        if (!run) runs.set(share.signature, (run = limit(() => readSshConfig(alias, opts))));
        const o = await run;
        fromConfig = o && { ...o, identityFiles: [...o.identityFiles], hostname: share.hostname };
      } else {
        fromConfig = await limit(() => readSshConfig(alias, opts));
      }
      return layer(fromConfig ?? defaultSshOptions(alias), explicitFor(alias, i));
    }),
  );
}

// The defined fields of `explicit` win.
function layer(fromConfig: SshOptions, explicit: Partial<SshOptions>): SshOptions {
  const chosen = Object.fromEntries(Object.entries(explicit).filter(([, v]) => v !== undefined));
  return { ...fromConfig, ...chosen };
}

/** Built-in defaults, used when no `ssh` binary is installed. */
export function defaultSshOptions(alias: string): SshOptions {
  const home = homedir();
  return {
    user: userInfo().username,
    port: 22,
    identityFiles: ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((f) => join(home, '.ssh', f)).filter((f) => existsSync(f)),
    knownHostsFile: join(home, '.ssh', 'known_hosts'),
    hashKnownHosts: false,
    hostname: alias,
  };
}

/** Parses `ssh -G` output; identity files are expanded and kept only if they exist. */
export function parseSshG(text: string, fileExists: (path: string) => boolean = existsSync): SshOptions {
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
  const agent = rawAgent === undefined || rawAgent === 'none' ? rawAgent : expandAgent(expand(rawAgent)) || undefined;
  const seconds = (k: string): number | undefined => {
    const n = Number(one(k));
    return Number.isFinite(n) && n > 0 ? n * 1000 : undefined; // `none` and 0 mean unset
  };
  const connectTimeoutMs = seconds('connecttimeout');
  const serverAliveIntervalMs = seconds('serveraliveinterval');
  const knownHosts = one('userknownhostsfile')?.split(/\s+/)[0];
  return {
    user,
    port,
    identityFiles: (values.get('identityfile') ?? []).map(expand).filter((f) => fileExists(f)),
    ...(agent === undefined ? {} : { identityAgent: agent }),
    knownHostsFile: knownHosts ? expand(knownHosts) : join(homedir(), '.ssh', 'known_hosts'),
    hashKnownHosts: one('hashknownhosts') === 'yes',
    hostname,
    ...(connectTimeoutMs ? { connectTimeoutMs } : {}),
    ...(serverAliveIntervalMs ? { serverAliveIntervalMs } : {}),
  };
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

// IdentityAgent may name an environment variable instead of a path.
function expandAgent(agent: string): string {
  if (agent === 'SSH_AUTH_SOCK' || agent.startsWith('$')) return process.env[agent.replace(/^\$/, '')] ?? '';
  return agent;
}

async function readSshConfig(alias: string, opts: ResolveSshOptionsOptions): Promise<SshOptions | undefined> {
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
