// `fleetfw lab`: the network-namespace test fleet, for trying fleetfw and for
// its end-to-end tests. Needs root (ip netns, sshd).
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ExitCode, LabError, type ExitCodeValue } from '../errors.js';
import { attachLab, destroyAllLabs, destroyLab, labSpecFromInventory, labStatus, OPERATOR, startLab, type Lab } from '../lab/lab.js';
import { loadFleet } from './context.js';
import { out } from './io.js';

export const DEFAULT_LAB_DIR = '.lab';
// The built CLI, from src/cli (tests) and dist/cli alike.
const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** Environment that points fleetfw at the lab's keys, known_hosts and agent. */
export function labEnv(lab: Lab): Record<string, string> {
  return {
    FLEETFW_KNOWN_HOSTS: lab.knownHostsFile,
    FLEETFW_IDENTITY: lab.identityFile,
    FLEETFW_SSH_CONFIG: lab.sshConfigFile,
    ...(lab.agentSocket ? { SSH_AUTH_SOCK: lab.agentSocket } : {}),
    // The operator's local state (audit log) stays in the lab too.
    XDG_STATE_HOME: join(lab.dir, 'operator-state'),
    // verify --live probes the externals from their own namespaces.
    FLEETFW_LAB: lab.dir,
  };
}

/** Run fleetfw as the operator does: inside the lab's operator namespace. */
export function runInLab(lab: Lab, args: string[], opts: { stdio?: 'inherit' | 'pipe' } = {}) {
  return spawn('ip', ['netns', 'exec', lab.netnsOf(OPERATOR), process.execPath, CLI, ...args], {
    env: { ...process.env, ...labEnv(lab) },
    stdio: opts.stdio ?? 'inherit',
  });
}

async function cmdLabUp(o: { inventory?: string; dir: string }): Promise<ExitCodeValue> {
  const dir = resolve(o.dir);
  const status = labStatus(dir);
  if (status.state === 'running') {
    throw new LabError(`a lab (${status.prefix}) is already running in ${o.dir}: use it with \`fleetfw lab run --dir ${o.dir} -- ...\`, stop it with \`fleetfw lab down --dir ${o.dir}\`, or pick another --dir`, ExitCode.usage);
  }
  const { inv, display } = loadFleet(o);
  const lab = await startLab(labSpecFromInventory(inv), { dir, detached: true });
  const subnets = (side: 'public' | 'private'): string => lab.subnets[side].join(' + ') || 'none';
  out(`lab up: ${inv.hosts.length} hosts of ${display} in network namespaces ${lab.prefix}-*, state in ${dir}`);
  out(`public side ${subnets('public')}, private side ${subnets('private')}; the operator is ${[lab.operator.address, lab.operator.address6].filter(Boolean).join(' and ')}`);
  out(`run fleetfw as the operator:  fleetfw lab run --dir ${o.dir} -- plan --inventory ${o.inventory ?? 'inventories/s1.yaml'}`);
  out(`tear it down:                 fleetfw lab down --dir ${o.dir}`);
  return ExitCode.ok;
}

async function cmdLabRun(args: string[], o: { dir: string }): Promise<ExitCodeValue> {
  const dir = resolve(o.dir);
  const status = labStatus(dir);
  if (status.state === 'none') throw new LabError(`no lab in ${o.dir}: start one with \`fleetfw lab up --dir ${o.dir} --inventory FILE\``, ExitCode.usage);
  if (status.state === 'stopped') {
    throw new LabError(`the lab in ${o.dir} (${status.prefix}) is not running any more: \`fleetfw lab down --dir ${o.dir}\` clears it, \`fleetfw lab up --dir ${o.dir}\` starts a new one`, ExitCode.usage);
  }
  const lab = await attachLab(dir);
  const child = runInLab(lab, args);
  return new Promise((res, rej) => {
    child.on('error', (e) => rej(new LabError(`cannot run fleetfw in the lab: ${e.message}`)));
    child.on('exit', (code, signal) => res((code ?? (signal === 'SIGINT' ? ExitCode.interrupted : ExitCode.internal)) as ExitCodeValue));
  });
}

async function cmdLabDown(o: { dir: string; all?: boolean }): Promise<ExitCodeValue> {
  if (o.all) {
    const removed = await destroyAllLabs();
    out(`removed ${removed.length} lab namespaces`);
  }
  const dir = resolve(o.dir);
  if (labStatus(dir).state === 'none') {
    if (!o.all) out(`lab down: no lab in ${o.dir}`);
    return ExitCode.ok;
  }
  await destroyLab(dir);
  out(`lab down: ${o.dir}`);
  return ExitCode.ok;
}

export function addLabCommands(program: Command, run: (p: Promise<ExitCodeValue>) => void): void {
  const lab = program.command('lab').description('a test fleet of network namespaces with real sshd and netfilter (root)');
  lab
    .command('up')
    .description('start one namespace per inventory host (plus internet, intruder and the operator)')
    .option('-i, --inventory <file>', 'inventory whose hosts the lab mirrors (default: the embedded example)')
    .option('--dir <dir>', 'lab state folder (keys, configs, logs)', DEFAULT_LAB_DIR)
    .action((o) => run(guardRoot().then(() => cmdLabUp(o))));
  lab
    .command('run')
    .description('run a fleetfw command from the operator namespace, with the lab\'s keys and known_hosts')
    .argument('<args...>', 'fleetfw arguments, after --')
    .option('--dir <dir>', 'lab state folder', DEFAULT_LAB_DIR)
    .action((args, o) => run(guardRoot().then(() => cmdLabRun(args, o))));
  lab
    .command('down')
    .description('stop the lab and remove its namespaces')
    .option('--dir <dir>', 'lab state folder', DEFAULT_LAB_DIR)
    .option('--all', 'also remove any leftover fleetfw lab namespace')
    .action((o) => run(guardRoot().then(() => cmdLabDown(o))));
}

async function guardRoot(): Promise<void> {
  if (process.getuid?.() !== 0) throw new LabError('the lab needs root (network namespaces, sshd)', ExitCode.usage);
}
