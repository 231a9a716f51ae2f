// Rollout order: every bastion first and alone (the rest depends on it), then
// one canary, then the others with bounded concurrency, stopping at the
// failure budget. One host's failure is a result, never an exception.
import pLimit from 'p-limit';
import { ExitCode, type ExitCodeValue } from '../errors.js';
import type { HostSpec } from '../model/inventory.js';
import { runTransaction, type ApplyEvent, type HostResult, type TransactionInput, type TransactionOptions } from './transaction.js';

export interface RolloutOptions extends Omit<TransactionOptions, 'emit'> {
  parallel: number;
  /** Stop starting new hosts once this many have failed or rolled back. */
  maxFailures: number;
  bastions: ReadonlySet<string>;
  onEvent: (e: ApplyEvent) => void;
  /** Awaited before each host's transaction; a rejection fails that host, untouched (the audit's record of its start). */
  beforeHost?: (host: string) => Promise<void>;
}

export async function rollout(inputs: TransactionInput[], opts: RolloutOptions): Promise<HostResult[]> {
  const started = Date.now();
  const results = new Map<string, HostResult>();
  let failures = 0;
  const emitFor = (host: string) => (stage: ApplyEvent['stage'], detail?: string) =>
    opts.onEvent({ host, stage, detail, at: Date.now() - started });

  const runOne = async (input: TransactionInput): Promise<void> => {
    const t0 = Date.now();
    const name = input.host.name;
    if (failures >= opts.maxFailures) {
      results.set(name, { host: name, outcome: 'skipped', reason: 'failure budget reached', ms: 0 });
      emitFor(name)('skipped', 'failure budget reached');
      return;
    }
    let r: Omit<HostResult, 'ms'>;
    try {
      await opts.beforeHost?.(name);
      r = await runTransaction(input, { ...opts, emit: emitFor(name) });
    } catch (err) {
      // Failed before anything was loaded (connection, auth, host key).
      r = { host: name, outcome: 'failed', reason: (err as Error).message };
    }
    if (r.outcome === 'failed') emitFor(name)('failed', r.reason);
    if (r.outcome !== 'confirmed' && r.outcome !== 'unchanged') failures++;
    results.set(name, { ...r, ms: Date.now() - t0 });
  };

  const isBastion = (h: HostSpec) => opts.bastions.has(h.name);
  const bastions = inputs.filter((i) => isBastion(i.host));
  const others = inputs.filter((i) => !isBastion(i.host));
  for (const b of bastions) await runOne(b);
  // A bastion that is not confirmed strands everything behind it.
  const bastionDown = bastions.some((b) => results.get(b.host.name)?.outcome !== 'confirmed');
  if (bastionDown) {
    for (const o of others) {
      results.set(o.host.name, { host: o.host.name, outcome: 'skipped', reason: 'bastion not confirmed', ms: 0 });
      emitFor(o.host.name)('skipped', 'bastion not confirmed');
    }
  } else if (others.length > 0) {
    const [canary, ...rest] = others;
    await runOne(canary!);
    const limit = pLimit(Math.max(1, opts.parallel));
    await Promise.all(rest.map((i) => limit(() => runOne(i))));
  }
  return inputs.map((i) => results.get(i.host.name)!);
}

/** 0 all confirmed (or unchanged), 6 some rolled back, 7 some unknown, 5 some failed. */
export function rolloutExitCode(results: HostResult[]): ExitCodeValue {
  if (results.some((r) => r.outcome === 'unknown')) return ExitCode.unknownState;
  if (results.some((r) => r.outcome === 'rolled-back')) return ExitCode.rolledBack;
  if (results.some((r) => r.outcome === 'failed' || r.outcome === 'skipped')) return ExitCode.hostsFailed;
  return ExitCode.ok;
}
