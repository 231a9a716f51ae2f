// Load and validate the YAML inventory. Validation is complete before anything
// is returned: every problem is collected with its line:col and dotted path and
// thrown at once as an InputError. Walking the YAML nodes (not toJS()) keeps
// positions and lets us see duplicate keys ourselves.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Node, ParsedNode } from 'yaml';
import { InputError } from '../errors.js';
import type { Problem } from '../errors.js';
import type {
  ExternalSpec,
  Expect,
  Family,
  HostSpec,
  IntentSpec,
  Interfaces,
  Inventory,
  NetworkSpec,
  Proto,
  Settings,
  Side,
  SourcePos,
  SshSettings,
  VarValue,
} from '../model/inventory.js';
import {
  isChainPattern,
  isGroupName,
  isHostName,
  isInterfaceName,
  isLocalPath,
  isPort,
  isUserName,
  isVarName,
  isVarToken,
  parseCidr,
  parseIPv4,
  parseIPv6,
  quote,
} from './tokens.js';
import type { Checked } from './tokens.js';

const TOP_KEYS = ['version', 'templates', 'operators', 'networks', 'defaults', 'settings', 'preserve', 'externals', 'health', 'hosts', 'intents'];
const HEALTH_KEYS = ['port', 'from'];
const DEFAULTS_KEYS = ['base', 'interfaces', 'ssh', 'vars'];
const HOST_KEYS = ['public', 'private', 'public6', 'private6', 'roles', 'groups', 'base', 'network', 'interfaces', 'ssh', 'vars'];
const INTERFACE_KEYS = ['public', 'private'];
const SSH_KEYS = ['user', 'port', 'identity', 'sudo'];
const SETTINGS_KEYS = ['window', 'generations', 'install_persistent', 'known_hosts', 'ipset_threshold'];
const NETWORK_KEYS = ['bastion'];
const EXTERNAL_KEYS = ['address', 'address6', 'side'];
const EXPECTS: Expect[] = ['allow', 'deny', 'reject', 'drop'];
const SIDES: Side[] = ['public', 'private'];
const ADDRESS_FIELDS = ['public', 'private', 'public6', 'private6'] as const;

const DEFAULT_INTERFACES: Interfaces = { public: 'eth0', private: 'eth1' };
const DEFAULT_EXTERNALS: ExternalSpec[] = [
  { name: 'internet', address: '203.0.113.200', side: 'public' },
  { name: 'intruder', address: '192.0.2.250', side: 'private' },
];
const INTENT_GRAMMAR = 'FROM -> TO:PORT[/tcp|/udp] EXPECT [ipv6] [via public|private]';

type YNode = Node | null | undefined;
interface Where {
  path: string;
  line: number;
  col: number;
}
interface Located<T = string> extends Where {
  value: T;
}
interface Entry {
  key: Where;
  node: YNode;
  path: string;
}

/** Read and validate an inventory file; messages name it as `displayPath` (default: `file` as given). */
export function loadInventory(file: string, opts: { displayPath?: string } = {}): Inventory {
  const display = opts.displayPath ?? file;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new InputError([{ file: display, line: 1, col: 1, path: '', message: `cannot read the inventory (${code})` }]);
  }
  return parseInventory(text, display, path.resolve(file));
}

/**
 * Validate inventory text. `file` names the file in messages; `absPath` anchors
 * relative paths (templates). Only file IO: checking that templates exist.
 */
export function parseInventory(text: string, file: string, absPath: string): Inventory {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: false, prettyErrors: true });
  const r = new Reader(file, lineCounter);
  if (doc.errors.length > 0) {
    // The tree after a syntax error is guesswork: report the syntax only.
    for (const e of doc.errors) {
      const at = e.linePos?.[0] ?? { line: 1, col: 1 };
      r.report({ path: '', ...at }, e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''));
    }
    throw r.error();
  }
  const inv = validate(r, doc.contents, absPath);
  if (r.problems.length > 0 || !inv) throw r.error();
  return inv;
}

/** Collects problems; typed readers return undefined after reporting. */
class Reader {
  readonly problems: Problem[] = [];
  constructor(
    readonly file: string,
    private readonly lc: LineCounter,
  ) {}

