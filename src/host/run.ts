// Run the shipped host script over a session: the script text and checked
// arguments form the command, data goes on stdin. Nothing from the inventory
// is ever pasted into the command line.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';
import { FleetError } from '../errors.js';
import { assembleHostScriptFile } from './assemble.js';
import { shakeScript } from './shake.js';
import { TransportError, type ExecResult, type HostSession, type HostStream } from '../transport/types.js';

/** Exit codes of fleetfw-host.sh (keep in sync with the script's header). */
export const HostExit = {
  usage: 64,
  test: 65,
  load: 66,
  noTxn: 70,
  changed: 71,
  late: 72,
  arm: 73,
  tool: 74,
  locked: 75,
  stale: 76,
  space: 77,
  loopback: 78,
  /**
   * Persisting failed: disk full, a failed write, or files that would not load at boot
   * (the message says which). From confirm: confirmed, the host runs the new rules with
   * its OLD persisted files (`outcome` says confirmed-unpersisted; the next prepare
   * persists first). From prepare: the last confirmed rules still cannot be persisted;
   * nothing changed.
   */
  persist: 79,
} as const;

export const SPLIT_LINE = '# fleetfw-split v6';
/** Starts the optional third section: the ipsets the rules match (`ipset restore` format). */
export const SETS_SPLIT_LINE = '# fleetfw-split ipsets';
const SAFE_ARG = /^[A-Za-z0-9._:/=@+-]+$/;

let assembledText: string | undefined;
let scriptText: string | undefined;
let fullQuoted: string | undefined;
/** Per verb set (sorted, space-joined): the shaken script as sent, quoted. */
const quotedScripts = new Map<string, string>();

/**
 * The whole script, compacted (a command sends only what its verbs need:
 * hostScriptFor): assembled (its programs put in, see assemble.ts), without its
 * comment lines, indentation and blank lines. Every connection's login shell parses
 * the whole command line, then sh parses the script (about 45 ns a character each,
 * twice per host in an apply). The script has no here-documents, and a space before
 * each line continuation: none of these lines is data, and no two words run together.
 *
 * Built (dist/cli/main.js, dist/host/run.js), the script is dist/host/fleetfw-host.sh,
 * which the build assembled; from a checkout (src/host/run.ts, or a build without
 * it), the source beside its programs, assembled here.
 */
export function hostScript(): string {
  return (scriptText ??= compactScript(assembledScript()));
}

function assembledScript(): string {
  if (assembledText !== undefined) return assembledText;
  for (const rel of ['../host/fleetfw-host.sh', '../../src/host/fleetfw-host.sh']) {
    const file = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(file)) return (assembledText = assembleHostScriptFile(file));
  }
  throw new FleetError('fleetfw-host.sh is missing from the installation');
}

/**
 * The script as sent for these verbs: only the functions and programs they reach
 * (shake.ts), compacted. A facts script is about a quarter of the whole; any other
 * verb the dispatcher knows answers exit 64 (usage) saying it was not sent.
 */
export function hostScriptFor(verbs: readonly string[]): string {
  return compactScript(shakeScript(assembledScript(), verbs));
}

function quotedScriptFor(verbs: readonly string[]): string {
  const key = [...new Set(verbs)].sort().join(' ');
  let q = quotedScripts.get(key);
  if (q === undefined) quotedScripts.set(key, (q = shellQuote(hostScriptFor(verbs))));
  return q;
}

