// applyPlan through the rollout, against simulated hosts: the order hosts are
// touched in, the failure budget, the audit hook before any host, and the hosts
// reported beside the transactions.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ExitCode } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import { buildHost, buildInventory } from '../analyze/fixtures/fleet.js';
import { assemblePlan, failedHostPlan, type HostPlan, type Plan } from '../plan/plan.js';
import { rolloutExitCode } from '../apply/rollout.js';
import type { ApplyEvent, HostResult } from '../apply/transaction.js';
import { FAKE_EXIT, FakeTransport, hostFailure, OPEN_V6, untilSettled, type FakeHostOptions } from '../transport/fake.js';
import { applyPlan, selectWork, type ApplySettings } from './apply.js';

const pos = { file: 'inventory.yaml', line: 1, col: 1 };
const DESIRED = { v4: '*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n', v6: OPEN_V6 };

/** Two networks, each behind its bastion: tunnel-1 (lan: db-1, db-2, web-1), tunnel-2 (dc2: web-2, web-3). */
function twoNetworks(): Inventory {
  const on = (name: string, network: string, n: number) => buildHost(name, { network, public: `203.0.113.${n}`, private: `192.0.2.${n}` });
  return buildInventory({
    networks: [
      { name: 'lan', bastion: 'tunnel-1', pos },
      { name: 'dc2', bastion: 'tunnel-2', pos },
    ],
    hosts: [on('db-1', 'lan', 21), on('db-2', 'lan', 22), on('tunnel-1', 'lan', 10), on('tunnel-2', 'dc2', 20), on('web-1', 'lan', 31), on('web-2', 'dc2', 32), on('web-3', 'dc2', 33)],
  });
}

const BASTIONS = ['tunnel-1', 'tunnel-2'];
const OTHERS = ['db-1', 'db-2', 'web-1', 'web-2', 'web-3'];

/** A live plan of every host of `inv`, made against the fake hosts' current live hashes. */
function planOf(inv: Inventory, fake: FakeTransport, status: Record<string, HostPlan['status']> = {}): Plan {
  const hosts = inv.hosts.map((h): HostPlan => {
    const s = status[h.name] ?? 'changes';
    if (s === 'unreachable' || s === 'error') return failedHostPlan(h.name, s, `${h.name}: connect timed out`);
    return { host: h.name, status: s, diffs: [], preserved: [], notes: [], desired: DESIRED, liveHash: fake.host(h.name).state.liveHash, generation: 0 };
  });
  return assemblePlan('live', 'inventory.yaml', hosts);
}

const settings = (o: Partial<ApplySettings> = {}): ApplySettings => ({ window: 0, maxFailures: 1, parallel: 10, user: 'ops@ci', source: 'apply', installPersistent: true, ...o });

async function run(inv: Inventory, fake: FakeTransport, plan: Plan, o: Partial<ApplySettings> = {}, force = false) {
  const events: ApplyEvent[] = [];
  const out = await applyPlan(inv, plan, selectWork(plan, inv, force), settings(o), { transport: fake, onEvent: (e) => events.push(e) });
  const byHost = new Map(out.results.map((r) => [r.host, r]));
  return { ...out, events, byHost, outcome: (h: string) => byHost.get(h)?.outcome };
}

/** The verb that makes a host's transaction fail before anything is loaded. */
const failPrepare = () => ({ script: (r: { verb: string }) => (r.verb === 'prepare' ? hostFailure(FAKE_EXIT.test, 'iptables-restore -t refused the IPv4 rules: line 3 failed') : undefined) });