  pos(w: Where): SourcePos {
    return { file: this.file, line: w.line, col: w.col };
  }

  where(node: YNode, path: string): Where {
    const offset = (node as ParsedNode | null | undefined)?.range?.[0];
    return { path, ...(offset === undefined ? { line: 1, col: 1 } : this.lc.linePos(offset)) };
  }

  report(w: Where, message: string): void {
    this.problems.push({ file: this.file, line: w.line, col: w.col, path: w.path, message });
  }

  error(): InputError {
    // Stable sort: same position keeps discovery order.
    return new InputError([...this.problems].sort((a, b) => a.line - b.line || a.col - b.col));
  }

  check<T>(w: Where, c: Checked<T>): T | undefined {
    if (c.ok) return c.value;
    this.report(w, c.reason);
    return undefined;
  }

  /**
   * Entries of a map node. With `keys`, other keys are reported as unknown;
   * a repeated key is reported at its second occurrence as `duplicate <noun>`.
   */
  map(node: YNode, path: string, keys?: readonly string[], noun = 'key'): Map<string, Entry> | undefined {
    if (!isMap(node)) return this.wrongType(node, path, 'a map');
    const out = new Map<string, Entry>();
    for (const pair of node.items) {
      const keyNode = pair.key as YNode;
      const name = isScalar(keyNode)
        ? typeof keyNode.value === 'string'
          ? keyNode.value
          : (keyNode.source ?? String(keyNode.value))
        : undefined;
      if (name === undefined) {
        this.report(this.where(keyNode, path), `expected a name as key, got ${describe(keyNode)}`);
        continue;
      }
      const entryPath = joinPath(path, name);
      const entry: Entry = { key: this.where(keyNode, entryPath), node: pair.value as YNode, path: entryPath };
      const first = out.get(name);
      if (first) {
        this.report(entry.key, `duplicate ${noun} ${quote(name)} (first defined at line ${first.key.line})`);
      } else if (keys && !keys.includes(name)) {
        const hint = suggest(name, keys);
        this.report(entry.key, `unknown key ${quote(name)}${didYouMean(hint)}`);
      } else {
        out.set(name, entry);
      }
    }
    return out;
  }

  list(node: YNode, path: string, what = 'a list'): Entry[] | undefined {
    if (!isSeq(node)) return this.wrongType(node, path, what);
    return node.items.map((item, i) => {
      const itemPath = `${path}[${i}]`;
      return { key: this.where(item as YNode, itemPath), node: item as YNode, path: itemPath };
    });
  }

  string(node: YNode, path: string): Located | undefined {
    if (!isScalar(node) || typeof node.value !== 'string') return this.wrongType(node, path, 'a string');
    return { ...this.where(node, path), value: node.value };
  }

  /** A string that must pass `check`; the located value is the checked (canonical) one. */
  token<T = string>(node: YNode, path: string, check: (s: string) => Checked<T>): Located<T> | undefined {
    const s = this.string(node, path);
    const v = s && this.check(s, check(s.value));
    return s && v !== undefined ? { ...s, value: v } : undefined;
  }

  /** A list of checked strings; each bad item is reported at its own node. */
  tokens<T = string>(node: YNode, path: string, check: (s: string) => Checked<T>): Located<T>[] | undefined {
    const items = this.list(node, path, 'a list of strings');
    return items?.flatMap((e) => this.token(e.node, e.path, check) ?? []);
  }

  int(node: YNode, path: string, min: number, max: number, what: string): Located<number> | undefined {
    if (!isScalar(node) || typeof node.value !== 'number' || !Number.isInteger(node.value)) {
      return this.wrongType(node, path, 'an integer');
    }
    const w = this.where(node, path);
    if (node.value < min || node.value > max) return void this.report(w, `${what} must be ${min}-${max}, got ${node.value}`);
    return { ...w, value: node.value };
  }

  bool(node: YNode, path: string): boolean | undefined {
    if (!isScalar(node) || typeof node.value !== 'boolean') return this.wrongType(node, path, 'true or false');
    return node.value;
  }

  /** One of a fixed set of words. */
  choice<T extends string>(node: YNode, path: string, options: readonly T[]): T | undefined {
    const s = this.string(node, path);
    if (!s) return undefined;
    if ((options as readonly string[]).includes(s.value)) return s.value as T;
    return void this.report(s, `expected ${options.map((o) => `"${o}"`).join(' or ')}, got ${quote(s.value)}`);
  }

