// Each host's SSH settings, and where each came from: a flag (or its
// environment variable), else the inventory, else the host's own OpenSSH config
// as `ssh -G` resolves it, else defaults. What an ssh config asks for that
// fleetfw cannot do (a ProxyJump or ProxyCommand off the bastion path, a
// HostName that is not the host) refuses that host, before anything is sent to
// it, with the config line that says so.

import { lookup as dnsLookup } from 'node:dns/promises';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { FleetError } from '../errors.js';
import { SSH_DEFAULTS, type SshEndpoint } from './ssh.js';
import type { SshConfigReader, SshConfigView, StrictHostKeyChecking } from './ssh-config.js';
import { TransportError } from './types.js';

/** A value and where it came from: `--identity`, `inventory`, `ssh config FILE:LINE`, `ssh default`... */
export interface Sourced<T> {
  value: T;
  source: string;
}

export interface SshHostInput {
  name: string;
  /** The address fleetfw dials: a bastion's public one, a target's private one (reached through its bastion). */
  address: string;
  /** What that address is, e.g. `private address`. */
  addressLabel: string;
  /** Every inventory address of the host, with its label. */
  addresses: Array<{ label: string; address: string }>;
  /** The bastion's name, for a host reached through one; undefined for a bastion. */
  bastion?: string;
  /** The inventory's ssh settings (host over defaults); undefined = not set. */
  inventory: { user?: string; port?: number; identityFile?: string };
}

export interface SshFleetInput {
  /** `--identity` or FLEETFW_IDENTITY, with which one it was as the source. */
  identity?: Sourced<string>;
  /** `--known-hosts` or FLEETFW_KNOWN_HOSTS. */
  knownHosts?: Sourced<string>;
  /** `--accept-new-host-keys`. */
  acceptNewHostKeys?: boolean;
  /** The inventory's settings.known_hosts. */
  inventoryKnownHosts?: string;
  /** SSH_AUTH_SOCK. */
  agentSocket?: string;
}

/** `known-only`: a host with no known key is refused; `accept-new`: its first key is recorded. A changed key is always refused. */
export type HostKeyPolicy = 'known-only' | 'accept-new';

export interface EffectiveSsh {
  name: string;
  address: Sourced<string>;
  /** The bastion the host is reached through. */
  via?: string;
  user: Sourced<string>;
  port: Sourced<number>;
  identityFiles: Sourced<string[]>;
  identitiesOnly: Sourced<boolean>;
  /** The agent socket; null: no agent. */
  agent: Sourced<string | null>;
  knownHostsFiles: Sourced<string[]>;
  hostKeys: Sourced<HostKeyPolicy>;
  connectTimeoutMs: Sourced<number>;
  proxyJump?: Sourced<string>;
  hashKnownHosts: boolean;
  /** `StrictHostKeyChecking no` asked for more than fleetfw does (where it was said). */
  weakerHostKeysAsked?: string;
  /** Why fleetfw refuses this host: nothing is sent to it. */
  problems: string[];
}

/** What the HostName of a host's ssh config resolves to, when it is a name (not the alias, not an address). */
export type HostNameLookup = { addresses: string[] } | { error: string };

export function expandHome(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? join(homedir(), p.slice(2)) : p;
}

/** Where a value of the ssh config came from (keyword as `ssh -G` prints it). */
export function configSource(view: SshConfigView, keyword: string): string {
  if (view.builtIn) return 'built-in default (no ssh installed)';
  if (!view.origins) return 'ssh config';
  const at = view.origins.get(keyword);
  return at ? `ssh config ${at.join(', ')}` : 'ssh default';
}

const DEFAULT_IDENTITY_NAMES = ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_xmss', 'id_dsa'];

/** ssh's own list when no IdentityFile is set (`ssh -G` prints it): only the files that exist count, as in ssh. */
function isDefaultIdentityList(files: string[]): boolean {
  const dir = join(homedir(), '.ssh');
  return files.length > 0 && files.every((f) => f.startsWith(`${dir}/`) && DEFAULT_IDENTITY_NAMES.includes(f.slice(dir.length + 1)));
}

/** The HostName a host's ssh config gives that needs a DNS lookup to compare with the inventory, if any. */
export function hostNameToLookUp(host: SshHostInput, view: SshConfigView): string | undefined {
  const hn = view.values.hostname;
  if (view.builtIn || hn === '' || hn === host.name.toLowerCase() || isIP(stripBrackets(hn))) return undefined;
  return hn;
}

