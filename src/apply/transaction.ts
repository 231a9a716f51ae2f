// One host's transaction: read, prepare (test, back up, arm, load), confirm
// over a NEW connection, persist. The host owns the rollback: fleetfw only
// ever confirms, so losing fleetfw at any point leaves the old rules.
import { randomBytes } from 'node:crypto';
import { ExitCode, FleetError } from '../errors.js';
import type { HostSpec } from '../model/inventory.js';
import { TransportError, type ExecResult, type Transport, type HostSession } from '../transport/types.js';
import { HostExit, HostServer, hostMessage, runHost } from '../host/run.js';
import { FORMAT_VERIFIED_AGAINST } from '../analyze/format.js';
import type { HostFacts } from '../host/facts.js';
import type { TxnOutcome } from '../host/outcome.js';
import * as client from '../host/client.js';
import { isDeadSession, type SessionPool, type Taken } from './session-pool.js';

export type HostOutcome = 'confirmed' | 'unchanged' | 'rolled-back' | 'failed' | 'unknown' | 'skipped';

export type Stage =
  | 'connecting'
  | 'testing'
  | 'loaded'
  | 'confirming'
  | 'persisted'
  | 'rolling-back'
  | 'rolled-back'
  | 'unchanged'
  | 'failed'
  | 'unknown'
  | 'skipped';

export interface ApplyEvent {
  host: string;
  stage: Stage;
  detail?: string;
  /** ms since the rollout started */
  at: number;
}

export interface HostResult {
  host: string;
  outcome: HostOutcome;
  reason?: string;
  generation?: number;
  txid?: string;
  /** ms from the load to the host verified back on its previous rules. */
  revertMs?: number;
  ms: number;
}

export interface TransactionInput {
  host: HostSpec;
  desired: { v4: string; v6: string; ipsets?: string };
  /** Live hash the plan was made against; '-' = read it now. */
  expectedLiveHash?: string;
  /** Why this generation exists: apply or rollback. */
  source: 'apply' | 'rollback';
  /** Install iptables-persistent first (it is missing and the operator allows it). */
  installPersistent?: boolean;
}

export interface TransactionOptions {
  transport: Transport;
  window: number;
  generations: number;
  user: string;
  planHash: string;
  /** Apply even when the live rules already match. */
  force?: boolean;
  /** Called after the load with a fresh session: a failed probe refuses confirmation. */
  probe?: (host: HostSpec) => Promise<string | undefined>;
  emit: (stage: Stage, detail?: string) => void;
  /** Test hook: stop after this step (simulates fleetfw dying there). */
  stopAfter?: 'prepare';
  /** Sessions the plan kept open: prepare runs on the host's one instead of a new connection. */
  pool?: SessionPool;
}