  private wrongType(node: YNode, path: string, expected: string): undefined {
    this.report(this.where(node, path), `expected ${expected}, got ${describe(node)}`);
    return undefined;
  }
}

function describe(node: YNode): string {
  if (isMap(node)) return 'a map';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null || v === undefined) return 'nothing';
    if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
    return `a ${typeof v}`;
  }
  if (isAlias(node)) return 'an alias (aliases are not supported)';
  return 'nothing';
}

/** `hosts.mysql-1.private`; a key that is not a plain name is bracketed and quoted. */
function joinPath(parent: string, key: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(key)) return `${parent}[${quote(key)}]`;
  return parent ? `${parent}.${key}` : key;
}

/** ` (did you mean "x"?)` for a suggestion, or nothing. */
const didYouMean = (s: string | undefined): string => (s ? ` (did you mean "${s}"?)` : '');

/** The closest candidate within edit distance 2, for "did you mean" hints. */
export function suggest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance && d > 0) [best, bestDistance] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3; // hostile 5000-char keys: skip the O(n·m) table
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** What defaults and hosts may both say; a host's values override the defaults field by field. */
interface Overridable {
  /** null: written but invalid (already reported), so no "missing" follow-up. */
  base?: Located | null;
  interfaces: Partial<Interfaces>;
  ssh: Partial<SshSettings>;
  vars: Record<string, VarValue>;
}

interface HostDraft extends Overridable {
  name: string;
  at: Where;
  /** null: written but invalid, which counts as present for reachability checks. */
  addresses: Partial<Record<(typeof ADDRESS_FIELDS)[number], Located | null>>;
  roles: Located[];
  groups: Located[];
  network?: Located | null;
}

