// `fleetfw verify --live` on S1 in the lab: every intent proven with real packets
// from the real source hosts over SSH through the bastion, listeners where nothing
// listens, a hand-made ACCEPT caught by name, nothing left on any host, not even
// when fleetfw is killed in the middle; and outside a lab, this machine standing
// in for an external only where the rules treat both alike.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labEnv } from '../src/cli/lab-commands.js';
import { OPERATOR, type Lab } from '../src/lab/lab.js';
import type { LiveReport } from '../src/engine/verify-live.js';
import { fleetfw, inventoryPath, startInventoryLab, waitFor, type CliResult } from './support.js';

const S1 = inventoryPath('s1');
const HOSTS = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
let lab: Lab;

beforeAll(async () => {
  lab = await startInventoryLab(S1, { applied: true });
});

afterAll(async () => {
  await lab?.stop();
});

/** Listening sockets on a host that are not its sshd's. */
async function foreignListeners(host: string): Promise<string[]> {
  const r = await lab.exec(host, ['ss', '-Hltnup']);
  return r.stdout.split('\n').filter((l) => l.trim() && !l.includes('"sshd"'));
}

async function nothingLeft(): Promise<boolean> {
  for (const h of HOSTS) if ((await foreignListeners(h)).length > 0) return false;
  return true;
}

function reportOf(r: CliResult): LiveReport {
  try {
    return JSON.parse(r.stdout) as LiveReport;
  } catch {
    throw new Error(`no JSON report (exit ${r.code}):\n${r.stdout}${r.stderr}`);
  }
}