describe('selectWork', () => {
  it('puts bastions first, keeps in-sync hosts out unless forced, and reports broken ones', () => {
    const inv = twoNetworks();
    const fake = new FakeTransport();
    const plan = planOf(inv, fake, { 'web-1': 'in-sync', 'web-2': 'unreachable' });
    const w = selectWork(plan, inv, false);
    expect(w.todo.map((h) => h.host)).toEqual(['tunnel-1', 'tunnel-2', 'db-1', 'db-2', 'web-3']);
    expect(w.untouched).toEqual([
      { host: 'web-1', outcome: 'unchanged', ms: 0, generation: 0 },
      { host: 'web-2', outcome: 'failed', reason: 'web-2: connect timed out', ms: 0 },
    ]);
    expect(w.broken.map((h) => h.host)).toEqual(['web-2']);
    expect(selectWork(plan, inv, true).todo.map((h) => h.host)).toEqual(['tunnel-1', 'tunnel-2', 'db-1', 'db-2', 'web-1', 'web-3']);
  });
});

describe('applyPlan', () => {
  it('runs the bastions first and one at a time, then one canary alone, then the rest side by side up to --parallel', async () => {
    const inv = twoNetworks();
    const fake = new FakeTransport();
    const plan = planOf(inv, fake);
    const out = await run(inv, fake, plan, { parallel: 3 });

    expect(out.exitCode).toBe(ExitCode.ok);
    expect(out.results.map((r) => [r.host, r.outcome, r.generation])).toEqual(inv.hosts.map((h) => [h.name, 'confirmed', 1]));
    const span = (h: string) => fake.span(h)!;
    // Each bastion's whole transaction (both connections) is over before the next host is touched.
    expect(span('tunnel-1').last).toBeLessThan(span('tunnel-2').first);
    for (const h of OTHERS) expect(span('tunnel-2').last).toBeLessThan(span(h).first);
    // db-1 (first in plan order) is the canary: done before any other starts.
    for (const h of OTHERS.slice(1)) expect(span('db-1').last).toBeLessThan(span(h).first);
    // The other four, three at a time.
    expect(fake.maxOverlap(OTHERS.slice(1))).toBe(3);
    // The transaction each host got: prepare against the plan's hash on one connection, confirm on a new one.
    for (const h of inv.hosts) {
      const [prepare, confirm] = fake.calls(h.name);
      expect(fake.verbs(h.name)).toEqual(['prepare', 'confirm']);
      expect(prepare!.args.slice(1)).toEqual(['0', plan.hosts.find((p) => p.host === h.name)!.liveHash, 'ops@ci', plan.planHash]);
      expect(confirm!.args).toEqual([prepare!.args[0], '5', 'apply']);
      expect(confirm!.conn).not.toBe(prepare!.conn);
      expect(fake.opens(h.name)).toHaveLength(2);
    }
    expect(fake.openConnections()).toEqual([]);
    expect(out.events.filter((e) => e.host === 'db-2').map((e) => e.stage)).toEqual(['connecting', 'testing', 'loaded', 'confirming', 'persisted']);
  });

  it('a bastion that is not confirmed strands every other host: skipped, never contacted', async () => {
    const inv = twoNetworks();
    const fake = new FakeTransport({ 'tunnel-1': failPrepare() });
    const out = await run(inv, fake, planOf(inv, fake), { maxFailures: 5 });

    expect(out.byHost.get('tunnel-1')).toMatchObject({ outcome: 'failed', reason: 'iptables-restore -t refused the IPv4 rules: line 3 failed' });
    // The other bastion still runs (bastions do not depend on each other)...
    expect(out.outcome('tunnel-2')).toBe('confirmed');
    // ...but nothing behind any bastion does.
    for (const h of OTHERS) {
      expect(out.byHost.get(h)).toEqual({ host: h, outcome: 'skipped', reason: 'bastion not confirmed', ms: 0 });
      expect(fake.span(h)).toBeUndefined();
    }
    expect(out.events.filter((e) => e.stage === 'skipped').map((e) => e.host)).toEqual(OTHERS);
    expect(out.exitCode).toBe(ExitCode.hostsFailed);
  });

  it('with a budget of one failure, a failed first bastion also skips the second', async () => {
    const inv = twoNetworks();
    const fake = new FakeTransport({ 'tunnel-1': failPrepare() });
    const out = await run(inv, fake, planOf(inv, fake), { maxFailures: 1 });
    expect(out.byHost.get('tunnel-2')).toMatchObject({ outcome: 'skipped', reason: 'failure budget reached' });
    expect(fake.span('tunnel-2')).toBeUndefined();
    expect(OTHERS.map((h) => out.byHost.get(h)?.reason)).toEqual(OTHERS.map(() => 'bastion not confirmed'));
  });

  it('a failed canary uses up a budget of one: no other host is started', async () => {
    const inv = twoNetworks();
    const fake = new FakeTransport({ 'db-1': failPrepare() });
    const out = await run(inv, fake, planOf(inv, fake), { maxFailures: 1 });
    expect(out.outcome('db-1')).toBe('failed');
    for (const h of OTHERS.slice(1)) {
      expect(out.byHost.get(h)).toMatchObject({ outcome: 'skipped', reason: 'failure budget reached' });
      expect(fake.span(h)).toBeUndefined();
    }
    expect(BASTIONS.map(out.outcome)).toEqual(['confirmed', 'confirmed']);
  });

  it('stops starting hosts once the budget is reached, counting rollbacks as failures', async () => {
    const inv = twoNetworks();
    // db-2: the load fails and the host restores its rules (rolled back); web-1: refused before the load.
    const fake = new FakeTransport({
      'db-2': { script: (r) => (r.verb === 'prepare' ? hostFailure(FAKE_EXIT.load, 'loading the rules failed, previous rules restored: line 2 failed') : undefined) },
      'web-1': failPrepare(),
    });
    // One at a time, so the order the budget is spent in is fixed: db-1 (canary), db-2, web-1, web-2, web-3.
    const out = await run(inv, fake, planOf(inv, fake), { maxFailures: 2, parallel: 1 });
    expect(OTHERS.map((h) => out.outcome(h))).toEqual(['confirmed', 'rolled-back', 'failed', 'skipped', 'skipped']);
    expect(out.byHost.get('web-2')?.reason).toBe('failure budget reached');
    expect(fake.span('web-2')).toBeUndefined();
    expect(fake.span('web-3')).toBeUndefined();
    // A rollback outranks a failure in the exit code.
    expect(out.exitCode).toBe(ExitCode.rolledBack);
  });

  it('the budget stops new starts only: hosts already running finish', async () => {
    const inv = twoNetworks();
    const fake = new FakeTransport({ 'db-2': failPrepare() });
    const out = await run(inv, fake, planOf(inv, fake), { maxFailures: 1, parallel: 4 });
    expect(OTHERS.map((h) => out.outcome(h))).toEqual(['confirmed', 'failed', 'confirmed', 'confirmed', 'confirmed']);
  });

  it('tells beforeFirstChange the hosts about to change before any is contacted; a throw there touches no host', async () => {
    const inv = twoNetworks();
    const fake = new FakeTransport();
    const plan = planOf(inv, fake, { 'web-1': 'in-sync' });
    const seen: Array<{ hosts: string[]; eventsSoFar: number }> = [];
    await applyPlan(inv, plan, selectWork(plan, inv, false), settings(), {
      transport: fake,
      onEvent: () => undefined,
      beforeFirstChange: (hosts) => seen.push({ hosts, eventsSoFar: fake.events.length }),
    });
    expect(seen).toEqual([{ hosts: ['tunnel-1', 'tunnel-2', 'db-1', 'db-2', 'web-2', 'web-3'], eventsSoFar: 0 }]);
    expect(fake.events.length).toBeGreaterThan(0);

    const untouched = new FakeTransport();
    const refused = applyPlan(inv, planOf(inv, untouched), selectWork(planOf(inv, untouched), inv, false), settings(), {
      transport: untouched,
      onEvent: () => undefined,
      beforeFirstChange: () => {
        throw new Error('cannot write the audit log');
      },
    });
    await expect(refused).rejects.toThrow('cannot write the audit log');
    expect(untouched.events).toEqual([]);
  });

  it('nothing to change: beforeFirstChange is not called and no host is contacted', async () => {
    const inv = twoNetworks();
    const fake = new FakeTransport();
    const plan = planOf(inv, fake, Object.fromEntries(inv.hosts.map((h) => [h.name, 'in-sync' as const])));
    let called = false;
    const out = await applyPlan(inv, plan, selectWork(plan, inv, false), settings(), { transport: fake, onEvent: () => undefined, beforeFirstChange: () => (called = true) });
    expect(called).toBe(false);
    expect(fake.events).toEqual([]);
    expect(out.results.every((r) => r.outcome === 'unchanged')).toBe(true);
    expect(out.exitCode).toBe(ExitCode.ok);
  });

  it('reports in-sync and broken hosts beside the others, sorted by name, without contacting them; --force applies in-sync ones', async () => {
    const inv = twoNetworks();
    const fake = new FakeTransport();
    const plan = planOf(inv, fake, { 'web-1': 'in-sync', 'web-2': 'unreachable', 'db-2': 'error' });
    const out = await run(inv, fake, plan);
    expect(out.results.map((r) => r.host)).toEqual(inv.hosts.map((h) => h.name));
    expect(out.byHost.get('web-1')).toEqual({ host: 'web-1', outcome: 'unchanged', ms: 0, generation: 0 });
    expect(out.byHost.get('web-2')).toEqual({ host: 'web-2', outcome: 'failed', reason: 'web-2: connect timed out', ms: 0 });
    expect(out.byHost.get('db-2')).toMatchObject({ outcome: 'failed' });
    for (const h of ['web-1', 'web-2', 'db-2']) expect(fake.span(h)).toBeUndefined();
    // A broken host is a failure of the run, though the transactions all confirmed.
    expect(['tunnel-1', 'tunnel-2', 'db-1', 'web-3'].map(out.outcome)).toEqual(['confirmed', 'confirmed', 'confirmed', 'confirmed']);
    expect(out.exitCode).toBe(ExitCode.hostsFailed);

    const forced = new FakeTransport();
    const again = await run(inv, forced, planOf(inv, forced, { 'web-1': 'in-sync' }), {}, true);
    expect(again.outcome('web-1')).toBe('confirmed');
    expect(forced.verbs('web-1')).toEqual(['prepare', 'confirm']);
  });

  it('installs iptables-persistent first where the plan found it missing, if allowed', async () => {
    const inv = twoNetworks();
    const missing = (fake: FakeTransport) => {
      fake.host('web-3').state.persistent = false;
      const plan = planOf(inv, fake, Object.fromEntries(inv.hosts.filter((h) => h.name !== 'web-3').map((h) => [h.name, 'in-sync' as const])));
      plan.hosts.find((h) => h.host === 'web-3')!.persistentMissing = true;
      return plan;
    };
    const allowed = new FakeTransport();
    expect((await run(inv, allowed, missing(allowed), { installPersistent: true })).outcome('web-3')).toBe('confirmed');
    expect(allowed.verbs('web-3')).toEqual(['ensure-persistent', 'prepare', 'confirm']);
    expect(allowed.host('web-3').state.persistent).toBe(true);
    const refused = new FakeTransport();
    await run(inv, refused, missing(refused), { installPersistent: false });
    expect(refused.verbs('web-3')).toEqual(['prepare', 'confirm']);
  });

  it('a host whose live rules moved since the plan is refused by the host itself, nothing loaded', async () => {
    const inv = twoNetworks();
    const fake = new FakeTransport();
    const plan = planOf(inv, fake);
    const before = fake.host('web-3').state;
    // Someone changes web-3's rules between the plan and the apply.
    before.liveHash = 'f00d';
    const out = await run(inv, fake, plan, { maxFailures: 5 });
    expect(out.byHost.get('web-3')?.reason).toMatch(/^stale plan: live rules changed since they were read \(expected [0-9a-f]{64}, found f00d\); plan again$/);
    expect(fake.verbs('web-3')).toEqual(['prepare']);
    expect(before.txn).toBeUndefined();
    expect(before.generation).toBe(0);
    expect(out.exitCode).toBe(ExitCode.hostsFailed);
  });
});

