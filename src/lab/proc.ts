// Child-process helpers for the lab: argv arrays only (never a shell string
// built from inventory values), bounded concurrency, and detached daemons.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { LabError } from '../errors.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** Exit code reported when a command is killed for running past its timeout (as timeout(1) does). */
export const TIMEOUT_CODE = 124;

export function runCommand(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (!cmd) return Promise.reject(new LabError('runCommand: empty argv'));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer =
      opts.timeoutMs !== undefined
        ? setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, opts.timeoutMs)
        : undefined;
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new LabError(`cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      let stderr = Buffer.concat(err).toString('utf8');
      if (timedOut) stderr += `\n[lab] killed after ${opts.timeoutMs} ms`;
      resolve({
        code: timedOut ? TIMEOUT_CODE : (code ?? (signal ? 128 + signalNumber(signal) : 1)),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr,
      });
    });
    // A child that exits before reading its stdin must not crash us with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Like runCommand, but a non-zero exit is an error that quotes stderr. */
export async function runChecked(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await runCommand(argv, opts);
  if (r.code !== 0) {
    throw new LabError(`${argv.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  }
  return r;
}

function signalNumber(signal: NodeJS.Signals): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return table[signal] ?? 0;
}

/**
 * Runs fn over items with at most `limit` in flight. Every item is settled before
 * returning so no half-started work races a teardown; failures are reported together.
 */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  const errors: Array<{ index: number; error: unknown }> = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i] as T, i);
      } catch (error) {
        errors.push({ index: i, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length > 0) {
    errors.sort((a, b) => a.index - b.index);
    if (errors.length === 1) throw errors[0]!.error;
    const text = errors.map((e) => (e.error instanceof Error ? e.error.message : String(e.error))).join('\n');
    throw new LabError(`${errors.length} failures:\n${text}`);
  }
  return results;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** True while pid exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // A zombie still answers kill(0); its state letter is after the ")".
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}
