// What every command starts from: the inventory (named, found, or the embedded
// example where that is safe), its rendered rule sets, and for live commands
// the SSH transport.
import { existsSync, realpathSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.js';
import type { HostSpec, Inventory } from '../model/inventory.js';
import { loadInventory } from '../inventory/load.js';
import { selectByLimit } from '../inventory/limit.js';
import { bastionOf, managementAddress } from '../inventory/query.js';
import { didYouMean, suggest } from '../inventory/suggest.js';
import { loadTemplates } from '../render/load-templates.js';
import { renderFleet, type RenderedHost } from '../render/render.js';
import { createSshTransport, formatHostKeyAddition, type Transport } from '../transport/ssh.js';
import { createSshConfigReader } from '../transport/ssh-config.js';
import { createSshSettings, describeEffectiveSsh, type SshHostInput, type Sourced } from '../transport/ssh-settings.js';
import { askSecret, err } from './io.js';

/** The package's own example (S1): used only where no real host can be reached with it. */
export const EMBEDDED_INVENTORY = fileURLToPath(new URL('../../inventories/s1.yaml', import.meta.url));
/** fleetfw's own folder (the package root, from src/cli and dist/cli alike). */
const PROJECT_DIR = fileURLToPath(new URL('../..', import.meta.url));
/** The inventory a command finds in the folder it runs in, after --inventory and FLEETFW_INVENTORY. */
export const CWD_INVENTORY = 'fleetfw.yaml';

/**
 * What a command does when no inventory is named (--inventory, FLEETFW_INVENTORY,
 * ./fleetfw.yaml): `never` refuses (commands that read or change real hosts),
 * `in-project` uses the embedded example inside fleetfw's own folder only (the
 * commands that need no host: render, verify, explain, plan --offline), `always`
 * uses it (the lab and the demo, which run on namespaces of their own).
 */
export type ExampleUse = 'never' | 'in-project' | 'always';

export interface WithoutInventory {
  /** The command, for the refusal: `apply`, `plan --offline`. */
  command: string;
  example: ExampleUse;
}

/** `plan` is a live command; `plan --offline` needs no host. */
export const PLAN_OFFLINE: WithoutInventory = { command: 'plan --offline', example: 'in-project' };

export interface InventoryOptions {
  inventory?: string;
  limit?: string;
  /** Set per command by program.ts; unset (the lab's own calls) = the example. */
  withoutInventory?: WithoutInventory;
}

export interface SshCliOptions {
  knownHosts?: string;
  acceptNewHostKeys?: boolean;
  sshConfig?: string;
  identity?: string;
  /** Print each host's SSH settings with where each came from. */
  verbose?: boolean;
}

export interface InventorySource {
  /** The file to read, as the user named it (relative paths stay relative: saved plans keep them). */
  file: string;
  /** How messages and plans name it. */
  display: string;
  from: 'option' | 'env' | 'cwd' | 'example';
}

function insideProject(cwd: string): boolean {
  try {
    const [here, root] = [realpathSync(cwd), realpathSync(PROJECT_DIR)];
    return here === root || here.startsWith(root.endsWith(sep) ? root : root + sep);
  } catch {
    return false;
  }
}

/**
 * Which inventory a command reads: --inventory, else FLEETFW_INVENTORY, else
 * ./fleetfw.yaml, else the embedded example where the command may use it
 * (ExampleUse), else a usage error that says how to name one.
 */
export function resolveInventory(opts: InventoryOptions, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): InventorySource {
  if (opts.inventory !== undefined) {
    if (!opts.inventory) throw new UsageError('--inventory needs a file name');
    return checked({ file: opts.inventory, display: opts.inventory, from: 'option' });
  }
  if (env.FLEETFW_INVENTORY) return checked({ file: env.FLEETFW_INVENTORY, display: env.FLEETFW_INVENTORY, from: 'env' });
  // Found, so it exists; a folder of that name is no inventory.
  const here = join(cwd, CWD_INVENTORY);
  if (existsSync(here) && !statSync(here).isDirectory()) return { file: CWD_INVENTORY, display: CWD_INVENTORY, from: 'cwd' };
  const rule = opts.withoutInventory ?? { command: 'this command', example: 'always' };
  if (rule.example === 'always' || (rule.example === 'in-project' && insideProject(cwd))) {
    return { file: EMBEDDED_INVENTORY, display: 'inventories/s1.yaml (embedded example)', from: 'example' };
  }
  const how = `name one with --inventory FILE, set FLEETFW_INVENTORY, or put a ${CWD_INVENTORY} in this folder`;
  const why =
    rule.example === 'never'
      ? `${rule.command} reads or changes real hosts, so it never falls back to the embedded example`
      : `the embedded example is used only inside fleetfw's own folder`;
  throw new UsageError(`${rule.command}: no inventory given: ${how} (${why}; to use the example, name it: --inventory ${EMBEDDED_INVENTORY})`);
}

function checked(src: InventorySource): InventorySource {
  const where = src.from === 'env' ? ' (from FLEETFW_INVENTORY)' : '';
  if (!existsSync(src.file)) throw new UsageError(`inventory file not found: ${src.file}${where}`);
  if (statSync(src.file).isDirectory()) throw new UsageError(`the inventory ${src.file}${where} is a folder: name the inventory's YAML file`);
  return src;
}

export function loadFleet(opts: InventoryOptions): { inv: Inventory; display: string; rendered: RenderedHost[] } {
  const src = resolveInventory(opts);
  if (src.from === 'example') err(`fleetfw: no --inventory given: using the embedded example ${src.display}`);
  const inv = loadInventory(src.file, { displayPath: src.from === 'example' ? 'inventories/s1.yaml' : src.file });
  const rendered = renderFleet(inv, loadTemplates(inv));
  return { inv, display: src.display, rendered };
}

/**
 * `--limit`: hosts and groups by name or glob, `!pattern` to exclude,
 * `&pattern` to intersect (Ansible's patterns; inventory/limit.ts).
 */
export function selectHosts(inv: Inventory, limit: string | undefined): HostSpec[] {
  return selectByLimit(inv, limit);
}

/** The host a command's argument names, or a usage error that says what the name is instead. */
export function hostNamed(inv: Inventory, name: string, command: string): HostSpec {
  const h = inv.hosts.find((x) => x.name === name);
  if (h) return h;
  const members = inv.hosts.filter((x) => x.groups.includes(name)).map((x) => x.name);
  if (members.length > 0) {
    const shown = members.slice(0, 6).join(', ') + (members.length > 6 ? `, … (${members.length} hosts)` : '');
    throw new UsageError(`"${name}" is a group (${shown}): ${command} takes one host, e.g. ${members[0]}`);
  }
  if (inv.externals.some((e) => e.name === name)) throw new UsageError(`"${name}" is an external, not a host of the inventory: ${command} takes one host`);
  throw new UsageError(`no host named "${name}" in the inventory${didYouMean(suggest(name, inv.hosts.map((x) => x.name)))}`);
}

/** A flag, else its environment variable, with which one it was. */
function flagOrEnv(flag: string | undefined, name: string, env: string): Sourced<string> | undefined {
  if (flag !== undefined) return { value: flag, source: name };
  const v = process.env[env];
  return v ? { value: v, source: env } : undefined;
}

/** What the transport needs to know of each inventory host (ssh-settings.ts decides the rest). */
function sshHostInputs(inv: Inventory): SshHostInput[] {
  return inv.hosts.map((h) => {
    const isBastion = bastionOf(inv, h).name === h.name;
    // Where the management path ends (the lockout check proves that address); a host
    // without one still gets an address to be named by.
    const mgmt = managementAddress(inv, h);
    const fallback = h.public !== undefined ? 'public' : 'private';
    const label = mgmt ? `${mgmt.side}${mgmt.family === 6 ? ' IPv6' : ''} address` : `${fallback} address`;
    const addresses = (
      [
        ['public address', h.public],
        ['private address', h.private],
        ['public IPv6 address', h.public6],
        ['private IPv6 address', h.private6],
      ] as const
    ).flatMap(([label, address]) => (address ? [{ label, address }] : []));
    return {
      name: h.name,
      address: mgmt?.address ?? h[fallback] ?? '',
      addressLabel: label,
      addresses,
      ...(isBastion ? {} : { bastion: bastionOf(inv, h).name }),
      inventory: {
        ...(h.ssh.user !== undefined ? { user: h.ssh.user } : {}),
        ...(h.ssh.port !== undefined ? { port: h.ssh.port } : {}),
        ...(h.ssh.identityFile !== undefined ? { identityFile: h.ssh.identityFile } : {}),
      },
    };
  });
}

/**
 * The SSH transport. Each host's settings are its own, resolved when the host is
 * first contacted: flag > inventory > its ~/.ssh/config (`ssh -G` per host) >
 * defaults (transport/ssh-settings.ts). A host whose ssh config asks for what
 * fleetfw cannot do is refused, with the config line, before anything is sent.
 */
export async function openTransport(inv: Inventory, opts: SshCliOptions): Promise<Transport> {
  const configFile = opts.sshConfig ?? (process.env.FLEETFW_SSH_CONFIG || undefined);
  const identity = flagOrEnv(opts.identity, '--identity', 'FLEETFW_IDENTITY');
  const knownHosts = flagOrEnv(opts.knownHosts, '--known-hosts', 'FLEETFW_KNOWN_HOSTS');
  if (opts.verbose) {
    const read = configFile ? `${configFile} (${opts.sshConfig !== undefined ? '--ssh-config' : 'FLEETFW_SSH_CONFIG'})` : '~/.ssh/config and /etc/ssh/ssh_config';
    err(`fleetfw: ssh settings per host: a flag, else the inventory, else the ssh config (ssh -G, reading ${read}), else defaults`);
  }
  const settings = createSshSettings({
    hosts: sshHostInputs(inv),
    fleet: {
      ...(identity ? { identity } : {}),
      ...(knownHosts ? { knownHosts } : {}),
      acceptNewHostKeys: Boolean(opts.acceptNewHostKeys),
      ...(inv.settings.knownHosts !== undefined ? { inventoryKnownHosts: inv.settings.knownHosts } : {}),
      ...(process.env.SSH_AUTH_SOCK ? { agentSocket: process.env.SSH_AUTH_SOCK } : {}),
    },
    reader: createSshConfigReader(configFile ? { configFile } : {}),
    ...(opts.verbose ? { onResolved: (e) => err(describeEffectiveSsh(e).map((l) => `fleetfw: ${l}`).join('\n')) } : {}),
    onNotice: (message) => err(message),
  });
  return createSshTransport((name) => settings.endpoint(name), {
    // Every endpoint names its own files; this is only the transport's fallback.
    knownHostsFile: join(homedir(), '.ssh', 'known_hosts'),
    acceptNewHostKeys: false,
    onHostKeyAdded: (added) => err(formatHostKeyAddition(added)),
    // Without a terminal the transport's own advice (use ssh-agent) is the clear message.
    ...(process.stdin.isTTY ? { askPassphrase: (file: string) => askSecret(`Passphrase for ${file}: `) } : {}),
  });
}
