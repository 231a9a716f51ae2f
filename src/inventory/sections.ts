// Readers for each part of the inventory (settings, operators, defaults, hosts,
// networks, externals, health): a YAML subtree into checked values, or into a
// draft that keeps positions for the checks across hosts that follow.
import path from 'node:path';
import { isMap, isScalar, isSeq } from 'yaml';
import type {
  ExternalSpec,
  HostSpec,
  Interfaces,
  Inventory,
  NetworkSpec,
  Settings,
  Side,
  SshSettings,
  VarValue,
} from '../model/inventory.js';
import { didYouMean, suggest } from './suggest.js';
import {
  isGroupName,
  isHostName,
  isInterfaceName,
  isLocalPath,
  isUserName,
  isVarName,
  isVarToken,
  parseCidr,
  parseIPv4,
  parseIPv6,
  quote,
} from './tokens.js';
import type { Entry, Located, Reader, Where } from './yaml-reader.js';

const HEALTH_KEYS = ['port', 'from'];
const HOST_KEYS = ['public', 'private', 'public6', 'private6', 'roles', 'groups', 'base', 'network', 'interfaces', 'ssh', 'vars'];
const INTERFACE_KEYS = ['public', 'private'];
const SSH_KEYS = ['user', 'port', 'identity', 'sudo'];
const SETTINGS_KEYS = ['window', 'generations', 'install_persistent', 'known_hosts', 'ipset_threshold'];
const NETWORK_KEYS = ['bastion'];
const EXTERNAL_KEYS = ['address', 'address6', 'side'];
const SIDES: Side[] = ['public', 'private'];
export const ADDRESS_FIELDS = ['public', 'private', 'public6', 'private6'] as const;

const DEFAULT_INTERFACES: Interfaces = { public: 'eth0', private: 'eth1' };
const DEFAULT_EXTERNALS: ExternalSpec[] = [
  { name: 'internet', address: '203.0.113.200', side: 'public' },
  { name: 'intruder', address: '192.0.2.250', side: 'private' },
];

/**
 * Whether a template path exists: the templates folder itself (`folder`) or one
 * template file. Passed in so that reading the inventory never touches the disk.
 */
export type TemplateExists = (absPath: string, kind: 'folder' | 'file') => boolean;

/** What defaults and hosts may both say; a host's values override the defaults field by field. */
export interface Overridable {
  /** null: written but invalid (already reported), so no "missing" follow-up. */
  base?: Located | null;
  interfaces: Partial<Interfaces>;
  ssh: Partial<SshSettings>;
  vars: Record<string, VarValue>;
}

export interface HostDraft extends Overridable {
  name: string;
  at: Where;
  /** null: written but invalid, which counts as present for reachability checks. */
  addresses: Partial<Record<(typeof ADDRESS_FIELDS)[number], Located | null>>;
  roles: Located[];
  groups: Located[];
  network?: Located | null;
}

export function readOverridable(r: Reader, e: Map<string, Entry>): Overridable {
  const out: Overridable = { interfaces: {}, ssh: {}, vars: {} };
  const base = e.get('base');
  if (base) out.base = r.token(base.node, base.path, isGroupName) ?? null;
  const ifs = e.get('interfaces');
  for (const [k, v] of (ifs && r.map(ifs.node, ifs.path, INTERFACE_KEYS)) ?? []) {
    out.interfaces[k as keyof Interfaces] = r.token(v.node, v.path, isInterfaceName)?.value;
  }
  const ssh = e.get('ssh');
  for (const [k, v] of (ssh && r.map(ssh.node, ssh.path, SSH_KEYS)) ?? []) {
    if (k === 'user') out.ssh.user = r.token(v.node, v.path, isUserName)?.value;
    if (k === 'port') out.ssh.port = r.int(v.node, v.path, 1, 65535, 'port')?.value;
    if (k === 'identity') out.ssh.identityFile = r.token(v.node, v.path, isLocalPath)?.value;
    if (k === 'sudo') out.ssh.sudo = r.bool(v.node, v.path);
  }
  const vars = e.get('vars');
  for (const [k, v] of (vars && r.map(vars.node, vars.path)) ?? []) {
    r.check(v.key, isVarName(k));
    const value = isSeq(v.node)
      ? r.list(v.node, v.path)?.flatMap((item) => readVarValue(r, item) ?? [])
      : readVarValue(r, v);
    if (value !== undefined) out.vars[k] = value;
  }
  return out;
}

