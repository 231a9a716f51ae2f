// The test fleet: one network namespace per host (real OpenSSH sshd, real
// netfilter, its own /etc/iptables and /var/lib/fleetfw through a private mount
// namespace), a "switch" namespace with a wan and a lan bridge, and namespaces
// for the externals and the operator. Nothing touches the machine's own network
// namespace, and every process the lab starts lives in one of its namespaces,
// so killing the namespaces' processes is a complete teardown.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { appendFile, chmod, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { isIP, isIPv4, isIPv6 } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Inventory } from '../model/inventory.js';
import { addNamespaces, deleteNamespacesSync, killNamespaceProcessesSync, listNamespaces, NETNS_DIR, runIpBatch } from './netns.js';
import { runProbe, type ProbeProto, type ProbeResult } from './probe.js';
import { isAlive, mapLimit, runChecked, runCommand, sleep, type RunResult } from './proc.js';
import { generateKey, prepareUserAccount, renderClientConfig, renderKnownHosts, renderSshdConfig, type KnownHostInput } from './sshd.js';

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
  side: 'public' | 'private';
}

export interface LabSpec {
  hosts: LabHostSpec[];
  externals: LabExternalSpec[];
  /** Where fleetfw runs, on the wan; default 203.0.113.250. */
  operator?: { address: string; address6?: string };
}

export interface LabOptions {
  dir?: string;
  /** Namespace name prefix; default `ffw` + 4 random hex digits. */
  prefix?: string;
  /** Leave the lab dir on disk after teardown (for post-mortems). */
  keep?: boolean;
  /** Hosts brought up at once; default 16. */
  concurrency?: number;
  /** Outlive this process (`fleetfw lab up`): no teardown on exit or signals; end it with destroyLab(dir). */
  detached?: boolean;
}

export interface ExecOptions {
  input?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
}

export interface ProbeOptions {
  /** Default 1500. */
  timeoutMs?: number;
  /** Picks the address when `toAddr` is a lab name; must match when it is an address. */
  family?: 4 | 6;
}

export interface Lab {
  dir: string;
  prefix: string;
  /** ed25519 private key (no passphrase) authorised for root and the non-root user on every host. */
  identityFile: string;
  /** Every host's key under its name and its addresses (some entries hashed). */
  knownHostsFile: string;
  /** OpenSSH client config: HostName/User/Port/IdentityFile per host. */
  sshConfigFile: string;
  /** ssh-agent holding the identity (lives in the operator namespace). */
  agentSocket?: string;
  netnsOf(host: string): string;
  exec(host: string, argv: string[], opts?: ExecOptions): Promise<RunResult>;
  listen(host: string, proto: 'tcp' | 'udp', port: number, addr?: string): Promise<void>;
  probe(from: string, toAddr: string, proto: ProbeProto, port?: number, opts?: ProbeOptions): Promise<ProbeResult>;
  reboot(host: string): Promise<void>;
  restartSshd(host: string): Promise<void>;
  stop(): Promise<void>;
}

export const OPERATOR = 'operator';
const DEFAULT_OPERATOR = '203.0.113.250';
const DEFAULT_CONCURRENCY = 16;
const SSHD_READY_MS = 10_000;
const STATE_FILE = 'state.json';
const DIR_PREFIX = 'fleetfw-lab-';

type NodeKind = 'host' | 'external' | 'operator';

interface NodeState {
  kind: NodeKind;
  ns: string;
  /** A `sleep infinity` holding the node's network, mount and UTS namespaces; exec enters through it. */
  anchorPid: number;
  sshdPid?: number;
}

interface LabState {
  version: 1;
  dir: string;
  prefix: string;
  keep: boolean;
  /** Pid of the process that started the lab. */
  owner: number;
  switchNs: string;
  spec: LabSpec;
  nodes: Record<string, NodeState>;
  identityFile: string;
  knownHostsFile: string;
  sshConfigFile: string;
  agentSocket?: string;
}

// --- spec ------------------------------------------------------------------

