// The README's lab commands, run as the README writes them (through sh, `npx
// fleetfw` and all) in a copy of the project's templates and inventories, and
// compared with the output the README shows under them. Commands the README shows
// for a real fleet run from the lab's operator namespace, as `lab run` would.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labEnv } from '../src/cli/lab-commands.js';
import { commands, fileBlock, missingLines, readme, RUNS } from '../src/cli/fixtures/readme.js';
import { attachLab, destroyLab, labStatus, OPERATOR, type Lab } from '../src/lab/lab.js';
import { requireLabPrerequisites, ROOT, withKernelLogAllNetns } from './support.js';

const README = readme();
let dir: string;
const labDir = () => join(dir, '.lab');

// `npx fleetfw` and `fleetfw` as a user who installed the package has them; stdout
// and stderr in one stream, in the order a terminal shows them.
const PRELUDE = `exec 2>&1; fleetfw() { "${process.execPath}" "${join(ROOT, 'dist/cli/main.js')}" "$@"; }; npx() { "$@"; }; `;

interface Ran {
  code: number;
  output: string;
}

/** Run a README command line with sh, here or in the lab's operator namespace. */
function sh(command: string, opts: { lab?: Lab; env?: Record<string, string | undefined> } = {}): Promise<Ran> {
  expect(RUNS[command], `\`${command}\` is listed as run here`).toBe('e2e');
  const argv = ['sh', '-c', PRELUDE + command];
  const env: Record<string, string | undefined> = { ...process.env, ...(opts.lab ? labEnv(opts.lab) : {}), ...opts.env, NO_COLOR: '1' };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  const child = opts.lab ? spawn('ip', ['netns', 'exec', opts.lab.netnsOf(OPERATOR), ...argv], { cwd: dir, env }) : spawn(argv[0]!, argv.slice(1), { cwd: dir, env });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code: code ?? 1, output })));
}

/** The README's output for the nth time it shows `command`, against this run's. */
function expectShown(command: string, ran: Ran, nth = 0): void {
  const shown = commands(README).filter((c) => c.command === command && c.output.length)[nth];
  expect(shown, `README shows output for \`${command}\``).toBeDefined();
  const missing = missingLines(shown!.output, ran.output, [[join(dir, 'home/op'), '/home/op'], [dir, '/work']]);
  expect(missing, `README line ${shown!.line}: ${command}\n--- real output:\n${ran.output}`).toEqual([]);
}