/**
 * One host's settings. `bastion` (for a host reached through one) is the
 * bastion's own result: a ProxyJump is compared with it. `lookup` is what
 * {@link hostNameToLookUp}'s name resolved to.
 */
export function effectiveSsh(
  host: SshHostInput,
  view: SshConfigView,
  fleet: SshFleetInput,
  opts: { bastion?: { host: SshHostInput; view: SshConfigView; effective: EffectiveSsh }; lookup?: HostNameLookup } = {},
): EffectiveSsh {
  const c = view.values;
  const problems: string[] = [];
  const from = (keyword: string): string => configSource(view, keyword);

  const user: Sourced<string> = host.inventory.user !== undefined ? { value: host.inventory.user, source: 'inventory ssh.user' } : { value: c.user, source: from('user') };
  const port: Sourced<number> = host.inventory.port !== undefined ? { value: host.inventory.port, source: 'inventory ssh.port' } : { value: c.port, source: from('port') };

  let identityFiles: Sourced<string[]>;
  if (fleet.identity) identityFiles = { value: [expandHome(fleet.identity.value)], source: fleet.identity.source };
  else if (host.inventory.identityFile !== undefined) identityFiles = { value: [expandHome(host.inventory.identityFile)], source: 'inventory ssh.identity' };
  else if (view.builtIn || isDefaultIdentityList(c.identityFiles)) identityFiles = { value: c.identityFiles.filter((f) => existsSync(f)), source: view.builtIn ? from('identityfile') : 'ssh default, those that exist' };
  else identityFiles = { value: c.identityFiles, source: from('identityfile') };

  const agent: Sourced<string | null> =
    c.identityAgent !== undefined
      ? { value: c.identityAgent === 'none' ? null : c.identityAgent, source: from('identityagent') }
      : fleet.agentSocket
        ? { value: fleet.agentSocket, source: 'SSH_AUTH_SOCK' }
        : { value: null, source: 'SSH_AUTH_SOCK not set' };

  const knownHostsFiles: Sourced<string[]> = fleet.knownHosts
    ? { value: [expandHome(fleet.knownHosts.value)], source: fleet.knownHosts.source }
    : fleet.inventoryKnownHosts !== undefined
      ? { value: [expandHome(fleet.inventoryKnownHosts)], source: 'inventory settings.known_hosts' }
      : { value: c.knownHostsFiles, source: from('userknownhostsfile') };

  let hostKeys: Sourced<HostKeyPolicy>;
  let weakerHostKeysAsked: string | undefined;
  if (fleet.acceptNewHostKeys) {
    hostKeys = { value: 'accept-new', source: '--accept-new-host-keys' };
  } else {
    const said = (s: StrictHostKeyChecking): string => `StrictHostKeyChecking ${s}, ${from('stricthostkeychecking')}`;
    switch (c.strictHostKeyChecking) {
      case 'yes':
        hostKeys = { value: 'known-only', source: said('yes') };
        break;
      case 'accept-new':
        hostKeys = { value: 'accept-new', source: said('accept-new') };
        break;
      case 'no':
        // Only the part of `no` that accept-new also does: fleetfw never accepts a changed key.
        hostKeys = { value: 'accept-new', source: `${said('no')}: as accept-new, a changed key is still refused` };
        weakerHostKeysAsked = from('stricthostkeychecking');
        break;
      default:
        hostKeys = { value: 'known-only', source: `${said('ask')}: fleetfw never asks, so as yes` };
    }
  }

  const connectTimeoutMs: Sourced<number> =
    c.connectTimeoutMs !== undefined ? { value: c.connectTimeoutMs, source: from('connecttimeout') } : { value: SSH_DEFAULTS.readyTimeoutMs, source: 'fleetfw default' };

  const address = checkHostName(host, view, opts.lookup, problems);

  let proxyJump: Sourced<string> | undefined;
  if (c.proxyJump !== undefined) {
    proxyJump = { value: c.proxyJump, source: from('proxyjump') };
    const why = proxyJumpProblem(host, c.proxyJump, opts.bastion);
    if (why) problems.push(`${from('proxyjump')} says ProxyJump ${c.proxyJump}, but ${why}`);
  }
  if (c.proxyCommand !== undefined) {
    const path = host.bastion ? `through its bastion ${host.bastion} (ProxyJump ${host.bastion} is the same path)` : 'directly';
    problems.push(
      `${from('proxycommand')} says ProxyCommand ${c.proxyCommand}, but fleetfw runs no proxy command: it reaches ${host.name} ${path}; ` +
        `remove ProxyCommand for ${host.name} (a \`ProxyCommand none\` in an earlier \`Host ${host.name}\` block)`,
    );
  }

  return {
    name: host.name,
    address,
    ...(host.bastion ? { via: host.bastion } : {}),
    user,
    port,
    identityFiles,
    identitiesOnly: { value: c.identitiesOnly, source: from('identitiesonly') },
    agent,
    knownHostsFiles,
    hostKeys,
    connectTimeoutMs,
    ...(proxyJump ? { proxyJump } : {}),
    hashKnownHosts: c.hashKnownHosts,
    ...(weakerHostKeysAsked ? { weakerHostKeysAsked } : {}),
    problems,
  };
}