export function compactScript(text: string): string {
  return `${text
    .split('\n')
    .map((l) => l.trimStart())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .join('\n')}\n`;
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** `verb args...` once every word is checked: nothing else ever reaches the host's shell. */
function checkedWords(verb: string, args: readonly string[]): string {
  for (const a of [verb, ...args]) {
    if (!SAFE_ARG.test(a)) throw new FleetError(`refusing to pass unsafe argument ${JSON.stringify(a)} to a host`);
  }
  return [verb, ...args].join(' ');
}

/**
 * The command that runs `verb` with the script shaken for it; for `serve`, `verbs`
 * are those the kept script will run ('all': the whole script).
 */
export function hostCommand(verb: string, args: readonly string[], sudo: boolean, verbs: readonly string[] | 'all' = []): string {
  const words = checkedWords(verb, args);
  const script = verbs === 'all' ? (fullQuoted ??= shellQuote(hostScript())) : quotedScriptFor([verb, ...verbs]);
  return `${sudo ? 'sudo -n ' : ''}sh -c ${script} fleetfw-host ${words}`;
}

/**
 * One `fleetfw-host serve` process kept on a session: verbs run one after the
 * other in it (the script's cmd_serve describes the framing), so an apply's
 * read and prepare start one login shell, not two: on hosts whose shell start-up
 * is heavy (rc files, sudo) that is most of what a command costs.
 */
export class HostServer {
  private readonly decoder = new StringDecoder('utf8');
  private out = '';
  private errTail = '';
  private exit: number | null | undefined;
  private closed = false;
  private pending?: { nonce: string; resolve: (r: ExecResult) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout };
  /** The live hash of the read this script answered (its scratch files hold that read's canonical text). */
  readHash?: string;

  private constructor(
    readonly session: HostSession,
    private readonly stream: HostStream,
    /** The verbs its script was sent for; undefined: the whole script. */
    private readonly verbs?: ReadonlySet<string>,
  ) {
    stream.on('data', (d: Buffer) => {
      this.out += this.decoder.write(d);
      this.settle();
    });
    stream.stderr.on('data', (d: Buffer) => (this.errTail = (this.errTail + d.toString('utf8')).slice(-4000)));
    stream.on('exit', (code: number | null) => (this.exit = code));
    stream.on('error', () => undefined);
    stream.on('close', () => {
      this.closed = true;
      const p = this.pending;
      if (!p) return;
      this.pending = undefined;
      clearTimeout(p.timer);
      // Ended without an answer: like a one-shot command, its exit status (sudo's refusal, a kill) is the answer.
      if (this.exit !== undefined) p.resolve({ code: this.exit, stdout: this.out, stderr: this.errTail });
      else p.reject(new TransportError(`${session.host}: the session closed before the command exited (connection lost?)`, session.host, 'target', 'exec'));
    });
  }

  /**
   * `verbs`: every verb that will be requested (ping always answers); the script is
   * shaken for them, and a request for another is refused here, before it is sent.
   * Without them, the whole script.
   */
  static async start(session: HostSession, sudo: boolean, verbs?: readonly string[]): Promise<HostServer> {
    const stream = await session.spawn(hostCommand('serve', [], sudo, verbs ?? 'all'));
    return new HostServer(session, stream, verbs && new Set([...verbs, 'ping']));
  }

  /** Run one verb; a server whose channel is gone sent nothing (reason `channel`, safe to retry elsewhere). */
  request(verb: string, args: readonly string[], opts: { stdin?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
    let words: string;
    try {
      words = checkedWords(verb, args);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const host = this.session.host;
    if (this.verbs && !this.verbs.has(verb)) return Promise.reject(new FleetError(`${host}: the kept host script was started without verb ${verb}`));
    if (this.closed) return Promise.reject(new TransportError(`${host}: the kept session is gone`, host, 'target', 'channel'));
    if (this.pending) return Promise.reject(new FleetError(`${host}: one request at a time`));
    const nonce = randomBytes(8).toString('hex');
    const data = Buffer.from(opts.stdin ?? '', 'utf8');
    return new Promise<ExecResult>((resolve, reject) => {
      const timer =
        opts.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.pending = undefined;
              this.stream.close();
              reject(new TransportError(`${host}: command timed out after ${opts.timeoutMs} ms (the remote process may still be running)`, host, 'target', 'timeout'));
            }, opts.timeoutMs);
      this.pending = { nonce, resolve, reject, timer };
      this.stream.write(`${nonce} ${data.length} ${words}\n`);
      if (data.length > 0) this.stream.write(data);
    });
  }

  /**
   * Is the kept script still answering? A peer that went away (host rebooted,
   * sshd killed) can leave the forwarded connection half-closed, and the bastion
   * then never tells (seen with OpenSSH 9.2: its end stays in CLOSE-WAIT): a no-op
   * round trip, answered in milliseconds by a live script, finds out before a
   * verb that matters. No answer in time: the caller takes a new connection.
   */
  async alive(timeoutMs = 5_000): Promise<boolean> {
    try {
      const r = await this.request('ping', [], { timeoutMs });
      return r.code === 0 && r.stdout === 'pong\n';
    } catch {
      return false;
    }
  }

  /**
   * End the serve loop (stdin closed) and wait for it to exit, at most `ms`: a
   * script still running when its session closes would be orphaned on the host.
   */
  finish(ms = 2_000): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.stream.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.stream.end();
    });
  }

  private settle(): void {
    const p = this.pending;
    // The answer ends with its rc line: only a tail that ends so is worth a look.
    if (!p || !this.out.endsWith(` ${p.nonce}\n`)) return;
    const m = new RegExp(`\\n--- fleetfw-rc (\\d+) ${p.nonce}\\n$`).exec(this.out.slice(-80));
    if (!m) return;
    const body = this.out.slice(0, this.out.length - m[0].length);
    const sep = `\n--- fleetfw-stderr ${p.nonce}\n`;
    const at = body.lastIndexOf(sep);
    this.out = '';
    this.pending = undefined;
    clearTimeout(p.timer);
    p.resolve({ code: Number(m[1]), stdout: body.slice(0, Math.max(0, at)), stderr: at < 0 ? '' : body.slice(at + sep.length) });
  }
}