/** The README's commands on S1, in an order that gives each the state it needs. */
async function walkthrough(lab: Lab): Promise<void> {
  const plan = await sh('npx fleetfw lab run -- plan --inventory inventories/s1.yaml');
  expect(plan.code, plan.output).toBe(2);
  const apply = await sh('npx fleetfw lab run -- apply --inventory inventories/s1.yaml --yes');
  expect(apply.code, apply.output).toBe(0);
  expectShown('npx fleetfw lab run -- apply --inventory inventories/s1.yaml --yes', apply);
  const status = await sh('npx fleetfw lab run -- status --inventory inventories/s1.yaml');
  expect(status.code, status.output).toBe(0);
  const history = await sh('npx fleetfw lab run -- history mysql-1 --inventory inventories/s1.yaml');
  expect(history.code, history.output).toBe(0);

  // Drop logging: an intruder and the internet try MySQL on mysql-1.
  await withKernelLogAllNetns(async () => {
    expect(await lab.probe('intruder', '192.0.2.14', 'tcp', 3306)).toBe('timeout');
    expect(await lab.probe('internet', '203.0.113.14', 'tcp', 3306)).toBe('timeout');
    const logs = await sh('fleetfw logs mysql-1 -i inventories/s1.yaml --since 1m', { lab });
    expect(logs.code, logs.output).toBe(0);
    expectShown('fleetfw logs mysql-1 -i inventories/s1.yaml --since 1m', logs);
  });

  // Settings per host from the ./ssh_config the README shows, its paths under this run's folder.
  const ssh = join(dir, 'home/op/.ssh');
  mkdirSync(ssh, { recursive: true });
  cpSync(lab.identityFile, join(ssh, 'fleet_ed25519'));
  writeFileSync(join(dir, 'ssh_config'), fileBlock(README, './ssh_config').join('\n').split('/home/op').join(join(dir, 'home/op')));
  const verbose = await sh('fleetfw plan -i inventories/s1.yaml --limit mysql-2 --ssh-config ./ssh_config --verbose', {
    lab,
    env: { FLEETFW_IDENTITY: undefined, FLEETFW_KNOWN_HOSTS: undefined, FLEETFW_SSH_CONFIG: undefined, SSH_AUTH_SOCK: undefined },
  });
  expect(verbose.code, verbose.output).toBe(0);
  expect(existsSync(join(ssh, 'known_hosts.db'))).toBe(true);
  expectShown('fleetfw plan -i inventories/s1.yaml --limit mysql-2 --ssh-config ./ssh_config --verbose', verbose);

  // A change reviewed as a saved plan, then someone changes wordpress-1 by hand: the apply refuses that host.
  const backend = join(dir, 'templates/roles/backend.v4');
  writeFileSync(backend, readFileSync(backend, 'utf8').replace('COMMIT', '-A INPUT -i {{ self.if.private }} -p tcp -s {{ bastion.private }} --dport 9100 -j ACCEPT\nCOMMIT'));
  const saved = await sh('fleetfw plan --inventory inventories/s1.yaml --out plan.json', { lab });
  expect(saved.code, saved.output).toBe(2);
  expectShown('fleetfw plan --inventory inventories/s1.yaml --out plan.json', saved);
  expect((await lab.exec('wordpress-1', ['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'ACCEPT'])).code).toBe(0);
  const refused = await sh('fleetfw apply plan.json --yes', { lab });
  expect(refused.code, refused.output).toBe(5);
  expectShown('fleetfw apply plan.json --yes', refused);
  expectShown('echo $?', { code: 0, output: `${refused.code}\n` });

  // The backends are at generation 2 now: mysql-1 goes back to 1.
  const rollback = await sh('fleetfw rollback mysql-1 --inventory inventories/s1.yaml --yes', { lab });
  expect(rollback.code, rollback.output).toBe(0);
  expectShown('fleetfw rollback mysql-1 --inventory inventories/s1.yaml --yes', rollback);

  const down = await sh('npx fleetfw lab down');
  expect(down.code, down.output).toBe(0);
  expect(labStatus(labDir()).state).toBe('none');
}

beforeAll(() => {
  requireLabPrerequisites();
  dir = mkdtempSync(join(tmpdir(), 'fleetfw-readme-'));
  cpSync(join(ROOT, 'templates'), join(dir, 'templates'), { recursive: true });
  mkdirSync(join(dir, 'inventories'));
  cpSync(join(ROOT, 'inventories/s1.yaml'), join(dir, 'inventories/s1.yaml'));
  // "Drop logging": a %log-drops line in the base, as the README describes it.
  const base = join(dir, 'templates/bases/isolated.v4');
  writeFileSync(base, readFileSync(base, 'utf8').replace('%roles\nCOMMIT', '%roles\n%log-drops INPUT\nCOMMIT'));
});

afterAll(async () => {
  if (dir && labStatus(labDir()).state !== 'none') await destroyLab(labDir());
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the README, run as written', () => {
  it('the lab walkthrough: lab up, plan, apply, status, logs, ssh config, rollback, a saved plan refused on drift, lab down', async () => {
    const up = await sh('npx fleetfw lab up --inventory inventories/s1.yaml');
    expect(up.code, up.output).toBe(0);
    try {
      await walkthrough(await attachLab(labDir()));
    } finally {
      if (labStatus(labDir()).state !== 'none') await destroyLab(labDir());
    }
  });

  it('your own inventory in the lab: its subnets and operator; a second lab up and lab run with no lab refused in one line', async () => {
    writeFileSync(
      join(dir, 'inventories/own.yaml'),
      [
        'version: 1',
        'templates: ../templates',
        'operators: [203.0.113.77/32]',
        'networks: { lan: { bastion: gw } }',
        'defaults: { base: isolated, interfaces: { public: eth0, private: eth1 }, ssh: { user: root } }',
        'hosts:',
        '  gw:    { public: 203.0.113.10, private: 192.0.2.10, roles: [bastion] }',
        '  web-1: { public: 198.51.100.21, private: 192.0.2.21, roles: [backend] }',
        '  web-2: { public: 198.51.100.22, private: 192.0.2.22, roles: [backend] }',
        '',
      ].join('\n'),
    );
    const up = await sh('fleetfw lab up --inventory inventories/own.yaml');
    expect(up.code, up.output).toBe(0);
    expectShown('fleetfw lab up --inventory inventories/own.yaml', up, 0);
    const again = await sh('fleetfw lab up --inventory inventories/own.yaml');
    expect(again.code, again.output).toBe(64);
    expectShown('fleetfw lab up --inventory inventories/own.yaml', again, 1);
    const downThenRun = await sh('fleetfw lab down && fleetfw lab run -- plan');
    expect(downThenRun.code, downThenRun.output).toBe(64);
    expectShown('fleetfw lab down && fleetfw lab run -- plan', downThenRun);
    expect(labStatus(labDir()).state).toBe('none');
  });
});