describe('a host lost during its transaction', () => {
  afterEach(() => void vi.useRealTimers());

  /** db-1 (the canary) drops off the network right after its load, for `downMs` (forever when undefined). */
  const lostAfterLoad = (fake: FakeTransport, downMs?: number): FakeHostOptions => ({
    state: { revertsAtDeadline: true },
    script: (r) => {
      if (r.verb !== 'prepare') return undefined;
      const db = fake.host('db-1');
      db.reachable = false;
      if (downMs !== undefined) setTimeout(() => (db.reachable = true), downMs);
      return undefined;
    },
  });

  // The host's guards and fleetfw's wait for them run on a fake clock: a 10 s window takes milliseconds.
  const runOnFakeClock = (inv: Inventory, fake: FakeTransport) => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    return untilSettled(run(inv, fake, planOf(inv, fake), { window: 10, maxFailures: 1 }), (ms) => vi.advanceTimersByTimeAsync(ms));
  };

  it('unconfirmed, it reverts by itself at the deadline: reported rolled back from its own record, and the budget stops the rest', async () => {
    const inv = twoNetworks();
    const fake = new FakeTransport();
    fake.define('db-1', lostAfterLoad(fake, 15_000));
    const before = fake.host('db-1').state.liveHash;
    const out = await runOnFakeClock(inv, fake);
    expect(out.byHost.get('db-1')).toMatchObject({ outcome: 'rolled-back', reason: 'confirmation failed: db-1: connect timed out; the host says: no confirmation within 10s' });
    expect(fake.host('db-1').state).toMatchObject({ liveHash: before, generation: 0, txn: undefined });
    // Read again until it answered: the failed attempts, then the record once the host is back.
    expect(fake.verbs('db-1')).toEqual(['prepare', 'outcome']);
    expect(fake.events.filter((e) => e.kind === 'open-failed' && e.host === 'db-1').length).toBeGreaterThan(1);
    expect(OTHERS.slice(1).map(out.outcome)).toEqual(['skipped', 'skipped', 'skipped', 'skipped']);
    expect(out.exitCode).toBe(ExitCode.rolledBack);
  });

  it('never reachable again: unknown, with the last error, and exit code 7', async () => {
    const inv = twoNetworks();
    const fake = new FakeTransport();
    fake.define('db-1', lostAfterLoad(fake));
    const out = await runOnFakeClock(inv, fake);
    expect(out.byHost.get('db-1')?.outcome).toBe('unknown');
    expect(out.byHost.get('db-1')?.reason).toMatch(/could not read the host's record of the transaction after the window: db-1: connect timed out$/);
    expect(out.exitCode).toBe(ExitCode.unknownState);
  });
});

describe('rolloutExitCode', () => {
  const r = (outcome: HostResult['outcome']): HostResult => ({ host: outcome, outcome, ms: 0 });
  it.each([
    [['confirmed', 'unchanged'], ExitCode.ok],
    [[], ExitCode.ok],
    [['confirmed', 'skipped'], ExitCode.hostsFailed],
    [['failed', 'confirmed'], ExitCode.hostsFailed],
    [['failed', 'rolled-back'], ExitCode.rolledBack],
    [['rolled-back', 'unknown', 'failed'], ExitCode.unknownState],
  ] as const)('%j -> %i', (outcomes, code) => {
    expect(rolloutExitCode(outcomes.map(r))).toBe(code);
  });
});
