// Which inventory hosts would get the same `ssh -G` answer, so that one ssh
// process can serve them all (each costs ~6.5 ms CPU, per host per command).
// Not a re-implementation of ssh_config: it only recognises configs whose
// meaning is plain (no Match, tokens, canonicalisation, quoting) and answers
// "unsupported" for anything else, which leaves every host to its own `ssh -G`.
// Behaviours mirrored here were checked against OpenSSH 9.2 (see the tests).

import { readdirSync, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import ipaddr from 'ipaddr.js';

export interface ConfigBlock {
  /** Host patterns; undefined for lines outside any Host block, which apply to every host. */
  patterns?: string[];
  /** The block's directives except HostName, as `keyword value`, in file order. */
  lines: string[];
  /** Where each of `lines` was written, as `file:line`. */
  origins: string[];
  /** The block's first HostName. */
  hostName?: string;
  /** Where that HostName was written, as `file:line`. */
  hostNameAt?: string;
}

export type ConfigScan = { supported: true; blocks: ConfigBlock[] } | { supported: false; reason: string };

export interface ScanPaths {
  /** The passwd home: ssh reads `~/.ssh/config` from there. */
  home: string;
  /** `~` in Include paths, which ssh expands with glob(3)'s GLOB_TILDE: $HOME first. */
  includeHome: string;
  systemConfig: string;
}

export function defaultScanPaths(): ScanPaths {
  const home = userInfo().homedir;
  return { home, includeHome: process.env.HOME || home, systemConfig: '/etc/ssh/ssh_config' };
}

class Unsupported extends Error {}

// ssh's own limit is 16; stopping earlier only costs the optimisation.
const MAX_INCLUDE_DEPTH = 16;

/** The blocks of the files `ssh -G [-F configFile]` reads, or why they are not plain enough to share results. */
export function scanSshConfig(configFile?: string, paths: ScanPaths = defaultScanPaths()): ConfigScan {
  const blocks: ConfigBlock[] = [];
  const user: Origin = { base: join(paths.includeHome, '.ssh'), home: paths.includeHome };
  try {
    if (configFile) {
      // ssh treats `-F none` as "no files"; a missing -F file is ssh's error to report, per host.
      if (configFile.toLowerCase() !== 'none') readConfig(configFile, user, blocks, 0, true);
    } else {
      readConfig(join(paths.home, '.ssh', 'config'), user, blocks, 0, false);
      readConfig(paths.systemConfig, { base: dirname(paths.systemConfig) }, blocks, 0, false);
    }
  } catch (e) {
    return { supported: false, reason: (e as Error).message };
  }
  return { supported: true, blocks };
}

interface Origin {
  /** Where relative Include paths point: ~/.ssh for the user's files, /etc/ssh for the system's. */
  base: string;
  /** `~` in Include paths; ssh allows it only in the user's files. */
  home?: string;
}

function readConfig(file: string, origin: Origin, out: ConfigBlock[], depth: number, mustExist: boolean): void {
  if (depth >= MAX_INCLUDE_DEPTH) throw new Unsupported(`Include nested ${depth} deep at ${file}`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !mustExist) return; // ssh skips missing files and Include targets
    throw new Unsupported(`cannot read ${file}: ${code}`);
  }
  // Each file starts outside any Host block, and an Include does not change the includer's block.
  let block: ConfigBlock = { lines: [], origins: [] };
  out.push(block);
  let lineNo = 0;
  for (const raw of text.split('\n')) {
    lineNo++;
    const line = raw.replace(/^[ \t]+|[ \t\r\f]+$/g, '');
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z0-9]+)(?:[ \t]*=[ \t]*|[ \t]+)(.*)$/.exec(line);
    if (!m?.[1] || !m[2]) throw new Unsupported(`cannot read "${line}" in ${file}`);
    const keyword = m[1].toLowerCase();
    const value = m[2];
    // Tokens make a value depend on the host, so equal lines would no longer mean equal results.
    if (value.includes('%') || value.includes('${')) throw new Unsupported(`token in "${line}" in ${file}`);
    switch (keyword) {
      case 'match':
      case 'canonicalizehostname':
        throw new Unsupported(`${m[1]} in ${file}`);
      case 'host':
        block = { patterns: hostPatterns(value, file), lines: [], origins: [] };
        out.push(block);
        break;
      case 'include':
        if (block.patterns) throw new Unsupported(`Include inside a Host block in ${file}`);
        for (const target of includeTargets(value, origin, file)) readConfig(target, origin, out, depth + 1, false);
        block = { lines: [], origins: [] };
        out.push(block);
        break;
      case 'hostname':
        // IPv6 addresses pass here and are left to ssh by printedHostname.
        if (!/^[A-Za-z0-9_][A-Za-z0-9._:-]*$/.test(value)) throw new Unsupported(`HostName "${value}" in ${file}`);
        if (block.hostName === undefined) {
          block.hostName = value;
          block.hostNameAt = `${file}:${lineNo}`;
        }
        break;
      default:
        block.lines.push(`${keyword} ${value}`);
        block.origins.push(`${file}:${lineNo}`);
    }
  }
}

// Quotes, escapes, commas and trailing comments have their own rules in ssh; refuse rather than mimic them.
function hostPatterns(value: string, file: string): string[] {
  const patterns = value.split(/[ \t]+/);
  if (!patterns.every((p) => /^!?[A-Za-z0-9._*?-]+$/.test(p))) throw new Unsupported(`Host ${value} in ${file}`);
  return patterns;
}

