// Output conventions: colour only on a TTY and never with NO_COLOR; data on
// stdout, progress and diagnostics on stderr.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Chalk } from 'chalk';
import { InterruptedError, UsageError } from '../errors.js';

/**
 * Colour as the ecosystem reads it: `--no-color` off; FORCE_COLOR=0 (or false)
 * off, any other FORCE_COLOR on even without a terminal; NO_COLOR (non-empty)
 * off; TERM=dumb off; otherwise only on a terminal.
 */
export function colorFor(stream: NodeJS.WriteStream, flag: boolean | undefined): boolean {
  if (flag === false) return false;
  const force = process.env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force.toLowerCase() !== 'false';
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false;
  if (process.env.TERM === 'dumb') return false;
  return Boolean(stream.isTTY);
}

export function chalkFor(stream: NodeJS.WriteStream, flag: boolean | undefined): InstanceType<typeof Chalk> {
  return new Chalk({ level: colorFor(stream, flag) ? 1 : 0 });
}

export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/**
 * Write text made in pieces (a plan of any size), a batch at a time, waiting
 * whenever the stream asks to (back-pressure); stops when the reader has gone
 * (EPIPE: main.ts ends the process quietly).
 */
export async function writeChunks(stream: NodeJS.WritableStream, chunks: Iterable<string>): Promise<void> {
  const BATCH = 1 << 16;
  // Let the event loop run now and then, so a closed reader's error is seen while pieces are still being made.
  const YIELD_EVERY = 1 << 24;
  let batch = '';
  let sinceYield = 0;
  const gone = () => (stream as { destroyed?: boolean }).destroyed === true;
  const flush = async (): Promise<void> => {
    const text = batch;
    batch = '';
    sinceYield += text.length;
    if (gone()) return;
    if (!stream.write(text)) await drained(stream);
    if (sinceYield >= YIELD_EVERY) {
      sinceYield = 0;
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  for (const chunk of chunks) {
    if (gone()) return;
    batch += chunk;
    if (batch.length >= BATCH) await flush();
  }
  if (batch) await flush();
}

function drained(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      stream.off('error', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
    stream.on('error', done);
  });
}

export function err(text: string): void {
  process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** Ask a yes/no question on the terminal; false when there is no terminal. */
export async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY || !process.stderr.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await new Promise<string>((resolve) => rl.question(`${question} [y/N] `, resolve));
  rl.close();
  return /^y(es)?$/i.test(answer.trim());
}

/** Read a secret from the terminal without echoing it. */
export async function askSecret(prompt: string): Promise<string> {
  if (!process.stdin.isTTY) throw new UsageError(`${prompt}: no terminal to ask on (use ssh-agent)`);
  process.stderr.write(prompt);
  const stdin = process.stdin;
  stdin.setRawMode(true);
  stdin.resume();
  let secret = '';
  return new Promise((resolve, reject) => {
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          cleanup();
          process.stderr.write('\n');
          resolve(secret);
          return;
        }
        if (ch === '\u0003') {
          cleanup();
          reject(new InterruptedError());
          return;
        }
        secret = ch === '\u007f' ? secret.slice(0, -1) : secret + ch;
      }
    };
    const cleanup = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
    };
    stdin.on('data', onData);
  });
}

/** The version in package.json: the source of truth, shipped beside the CLI in every install. */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}