function stripBrackets(s: string): string {
  return s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
}

/** An address in one spelling, so that `2001:DB8::1` and `2001:db8:0::1` compare equal. */
function canonicalAddress(a: string): string {
  const bare = stripBrackets(a);
  if (isIP(bare) === 6) return new URL(`http://[${bare}]`).hostname.slice(1, -1);
  return bare.toLowerCase();
}

/**
 * fleetfw always connects to the inventory's address: it is what the lockout
 * checks prove the firewall keeps open. A HostName naming this host (one of its
 * inventory addresses, or a name that resolves to one) agrees; anything else is
 * refused, since ssh would reach another machine than fleetfw does.
 */
function checkHostName(host: SshHostInput, view: SshConfigView, lookup: HostNameLookup | undefined, problems: string[]): Sourced<string> {
  const via = host.bastion ? ` through bastion ${host.bastion}` : '';
  const base = `inventory ${host.addressLabel}`;
  const hn = view.values.hostname;
  if (view.builtIn || hn === '' || hn === host.name.toLowerCase()) return { value: host.address, source: base };
  const where = configSource(view, 'hostname');
  const own = new Map(host.addresses.map((a) => [canonicalAddress(a.address), a.label]));
  const listed = host.addresses.map((a) => `${a.label.replace(/ address$/, '')} ${a.address}`).join(', ');
  const refuse = (what: string): Sourced<string> => {
    problems.push(
      `${where} gives HostName ${hn}, ${what}, which is not ${host.name} in the inventory (${listed}): fleetfw connects to the ` +
        `inventory's ${host.addressLabel} ${host.address}${via}, and would not reach the machine ssh reaches; make HostName one of the inventory's addresses (or remove it), or fix the inventory`,
    );
    return { value: host.address, source: base };
  };
  if (isIP(stripBrackets(hn))) {
    const label = own.get(canonicalAddress(hn));
    if (!label) return refuse('an address');
    const same = canonicalAddress(hn) === canonicalAddress(host.address);
    return { value: host.address, source: `${base}; HostName ${hn} (${where}) ${same ? 'is the same address' : `is its ${label}, the same host`}` };
  }
  if (!lookup) return refuse('a name not looked up');
  if ('error' in lookup) return refuse(`a name that does not resolve here (${lookup.error})`);
  const hit = lookup.addresses.find((a) => own.has(canonicalAddress(a)));
  if (!hit) return refuse(`a name that resolves to ${lookup.addresses.join(', ') || 'nothing'}`);
  return { value: host.address, source: `${base}; HostName ${hn} (${where}) resolves to its ${own.get(canonicalAddress(hit))} ${hit}, the same host` };
}

interface Jump {
  user?: string;
  host: string;
  port?: number;
}

/** ProxyJump's `[user@]host[:port]` and `ssh://[user@]host[:port]` hops, comma-separated. */
export function parseProxyJump(spec: string): Jump[] | undefined {
  const hops: Jump[] = [];
  for (const raw of spec.split(',')) {
    const hop = raw.trim().replace(/^ssh:\/\//, '');
    const m = /^(?:([^@\s]+)@)?(\[[^\]]+\]|[^:@\s]+)(?::(\d+))?$/.exec(hop);
    if (!m?.[2]) return undefined;
    hops.push({ ...(m[1] ? { user: m[1] } : {}), host: stripBrackets(m[2]), ...(m[3] ? { port: Number(m[3]) } : {}) });
  }
  return hops;
}