/** A var item: a string or a number (ports), checked as a token. */
function readVarValue(r: Reader, e: Entry): string | undefined {
  const n = e.node;
  if (isScalar(n) && typeof n.value === 'number') return r.check(r.where(n, e.path), isVarToken(n.source ?? String(n.value)));
  return r.token(n, e.path, isVarToken)?.value;
}


/** `health: { role: [{ port: 80, from: haproxy-www }] }`: probes run before a host of that role is confirmed. */
export function readHealth(r: Reader, e: Entry | undefined, roles: Map<string, Located>, hosts: Map<string, HostDraft>): Inventory['health'] {
  const out: Inventory['health'] = {};
  for (const [role, x] of (e && r.map(e.node, e.path)) ?? []) {
    if (!roles.has(role)) r.report(x.key, `unknown role or group ${quote(role)}${didYouMean(suggest(role, roles.keys()))}`);
    out[role] = (r.list(x.node, x.path) ?? []).flatMap((item) => {
      const f = r.map(item.node, item.path, HEALTH_KEYS);
      const port = f?.get('port');
      if (!f || !port) {
        if (f) r.report(r.where(item.node, item.path), 'missing "port"');
        return [];
      }
      const p = r.int(port.node, port.path, 1, 65535, 'port');
      const from = f.get('from');
      const fromName = from && r.token(from.node, from.path, isHostName)?.value;
      if (fromName && !hosts.has(fromName)) r.report(r.where(from.node, from.path), `unknown host ${quote(fromName)}${didYouMean(suggest(fromName, hosts.keys()))}`);
      return p ? [{ port: p.value, ...(fromName ? { from: fromName } : {}), pos: r.pos(r.where(item.node, item.path)) }] : [];
    });
  }
  return out;
}

export function readTemplatesDir(r: Reader, e: Entry | undefined, absPath: string, templateExists: TemplateExists): string | undefined {
  const given = e && r.token(e.node, e.path, isLocalPath);
  if (e && !given) return undefined;
  const dir = path.resolve(path.dirname(absPath), given?.value ?? '../templates');
  if (!templateExists(dir, 'folder')) {
    r.report(given ?? { path: 'templates', line: 1, col: 1 }, `templates folder ${path.relative(process.cwd(), dir) || '.'} not found`);
    return undefined;
  }
  return dir;
}

export function readOperators(r: Reader, e: Entry | undefined): string[] {
  if (!e) return ['0.0.0.0/0'];
  const cidrs = r.tokens(e.node, e.path, (s) => parseCidr(s, undefined, true));
  if (cidrs && isSeq(e.node) && e.node.items.length === 0) {
    r.report(r.where(e.node, e.path), 'operators must not be empty (nobody could reach the bastions)');
  }
  return [...new Set(cidrs?.map((c) => c.value.cidr))];
}

export function readSettings(r: Reader, e: Entry | undefined): Settings {
  const s: Settings = { window: 60, generations: 5, installPersistent: true };
  for (const [k, v] of (e && r.map(e.node, e.path, SETTINGS_KEYS)) ?? []) {
    if (k === 'window') s.window = r.int(v.node, v.path, 5, 3600, 'window (seconds)')?.value ?? s.window;
    if (k === 'generations') s.generations = r.int(v.node, v.path, 1, 100, 'generations')?.value ?? s.generations;
    if (k === 'install_persistent') s.installPersistent = r.bool(v.node, v.path) ?? s.installPersistent;
    if (k === 'known_hosts') s.knownHosts = r.token(v.node, v.path, isLocalPath)?.value;
    if (k === 'ipset_threshold') s.ipsetThreshold = r.int(v.node, v.path, 0, 1_000_000, 'ipset_threshold (members)')?.value;
  }
  return s;
}

export function readHost(r: Reader, name: string, e: Entry): HostDraft {
  r.check(e.key, isHostName(name));
  const fields = r.map(e.node, e.path, HOST_KEYS) ?? new Map<string, Entry>();
  const h: HostDraft = { name, at: e.key, addresses: {}, roles: [], groups: [], ...readOverridable(r, fields) };
  for (const f of ADDRESS_FIELDS) {
    const v = fields.get(f);
    if (v) h.addresses[f] = r.token(v.node, v.path, f.endsWith('6') ? parseIPv6 : parseIPv4) ?? null;
  }
  const roles = fields.get('roles');
  const groups = fields.get('groups');
  if (roles) h.roles = r.tokens(roles.node, roles.path, isGroupName) ?? [];
  if (groups) h.groups = r.tokens(groups.node, groups.path, isGroupName) ?? [];
  const network = fields.get('network');
  if (network) h.network = r.token(network.node, network.path, isGroupName) ?? null;
  return h;
}

