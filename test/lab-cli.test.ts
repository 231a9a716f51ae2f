// `fleetfw lab` as a user meets it: an inventory of its own (public side on
// 198.51.100.0/24, the operator at 203.0.113.77, host names with `_`, a long
// one, a host called `operator`), a lab dir inside a folder nobody else may
// enter, a umask of 077, and the refusals: one line each, exit 64, no trace.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachLab, destroyLab } from '../src/lab/lab.js';
import { listNamespaces } from '../src/lab/netns.js';
import { requireLabPrerequisites, ROOT, type CliResult } from './support.js';

const CLI = join(ROOT, 'dist/cli/main.js');
const LONG = 'db_primary.eu-west-1.internal-cluster-replica-set-01.example';

function inventoryText(operators: string): string {
  return `version: 1
templates: ../templates
operators: [${operators}]
networks:
  lan:
    bastion: edge_gw
defaults:
  base: isolated
  interfaces: { public: eth0, private: eth1 }
  ssh: { user: root }
externals:
  internet: { address: 198.51.100.200, side: public }
  intruder: { address: 192.0.2.250, side: private }
hosts:
  edge_gw:
    public: 198.51.100.10
    private: 192.0.2.10
    roles: [bastion]
  ${LONG}:
    private: 192.0.2.11
    roles: [backend]
    ssh: { user: deploy, sudo: true }
  operator:
    private: 192.0.2.12
    roles: [backend]
`;
}

/** The built CLI as a user runs it (outside any namespace), optionally under umask 077. */
function cli(args: string[], opts: { umask077?: boolean } = {}): Promise<CliResult> {
  const t0 = Date.now();
  const child = opts.umask077
    ? spawn('sh', ['-c', 'umask 077; exec "$0" "$@"', process.execPath, CLI, ...args], { cwd: ROOT })
    : spawn(process.execPath, [CLI, ...args], { cwd: ROOT });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr, ms: Date.now() - t0 })));
}

/** A refusal as the user should see it: exit 64, one line on stderr, no stack trace. */
function expectOneLineRefusal(r: CliResult, message: RegExp): void {
  expect(r.code, r.stdout + r.stderr).toBe(64);
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(r.stderr.trimEnd()).toMatch(message);
}

describe('fleetfw lab with an inventory of its own', () => {
  let root: string;
  let dir: string;
  let inventory: string;

  beforeAll(() => {
    requireLabPrerequisites();
    root = mkdtempSync(join(tmpdir(), 'fleetfw-labcli-'));
    cpSync(join(ROOT, 'templates'), join(root, 'templates'), { recursive: true });
    mkdirSync(join(root, 'inventories'));
    inventory = join(root, 'inventories', 'own.yaml');
    writeFileSync(inventory, inventoryText('203.0.113.77/32'));
    // A folder other users cannot enter: the non-root lab user must still log in.
    mkdirSync(join(root, 'private'), { mode: 0o700 });
    dir = join(root, 'private', 'lab');
  });

  afterAll(async () => {
    if (!root) return;
    await cli(['lab', 'down', '--dir', dir]);
    await destroyLab(dir);
    rmSync(root, { recursive: true, force: true });
  });

  it('starts on the inventory’s subnets, with the operator its operators name, under a 0700 folder and umask 077', async () => {
    expect(statSync(join(root, 'private')).mode & 0o777).toBe(0o700);
    const r = await cli(['lab', 'up', '--inventory', inventory, '--dir', dir], { umask077: true });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    console.log(`lab up: ${r.ms} ms`);
    expect(r.stdout).toContain('public side 203.0.113.0/24 + 198.51.100.0/24, private side 192.0.2.0/24; the operator is 203.0.113.77');
    const lab = await attachLab(dir);
    expect(lab.operator).toEqual({ address: '203.0.113.77' });
    for (const host of ['edge_gw', LONG, 'operator']) {
      expect((await lab.exec(host, ['hostname'])).stdout.trim()).toBe(host);
      expect(lab.netnsOf(host)).toMatch(new RegExp(`^${lab.prefix}-h-[A-Za-z0-9.-]{1,33}$`));
    }
    expect(listNamespaces(`${lab.prefix}-`)).toHaveLength(3 + 2 + 2);
  });

  it('plans and applies through the bastion edge_gw, as a non-root user behind it; only the operator reaches the bastion', async () => {
    const run = (args: string[]) => cli(['lab', 'run', '--dir', dir, '--', ...args, '--inventory', inventory]);
    const applied = await run(['apply', '--yes', '--window', '10']);
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    expect(applied.stdout).toMatch(/3 confirmed, 0 unchanged/);
    const plan = await run(['plan']);
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    console.log(`apply: ${applied.ms} ms, plan: ${plan.ms} ms`);
    const lab = await attachLab(dir);
    // The bastion's rules admit 203.0.113.77/32 alone: the internet, on the same bridge, is dropped.
    expect(await lab.probe('internet', '198.51.100.10', 'tcp', 22, { timeoutMs: 800 })).toBe('timeout');
    const who = await lab.exec(LONG, ['sh', '-c', 'su deploy -c "id -un; sudo -n id -u; cat /run/fleetfw-lab/authorized_keys >/dev/null && echo keys"']);
    expect(who.stdout.split('\n')).toEqual(['deploy', '0', 'keys', '']);
  });

  it('refuses a second lab up in the same dir with one line (exit 64)', async () => {
    const r = await cli(['lab', 'up', '--inventory', inventory, '--dir', dir]);
    expectOneLineRefusal(r, /^fleetfw: a lab \(ffw[0-9a-f]{4}\) is already running in .*private\/lab: .*fleetfw lab down --dir /);
  });

  it('after lab down, lab run says there is no lab, in one line (exit 64)', async () => {
    const down = await cli(['lab', 'down', '--dir', dir]);
    expect(down.code, down.stderr).toBe(0);
    expect(existsSync(dir)).toBe(false);
    const r = await cli(['lab', 'run', '--dir', dir, '--', 'plan', '--inventory', inventory]);
    expectOneLineRefusal(r, /^fleetfw: no lab in .*private\/lab: start one with `fleetfw lab up --dir /);
  });

  it('refuses operators outside the documentation ranges before creating anything', async () => {
    const other = join(root, 'inventories', 'office.yaml');
    writeFileSync(other, inventoryText('10.20.0.0/16'));
    const otherDir = join(root, 'office-lab');
    const r = await cli(['lab', 'up', '--inventory', other, '--dir', otherDir]);
    expectOneLineRefusal(r, /^fleetfw: operators \(10\.20\.0\.0\/16\): the lab needs a free address for its operator .* e\.g\. 203\.0\.113\.250\/32$/);
    expect(existsSync(otherDir)).toBe(false);
  });
});