describe('verify --live on S1', () => {
  it('proves every intent with real packets, listeners started only where nothing listens and all removed', async () => {
    const r = await fleetfw(lab, ['verify', '--live', '--format', 'json', '--inventory', S1]);
    const report = reportOf(r);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(report.rows.length).toBeGreaterThan(40);
    expect(report.rows.filter((x) => x.ok !== true)).toEqual([]);
    // MySQL, HTTP and GlusterFS have no daemon in the lab: fleetfw's listeners answered; sshd answered for port 22.
    expect(report.listeners.started).toBeGreaterThan(0);
    expect(report.listeners.existing).toBeGreaterThan(0);
    expect(Object.values(report.tools)).toContain('perl');
    // S1 drops what it denies (S2's REJECT is told apart in the scenarios' suite).
    expect(new Set(report.rows.map((x) => x.observed))).toEqual(new Set(['allow', 'drop']));
    console.log(`verify --live S1: ${report.rows.length} pairs in ${r.ms} ms (fleetfw's own count ${report.ms} ms)`);
    expect(await nothingLeft()).toBe(true);
  });

  it('fails on a hand-made ACCEPT rule, naming the pair and what the packet did (exit 4)', async () => {
    const rule = ['INPUT', '-s', '192.0.2.250', '-p', 'tcp', '--dport', '3306', '-j', 'ACCEPT'];
    await lab.exec('mysql-1', ['iptables', '-I', ...rule]);
    try {
      const r = await fleetfw(lab, ['verify', '--live', '--inventory', S1, '--no-color']);
      expect(r.code, r.stdout + r.stderr).toBe(4);
      expect(r.stdout).toContain('FAIL intruder -> all:3306 deny');
      expect(r.stdout).toContain('! intruder -> mysql-1 (192.0.2.14):3306/tcp: expected deny, observed allow (open)');
      // Only that pair.
      expect(r.stdout.match(/^ {3}! /gm)).toHaveLength(1);
      expect(r.stdout).toMatch(/46 of 47 pairs held with real packets, 1 failed/);
    } finally {
      await lab.exec('mysql-1', ['iptables', '-D', ...rule]);
    }
    expect(await nothingLeft()).toBe(true);
  });

  it('a host it cannot reach: its pairs cannot be told (exit 5), never a drop that would pass a deny', async () => {
    const cut = ['INPUT', '-p', 'tcp', '--dport', '22', '-s', '192.0.2.10', '-j', 'REJECT', '--reject-with', 'tcp-reset'];
    await lab.exec('mysql-2', ['iptables', '-I', ...cut]);
    let r: CliResult;
    try {
      r = await fleetfw(lab, ['verify', '--live', '--format', 'json', '--inventory', S1]);
    } finally {
      await lab.exec('mysql-2', ['iptables', '-D', ...cut]);
    }
    const report = reportOf(r);
    expect(r.code, r.stdout + r.stderr).toBe(5);
    expect(report.hostErrors.map((h) => h.host)).toEqual(['mysql-2']);
    const toMysql2 = report.rows.filter((x) => x.to === 'mysql-2' && x.proto === 'tcp');
    expect(toMysql2.length).toBeGreaterThan(5);
    // Allowed pairs still connect (an open connection proves itself); the others cannot be told without a listener.
    for (const x of toMysql2) expect(x.observed === 'allow' || x.observed === 'unknown', JSON.stringify(x)).toBe(true);
    expect(toMysql2.filter((x) => x.expected === 'deny').every((x) => x.observed === 'unknown' && x.ok === false)).toBe(true);
    expect(report.rows.filter((x) => x.from === 'mysql-2').every((x) => x.observed === 'unknown')).toBe(true);
    // The other hosts' pairs are proven as ever.
    expect(report.rows.filter((x) => x.from !== 'mysql-2' && x.to !== 'mysql-2').every((x) => x.ok === true)).toBe(true);
    expect(await nothingLeft()).toBe(true);
  });

  it('apply --verify-live proves the intents after the rollout: a drifted host re-applied, then every pair held', async () => {
    const rule = ['INPUT', '-s', '192.0.2.250', '-p', 'tcp', '--dport', '3306', '-j', 'ACCEPT'];
    await lab.exec('mysql-1', ['iptables', '-I', ...rule]);
    const r = await fleetfw(lab, ['apply', '--inventory', S1, '--yes', '--window', '10', '--verify-live', '--no-color']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^mysql-1\s+confirmed\s/m);
    expect(r.stdout).toMatch(/47 of 47 pairs held with real packets/);
    expect(r.stdout.indexOf('47 of 47 pairs held')).toBeGreaterThan(r.stdout.indexOf('1 confirmed'));
  });

  it('leaves no listener behind when fleetfw is killed in the middle', async () => {
    // Long probes: the run is still waiting on dropped packets when it is killed.
    let child: ReturnType<typeof spawn> | undefined;
    const run = fleetfw(lab, ['verify', '--live', '--inventory', S1, '--timeout', '60000'], { onSpawn: (c) => (child = c) });
    await waitFor(async () => (await foreignListeners('mysql-1')).some((l) => l.includes('"perl"')), 30_000, 'a listener of fleetfw on mysql-1');
    child!.kill('SIGKILL');
    const r = await run;
    expect(r.code).toBe(128);
    // The session's end closes the listener's stdin: it goes at once, long before its own deadline.
    await waitFor(nothingLeft, 15_000, 'every listener gone');
  });

  it('outside a lab, this machine stands in for an external only where the rules treat it alike; the rest is said not probed', async () => {
    const env: Record<string, string | undefined> = { ...process.env, ...labEnv(lab) };
    delete env.FLEETFW_LAB;
    const child = spawn('ip', ['netns', 'exec', lab.netnsOf(OPERATOR), process.execPath, CLI, 'verify', '--live', '--format', 'json', '--inventory', S1], { env, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    const report = reportOf({ code: code ?? 1, stdout, stderr, ms: 0 });
    expect(code, stdout + stderr).toBe(0);
    const row = (intent: string, to: string) => report.rows.find((x) => x.intent === intent && x.to === to)!;
    // The operator sits on the public side: it stands in for internet, and its packets met the real rules.
    expect(row('internet -> tunnel-1:22 allow', 'tunnel-1')).toMatchObject({ ok: true, observed: 'allow' });
    expect(row('internet -> tunnel-1:22 allow', 'tunnel-1').seen).toContain(`from this machine, ${lab.operator.address}`);
    expect(row('internet -> mysql:3306 deny', 'mysql-1')).toMatchObject({ ok: true, observed: 'drop' });
    // intruder is on the private side, which this machine cannot reach; internet as a destination is outside the fleet.
    expect(row('intruder -> all:22 deny', 'mysql-1')).toMatchObject({ observed: 'not-probed' });
    expect(row('intruder -> all:22 deny', 'mysql-1').seen).toMatch(/^not probed: this machine has no route to 192\.0\.2\.14/);
    const toInternet = report.rows.filter((x) => x.to === 'internet');
    expect(toInternet.map((x) => x.observed)).toEqual(HOSTS.map(() => 'not-probed'));
    // Pairs between hosts are probed as in the lab.
    expect(row('wordpress-1 -> mysql:3306 allow', 'mysql-2')).toMatchObject({ ok: true, observed: 'allow' });
    expect(await nothingLeft()).toBe(true);
  });
});
