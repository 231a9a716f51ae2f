// What a lab is made of, as plain values: hosts, externals and the operator;
// how an inventory becomes one; and the checks that make every name and
// address safe to hand to ip, sshd, mount and the account files.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ExitCode, LabError } from '../errors.js';
import { isHostName, isInterfaceName, isUserName } from '../inventory/tokens.js';
import type { Inventory } from '../model/inventory.js';
import { chooseOperator, planAddressing, type Addressing } from './addressing.js';

export type Side = 'public' | 'private';

export interface LabHostSpec {
  name: string;
  public?: string;
  private?: string;
  public6?: string;
  private6?: string;
  interfaces: { public: string; private: string };
  sshPort: number;
  /** 'root' or a non-root user created in that host with passwordless sudo. */
  user: string;
  /** Bastions are addressed on their public side in the ssh config, the others on their private side. */
  bastion?: boolean;
}

export interface LabExternalSpec {
  name: string;
  address: string;
  address6?: string;
  side: Side;
}

/** Where fleetfw runs, on the public side. */
export interface LabOperator {
  address: string;
  address6?: string;
}

export interface LabSpec {
  hosts: LabHostSpec[];
  externals: LabExternalSpec[];
  /** Default: chosen as for an inventory whose operators are 0.0.0.0/0 (203.0.113.250 when free). */
  operator?: LabOperator;
}

/**
 * The operator's name in a lab (exec, probe, netnsOf). No inventory name can
 * take it, so a host may be called `operator`.
 */
export const OPERATOR = '@operator';

export function labSpecFromInventory(inv: Inventory): LabSpec {
  const bastions = new Set(inv.networks.map((n) => n.bastion));
  const spec: LabSpec = {
    hosts: inv.hosts.map((h) => ({
      name: h.name,
      ...(h.public !== undefined && { public: h.public }),
      ...(h.private !== undefined && { private: h.private }),
      ...(h.public6 !== undefined && { public6: h.public6 }),
      ...(h.private6 !== undefined && { private6: h.private6 }),
      interfaces: { public: h.interfaces.public, private: h.interfaces.private },
      sshPort: h.ssh.port ?? 22,
      user: h.ssh.user ?? 'root',
      bastion: bastions.has(h.name),
    })),
    externals: inv.externals.map((e) => ({
      name: e.name,
      address: e.address,
      ...(e.address6 !== undefined && { address6: e.address6 }),
      side: e.side,
    })),
  };
  return { ...spec, operator: chooseOperator(spec, inv.operators) };
}

/** The spec with its operator settled (given, or chosen as for operators 0.0.0.0/0). */
export function withOperator(spec: LabSpec): LabSpec & { operator: LabOperator } {
  return { ...spec, operator: spec.operator ?? chooseOperator(spec, ['0.0.0.0/0']) };
}

/** Checks names, interfaces, ports, users and addresses; returns the addressing. Throws LabError (exit 64) naming every problem. */
export function validateLabSpec(spec: LabSpec): Addressing {
  const problems: string[] = [];
  const names = new Set<string>();
  const addName = (n: string, where: string): void => {
    const c = isHostName(n);
    if (!c.ok) problems.push(`${where}: ${c.reason}`);
    else if (names.has(n)) problems.push(`${where}: name ${n} used twice`);
    names.add(n);
  };
  for (const h of spec.hosts) {
    const w = `host ${h.name}`;
    addName(h.name, w);
    for (const i of [h.interfaces.public, h.interfaces.private]) {
      const c = isInterfaceName(i);
      if (!c.ok) problems.push(`${w}: ${c.reason}`);
      else if (i === 'lo') problems.push(`${w}: interface "lo" is the loopback`);
    }
    if (h.interfaces.public === h.interfaces.private) problems.push(`${w}: public and private interface are both ${h.interfaces.public}`);
    if (!Number.isInteger(h.sshPort) || h.sshPort < 1 || h.sshPort > 65535) problems.push(`${w}: bad ssh port ${h.sshPort}`);
    const u = isUserName(h.user);
    if (!u.ok) problems.push(`${w}: ${u.reason}`);
    if (!h.public && !h.private && !h.public6 && !h.private6) problems.push(`${w}: no address`);
  }
  for (const e of spec.externals) {
    addName(e.name, `external ${e.name}`);
    if (e.side !== 'public' && e.side !== 'private') problems.push(`external ${e.name}: side must be public or private`);
  }
  let addressing: Addressing | undefined;
  try {
    addressing = planAddressing(spec, withOperator(spec).operator, OPERATOR);
  } catch (e) {
    if (!(e instanceof LabError)) throw e;
    problems.push(...e.message.split('\n').slice(1));
  }
  if (problems.length > 0 || !addressing) throw new LabError(`the lab cannot run this fleet:\n${problems.join('\n')}`, ExitCode.usage);
  return addressing;
}

// --- names on the machine -----------------------------------------------------------

const NS_CHARS = /[^A-Za-z0-9.-]/g;
const NS_NAME_MAX = 24;

/**
 * A namespace-safe form of a node name, the same on every run: `_` and the like
 * become `-`, long names are cut, and a changed name carries a hash of the
 * original so that `a_b` and `a.b` stay apart.
 */
export function safeName(name: string): string {
  const plain = name.replace(NS_CHARS, '-').slice(0, NS_NAME_MAX);
  if (plain === name) return name;
  return `${plain}-${createHash('sha256').update(name).digest('hex').slice(0, 8)}`;
}

/** Namespace name per node (hosts `P-h-NAME`, externals `P-x-NAME`, `P-op`), plus the switch `P-sw`. */
export function namespaceNames(prefix: string, spec: LabSpec): { nodes: Record<string, string>; switchNs: string } {
  const nodes: Record<string, string> = {};
  for (const h of spec.hosts) nodes[h.name] = `${prefix}-h-${safeName(h.name)}`;
  for (const e of spec.externals) nodes[e.name] = `${prefix}-x-${safeName(e.name)}`;
  nodes[OPERATOR] = `${prefix}-op`;
  const all = Object.values(nodes);
  if (new Set(all).size !== all.length) throw new LabError(`lab ${prefix}: two nodes map to the same namespace name (${all.join(', ')}); rename one`, ExitCode.usage);
  return { nodes, switchNs: `${prefix}-sw` };
}

/** The lab's own files at the top of its dir; a host named like one of them gets its folder under `_hosts/`. */
const LAB_FILES = new Set(['state.json', 'id_ed25519', 'id_ed25519.pub', 'known_hosts', 'ssh_config', 'authorized_keys', 'agent.sock', 'operator-state']);

/** A host's folder in the lab dir (keys, sshd config and log, its /etc/iptables and state): `DIR/NAME`. */
export function hostDirOf(dir: string, host: string): string {
  return LAB_FILES.has(host) ? join(dir, '_hosts', host) : join(dir, host);
}