// What glob(3) (flags GLOB_TILDE only) returns for ssh's Include arguments, in the simple cases.
function includeTargets(value: string, origin: Origin, file: string): string[] {
  const unsupported = (): never => {
    throw new Unsupported(`Include ${value} in ${file}`);
  };
  if (/["'\\#[\]{}]/.test(value)) unsupported();
  const { base, home } = origin;
  return value.split(/[ \t]+/).flatMap((arg) => {
    const tilde = arg === '~' || arg.startsWith('~/');
    if (arg.startsWith('~') && !(tilde && home)) unsupported(); // `~user`, or `~` where ssh rejects it
    const path = tilde && home ? join(home, arg.slice(1)) : isAbsolute(arg) ? arg : join(base, arg);
    const dir = dirname(path);
    const name = path.slice(dir.length + 1);
    if (/[*?]/.test(dir)) unsupported();
    if (!/[*?]/.test(name)) return [path];
    // A leading dot must be matched literally, and then `.`/`..` would count too: not worth mimicking.
    if (name.startsWith('.')) unsupported();
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const re = wildcard(name);
    return names
      .filter((n) => !n.startsWith('.') && re.test(n))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))) // glob sorts bytewise (LC_COLLATE=C in ssh)
      .map((n) => join(dir, n));
  });
}

// Compiled once: a fleet checks every alias against every Host line.
const compiled = new Map<string, RegExp>();

// `*` any run of characters, `?` one character, everything else literal: ssh's match_pattern and glob alike.
function wildcard(pattern: string, flags = ''): RegExp {
  let re = compiled.get(`${flags}/${pattern}`);
  if (!re) {
    const body = [...pattern].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^$()|[\]{}\\-]/g, '\\$&'))).join('');
    compiled.set(`${flags}/${pattern}`, (re = new RegExp(`^${body}$`, flags)));
  }
  return re;
}

/** Host block matching: some positive pattern matches and no negated one does. Case-sensitive, as in OpenSSH 9.2. */
export function hostMatches(patterns: string[], alias: string, ignoreCase = false): boolean {
  let positive = false;
  for (const p of patterns) {
    const negated = p.startsWith('!');
    const body = negated ? p.slice(1) : p;
    // Most Host lines name one host: a plain comparison, not a regex (a fleet checks every alias against every line).
    const hit = /[*?]/.test(body) ? wildcard(body, ignoreCase ? 'i' : '').test(alias) : ignoreCase ? body.toLowerCase() === alias.toLowerCase() : body === alias;
    if (!hit) continue;
    if (negated) return false;
    positive = true;
  }
  return positive;
}

export interface SshGShare {
  /** Aliases with equal signatures get equal `ssh -G` results but for `hostname`. */
  signature: string;
  /** The hostname `ssh -G` prints for this alias. */
  hostname: string;
  /**
   * Where the values `ssh -G` prints were written, as `file:line` per lowercase
   * keyword (every line for IdentityFile and the other accumulating keywords,
   * the first otherwise; `hostname` for HostName). A keyword absent here has
   * ssh's default.
   */
  origins: Map<string, string[]>;
}

// ssh keeps every value of these (in order); of any other keyword, the first.
const ACCUMULATED = new Set(['identityfile', 'certificatefile', 'localforward', 'remoteforward', 'dynamicforward', 'sendenv', 'setenv']);

/**
 * What decides `ssh -G alias` in a supported config: the directives that apply
 * to it, in order (ssh keeps the first value of each), except HostName, which
 * only changes the printed hostname. Undefined leaves the alias to its own `ssh -G`.
 */
export function sshGShare(blocks: ConfigBlock[], alias: string): SshGShare | undefined {
  // Outside this set ssh may read a user (`u@h`), a port, or reject the name.
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(alias)) return undefined;
  const lines: string[] = [];
  const origins = new Map<string, string[]>();
  let hostName: string | undefined;
  for (const b of blocks) {
    if (b.patterns) {
      const matched = hostMatches(b.patterns, alias);
      // Should an OpenSSH version match Host patterns regardless of case, the answer must not depend on it.
      if (matched !== hostMatches(b.patterns, alias, true)) return undefined;
      if (!matched) continue;
    }
    b.lines.forEach((line, i) => {
      lines.push(line);
      const keyword = line.slice(0, line.indexOf(' '));
      const seen = origins.get(keyword);
      if (!seen) origins.set(keyword, [b.origins[i]!]);
      else if (ACCUMULATED.has(keyword)) seen.push(b.origins[i]!);
    });
    if (hostName === undefined && b.hostName !== undefined) {
      hostName = b.hostName;
      origins.set('hostname', [b.hostNameAt!]);
    }
  }
  const hostname = printedHostname(hostName ?? alias);
  return hostname === undefined ? undefined : { signature: lines.join('\n'), hostname, origins };
}

/** Where the values of `ssh -G alias` were written (see {@link SshGShare.origins}); undefined when the scan cannot predict the alias. */
export function sshConfigOrigins(blocks: ConfigBlock[], alias: string): Map<string, string[]> | undefined {
  return sshGShare(blocks, alias)?.origins;
}

// ssh lowercases the host name, except that numeric addresses go through
// getaddrinfo (127.1 prints as 127.0.0.1) and IPv6 addresses may be rewritten.
// Only names whose printed form is certain are predicted.
function printedHostname(name: string): string | undefined {
  if (/^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(name)) return name;
  // An IPv6 address prints in its RFC 5952 form (checked against ssh -G): one already in it prints as given.
  if (name.includes(':')) return ipaddr.IPv6.isValid(name) && ipaddr.IPv6.parse(name).toRFC5952String() === name ? name : undefined;
  if (/^(0x[0-9a-f]*|\d+)(\.(0x[0-9a-f]*|\d+)){0,3}\.?$/i.test(name)) return undefined;
  return name.toLowerCase();
}