function readOverridable(r: Reader, e: Map<string, Entry>): Overridable {
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

function validate(r: Reader, root: YNode, absPath: string): Inventory | undefined {
  if (!root || (isScalar(root) && root.value === null)) return void r.report(r.where(null, ''), 'the file is empty');
  const top = r.map(root, '', TOP_KEYS);
  if (!top) return undefined;
  const at = (key: string): Where => top.get(key)?.key ?? r.where(null, key);

  const version = top.get('version');
  if (!version) r.report(at('version'), 'missing "version" (expected version: 1)');
  else if (!isScalar(version.node) || version.node.value !== 1) {
    const v = version.node;
    const shown = isScalar(v) && typeof v.value === 'number' ? String(v.value) : describe(v);
    r.report(r.where(v, 'version'), `unsupported version ${shown} (expected 1)`);
  }

  const templatesDir = readTemplatesDir(r, top.get('templates'), absPath);
  const operators = readOperators(r, top.get('operators'));
  const settings = readSettings(r, top.get('settings'));
  const pre = top.get('preserve');
  const preserve = (pre && r.tokens(pre.node, pre.path, isChainPattern)?.map((l) => l.value)) ?? [];

  const defaultsEntry = top.get('defaults');
  const defaultsMap = defaultsEntry && r.map(defaultsEntry.node, defaultsEntry.path, DEFAULTS_KEYS);
  const defaults = defaultsMap ? readOverridable(r, defaultsMap) : { interfaces: {}, ssh: {}, vars: {} };

  const hostsEntry = top.get('hosts');
  if (!hostsEntry) r.report(at('hosts'), 'missing "hosts"');
  const hostMap = hostsEntry && r.map(hostsEntry.node, hostsEntry.path, undefined, 'host name');
  const hosts = [...(hostMap ?? [])].map(([name, e]) => readHost(r, name, e));
  const hostByName = new Map(hosts.map((h) => [h.name, h]));

  // Groups: first place each is written, for template and name-clash checks.
  const groupSites = new Map<string, Located>();
  for (const h of hosts) for (const g of [...h.roles, ...h.groups]) if (!groupSites.has(g.value)) groupSites.set(g.value, g);
  const groupNames = new Set([...groupSites.keys(), 'all']);
  for (const h of hosts) if (groupNames.has(h.name)) r.report(h.at, `host name ${quote(h.name)} is also a group name`);

  const externals = readExternals(r, top.get('externals'), hostByName, groupSites);
  // A broken `hosts` was reported already: do not also call every bastion unknown.
  const networks = readNetworks(r, top.get('networks'), at('networks'), hostMap && hostByName);
  assignNetworks(r, hosts, networks);
  checkAddressesUnique(r, hosts);
  if (templatesDir) checkTemplates(r, templatesDir, hosts, defaults);

  const names = new Set([...hostByName.keys(), ...groupNames, ...externals.map((x) => x.name)].sort());
  const intentsEntry = top.get('intents');
  const intentList = intentsEntry && r.list(intentsEntry.node, intentsEntry.path);
  const intents = intentList?.flatMap((e) => readIntent(r, e, names) ?? []) ?? [];
  const health = readHealth(r, top.get('health'), groupSites, hostByName);

  if (r.problems.length > 0 || !templatesDir) return undefined;
  return {
    file: absPath,
    templatesDir,
    operators,
    networks: networks.map(({ name, bastion, pos }) => ({ name, bastion, pos })),
    hosts: hosts.map((h) => finishHost(h, defaults, r)).sort(byName),
    externals,
    intents,
    preserve,
    health,
    settings,
  };
}

/** `health: { role: [{ port: 80, from: haproxy-www }] }`: probes run before a host of that role is confirmed. */
function readHealth(r: Reader, e: Entry | undefined, roles: Map<string, Located>, hosts: Map<string, HostDraft>): Inventory['health'] {
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

function readTemplatesDir(r: Reader, e: Entry | undefined, absPath: string): string | undefined {
  const given = e && r.token(e.node, e.path, isLocalPath);
  if (e && !given) return undefined;
  const dir = path.resolve(path.dirname(absPath), given?.value ?? '../templates');
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    r.report(given ?? { path: 'templates', line: 1, col: 1 }, `templates folder ${path.relative(process.cwd(), dir) || '.'} not found`);
    return undefined;
  }
  return dir;
}

function readOperators(r: Reader, e: Entry | undefined): string[] {
  if (!e) return ['0.0.0.0/0'];
  const cidrs = r.tokens(e.node, e.path, (s) => parseCidr(s, undefined, true));
  if (cidrs && isSeq(e.node) && e.node.items.length === 0) {
    r.report(r.where(e.node, e.path), 'operators must not be empty (nobody could reach the bastions)');
  }
  return [...new Set(cidrs?.map((c) => c.value.cidr))];
}

function readSettings(r: Reader, e: Entry | undefined): Settings {
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

function readHost(r: Reader, name: string, e: Entry): HostDraft {
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

function finishHost(h: HostDraft, d: Overridable, r: Reader): HostSpec {
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
function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

interface NetworkDraft extends NetworkSpec {
  path: string;
}

function readNetworks(r: Reader, e: Entry | undefined, at: Where, hosts: Map<string, HostDraft> | undefined): NetworkDraft[] {
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

/**
 * Put each host on a network (explicit, implied by being its bastion, or the only
 * one) and check its bastion can reach it over the private side.
 */
function assignNetworks(r: Reader, hosts: HostDraft[], networks: NetworkDraft[]): void {
  const byName = new Map(networks.map((n) => [n.name, n]));
  for (const h of hosts) {
    const served = networks.find((n) => n.bastion === h.name);
    if (h.network === null) continue;
    if (h.network) {
      const n = byName.get(h.network.value);
      if (!n) {
        const hint = suggest(h.network.value, byName.keys());
        r.report(h.network, `unknown network ${quote(h.network.value)}${didYouMean(hint)}`);
        continue;
      }
      if (served && served !== n) r.report(h.network, `host ${quote(h.name)} is the bastion of network "${served.name}" so it must be on it`);
    } else {
      const implied = served ?? (networks.length === 1 ? networks[0] : undefined);
      if (implied) h.network = { ...h.at, value: implied.name };
      else if (networks.length > 1) {
        const list = networks.map((n) => n.name).join(', ');
        r.report({ ...h.at, path: `${h.at.path}.network` }, `no "network" given and there are ${networks.length} networks (${list})`);
      }
      if (!implied) continue;
    }
    const n = byName.get(h.network!.value)!;
    if (n.bastion !== h.name && h.addresses.private === undefined) {
      r.report(h.at, `host ${quote(h.name)} has no private address, so bastion ${quote(n.bastion)} cannot reach it`);
    }
  }
}

function checkAddressesUnique(r: Reader, hosts: HostDraft[]): void {
  const seen = new Map<string, string>();
  for (const h of hosts) {
    for (const f of ADDRESS_FIELDS) {
      const a = h.addresses[f];
      if (!a) continue;
      const first = seen.get(a.value);
      if (first) r.report(a, `address ${a.value} is already used by ${first}`);
      else seen.set(a.value, a.path);
    }
  }
}

/** Every role needs templates/roles/<role>.v4 and every base templates/bases/<base>.v4; reported once, where first named. */
function checkTemplates(r: Reader, dir: string, hosts: HostDraft[], d: Overridable): void {
  const need = (kind: 'roles' | 'bases', site: Located, noun: string, done: Set<string>) => {
    if (done.has(site.value)) return;
    done.add(site.value);
    const file = path.join(dir, kind, `${site.value}.v4`);
    if (!existsSync(file)) r.report(site, `${noun} ${quote(site.value)} has no template (expected ${path.relative(process.cwd(), file)})`);
  };
  const roles = new Set<string>();
  const bases = new Set<string>();
  if (d.base) need('bases', d.base, 'base', bases);
  for (const h of hosts) {
    for (const role of h.roles) need('roles', role, 'role', roles);
    const base = h.base !== undefined ? h.base : d.base;
    if (base) need('bases', base, 'base', bases);
    else if (base === undefined) r.report({ ...h.at, path: `${h.at.path}.base` }, 'no base given (set "base" here or in defaults)');
  }
}

function readExternals(
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

function readIntent(r: Reader, e: Entry, names: Set<string>): IntentSpec | undefined {
  const s = r.string(e.node, e.path);
  if (!s) return undefined;
  const malformed = () => void r.report(s, `malformed intent ${quote(s.value)} (expected ${INTENT_GRAMMAR})`);
  const [from, arrow, target, expect, ...opts] = s.value.trim().split(/[ \t]+/);
  const colon = target?.indexOf(':') ?? -1;
  if (arrow !== '->' || !from || !target || colon < 1 || !expect) return malformed();
  const to = target.slice(0, colon);
  const portText = target.slice(colon + 1);

  let ok = true;
  const bad = (message: string) => {
    r.report(s, message);
    ok = false;
  };
  for (const name of [from, to]) {
    if (names.has(name)) continue;
    const hint = suggest(name, names);
    bad(`unknown host, group or external ${quote(name)}${didYouMean(hint)}`);
  }
  let proto: Proto = 'icmp';
  let port: number | undefined;
  if (portText !== 'icmp') {
    const m = /^([^/]*)(?:\/(tcp|udp))?$/.exec(portText);
    const p = m && /^[0-9]+$/.test(m[1]!) ? isPort(Number(m[1])) : undefined;
    if (!p) bad(`invalid port ${quote(portText)} (expected PORT, PORT/tcp, PORT/udp or icmp)`);
    else if (!p.ok) bad(p.reason);
    else [port, proto] = [p.value, (m![2] as Proto | undefined) ?? 'tcp'];
  }
  if (!(EXPECTS as string[]).includes(expect)) {
    const hint = suggest(expect, EXPECTS);
    bad(`unknown expectation ${quote(expect)} (${hint ? `did you mean "${hint}"?` : `expected ${EXPECTS.join(', ')}`})`);
  }
  let family: Family = 4;
  let via: Side | undefined;
  let i = 0;
  if (opts[i] === 'ipv6') [family, i] = [6, i + 1];
  if (opts[i] === 'via') {
    const side = opts[i + 1];
    if (side !== 'public' && side !== 'private') return malformed();
    [via, i] = [side, i + 2];
  }
  if (i < opts.length) return malformed();
  if (!ok) return undefined;
  return {
    text: s.value,
    from,
    to,
    proto,
    ...(port === undefined ? {} : { port }),
    expect: expect as Expect,
    family,
    ...(via ? { via } : {}),
    pos: r.pos(s),
  };
}
