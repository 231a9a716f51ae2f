// Shared by the end-to-end suites: run the real fleetfw CLI from the lab's
// operator namespace, and small helpers over the lab.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { runInLab } from '../src/cli/lab-commands.js';
import { labSpecFromInventory, startLab, type Lab } from '../src/lab/lab.js';
import { loadInventory } from '../src/inventory/load.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const inventoryPath = (name: string) => join(ROOT, 'inventories', `${name}.yaml`);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** The end-to-end suite is required: missing root or tools is a failure, never a skip. */
export function requireLabPrerequisites(): void {
  expect(process.getuid?.(), 'the end-to-end suite must run as root').toBe(0);
  for (const tool of ['ip', 'sshd', 'iptables-restore', 'netfilter-persistent', 'socat', 'sudo', 'ssh-keygen']) {
    const found = spawnSync('sh', ['-c', `PATH="$PATH:/usr/sbin:/sbin" command -v ${tool}`]).status === 0;
    expect(found, `${tool} must be installed (scripts/install-debian-deps.sh)`).toBe(true);
  }
}

export function fleetfw(
  lab: Lab,
  args: string[],
  opts: { onStderr?: (chunk: string, child: ChildProcess) => void; onSpawn?: (child: ChildProcess) => void } = {},
): Promise<CliResult> {
  const t0 = Date.now();
  const child = runInLab(lab, args, { stdio: 'pipe' });
  opts.onSpawn?.(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => {
    stderr += d;
    opts.onStderr?.(String(d), child);
  });
  return new Promise((resolve) =>
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr, ms: Date.now() - t0 })),
  );
}

/** A writable copy of the templates and an inventory, to change the fleet inside a test. */
export function scratchFleet(name: string): { dir: string; inventory: string; templates: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'fleetfw-e2e-'));
  cpSync(join(ROOT, 'templates'), join(dir, 'templates'), { recursive: true });
  const inventory = join(dir, 'inventories', `${name}.yaml`);
  cpSync(inventoryPath(name), inventory, { recursive: true });
  return { dir, inventory, templates: join(dir, 'templates'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function writeTemplate(templatesDir: string, rel: string, text: string): void {
  writeFileSync(join(templatesDir, rel), text);
}

/** A dump without comments and counters, as the host script hashes it. */
export function normalizeDump(t: string): string {
  return t.split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]$/, '[0:0]')).join('\n');
}

export async function liveRules(lab: Lab, host: string): Promise<{ v4: string; v6: string }> {
  const strip = normalizeDump;
  const v4 = await lab.exec(host, ['iptables-save']);
  const v6 = await lab.exec(host, ['ip6tables-save']);
  return { v4: strip(v4.stdout), v6: strip(v6.stdout) };
}

export async function persistedRules(lab: Lab, host: string): Promise<{ v4: string; v6: string; mode: string }> {
  const r = await lab.exec(host, ['sh', '-c', 'cat /etc/iptables/rules.v4; echo "@@split@@"; cat /etc/iptables/rules.v6; echo "@@split@@"; stat -c %a /etc/iptables/rules.v4']);
  const [v4 = '', v6 = '', mode = ''] = r.stdout.split('@@split@@\n');
  return { v4, v6, mode: mode.trim() };
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Give one host of a scratch inventory its own base (S1 style: `  <host>:` then 4-space keys). */
export function setHostBase(inventory: string, host: string, base: string): void {
  const text = readFileSync(inventory, 'utf8');
  const at = `\n  ${host}:\n`;
  if (!text.includes(at)) throw new Error(`${inventory}: no block for host ${host}`);
  writeFileSync(inventory, text.replace(at, `${at}    base: ${base}\n`));
}

/** The host's audit trail: what any host-side step would have appended to. */
export async function historyLog(lab: Lab, host: string): Promise<string> {
  return (await lab.exec(host, ['sh', '-c', 'cat /var/lib/fleetfw/history.log 2>/dev/null || true'])).stdout;
}

/** The `reverted N.Ns after load` figure of an apply's summary line for host, in ms. */
export function revertMsOf(stdout: string, host: string): number | undefined {
  const m = new RegExp(`^${host}\\s+rolled-back\\s.*reverted ([\\d.]+)s after load`, 'm').exec(stdout);
  return m ? Math.round(Number(m[1]) * 1000) : undefined;
}

/**
 * A lab of an inventory's hosts (failing, not skipping, without root); with
 * `applied`, every host is already on its rendered rules, so later tests fall
 * back to real previous rules.
 */
export async function startInventoryLab(inventory: string, opts: { applied?: boolean } = {}): Promise<Lab> {
  requireLabPrerequisites();
  const lab = await startLab(labSpecFromInventory(loadInventory(inventory)));
  if (opts.applied) {
    const r = await fleetfw(lab, ['apply', '--inventory', inventory, '--yes', '--window', '10']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  }
  return lab;
}

/**
 * The kernel logs netfilter LOG from namespaces other than the first only with
 * this machine-wide switch: on for `fn`, then back to what it was. One test at a
 * time holds it (a lock folder), so two tests never restore it under each other.
 */
export async function withKernelLogAllNetns<T>(fn: () => Promise<T>): Promise<T> {
  const sysctl = '/proc/sys/net/netfilter/nf_log_all_netns';
  const lock = join(tmpdir(), 'fleetfw-test-nf-log-all-netns.lock');
  await waitFor(
    async () => {
      try {
        mkdirSync(lock);
        return true;
      } catch {
        return false;
      }
    },
    120_000,
    `the lock ${lock} (left by a killed test run? remove it)`,
  );
  const old = readFileSync(sysctl, 'utf8').trim();
  try {
    writeFileSync(sysctl, '1');
    return await fn();
  } finally {
    writeFileSync(sysctl, old);
    rmSync(lock, { recursive: true, force: true });
  }
}