/**
 * For a host reached through its bastion, a ProxyJump naming that bastion (by
 * its name, an inventory address or its ssh config HostName, as the same user
 * and port fleetfw uses) is the path fleetfw takes; anything else is not.
 */
function proxyJumpProblem(host: SshHostInput, spec: string, bastion: { host: SshHostInput; view: SshConfigView; effective: EffectiveSsh } | undefined): string | undefined {
  if (!host.bastion) {
    return `fleetfw connects to the bastion ${host.name} directly (${host.address}) and does not chain jump hosts; remove ProxyJump for ${host.name} (a \`ProxyJump none\` in an earlier \`Host ${host.name}\` block), or run fleetfw where ${host.name} is reachable`;
  }
  const fix = `make it ProxyJump ${host.bastion} (or remove it), or change ${host.name}'s bastion in the inventory`;
  const hops = parseProxyJump(spec);
  if (!hops) return `fleetfw cannot read that ProxyJump; fleetfw reaches ${host.name} only through its bastion ${host.bastion}: ${fix}`;
  if (hops.length > 1) return `that is ${hops.length} jumps, and fleetfw reaches ${host.name} only through its bastion ${host.bastion}: ${fix}`;
  const jump = hops[0]!;
  if (!bastion) return `fleetfw reaches ${host.name} only through its bastion ${host.bastion}: ${fix}`;
  const b = bastion.host;
  const names = new Set([b.name.toLowerCase(), ...b.addresses.map((a) => canonicalAddress(a.address))]);
  if (!bastion.view.builtIn && bastion.view.values.hostname) names.add(canonicalAddress(bastion.view.values.hostname));
  if (!names.has(canonicalAddress(jump.host))) return `fleetfw reaches ${host.name} only through its bastion ${host.bastion} (${b.address}), and ${jump.host} is not it: ${fix}`;
  const e = bastion.effective;
  if (jump.user !== undefined && jump.user !== e.user.value) {
    return `that logs in to the bastion ${b.name} as ${jump.user}, and fleetfw logs in to it as ${e.user.value} (${e.user.source}): make the two agree`;
  }
  if (jump.port !== undefined && jump.port !== e.port.value) {
    return `that reaches the bastion ${b.name} on port ${jump.port}, and fleetfw uses port ${e.port.value} (${e.port.source}): make the two agree`;
  }
  return undefined;
}

/** The transport's endpoint for a host without problems. */
export function endpointOf(e: EffectiveSsh): SshEndpoint {
  return {
    name: e.name,
    address: e.address.value,
    port: e.port.value,
    user: e.user.value,
    identityFiles: e.identityFiles.value,
    identitiesOnly: e.identitiesOnly.value,
    agentSocket: e.agent.value,
    ...(e.agent.value === null ? { noAgentReason: e.agent.source.startsWith('ssh config') ? `IdentityAgent none, ${e.agent.source}` : e.agent.source } : {}),
    ...(e.via ? { bastion: e.via } : {}),
    knownHostsFiles: e.knownHostsFiles.value,
    acceptNewHostKeys: e.hostKeys.value === 'accept-new',
    hashKnownHosts: e.hashKnownHosts,
    readyTimeoutMs: e.connectTimeoutMs.value,
  };
}

/** `--verbose`: one line per setting, each with its source. */
export function describeEffectiveSsh(e: EffectiveSsh): string[] {
  const line = (what: string, s: Sourced<unknown>, shown: string): string => `ssh ${e.name}: ${what} ${shown} (${s.source})`;
  const lines = [
    line('address', e.address, `${e.address.value}${e.via ? ` through bastion ${e.via}` : ''}`),
    line('user', e.user, e.user.value),
    line('port', e.port, String(e.port.value)),
    line('identity files', e.identityFiles, e.identityFiles.value.join(', ') || 'none'),
    line('identities only', e.identitiesOnly, e.identitiesOnly.value ? 'yes' : 'no'),
    line('ssh-agent', e.agent, e.agent.value ?? 'none'),
    line('known_hosts', e.knownHostsFiles, e.knownHostsFiles.value.join(', ')),
    line('host keys', e.hostKeys, e.hostKeys.value === 'accept-new' ? 'accept new, never a changed one' : 'known only'),
    line('connect timeout', e.connectTimeoutMs, `${e.connectTimeoutMs.value / 1000} s`),
  ];
  if (e.proxyJump) lines.push(line('proxy jump', e.proxyJump, `${e.proxyJump.value}${e.problems.some((p) => p.includes('ProxyJump')) ? '' : `: the bastion ${e.via}, the path fleetfw takes`}`));
  for (const p of e.problems) lines.push(`ssh ${e.name}: refused: ${p}`);
  return lines;
}