export function labSpecFromInventory(inv: Inventory): LabSpec {
  const bastions = new Set(inv.networks.map((n) => n.bastion));
  return {
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
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const IFACE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
const PREFIX_RE = /^[a-z][a-z0-9]{0,7}$/;

/** Documentation ranges only, so no lab packet could mean anything outside. */
function checkAddress(addr: string | undefined, family: 4 | 6, where: string, problems: string[]): void {
  if (addr === undefined) return;
  if (family === 4) {
    if (!isIPv4(addr) || !/^(203\.0\.113|192\.0\.2|198\.51\.100)\.\d+$/.test(addr)) {
      problems.push(`${where}: ${addr} is not an IPv4 address in 203.0.113.0/24, 192.0.2.0/24 or 198.51.100.0/24`);
    }
  } else if (!isIPv6(addr) || !/^2001:db8:/i.test(expandV6Head(addr))) {
    problems.push(`${where}: ${addr} is not an IPv6 address in 2001:db8::/32`);
  }
}

function expandV6Head(addr: string): string {
  // Enough to compare the first two groups of e.g. "2001:db8::1".
  return addr.replace(/^([0-9a-f]+):([0-9a-f]+)::/i, '$1:$2:0:');
}

export function validateLabSpec(spec: LabSpec): void {
  const problems: string[] = [];
  const names = new Set<string>([OPERATOR]);
  const addrs = new Set<string>();
  const addAddr = (a: string | undefined, where: string): void => {
    if (a === undefined) return;
    if (addrs.has(a.toLowerCase())) problems.push(`${where}: address ${a} used twice`);
    addrs.add(a.toLowerCase());
  };
  const addName = (n: string, where: string): void => {
    if (!NAME_RE.test(n)) problems.push(`${where}: bad name ${JSON.stringify(n)}`);
    else if (names.has(n)) problems.push(`${where}: name ${n} used twice (or reserved)`);
    names.add(n);
  };
  for (const h of spec.hosts) {
    const w = `host ${h.name}`;
    addName(h.name, w);
    checkAddress(h.public, 4, w, problems);
    checkAddress(h.private, 4, w, problems);
    checkAddress(h.public6, 6, w, problems);
    checkAddress(h.private6, 6, w, problems);
    for (const a of [h.public, h.private, h.public6, h.private6]) addAddr(a, w);
    for (const i of [h.interfaces.public, h.interfaces.private]) {
      if (!IFACE_RE.test(i) || i === 'lo') problems.push(`${w}: bad interface name ${JSON.stringify(i)}`);
    }
    if (h.interfaces.public === h.interfaces.private) problems.push(`${w}: public and private interface are both ${h.interfaces.public}`);
    if (!Number.isInteger(h.sshPort) || h.sshPort < 1 || h.sshPort > 65535) problems.push(`${w}: bad ssh port ${h.sshPort}`);
    if (!USER_RE.test(h.user)) problems.push(`${w}: bad user ${JSON.stringify(h.user)}`);
    if (!h.public && !h.private && !h.public6 && !h.private6) problems.push(`${w}: no address`);
  }
  for (const e of spec.externals) {
    const w = `external ${e.name}`;
    addName(e.name, w);
    checkAddress(e.address, 4, w, problems);
    checkAddress(e.address6, 6, w, problems);
    addAddr(e.address, w);
    addAddr(e.address6, w);
    if (e.side !== 'public' && e.side !== 'private') problems.push(`${w}: side must be public or private`);
  }
  const op = spec.operator ?? { address: DEFAULT_OPERATOR };
  checkAddress(op.address, 4, 'operator', problems);
  checkAddress(op.address6, 6, 'operator', problems);
  addAddr(op.address, 'operator');
  addAddr(op.address6, 'operator');
  if (problems.length > 0) throw new Error(`invalid lab spec:\n${problems.join('\n')}`);
}

// --- lifecycle ----------------------------------------------------------------

const liveLabs = new Map<string, LabState>();
let handlersInstalled = false;
/** Daemons this process spawned, per lab dir: awaited after the kill so none is left a zombie. */
const spawned = new Map<string, ChildProcess[]>();

function track(dir: string, child: ChildProcess): void {
  const list = spawned.get(dir) ?? [];
  list.push(child);
  spawned.set(dir, list);
}

async function teardown(state: LabState): Promise<void> {
  teardownSync(state);
  const children = spawned.get(state.dir) ?? [];
  spawned.delete(state.dir);
  const deadline = Date.now() + 3000;
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const left = deadline - Date.now();
    if (left <= 0) break;
    await new Promise<void>((r) => {
      const t = setTimeout(r, left);
      c.once('exit', () => (clearTimeout(t), r()));
    });
  }
}

function teardownSync(state: LabState): void {
  const names = [state.switchNs, ...Object.values(state.nodes).map((n) => n.ns)];
  killNamespaceProcessesSync(names);
  deleteNamespacesSync(names);
  if (!state.keep) rmSync(state.dir, { recursive: true, force: true });
  liveLabs.delete(state.dir);
}

function teardownAllSync(): void {
  for (const state of [...liveLabs.values()]) {
    try {
      teardownSync(state);
    } catch {
      // keep going: the other labs still need to go
    }
  }
}

/** Labs die with the process that started them, whether it exits, fails or is interrupted. */
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', teardownAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      teardownAllSync();
      process.removeListener(sig, onSignal);
      // Re-raise so the default action (or another listener) still happens.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

function saveState(state: LabState): void {
  writeFileSync(join(state.dir, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
}

/** sshd reads authorized_keys as the login user, so every ancestor of the lab dir must be searchable by others. */
function assertTraversable(dir: string): void {
  for (let d = dirname(dir); ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) throw new Error(`lab dir ${dir}: ${d} is not searchable by other users, so a non-root lab user could not log in; pick a dir under /tmp`);
    if (d === dirname(d)) break;
  }
}

function randomPrefix(): string {
  return `ffw${randomBytes(2).toString('hex')}`;
}

export async function startLab(spec: LabSpec, opts: LabOptions = {}): Promise<Lab> {
  validateLabSpec(spec);
  const prefix = opts.prefix ?? randomPrefix();
  if (!PREFIX_RE.test(prefix)) throw new Error(`lab prefix ${JSON.stringify(prefix)} must match ${PREFIX_RE}`);
  const clash = listNamespaces(`${prefix}-`);
  if (clash.length > 0) throw new Error(`namespaces with prefix ${prefix}- already exist (${clash.join(', ')}); run destroyAllLabs('${prefix}')`);
  if (!existsSync('/etc/iptables')) throw new Error('/etc/iptables is missing: install iptables-persistent (the lab bind-mounts over it)');

  const given = opts.dir === undefined ? undefined : resolve(opts.dir);
  if (given !== undefined && existsSync(given) && readdirSync(given).length > 0) {
    const old = readState(given);
    if (!old) throw new Error(`${given}: not empty and not a lab dir; refusing to use it`);
    if (Object.values(old.nodes).some((n) => existsSync(`${NETNS_DIR}/${n.ns}`))) {
      throw new Error(`${given}: lab ${old.prefix} is still running there; destroyLab it first`);
    }
    // A dead lab's leftovers (ssh-keygen would refuse to overwrite its keys).
    rmSync(given, { recursive: true, force: true });
  }
  const dir = given ?? (await mkdtemp(join(tmpdir(), `${DIR_PREFIX}${prefix}-`)));
  await mkdir(dir, { recursive: true });
  // Non-root lab users must reach authorized_keys and their home inside it.
  await chmod(dir, 0o755);
  if (spec.hosts.some((h) => h.user !== 'root')) assertTraversable(dir);

  const operator = spec.operator ?? { address: DEFAULT_OPERATOR };
  const nodes: Record<string, NodeState> = {};
  spec.hosts.forEach((h, i) => (nodes[h.name] = { kind: 'host', ns: `${prefix}-${i}`, anchorPid: 0 }));
  spec.externals.forEach((e, i) => (nodes[e.name] = { kind: 'external', ns: `${prefix}-x${i}`, anchorPid: 0 }));
  nodes[OPERATOR] = { kind: 'operator', ns: `${prefix}-op`, anchorPid: 0 };

  const state: LabState = {
    version: 1,
    dir,
    prefix,
    keep: opts.keep ?? false,
    owner: process.pid,
    switchNs: `${prefix}-sw`,
    spec: { ...spec, operator },
    nodes,
    identityFile: join(dir, 'id_ed25519'),
    knownHostsFile: join(dir, 'known_hosts'),
    sshConfigFile: join(dir, 'ssh_config'),
  };
  // Registered before anything exists so an interrupted start is still torn down.
  installExitHandlers();
  liveLabs.set(dir, state);
  const releaseIfDetached = (): void => {
    if (opts.detached) liveLabs.delete(dir);
  };
  saveState(state);
  try {
    await buildLab(state, operator, opts.concurrency ?? DEFAULT_CONCURRENCY);
    saveState(state);
    releaseIfDetached();
  } catch (e) {
    await teardown(state);
    throw e;
  }
  return new LabHandle(state);
}

async function buildLab(state: LabState, operator: { address: string; address6?: string }, concurrency: number): Promise<void> {
  const { spec, dir } = state;
  // Shared mountpoints: sshd's privsep dir and the state dir each host gets privately.
  await mkdir('/run/sshd', { recursive: true });
  await mkdir('/var/lib/fleetfw', { recursive: true });

  const identityPub = await generateKey(state.identityFile, 'fleetfw-lab');
  const authorizedKeys = join(dir, 'authorized_keys');
  await writeFile(authorizedKeys, identityPub + '\n', { mode: 0o644 });

  // Per-host files first (pure disk work), while namespaces are created.
  const hostKeysP = mapLimit(spec.hosts, concurrency, (h) => prepareHostDir(dir, h, authorizedKeys));
  const all = Object.values(state.nodes);
  await addNamespaces([state.switchNs, ...all.map((n) => n.ns)]);
  await wireSwitch(state);
  const hostKeys = await hostKeysP;

  const hostIndex = new Map(spec.hosts.map((h, i) => [h.name, i]));
  await mapLimit(Object.entries(state.nodes), concurrency, async ([name, node]) => {
    if (node.kind === 'host') {
      const h = spec.hosts[hostIndex.get(name) as number] as LabHostSpec;
      await runIpBatch(addressLines(h.interfaces.public, h.public, h.public6).concat(addressLines(h.interfaces.private, h.private, h.private6, false)), node.ns);
      const binds = (hostKeys[hostIndex.get(name) as number] as PreparedHost).binds;
      node.anchorPid = await startAnchor(dir, node.ns, name, binds);
      node.sshdPid = await startSshd(dir, node.anchorPid, h);
    } else if (node.kind === 'external') {
      const e = spec.externals.find((x) => x.name === name) as LabExternalSpec;
      await runIpBatch(addressLines('eth0', e.address, e.address6), node.ns);
      node.anchorPid = await startAnchor(dir, node.ns, name, []);
    } else {
      await runIpBatch(addressLines('eth0', operator.address, operator.address6), node.ns);
      node.anchorPid = await startAnchor(dir, node.ns, OPERATOR, []);
    }
  });

  state.agentSocket = await startAgent(state);

  const anyBastion = spec.hosts.some((h) => h.bastion);
  const known: KnownHostInput[] = spec.hosts.map((h, i) => {
    const addrs = [h.public, h.private, h.public6, h.private6].filter((a): a is string => a !== undefined);
    const [first, ...rest] = addrs;
    // Odd hosts get even their name hashed: parsers must cope with both forms.
    return i % 2 === 0
      ? { name: h.name, port: h.sshPort, plain: [h.name, ...(first ? [first] : [])], hashed: rest, publicKey: (hostKeys[i] as PreparedHost).publicKey }
      : { name: h.name, port: h.sshPort, plain: first ? [first] : [], hashed: [h.name, ...rest], publicKey: (hostKeys[i] as PreparedHost).publicKey };
  });
  await writeFile(state.knownHostsFile, renderKnownHosts(known));
  const clientHosts = spec.hosts.map((h) => ({
    name: h.name,
    hostName: (!anyBastion || h.bastion ? (h.public ?? h.private) : (h.private ?? h.public)) ?? h.public6 ?? (h.private6 as string),
    user: h.user,
    port: h.sshPort,
  }));
  await writeFile(state.sshConfigFile, renderClientConfig(clientHosts, state.identityFile, state.knownHostsFile));
}

function addressLines(iface: string, v4: string | undefined, v6: string | undefined, withLo = true): string[] {
  const lines = withLo ? ['link set lo up'] : [];
  lines.push(`link set ${iface} up`);
  if (v4) lines.push(`addr add ${v4}/24 dev ${iface}`);
  // nodad: usable at once instead of after duplicate-address detection.
  if (v6) lines.push(`addr add ${v6}/64 dev ${iface} nodad`);
  return lines;
}

async function wireSwitch(state: LabState): Promise<void> {
  const sw = state.switchNs;
  // Bridged frames need not cross the switch's (empty) netfilter, and the switch needs no IPv6 of its own.
  await runCommand(['ip', 'netns', 'exec', sw, 'sysctl', '-q', '-w', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.all.disable_ipv6=1']);
  const lines = ['link add wan type bridge forward_delay 0 stp_state 0 mcast_snooping 0', 'link add lan type bridge forward_delay 0 stp_state 0 mcast_snooping 0', 'link set wan up', 'link set lan up'];
  state.spec.hosts.forEach((h, i) => {
    const ns = (state.nodes[h.name] as NodeState).ns;
    lines.push(`link add h${i}w type veth peer name ${h.interfaces.public} netns ${ns}`, `link set h${i}w master wan up`);
    lines.push(`link add h${i}l type veth peer name ${h.interfaces.private} netns ${ns}`, `link set h${i}l master lan up`);
  });
  state.spec.externals.forEach((e, i) => {
    const ns = (state.nodes[e.name] as NodeState).ns;
    lines.push(`link add x${i} type veth peer name eth0 netns ${ns}`, `link set x${i} master ${e.side === 'public' ? 'wan' : 'lan'} up`);
  });
  lines.push(`link add op type veth peer name eth0 netns ${(state.nodes[OPERATOR] as NodeState).ns}`, 'link set op master wan up');
  await runIpBatch(lines, sw);
}

interface PreparedHost {
  publicKey: string;
  binds: Array<[string, string]>;
}

async function prepareHostDir(dir: string, h: LabHostSpec, authorizedKeys: string): Promise<PreparedHost> {
  const hd = join(dir, h.name);
  await mkdir(join(hd, 'etc-iptables'), { recursive: true });
  await mkdir(join(hd, 'state'), { recursive: true, mode: 0o700 });
  // A fresh iptables-persistent install leaves empty rules files; netfilter-persistent loads them as no-ops.
  await writeFile(join(hd, 'etc-iptables', 'rules.v4'), '', { mode: 0o644 });
  await writeFile(join(hd, 'etc-iptables', 'rules.v6'), '', { mode: 0o644 });
  await writeFile(join(hd, 'hosts'), `127.0.0.1\tlocalhost\n127.0.1.1\t${h.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n`);
  const hostKey = join(hd, 'ssh_host_ed25519_key');
  const publicKey = await generateKey(hostKey, `root@${h.name}`);
  await writeFile(
    join(hd, 'sshd_config'),
    renderSshdConfig({ port: h.sshPort, hostKey, pidFile: join(hd, 'sshd.pid'), authorizedKeysFile: authorizedKeys }),
  );
  const binds: Array<[string, string]> = [
    [join(hd, 'etc-iptables'), '/etc/iptables'],
    [join(hd, 'state'), '/var/lib/fleetfw'],
    [join(hd, 'hosts'), '/etc/hosts'],
  ];
  if (h.user !== 'root') binds.push(...(await prepareUserAccount(h.user, hd)).binds);
  return { publicKey, binds };
}

// Values arrive as positional parameters, never spliced into the script.
const ANCHOR_SCRIPT = [
  'set -e',
  'hostname "$1"',
  'shift',
  'while [ $# -ge 2 ]; do mount --bind "$1" "$2"; shift 2; done',
  'echo ready',
  'exec sleep infinity </dev/null >/dev/null 2>&1',
].join('\n');

/** Starts the namespace anchor: a private mount + UTS namespace with the host's bind mounts. */
function startAnchor(dir: string, ns: string, hostname: string, binds: Array<[string, string]>): Promise<number> {
  const argv = ['netns', 'exec', ns, 'unshare', '--mount', '--uts', '--propagation', 'private', 'sh', '-c', ANCHOR_SCRIPT, 'fleetfw-anchor', hostname, ...binds.flat()];
  return new Promise((resolve, reject) => {
    const child = spawn('ip', argv, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    track(dir, child);
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
    child.on('error', (e) => reject(new Error(`${hostname}: cannot start namespace anchor: ${e.message}`)));
    const onExit = (code: number | null): void => reject(new Error(`${hostname}: namespace setup failed (exit ${code}): ${err.trim()}`));
    child.once('exit', onExit);
    // The script closes its stdout when it execs sleep: setup is complete.
    child.stdout.once('end', () => {
      if (!out.includes('ready')) return;
      child.removeListener('exit', onExit);
      child.stderr.destroy();
      child.unref();
      resolve(child.pid as number);
    });
  });
}

function nsPrefix(anchorPid: number, mount = true): string[] {
  return mount ? ['nsenter', '-t', String(anchorPid), '-n', '-m', '-u', '--'] : ['nsenter', '-t', String(anchorPid), '-n', '--'];
}

async function startSshd(dir: string, anchorPid: number, h: LabHostSpec): Promise<number> {
  const hostDir = join(dir, h.name);
  const log = join(hostDir, 'sshd.log');
  await appendFile(log, '');
  const offset = (await readFile(log)).length;
  const argv = [...nsPrefix(anchorPid), '/usr/sbin/sshd', '-D', '-f', join(hostDir, 'sshd_config'), '-E', log];
  const child = spawn(argv[0] as string, argv.slice(1), { detached: true, stdio: 'ignore' });
  child.unref();
  track(dir, child);
  const pid = child.pid;
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  const started = Date.now();
  const tail = async (): Promise<string> => (await readFile(log, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
  while (Date.now() - started < SSHD_READY_MS) {
    if (pid === undefined || exited !== undefined) {
      throw new Error(`${h.name}: sshd exited (code ${exited}) before listening on port ${h.sshPort}; log tail:\n${await tail()}`);
    }
    const text = (await readFile(log)).subarray(offset).toString('utf8');
    if (text.includes('Server listening on')) {
      // Logged right after listen(); confirm it really accepts from inside the namespace.
      const r = await runProbe(nsPrefix(anchorPid, false), '127.0.0.1', 'tcp', h.sshPort, 1000);
      if (r === 'open') return pid;
    }
    await sleep(20);
  }
  throw new Error(`${h.name}: sshd did not accept TCP on port ${h.sshPort} within ${SSHD_READY_MS / 1000} s; log tail:\n${await tail()}`);
}

/** ssh-agent runs inside the operator namespace so the namespace teardown also ends it. */
async function startAgent(state: LabState): Promise<string> {
  const sock = join(state.dir, 'agent.sock');
  const op = state.nodes[OPERATOR] as NodeState;
  const argv = [...nsPrefix(op.anchorPid, false), 'ssh-agent', '-D', '-a', sock];
  const child = spawn(argv[0] as string, argv.slice(1), { detached: true, stdio: 'ignore' });
  child.unref();
  track(state.dir, child);
  const started = Date.now();
  while (!existsSync(sock)) {
    if (Date.now() - started > 5000) throw new Error('ssh-agent did not create its socket within 5 s');
    await sleep(10);
  }
  // The socket file appears at bind(), a moment before listen(): retry while refused.
  for (;;) {
    const r = await runCommand(['ssh-add', '-q', state.identityFile], { env: { SSH_AUTH_SOCK: sock } });
    if (r.code === 0) return sock;
    if (Date.now() - started > 5000) throw new Error(`ssh-add into the lab agent failed: ${r.stderr.trim()}`);
    await sleep(20);
  }
}

// --- the handle -------------------------------------------------------------------

// Fixed text (no inventory values): a power cycle leaves no table of either
// family (nft flush ruleset; without nft, each table emptied and then deleted by a
// restore that names it with nothing in it, which iptables-nft does), then the
// persisted files load as netfilter-persistent loads them at boot: ipsets first.
const REBOOT_SCRIPT = [
  'set -e',
  'if command -v nft >/dev/null 2>&1; then',
  '  nft flush ruleset',
  'else',
  '  for cmd in iptables ip6tables; do',
  '    tables=$($cmd-save | sed -n "s/^\\*//p")',
  '    for t in $tables; do',
  '      for c in $($cmd-save -t "$t" | sed -n "s/^:\\([^ ]*\\) \\(ACCEPT\\|DROP\\) .*/\\1/p"); do $cmd -t "$t" -P "$c" ACCEPT; done',
  '      $cmd -t "$t" -F',
  '      $cmd -t "$t" -X',
  '    done',
  '    for t in $tables; do printf "*%s\\nCOMMIT\\n" "$t"; done | $cmd-restore',
  '    case $($cmd -V) in',
  '      *nf_tables*) if $cmd-save | grep -q "^\\*"; then echo "$cmd: tables left after the flush" >&2; exit 1; fi ;;',
  '    esac',
  '  done',
  'fi',
  'if command -v ipset >/dev/null 2>&1; then ipset destroy; fi',
  'netfilter-persistent start',
].join('\n');

class LabHandle implements Lab {
  readonly dir: string;
  readonly prefix: string;
  readonly identityFile: string;
  readonly knownHostsFile: string;
  readonly sshConfigFile: string;
  readonly agentSocket?: string;

  constructor(private readonly state: LabState) {
    this.dir = state.dir;
    this.prefix = state.prefix;
    this.identityFile = state.identityFile;
    this.knownHostsFile = state.knownHostsFile;
    this.sshConfigFile = state.sshConfigFile;
    if (state.agentSocket) this.agentSocket = state.agentSocket;
  }

  private node(name: string): NodeState {
    const n = this.state.nodes[name];
    if (!n) throw new Error(`lab ${this.prefix}: no host, external or operator named ${JSON.stringify(name)}`);
    return n;
  }

  private hostSpec(name: string): LabHostSpec {
    const h = this.state.spec.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`lab ${this.prefix}: ${JSON.stringify(name)} is not a host`);
    return h;
  }

  /**
   * The anchor pid, checked to still sit in the node's namespace: a stale or
   * reused pid must never let a command (iptables!) run in the machine's own namespace.
   */
  private anchor(name: string): number {
    const n = this.node(name);
    let ok = false;
    try {
      ok = n.anchorPid > 1 && readlinkSync(`/proc/${n.anchorPid}/ns/net`) === `net:[${statSync(`${NETNS_DIR}/${n.ns}`).ino}]`;
    } catch {
      ok = false;
    }
    if (!ok) throw new Error(`lab ${this.prefix}: ${name}'s namespace ${n.ns} is gone (lab stopped?)`);
    return n.anchorPid;
  }

  netnsOf(host: string): string {
    return this.node(host).ns;
  }

  async exec(host: string, argv: string[], opts: ExecOptions = {}): Promise<RunResult> {
    return runCommand([...nsPrefix(this.anchor(host)), ...argv], opts);
  }

  async listen(host: string, proto: 'tcp' | 'udp', port: number, addr?: string): Promise<void> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`listen: bad port ${port}`);
    if (addr !== undefined && !isIP(addr)) throw new Error(`listen: bad address ${JSON.stringify(addr)}`);
    const anchor = this.anchor(host);
    const fam = addr === undefined ? '6' : isIPv6(addr) ? '6' : '4';
    const opts = [String(port), ...(addr === undefined ? ['ipv6only=0'] : [`bind=${fam === '6' ? `[${addr}]` : addr}`]), 'reuseaddr', 'fork'];
    // tcp: every connection is answered "ok\n"; udp: every datagram is echoed back.
    const args =
      proto === 'tcp'
        ? [`TCP${fam}-LISTEN:${opts.join(',')}`, 'EXEC:/bin/echo ok']
        : [`UDP${fam}-RECVFROM:${opts.join(',')}`, 'PIPE'];
    const argv = [...nsPrefix(anchor, false), 'socat', ...args];
    const child = spawn(argv[0] as string, argv.slice(1), { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    track(this.dir, child);
    let err = '';
    let exited: number | null | undefined;
    child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
    child.once('exit', (code) => (exited = code));
    const started = Date.now();
    while (!isListening(anchor, proto, port)) {
      if (exited !== undefined) throw new Error(`${host}: listener ${proto}/${port} exited (${exited}): ${err.trim()}`);
      if (Date.now() - started > 5000) {
        child.kill('SIGKILL');
        throw new Error(`${host}: listener ${proto}/${port} not up within 5 s: ${err.trim()}`);
      }
      await sleep(10);
    }
    child.stderr.destroy();
    child.unref();
  }

  async probe(from: string, toAddr: string, proto: ProbeProto, port?: number, opts: ProbeOptions = {}): Promise<ProbeResult> {
    if (proto !== 'icmp' && (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535)) {
      throw new Error(`probe ${proto}: a port 1-65535 is needed`);
    }
    const addr = this.resolveAddress(toAddr, opts.family);
    return runProbe(nsPrefix(this.anchor(from), false), addr, proto, proto === 'icmp' ? undefined : port, opts.timeoutMs ?? 1500);
  }

  /** An address as given, or a lab name's first address of the family (public before private). */
  private resolveAddress(to: string, family: 4 | 6 | undefined): string {
    if (isIP(to)) {
      if (family !== undefined && isIP(to) !== family) throw new Error(`probe: ${to} is not an IPv${family} address`);
      return to;
    }
    const h = this.state.spec.hosts.find((x) => x.name === to);
    const e = this.state.spec.externals.find((x) => x.name === to);
    const op = to === OPERATOR ? this.state.spec.operator : undefined;
    const cands =
      family === 6
        ? [h?.public6, h?.private6, e?.address6, op?.address6]
        : [h?.public, h?.private, e?.address, op?.address];
    const a = cands.find((x) => x !== undefined);
    if (!a) throw new Error(`probe: no IPv${family ?? 4} address for ${JSON.stringify(to)}`);
    return a;
  }

  async reboot(host: string): Promise<void> {
    this.hostSpec(host);
    const r = await this.exec(host, ['sh', '-c', REBOOT_SCRIPT], { timeoutMs: 30_000 });
    await appendFile(join(this.dir, host, 'reboot.log'), `--- ${new Date().toISOString()} exit ${r.code}\n${r.stdout}${r.stderr}`).catch(() => undefined);
    if (r.code !== 0) throw new Error(`${host}: simulated reboot failed (exit ${r.code}):\n${(r.stdout + r.stderr).trim()}`);
  }

  async restartSshd(host: string): Promise<void> {
    const h = this.hostSpec(host);
    const node = this.node(host);
    const anchor = this.anchor(host);
    // Only the listener goes; open sessions survive, as with `systemctl restart ssh`.
    // The recorded pid may be dead and reused by now (pid_max can be 32768): kill it
    // only while it is still an sshd in this host's network namespace.
    const ours = (pid: number): boolean => isAlive(pid) && isSshdOf(pid, anchor);
    if (node.sshdPid !== undefined && ours(node.sshdPid)) {
      process.kill(node.sshdPid, 'SIGTERM');
      const t0 = Date.now();
      while (ours(node.sshdPid) && Date.now() - t0 < 3000) await sleep(10);
      if (ours(node.sshdPid)) process.kill(node.sshdPid, 'SIGKILL');
    }
    node.sshdPid = await startSshd(this.dir, anchor, h);
    saveState(this.state);
  }

  async stop(): Promise<void> {
    if (!existsSync(this.dir) && !liveLabs.has(this.dir)) return;
    await teardown(this.state);
  }
}

/** Is pid an sshd in the same network namespace as the node's anchor? */
function isSshdOf(pid: number, anchorPid: number): boolean {
  try {
    return (
      readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sshd' &&
      readlinkSync(`/proc/${pid}/ns/net`) === readlinkSync(`/proc/${anchorPid}/ns/net`)
    );
  } catch {
    return false;
  }
}

/** Is something bound to the port in the node's namespace? Read from /proc, no process spawned. */
function isListening(anchorPid: number, proto: 'tcp' | 'udp', port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of proto === 'tcp' ? ['tcp', 'tcp6'] : ['udp', 'udp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${anchorPid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(`:${hex}`) && (proto === 'udp' || f[3] === '0A')) return true;
    }
  }
  return false;
}

// --- re-open / cleanup --------------------------------------------------------------

function readState(dir: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

export async function attachLab(dir: string): Promise<Lab> {
  const state = readState(resolve(dir));
  if (!state) throw new Error(`${dir}: no lab state (${STATE_FILE}) there`);
  const missing = Object.values(state.nodes).filter((n) => !existsSync(`${NETNS_DIR}/${n.ns}`));
  if (missing.length > 0) throw new Error(`${dir}: lab ${state.prefix} is not running (missing ${missing.map((n) => n.ns).join(', ')})`);
  return new LabHandle(state);
}

export async function destroyLab(dir: string): Promise<void> {
  dir = resolve(dir);
  const state = liveLabs.get(dir) ?? readState(dir);
  if (!state) return;
  await teardown(state);
}

/** Removes every namespace whose name starts with prefix (killing its processes) and those labs' dirs. */
export async function destroyAllLabs(prefix = 'ffw'): Promise<string[]> {
  const names = listNamespaces(prefix);
  // Labs of this process first, so their daemons are reaped too.
  for (const state of [...liveLabs.values()]) if (state.prefix.startsWith(prefix)) await teardown(state);
  killNamespaceProcessesSync(names);
  deleteNamespacesSync(names);
  let entries: string[] = [];
  try {
    entries = readdirSync(tmpdir());
  } catch {
    entries = [];
  }
  for (const e of entries) {
    if (!e.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), e);
    const state = readState(dir);
    if (state && state.prefix.startsWith(prefix) && !state.keep) rmSync(dir, { recursive: true, force: true });
  }
  return names;
}

/** Runs fn against a fresh lab and always tears it down, pass or fail. */
export async function withLab<T>(spec: LabSpec, fn: (lab: Lab) => Promise<T>, opts?: LabOptions): Promise<T> {
  const lab = await startLab(spec, opts);
  try {
    return await fn(lab);
  } finally {
    await lab.stop();
  }
}

const REQUIRED_TOOLS = ['ip', 'sshd', 'ssh', 'ssh-keygen', 'ssh-agent', 'ssh-add', 'socat', 'nsenter', 'unshare', 'iptables', 'ip6tables', 'netfilter-persistent', 'sudo'];

/**
 * Throws (never skips) unless the lab can run here: root and every tool it drives.
 * e2e tests call it first so a missing prerequisite is a failure, not a silent skip.
 */
export function assertLabPrerequisites(): void {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('must run as root (network namespaces, sshd, netfilter)');
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin', '/bin'].filter(Boolean);
  const missing = REQUIRED_TOOLS.filter((t) => !dirs.some((d) => existsSync(join(d, t))));
  if (missing.length > 0) problems.push(`missing tools: ${missing.join(', ')}`);
  if (!existsSync('/usr/share/netfilter-persistent/plugins.d/15-ip4tables')) problems.push('iptables-persistent is not installed');
  if (problems.length > 0) throw new Error(`fleetfw lab cannot run: ${problems.join('; ')}`);
}
