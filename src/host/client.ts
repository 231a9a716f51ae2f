// The host script's verbs as typed calls: one function per verb, each running
// it (one-shot on a session, or in a kept `serve` script), checking its exit
// code and parsing what it prints. A verb the host refuses is a HostError with
// the host's own exit code and message.
import { ExitCode, FleetError } from '../errors.js';
import type { HostSession } from '../transport/types.js';
import type { HostFacts } from './facts.js';
import { parseCanonical, parseFacts } from './facts.js';
import { parseOutcome, type TxnOutcome } from './outcome.js';
import { HostServer, hostMessage, joinFamilies, runHost, splitFamilies } from './run.js';
import { parseSections } from './sections.js';

/** A host refused a verb: its exit code (HostExit) and its own message. */
export class HostError extends FleetError {
  constructor(
    readonly host: string,
    readonly verb: string,
    readonly code: number | null,
    readonly hostSays: string,
  ) {
    super(`${host}: ${verb}: ${hostSays}`, ExitCode.hostsFailed);
  }
}

/** Where a verb runs: a session (one command) or the script kept running on one. */
export type HostConn = HostSession | HostServer;

interface VerbOptions {
  sudo: boolean;
  stdin?: string;
  timeoutMs?: number;
}

const hostOf = (on: HostConn): string => (on instanceof HostServer ? on.session.host : on.host);

/** Run a verb; its stdout when the host says 0, else a HostError. */
async function verb(on: HostConn, name: string, args: readonly string[], o: VerbOptions): Promise<string> {
  const r = await runHost(on, name, args, o);
  if (r.code !== 0) throw new HostError(hostOf(on), name, r.code, hostMessage(r));
  return r.stdout;
}

/**
 * The live rules, hashes and state; with `candidate`, also the candidate as this host
 * prints it. The candidate is sent only to a host whose iptables is not the one
 * fleetfw's formatter is verified against (facts says so): a second verb, on the
 * same connection or kept script.
 */
export async function facts(on: HostConn, sudo: boolean, candidate?: { v4: string; v6: string; ipsets?: string; verified: string }): Promise<HostFacts> {
  // Whatever this read leaves in the script's scratch files, it is no longer the text of an earlier read.
  if (on instanceof HostServer) on.readHash = undefined;
  const answer = parseFacts(await verb(on, 'facts', candidate ? ['canonical', candidate.verified] : [], { sudo, timeoutMs: 60_000 }));
  const { canonicalWanted, ...facts } = answer;
  if (on instanceof HostServer) on.readHash = facts.liveHash;
  if (candidate && canonicalWanted !== undefined) {
    // Optional: a host that refuses it is compared with fleetfw's own printing (the plan says so).
    try {
      const out = await verb(on, 'canonical', [], { sudo, stdin: joinFamilies(candidate.v4, candidate.v6, candidate.ipsets), timeoutMs: 60_000 });
      facts.canonical = parseCanonical(out);
    } catch (e) {
      if (!(e instanceof HostError)) throw e;
      facts.canonical = { unavailable: e.hostSays };
    }
  }
  return facts;
}

export interface PrepareArgs {
  txid: string;
  window: number;
  /** The live hash the plan was made against ('-' = none). */
  expectedHash: string;
  user: string;
  planHash: string;
}

/**
 * Test, back up, arm the revert, load. Throws HostError (exit codes HostExit) when the host refuses.
 * In a kept script whose read fleetfw found to hash to the expected hash, the host
 * compares the live rules with that read's text instead of hashing them (`read`).
 */
export async function prepare(on: HostConn, sudo: boolean, a: PrepareArgs, desired: { v4: string; v6: string; ipsets?: string }, timeoutMs: number): Promise<void> {
  const read = on instanceof HostServer && a.expectedHash !== '-' && on.readHash === a.expectedHash;
  await verb(on, 'prepare', [a.txid, String(a.window), a.expectedHash, a.user, a.planHash, ...(read ? ['read'] : [])], { sudo, stdin: joinFamilies(desired.v4, desired.v6, desired.ipsets), timeoutMs });
}

export interface ConfirmArgs {
  txid: string;
  /** Generations the host keeps. */
  keep: number;
  source: 'apply' | 'rollback';
}