export interface SshSettingsOptions {
  hosts: SshHostInput[];
  fleet: SshFleetInput;
  reader: SshConfigReader;
  /** DNS for HostName names (default: the system resolver, 5 s). */
  lookup?: (name: string) => Promise<string[]>;
  /** Each host's settings, once, when first resolved (`--verbose`). */
  onResolved?: (e: EffectiveSsh) => void;
  /** Said once per run (StrictHostKeyChecking no). */
  onNotice?: (message: string) => void;
}

export interface SshSettings {
  effective(name: string): Promise<EffectiveSsh>;
  /** The host's endpoint, or a TransportError (reason `config`) saying why it is refused. */
  endpoint(name: string): Promise<SshEndpoint>;
}

/** Settings resolved per host on first use (a run that touches 3 hosts of 1,000 reads 3 configs). */
export function createSshSettings(o: SshSettingsOptions): SshSettings {
  const byName = new Map(o.hosts.map((h) => [h.name, h]));
  const results = new Map<string, Promise<EffectiveSsh>>();
  const lookup = o.lookup ?? lookupAll;
  let warned = false;

  function input(name: string): SshHostInput {
    const h = byName.get(name);
    if (!h) throw new TransportError(`unknown host ${name}: not in the inventory`, name, 'target', 'config');
    return h;
  }

  async function resolve(name: string): Promise<EffectiveSsh> {
    const host = input(name);
    const bastionHost = host.bastion ? input(host.bastion) : undefined;
    const [view, bastion] = await Promise.all([
      o.reader.read(name),
      bastionHost ? Promise.all([o.reader.read(bastionHost.name), effective(bastionHost.name)]) : undefined,
    ]);
    const toLookUp = hostNameToLookUp(host, view);
    const looked: HostNameLookup | undefined = toLookUp
      ? await lookup(toLookUp).then(
          (addresses) => ({ addresses }),
          (err: Error) => ({ error: (err as NodeJS.ErrnoException).code ?? err.message }),
        )
      : undefined;
    const e = effectiveSsh(host, view, o.fleet, {
      ...(bastion && bastionHost ? { bastion: { host: bastionHost, view: bastion[0], effective: bastion[1] } } : {}),
      ...(looked ? { lookup: looked } : {}),
    });
    o.onResolved?.(e);
    if (e.weakerHostKeysAsked && !warned) {
      warned = true;
      o.onNotice?.(
        `fleetfw: ssh config says StrictHostKeyChecking no for ${e.name} (${e.weakerHostKeysAsked}): fleetfw takes it as accept-new ` +
          `(a host key never seen is recorded) and never accepts a changed host key (said once for every host that says no)`,
      );
    }
    return e;
  }

  function effective(name: string): Promise<EffectiveSsh> {
    let p = results.get(name);
    if (!p) results.set(name, (p = resolve(name)));
    return p;
  }

  return {
    effective,
    async endpoint(name) {
      const host = input(name);
      const hop = host.bastion ? 'target' : 'bastion';
      let e: EffectiveSsh;
      try {
        e = await effective(name);
      } catch (err) {
        if (err instanceof TransportError) throw err;
        throw new TransportError(`${name}: not contacted: ${(err as Error).message}`, name, hop, 'config');
      }
      if (e.problems.length > 0) throw new TransportError(`${name}: not contacted: ${e.problems.join('; ')}`, name, hop, 'config');
      if (host.bastion) {
        const b = await effective(host.bastion);
        if (b.problems.length > 0) {
          throw new TransportError(`${name}: not contacted: its bastion ${host.bastion} is refused: ${b.problems.join('; ')}`, name, hop, 'config');
        }
      }
      return endpointOf(e);
    },
  };
}

async function lookupAll(name: string): Promise<string[]> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), 5_000)));
  try {
    const found = await Promise.race([dnsLookup(name, { all: true }), timedOut]);
    if (found === 'timeout') throw new FleetError('no answer within 5 s');
    return found.map((a) => a.address);
  } finally {
    clearTimeout(timer);
  }
}
