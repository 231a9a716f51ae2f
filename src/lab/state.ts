// A lab's record (state.json in its dir, enough for another process to attach
// to it or tear it down), the labs this process owns, and their teardown: on
// stop, and on exit or a signal for labs that die with their process.
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deleteNamespacesSync, killNamespaceProcessesSync, NETNS_DIR } from './netns.js';
import type { LabOperator, LabSpec, Side } from './spec.js';

export const STATE_FILE = 'state.json';

export type NodeKind = 'host' | 'external' | 'operator';

export interface NodeState {
  kind: NodeKind;
  ns: string;
  /** A `sleep infinity` holding the node's network, mount and UTS namespaces; exec enters through it. */
  anchorPid: number;
  sshdPid?: number;
}

export interface LabState {
  version: 1;
  dir: string;
  prefix: string;
  keep: boolean;
  /** Pid of the process that started the lab. */
  owner: number;
  switchNs: string;
  spec: LabSpec & { operator: LabOperator };
  /** Per side, the subnets on its bridge. */
  subnets: Record<Side, string[]>;
  nodes: Record<string, NodeState>;
  identityFile: string;
  knownHostsFile: string;
  sshConfigFile: string;
  agentSocket?: string;
}

export function saveState(state: LabState): void {
  writeFileSync(join(state.dir, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
}

export function readState(dir: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

export type LabStatus = { state: 'none' } | { state: 'running' | 'stopped'; prefix: string };

/** Is there a lab in dir, and is any of its namespaces still there (running, maybe only in part)? */
export function labStatus(dir: string): LabStatus {
  const state = readState(dir);
  if (!state?.nodes) return { state: 'none' };
  const any = Object.values(state.nodes).some((n) => existsSync(`${NETNS_DIR}/${n.ns}`));
  return { state: any ? 'running' : 'stopped', prefix: state.prefix };
}

/** Labs this process started and still owns, by dir. */
export const liveLabs = new Map<string, LabState>();
let handlersInstalled = false;
/** Daemons this process spawned, per lab dir: awaited after the kill so none is left a zombie. */
const spawned = new Map<string, ChildProcess[]>();

export function track(dir: string, child: ChildProcess): void {
  const list = spawned.get(dir) ?? [];
  list.push(child);
  spawned.set(dir, list);
}

export async function teardown(state: LabState): Promise<void> {
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

export function teardownSync(state: LabState): void {
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
export function installExitHandlers(): void {
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