export function finishHost(h: HostDraft, d: Overridable, r: Reader): HostSpec {
  const roles = [...new Set(h.roles.map((x) => x.value))];
  const ssh = { ...d.ssh, ...stripUndefined(h.ssh) };
  return {
    name: h.name,
    ...Object.fromEntries(ADDRESS_FIELDS.flatMap((f) => (h.addresses[f] ? [[f, h.addresses[f].value]] : []))),
    interfaces: { ...DEFAULT_INTERFACES, ...stripUndefined(d.interfaces), ...stripUndefined(h.interfaces) },
    roles,
    groups: [...new Set([...roles, ...h.groups.map((g) => g.value), 'all'])].sort(),
    base: (h.base ?? d.base)!.value,
    network: h.network!.value,
    ssh: { ...stripUndefined(ssh), sudo: ssh.sudo ?? false },
    vars: { ...d.vars, ...h.vars },
    pos: r.pos(h.at),
  };
}

/** Code-unit order, independent of locale. */
export function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

export interface NetworkDraft extends NetworkSpec {
  path: string;
}

export function readNetworks(r: Reader, e: Entry | undefined, at: Where, hosts: Map<string, HostDraft> | undefined): NetworkDraft[] {
  const out: NetworkDraft[] = [];
  const servedBy = new Map<string, NetworkDraft>();
  for (const [name, n] of (e && r.map(e.node, e.path)) ?? []) {
    r.check(n.key, isGroupName(name));
    const fields = r.map(n.node, n.path, NETWORK_KEYS);
    const b = fields?.get('bastion');
    if (fields && !b) r.report(n.key, 'missing "bastion"');
    const bastion = b && r.token(b.node, b.path, isHostName);
    if (!bastion) continue;
    const host = hosts?.get(bastion.value);
    const other = servedBy.get(bastion.value);
    if (hosts && !host) {
      const hint = suggest(bastion.value, hosts.keys());
      r.report(bastion, `bastion ${quote(bastion.value)} is not a host${didYouMean(hint)}`);
    } else if (host && host.addresses.public === undefined) {
      r.report(bastion, `bastion ${quote(bastion.value)} has no public address`);
    }
    if (other) r.report(bastion, `${quote(bastion.value)} is already the bastion of ${other.path}`);
    const draft = { name, bastion: bastion.value, pos: r.pos(n.key), path: n.path };
    servedBy.set(bastion.value, draft);
    out.push(draft);
  }
  if (!e || (isMap(e.node) && e.node.items.length === 0)) {
    r.report(e ? r.where(e.node, e.path) : at, 'no networks defined (each private network needs a bastion)');
  }
  return out;
}

export function readExternals(
  r: Reader,
  e: Entry | undefined,
  hosts: Map<string, HostDraft>,
  groups: Map<string, Located>,
): ExternalSpec[] {
  const written = new Map<string, ExternalSpec>();
  for (const [name, x] of (e && r.map(e.node, e.path)) ?? []) {
    r.check(x.key, isHostName(name));
    if (hosts.has(name) || groups.has(name) || name === 'all') {
      r.report(x.key, `external name ${quote(name)} is already a ${hosts.has(name) ? 'host' : 'group'} name`);
    }
    const f = r.map(x.node, x.path, EXTERNAL_KEYS);
    if (!f) continue;
    const address = f.get('address');
    const side = f.get('side');
    const address6 = f.get('address6');
    if (!address) r.report(x.key, 'missing "address"');
    if (!side) r.report(x.key, 'missing "side"');
    const spec: Partial<ExternalSpec> = {
      name,
      address: address && r.token(address.node, address.path, parseIPv4)?.value,
      side: side && r.choice(side.node, side.path, SIDES),
      pos: r.pos(x.key),
    };
    if (address6) spec.address6 = r.token(address6.node, address6.path, parseIPv6)?.value;
    if (spec.address && spec.side) written.set(name, spec as ExternalSpec);
  }
  for (const d of DEFAULT_EXTERNALS) {
    if (written.has(d.name)) continue;
    const clash = hosts.get(d.name)?.at ?? groups.get(d.name);
    if (clash) r.report(clash, `${quote(d.name)} is the name of a built-in external (externals.${d.name})`);
    written.set(d.name, { ...d });
  }
  return [...written.values()].sort(byName);
}