/** The confirm's arguments as the host script takes them (with a loopback proof: port and token). */
export function confirmWords(a: ConfirmArgs, proof?: { port: number; token: string }): string[] {
  return [a.txid, String(a.keep), a.source, ...(proof ? [String(proof.port), proof.token] : [])];
}

/** Confirm over this (new) connection and persist; the generation it made. */
export async function confirm(on: HostConn, sudo: boolean, a: ConfirmArgs, timeoutMs: number): Promise<number | undefined> {
  return generationOf(await verb(on, 'confirm', confirmWords(a), { sudo, timeoutMs }));
}

/** `confirmed generation=N` */
export function generationOf(stdout: string): number | undefined {
  const g = /generation=(\d+)/.exec(stdout)?.[1];
  return g === undefined ? undefined : Number(g);
}

/** Revert a pending transaction now. */
export async function abort(on: HostConn, sudo: boolean, txid: string, reason: string, timeoutMs = 30_000): Promise<void> {
  await verb(on, 'abort', [txid, reason], { sudo, timeoutMs });
}

/** The host's own record of a transaction. */
export async function outcome(on: HostConn, sudo: boolean, txid: string, timeoutMs: number): Promise<TxnOutcome> {
  return parseOutcome(await verb(on, 'outcome', [txid], { sudo, timeoutMs }));
}

/** Install iptables-persistent where it is missing. */
export async function ensurePersistent(on: HostConn, sudo: boolean): Promise<'present' | 'installed'> {
  return (await verb(on, 'ensure-persistent', [], { sudo, timeoutMs: 300_000 })).trim() === 'installed' ? 'installed' : 'present';
}

export interface Generation {
  generation: number;
  meta: Record<string, string>;
}

/** The generations the host keeps and its recent transaction log. */
export async function history(on: HostConn, sudo: boolean): Promise<{ generations: Generation[]; log: string[] }> {
  return parseHistory(await verb(on, 'history', [], { sudo, timeoutMs: 30_000 }));
}

/** What `history` prints: `--- generation` sections of key=value lines, then `--- log`. */
export function parseHistory(stdout: string): { generations: Generation[]; log: string[] } {
  const generations: Generation[] = [];
  const log: string[] = [];
  for (const { name, lines } of parseSections(stdout)) {
    if (name === 'generation') {
      const meta: Record<string, string> = {};
      for (const line of lines) {
        const i = line.indexOf('=');
        if (i > 0) meta[line.slice(0, i)] = line.slice(i + 1);
      }
      generations.push({ generation: Number(meta.generation ?? 0), meta });
    } else if (name === 'log') {
      log.push(...lines.filter((l) => l !== ''));
    }
  }
  return { generations: generations.sort((a, b) => a.generation - b.generation), log };
}

/** The rules (and ipsets) of generation `n` as the host stored them. */
export async function generation(on: HostConn, sudo: boolean, n: number): Promise<{ v4: string; v6: string; ipsets?: string }> {
  return splitFamilies(await verb(on, 'generation', [String(n)], { sudo, timeoutMs: 30_000 }));
}

/** `iptables -vnL` of one table, both families. */
export async function show(on: HostConn, sudo: boolean, table: string, exact: boolean): Promise<{ v4: string; v6: string }> {
  const s = sectionText(await verb(on, 'show', [table, exact ? 'exact' : 'human'], { sudo, timeoutMs: 30_000 }));
  return { v4: (s.get('v4') ?? '').trimEnd(), v6: (s.get('v6') ?? '').trimEnd() };
}

/** The kernel log's netfilter lines of the last `seconds`, as the host prints them (parsed by kernel-log.ts). */
export async function kernelLog(on: HostConn, sudo: boolean, seconds: number): Promise<string> {
  return verb(on, 'kernel-log', [String(seconds)], { sudo, timeoutMs: 30_000 });
}

/** Listening sockets with their processes (`ss -ltnup`), as printed. */
export async function listeners(on: HostConn, sudo: boolean): Promise<string> {
  return sectionText(await verb(on, 'listeners', [], { sudo, timeoutMs: 30_000 })).get('listeners') ?? '';
}

/** Each section's lines joined back into text. */
function sectionText(stdout: string): Map<string, string> {
  return new Map(parseSections(stdout).map((s) => [s.name, s.lines.map((l) => `${l}\n`).join('')]));
}
