// The test fleet: one network namespace per host (real OpenSSH sshd, real
// netfilter, its own /etc/iptables and /var/lib/fleetfw through a private mount
// namespace), a "switch" namespace with a wan and a lan bridge, and namespaces
// for the externals and the operator. Nothing touches the machine's own network
// namespace, and every process the lab starts lives in one of its namespaces,
// so killing the namespaces' processes is a complete teardown.
//
// This file is the lab's entry point: start, attach, stop, clean up. The parts:
// spec.ts (what a lab is made of), addressing.ts (subnets and the operator's
// place), build.ts (bringing it up), daemons.ts (anchors, sshd, agent),
// handle.ts (a running lab), state.ts (its record and teardown).
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ExitCode, LabError } from '../errors.js';
import { buildLab } from './build.js';
import { LabHandle, type Lab } from './handle.js';
import { deleteNamespacesSync, killNamespaceProcessesSync, listNamespaces, NETNS_DIR } from './netns.js';
import { namespaceNames, OPERATOR, validateLabSpec, withOperator, type LabSpec } from './spec.js';
import { installExitHandlers, labStatus, liveLabs, readState, saveState, STATE_FILE, teardown, type LabState, type NodeState } from './state.js';

export type { Addressing, LabInterface } from './addressing.js';
export type { ExecOptions, Lab, ProbeOptions } from './handle.js';
export { labSpecFromInventory, OPERATOR, validateLabSpec, type LabExternalSpec, type LabHostSpec, type LabOperator, type LabSpec, type Side } from './spec.js';
export { labStatus, type LabStatus } from './state.js';

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

const DEFAULT_CONCURRENCY = 16;
const DIR_PREFIX = 'fleetfw-lab-';
const PREFIX_RE = /^[a-z][a-z0-9]{0,7}$/;
/** sun_path holds 108 bytes with the NUL: the agent's socket lives in the lab dir. */
const SOCKET_PATH_MAX = 107;

function randomPrefix(): string {
  return `ffw${randomBytes(2).toString('hex')}`;
}

/** A given lab dir: empty, or a stopped lab's leftovers (removed); a running lab or foreign files refuse. */
function clearGivenDir(dir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    throw new LabError(`lab dir ${dir}: ${code === 'ENOTDIR' ? 'not a directory' : `cannot read it (${code})`}`, ExitCode.usage);
  }
  if (entries.length === 0) return;
  const status = labStatus(dir);
  if (status.state === 'none') throw new LabError(`lab dir ${dir}: not empty and not a lab dir; refusing to use it`, ExitCode.usage);
  if (status.state === 'running') {
    throw new LabError(`lab dir ${dir}: lab ${status.prefix} is already running there; stop it first (fleetfw lab down --dir ${dir})`, ExitCode.usage);
  }
  // A dead lab's leftovers (ssh-keygen would refuse to overwrite its keys).
  rmSync(dir, { recursive: true, force: true });
}

export async function startLab(spec: LabSpec, opts: LabOptions = {}): Promise<Lab> {
  const full = withOperator(spec);
  const addressing = validateLabSpec(full);
  const prefix = opts.prefix ?? randomPrefix();
  if (!PREFIX_RE.test(prefix)) throw new LabError(`lab prefix ${JSON.stringify(prefix)} must match ${PREFIX_RE}`, ExitCode.usage);
  const clash = listNamespaces(`${prefix}-`);
  if (clash.length > 0) throw new LabError(`namespaces with prefix ${prefix}- already exist (${clash.join(', ')}); run destroyAllLabs('${prefix}')`, ExitCode.usage);
  if (!existsSync('/etc/iptables')) throw new LabError('/etc/iptables is missing: install iptables-persistent (the lab bind-mounts over it)', ExitCode.usage);
  const names = namespaceNames(prefix, full);

  const given = opts.dir === undefined ? undefined : resolve(opts.dir);
  if (given !== undefined && join(given, 'agent.sock').length > SOCKET_PATH_MAX) {
    throw new LabError(`lab dir ${given}: too long a path for the agent's socket (at most ${SOCKET_PATH_MAX - 'agent.sock'.length - 1} characters); pick a shorter one`, ExitCode.usage);
  }
  if (given !== undefined) clearGivenDir(given);
  const dir = given ?? (await mkdtemp(join(tmpdir(), `${DIR_PREFIX}${prefix}-`)));
  await mkdir(dir, { recursive: true });
  // Hosts see the dir at LAB_MOUNT: their non-root user must traverse it (its parents need not allow that).
  await chmod(dir, 0o755);

  const nodes: Record<string, NodeState> = {};
  for (const h of full.hosts) nodes[h.name] = { kind: 'host', ns: names.nodes[h.name] as string, anchorPid: 0 };
  for (const e of full.externals) nodes[e.name] = { kind: 'external', ns: names.nodes[e.name] as string, anchorPid: 0 };
  nodes[OPERATOR] = { kind: 'operator', ns: names.nodes[OPERATOR] as string, anchorPid: 0 };

  const state: LabState = {
    version: 1,
    dir,
    prefix,
    keep: opts.keep ?? false,
    owner: process.pid,
    switchNs: names.switchNs,
    spec: full,
    subnets: addressing.subnets,
    nodes,
    identityFile: join(dir, 'id_ed25519'),
    knownHostsFile: join(dir, 'known_hosts'),
    sshConfigFile: join(dir, 'ssh_config'),
  };
  // Registered before anything exists so an interrupted start is still torn down.
  installExitHandlers();
  liveLabs.set(dir, state);
  saveState(state);
  try {
    await buildLab(state, addressing, opts.concurrency ?? DEFAULT_CONCURRENCY);
    saveState(state);
    if (opts.detached) liveLabs.delete(dir);
  } catch (e) {
    await teardown(state);
    throw e;
  }
  return new LabHandle(state);
}

export async function attachLab(dir: string): Promise<Lab> {
  const state = readState(resolve(dir));
  if (!state) throw new LabError(`${dir}: no lab there (no ${STATE_FILE})`, ExitCode.usage);
  const missing = Object.values(state.nodes).filter((n) => !existsSync(`${NETNS_DIR}/${n.ns}`));
  if (missing.length > 0) throw new LabError(`${dir}: lab ${state.prefix} is not running (missing ${missing.map((n) => n.ns).join(', ')})`, ExitCode.usage);
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
  let entries: string[];
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
  if (problems.length > 0) throw new LabError(`fleetfw lab cannot run: ${problems.join('; ')}`, ExitCode.usage);
}