export function newTxid(): string {
  const t = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  return `${t}-${randomBytes(3).toString('hex')}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Every verb runTransaction may send to the script a read left running (onFirst,
 * confirmThroughKept): that script is sent with only what these need, and refuses
 * (before sending) any other.
 */
export const KEPT_VERBS: readonly string[] = ['facts', 'canonical', 'ensure-persistent', 'prepare', 'confirm'];

async function withSession<T>(transport: Transport, host: string, fn: (s: HostSession) => Promise<T>, retries?: number): Promise<T> {
  const session = await transport.open(host, retries === undefined ? undefined : { retries });
  try {
    return await fn(session);
  } finally {
    await session.close().catch(() => undefined);
  }
}

/**
 * Read a host's facts. With a pool, the read goes through a kept host script
 * ({@link HostServer}) and both stay open there for the transaction that may
 * follow: its prepare then costs neither a connection nor a login shell.
 */
/**
 * `candidate.exact`: fleetfw prints these rules exactly as the verified iptables-save
 * does, so a host running that version need not print them itself; otherwise every
 * host canonicalises them.
 */
export async function readFacts(transport: Transport, host: HostSpec, candidate?: { v4: string; v6: string; ipsets?: string; exact?: boolean }, pool?: SessionPool): Promise<HostFacts> {
  const s = await transport.open(host.name);
  let keep = false;
  try {
    const server = pool ? await HostServer.start(s, host.ssh.sudo, KEPT_VERBS) : undefined;
    const verified = candidate?.exact === false ? '-' : FORMAT_VERIFIED_AGAINST;
    const facts = await client.facts(server ?? s, host.ssh.sudo, candidate ? { ...candidate, verified } : undefined);
    if (pool) pool.park(s, server);
    keep = pool !== undefined;
    return facts;
  } finally {
    if (!keep) await s.close().catch(() => undefined);
  }
}

export async function runTransaction(input: TransactionInput, opts: TransactionOptions): Promise<Omit<HostResult, 'ms'>> {
  const { host } = input;
  const sudo = host.ssh.sudo;
  const txid = newTxid();
  opts.emit('connecting');
  const taken: Taken = opts.pool ? await opts.pool.take(opts.transport, host.name) : { session: await opts.transport.open(host.name), reused: false };
  let first = taken.session;
  let server = taken.server;
  let reused = taken.reused;
  if (server && !(await server.alive())) {
    // The kept session died while parked: nothing was sent on it, a new one is safe.
    server = undefined;
    reused = false;
    await first.close().catch(() => undefined);
    first = await opts.transport.open(host.name);
  }
  // Every step before the confirmation runs on this first session (in the host
  // script the read left running, if any).
  const onFirst = async <T>(fn: (on: client.HostConn) => Promise<T>): Promise<T> => {
    try {
      return await fn(server ?? first);
    } catch (err) {
      if (!reused || !isDeadSession(err)) throw err;
      reused = false;
      server = undefined;
      await first.close().catch(() => undefined);
      first = await opts.transport.open(host.name);
      return fn(first);
    }
  };
  // The script the read left running stays for the confirmation; ended (never orphaned) once the host has answered.
  const closeFirst = async () => {
    await server?.finish();
    await first.close().catch(() => undefined);
  };
  let before = '';
  // The load happens after this instant, never before: the window and the revert
  // figure count from it. The host's answer can come much later (a rule set that
  // drops the replies holds it until the host has reverted).
  let sentAt = 0;
  let noAnswer: string | undefined;
  const prepareOnFirst = async (): Promise<Omit<HostResult, 'ms'> | undefined> => {
    // With a plan's hash, prepare itself refuses stale rules on the host: no extra round trip.
    if (input.expectedLiveHash && input.expectedLiveHash !== '-') {
      before = input.expectedLiveHash;
    } else {
      try {
        before = (await onFirst((on) => client.facts(on, sudo))).liveHash;
      } catch (err) {
        if (!(err instanceof client.HostError)) throw err;
        return { host: host.name, outcome: 'failed', reason: `facts: ${err.hostSays}` };
      }
    }
    if (input.installPersistent) {
      try {
        await onFirst((on) => client.ensurePersistent(on, sudo));
      } catch (err) {
        if (!(err instanceof client.HostError)) throw err;
        return { host: host.name, outcome: 'failed', reason: `iptables-persistent: ${err.hostSays}` };
      }
    }
    opts.emit('testing');
    sentAt = Date.now();
    try {
      // The answer may be held by the new rules until the host reverts them: wait that long, then read its record.
      const args = { txid, window: opts.window, expectedHash: before, user: opts.user, planHash: opts.planHash };
      await onFirst((on) => client.prepare(on, sudo, args, input.desired, opts.window * 1000 + 30_000));
    } catch (err) {
      if (err instanceof client.HostError) return prepareFailure(host.name, txid, err.code, err.hostSays);
      // Sent but unanswered (timeout, connection lost): the rules may be loaded and
      // armed, so this is not "failed"; only a channel that never opened sent nothing.
      if (!(err instanceof TransportError) || err.reason === 'channel') throw err;
      noAnswer = err.message;
    }
    return undefined;
  };
  let settled: Omit<HostResult, 'ms'> | undefined;
  try {
    settled = await prepareOnFirst();
  } catch (err) {
    await closeFirst();
    throw err;
  }
  if (noAnswer !== undefined) {
    await first.close().catch(() => undefined);
    const reason = `no answer to prepare (${noAnswer})`;
    opts.emit('rolling-back', reason);
    return settle(host, txid, before, sentAt + opts.window * 1000, sentAt, reason, opts);
  }
  if (settled) {
    await closeFirst();
    return settled;
  }
  const loadedAt = sentAt;
  opts.emit('loaded', `txid ${txid}, window ${opts.window}s`);
  if (opts.stopAfter === 'prepare') {
    await closeFirst();
    return { host: host.name, outcome: 'unknown', reason: 'stopped after prepare (test hook)', txid };
  }

  // Confirm over a NEW connection: the old one survives on conntrack and proves nothing.
  opts.emit('confirming');
  let deadline = loadedAt + opts.window * 1000;
  let refusal: string | undefined;
  const args: client.ConfirmArgs = { txid, keep: opts.generations, source: input.source };
  try {
    const budget = Math.max(2_000, Math.min(20_000, (opts.window * 1000) / 2));
    const confirmed = await withTimeout(
      withSession(opts.transport, host.name, async (s) => {
        const bad = opts.probe ? await opts.probe(host) : undefined;
        if (bad) {
          refusal = `health probe failed: ${bad}`;
          // Reverted on the spot: no need to wait for the window (a refused abort leaves the guards to it).
          const aborted = await client.abort(s, sudo, txid, 'health-probe-failed').then(() => true, (e: unknown) => (e instanceof client.HostError ? false : Promise.reject(e)));
          if (aborted) deadline = Date.now();
          return undefined;
        }
        return (await confirmThroughKept(s, server, args)) ?? runHost(s, 'confirm', client.confirmWords(args), { sudo, timeoutMs: 60_000 });
      }, 0),
      budget,
      `no new connection within ${budget / 1000}s`,
    );
    if (confirmed && confirmed.code === 0) {
      const gen = client.generationOf(confirmed.stdout);
      opts.emit('persisted', `generation ${gen}`);
      return { host: host.name, outcome: 'confirmed', generation: gen, txid };
    }
    refusal ??= confirmed ? `confirm refused: ${hostMessage(confirmed)}` : 'confirmation refused';
    // The host answered: its record says how the transaction stands, now.
    if (confirmed) deadline = Math.min(deadline, Date.now());
  } catch (err) {
    refusal = `confirmation failed: ${(err as Error).message}`;
  } finally {
    await closeFirst();
  }
  // Not confirmed: the host reverts by itself at the deadline; check that it did.
  opts.emit('rolling-back', refusal);
  return settle(host, txid, before, deadline, loadedAt, refusal, opts);
}

/**
 * Confirm in the script the read left running, once the host has read a token
 * back through the new connection `s` (see the host script's
 * new_connection_answers). That proves what a command over `s` would, and
 * spares a second login shell: on hosts with heavy rc files, most of a
 * connection's cost. Undefined when this way is not open (no kept script, sshd
 * refuses to forward, the kept session died, the loopback drops): then the
 * caller confirms with a command over `s`, as before, inside the same window.
 */
async function confirmThroughKept(s: HostSession, server: HostServer | undefined, args: client.ConfirmArgs): Promise<ExecResult | undefined> {
  if (!server || !(await server.alive(2_000))) return undefined;
  const token = randomBytes(16).toString('hex');
  const port = await s.answerOnLoopback(token, 5_000);
  if (port === undefined) return undefined;
  try {
    const r = await server.request('confirm', client.confirmWords(args, { port, token }), { timeoutMs: 60_000 });
    return r.code === HostExit.loopback ? undefined : r;
  } catch (err) {
    if (isDeadSession(err)) return undefined;
    throw err;
  }
}

/**
 * Decide a transaction that was not confirmed on the spot by the host's own
 * record, read over NEW connections once its deadline has passed: confirmed
 * (the answer was lost), reverted (and back on the rules of before), or failed
 * with the host's reason. A transaction still pending with its guards gone is
 * reverted now. `unknown` only when the host cannot be reached at all.
 */
async function settle(host: HostSpec, txid: string, before: string, deadline: number, loadedAt: number, reason: string, opts: TransactionOptions): Promise<Omit<HostResult, 'ms'>> {
  const sudo = host.ssh.sudo;
  const windowMs = opts.window * 1000;
  await sleep(Math.max(0, deadline - Date.now()) + 500);
  // Time enough for a busy host to finish its revert and answer; derived from the window, never open-ended.
  const giveUp = Date.now() + Math.max(30_000, 2 * windowMs);
  const attemptMs = Math.max(10_000, Math.min(30_000, windowMs));
  let last = '';
  while (Date.now() < giveUp) {
    try {
      const o = await withTimeout(
        withSession(opts.transport, host.name, async (s) => {
          const record = await client.outcome(s, sudo, txid, attemptMs);
          // Loaded, not confirmed, and no guard left to revert it: revert it now, while we can.
          if ((record.state === 'pending' || record.state === 'reverting') && !record.watchdog && Date.now() > deadline + 5_000) {
            await client.abort(s, sudo, txid, 'no-guard-left', attemptMs);
            return client.outcome(s, sudo, txid, attemptMs);
          }
          return record;
        }, 0),
        attemptMs + 5_000,
        `no answer within ${(attemptMs + 5_000) / 1000}s`,
      );
      const decided = decide(host.name, txid, before, o, reason, loadedAt);
      if (decided) {
        opts.emit(decided.outcome === 'confirmed' ? 'persisted' : decided.outcome === 'rolled-back' ? 'rolled-back' : 'failed', decided.reason);
        return decided;
      }
      last = `the transaction is still ${o.state} on the host`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(1000);
  }
  opts.emit('unknown', last);
  return { host: host.name, outcome: 'unknown', reason: `${reason}; could not read the host's record of the transaction after the window: ${last}`, txid };
}

