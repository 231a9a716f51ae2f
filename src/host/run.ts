// Run the shipped host script over a session: the script text and checked
// arguments form the command, data goes on stdin. Nothing from the inventory
// is ever pasted into the command line.
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FleetError } from '../errors.js';
import type { ExecResult, HostSession } from '../transport/ssh.js';

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
} as const;

export const SPLIT_LINE = '# fleetfw-split v6';
/** Starts the optional third section: the ipsets the rules match (`ipset restore` format). */
export const SETS_SPLIT_LINE = '# fleetfw-split ipsets';
const SAFE_ARG = /^[A-Za-z0-9._:/=@+-]+$/;

let scriptText: string | undefined;

/** The script ships in the package under src/host (see package.json "files"). */
export function hostScript(): string {
  if (scriptText !== undefined) return scriptText;
  for (const rel of ['./fleetfw-host.sh', '../../src/host/fleetfw-host.sh']) {
    const file = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(file)) return (scriptText = readFileSync(file, 'utf8'));
  }
  throw new FleetError('fleetfw-host.sh is missing from the installation');
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function hostCommand(verb: string, args: readonly string[], sudo: boolean): string {
  for (const a of [verb, ...args]) {
    if (!SAFE_ARG.test(a)) throw new FleetError(`refusing to pass unsafe argument ${JSON.stringify(a)} to a host`);
  }
  return `${sudo ? 'sudo -n ' : ''}sh -c ${shellQuote(hostScript())} fleetfw-host ${[verb, ...args].join(' ')}`;
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

export async function runHost(
  session: HostSession,
  verb: string,
  args: readonly string[],
  opts: { sudo: boolean; stdin?: string; timeoutMs?: number },
): Promise<ExecResult> {
  const r = await session.exec(hostCommand(verb, args, opts.sudo), { stdin: opts.stdin ?? '', timeoutMs: opts.timeoutMs });
  if (r.code !== 0 && opts.sudo) explainSudo(session.host, r);
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