const withNewline = (t: string) => (t.endsWith('\n') || t === '' ? t : `${t}\n`);

/** Candidate rules for both families (and their ipsets, if any) as one stdin stream. */
export function joinFamilies(v4: string, v6: string, ipsets?: string): string {
  const sets = ipsets ? `${withNewline(v6)}${SETS_SPLIT_LINE}\n${ipsets}` : v6;
  return `${v4.endsWith('\n') ? v4 : `${v4}\n`}${SPLIT_LINE}\n${sets}`;
}

export function splitFamilies(text: string): { v4: string; v6: string; ipsets?: string } {
  const at = text.indexOf(`\n${SPLIT_LINE}\n`);
  if (at < 0) return { v4: text, v6: '' };
  const v4 = text.slice(0, at + 1);
  const rest = text.slice(at + SPLIT_LINE.length + 2);
  const marker = `${SETS_SPLIT_LINE}\n`;
  const found = rest.indexOf(`\n${marker}`);
  const sets = rest.startsWith(marker) ? 0 : found < 0 ? -1 : found + 1;
  if (sets < 0) return { v4, v6: rest };
  return { v4, v6: rest.slice(0, sets), ipsets: rest.slice(sets + marker.length) };
}

/** One verb: a one-shot command on a session, or a request to a kept {@link HostServer}. */
export async function runHost(
  on: HostSession | HostServer,
  verb: string,
  args: readonly string[],
  opts: { sudo: boolean; stdin?: string; timeoutMs?: number },
): Promise<ExecResult> {
  const r =
    on instanceof HostServer
      ? await on.request(verb, args, { stdin: opts.stdin, timeoutMs: opts.timeoutMs })
      : await on.exec(hostCommand(verb, args, opts.sudo), { stdin: opts.stdin ?? '', timeoutMs: opts.timeoutMs });
  const host = on instanceof HostServer ? on.session.host : on.host;
  if (r.code !== 0 && opts.sudo) explainSudo(host, r);
  return r;
}

/** Turn sudo's own refusals into advice; other failures are the caller's. */
function explainSudo(host: string, r: ExecResult): void {
  if (/must have a tty|requiretty/i.test(r.stderr)) {
    throw new FleetError(`${host}: sudo requires a tty (Defaults requiretty); allow the fleetfw user with "Defaults:<user> !requiretty"`);
  }
  if (/a password is required|password is required/i.test(r.stderr)) {
    throw new FleetError(`${host}: sudo asks for a password; fleetfw needs passwordless sudo (NOPASSWD) for its user`);
  }
}

/** The last line of the script's stderr, which carries its message. */
export function hostMessage(r: ExecResult): string {
  const lines = r.stderr.trim().split('\n');
  const own = lines.filter((l) => l.startsWith('fleetfw-host: ')).pop();
  return (own ?? lines.pop() ?? `exit ${r.code}`).replace(/^fleetfw-host: /, '');
}