/** The host's record of a transaction as a result; undefined while it is still running. */
export function decide(host: string, txid: string, before: string, o: TxnOutcome, reason: string, loadedAt: number): Omit<HostResult, 'ms'> | undefined {
  const because = (hostReason: string | undefined) => (hostReason && !reason.includes(hostReason) ? `${reason}; the host says: ${hostReason}` : reason);
  switch (o.state) {
    case 'confirmed':
      return { host, outcome: 'confirmed', txid, ...(o.generation !== undefined ? { generation: o.generation } : {}), reason: `confirmed on the host (${reason})` };
    case 'confirmed-unpersisted':
      return { host, outcome: 'failed', txid, reason: `confirmed, but not persisted: ${o.reason ?? 'unknown cause'}; the host runs the new rules and would boot its old ones` };
    case 'reverted':
      // The host hashes an empty table as an absent one: the backup empties the tables it had no copy of.
      if (o.liveHash === before) return { host, outcome: 'rolled-back', reason: because(o.reason), txid, revertMs: Date.now() - loadedAt };
      return { host, outcome: 'failed', txid, reason: `${because(o.reason)}; reverted, but the live rules differ from those before the transaction (changed since by someone else?)` };
    case 'revert-failed':
      return { host, outcome: 'failed', txid, reason: `the host's revert failed: ${o.reason ?? 'unknown cause'}` };
    case 'none':
      // Never started there (the prepare did not take the lock): nothing was changed if the rules are those of before.
      return o.liveHash === before
        ? { host, outcome: 'failed', txid, reason: `${reason}; the transaction never started on the host, its rules are unchanged` }
        : { host, outcome: 'failed', txid, reason: `${reason}; the transaction never started on the host, but its rules changed meanwhile` };
    default:
      return undefined;
  }
}

function prepareFailure(host: string, txid: string, code: number | null, message: string): Omit<HostResult, 'ms'> {
  switch (code) {
    case HostExit.load:
      return { host, outcome: 'rolled-back', reason: message, txid, revertMs: 0 };
    case HostExit.locked:
      return { host, outcome: 'failed', reason: `host is locked: ${message}` };
    case HostExit.stale:
      return { host, outcome: 'failed', reason: `stale plan: ${message}; plan again` };
    default:
      return { host, outcome: 'failed', reason: message, txid };
  }
}

/** A host's answer did not come in time (its transaction is then decided by its own record). */
class AnswerTimeout extends FleetError {
  constructor(message: string) {
    super(message, ExitCode.hostsFailed);
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new AnswerTimeout(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
