// Health probes: from which host they run, what a failure says, and that a
// failing probe refuses the confirmation so the host goes back to its old rules.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ExitCode } from '../errors.js';
import type { HealthProbe, Inventory } from '../model/inventory.js';
import { buildInventory } from '../analyze/fixtures/fleet.js';
import { assemblePlan, type HostPlan } from '../plan/plan.js';
import { FakeTransport, OPEN_V6, untilSettled } from '../transport/fake.js';
import { applyPlan, selectWork } from '../engine/apply.js';
import type { ApplyEvent } from './transaction.js';
import { healthProber } from './health.js';

const pos = { file: 'inventory.yaml', line: 1, col: 1 };
/** tunnel-1 (bastion, 192.0.2.10), mysql-1 (mysql, 192.0.2.11), web-1 (web, 192.0.2.12). */
const fleetWith = (health: Record<string, HealthProbe[]>): Inventory => buildInventory({ health });

afterEach(() => void vi.useRealTimers());

describe('healthProber', () => {
  it("probes from the host's bastion by default, and from the named host otherwise, each over a new connection", async () => {
    const inv = fleetWith({ mysql: [{ port: 3306, pos }], web: [{ port: 80, from: 'mysql-1', pos }] });
    const fake = new FakeTransport();
    const probe = healthProber(inv, fake);
    expect(await probe(inv.hosts.find((h) => h.name === 'mysql-1')!)).toBeUndefined();
    expect(await probe(inv.hosts.find((h) => h.name === 'web-1')!)).toBeUndefined();
    expect(await probe(inv.hosts.find((h) => h.name === 'tunnel-1')!)).toBeUndefined();
    expect(fake.events.map((e) => (e.kind === 'tcp' ? `${e.kind} ${e.host} ${e.address}:${e.port}` : `${e.kind} ${e.host} ${e.conn}`))).toEqual([
      'open tunnel-1 1',
      'tcp tunnel-1 192.0.2.11:3306',
      'close tunnel-1 1',
      'open mysql-1 2',
      'tcp mysql-1 192.0.2.12:80',
      'close mysql-1 2',
    ]);
  });

  it('names the vantage host, the target and the port that failed, and stops at the first failure', async () => {
    const inv = fleetWith({ mysql: [{ port: 3306, pos }, { port: 9104, pos }] });
    const fake = new FakeTransport({ 'tunnel-1': { tcp: (address, port) => !(address === '192.0.2.11' && port === 3306) } });
    const mysql = inv.hosts.find((h) => h.name === 'mysql-1')!;
    expect(await healthProber(inv, fake)(mysql)).toBe('tunnel-1 cannot connect to mysql-1 192.0.2.11:3306');
    expect(fake.events.filter((e) => e.kind === 'tcp')).toHaveLength(1);
    expect(fake.openConnections()).toEqual([]);
  });
});

describe('health probes in an apply', () => {
  const desired = { v4: '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n', v6: OPEN_V6 };
  const planFor = (inv: Inventory, fake: FakeTransport, host: string) =>
    assemblePlan('live', 'inventory.yaml', [{ host, status: 'changes', diffs: [], preserved: [], notes: [], desired, liveHash: fake.host(host).state.liveHash } satisfies HostPlan]);

  it('a failing probe refuses the confirmation: the host aborts at once and is reported rolled back, on its old rules', async () => {
    const inv = fleetWith({ mysql: [{ port: 3306, pos }] });
    const fake = new FakeTransport({ 'tunnel-1': { tcp: () => false } });
    const before = fake.host('mysql-1').state.liveHash;
    const plan = planFor(inv, fake, 'mysql-1');
    const events: ApplyEvent[] = [];
    // After the refusal the host's record is read once its deadline has passed: a fake clock skips the wait.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const out = await untilSettled(
      applyPlan(inv, plan, selectWork(plan, inv, false), { window: 30, maxFailures: 1, parallel: 1, user: 'ops', source: 'apply', installPersistent: false }, { transport: fake, onEvent: (e) => events.push(e) }),
      (ms) => vi.advanceTimersByTimeAsync(ms),
    );
    const r = out.results[0]!;
    expect(r).toMatchObject({ host: 'mysql-1', outcome: 'rolled-back' });
    expect(r.reason).toBe('health probe failed: tunnel-1 cannot connect to mysql-1 192.0.2.11:3306; the host says: health-probe-failed');
    expect(out.exitCode).toBe(ExitCode.rolledBack);
    // Never confirmed: aborted right after the probe, then the record read.
    expect(fake.verbs('mysql-1')).toEqual(['prepare', 'abort', 'outcome']);
    const [prepare, abort] = fake.calls('mysql-1');
    expect(abort!.args).toEqual([prepare!.args[0], 'health-probe-failed']);
    // The probe ran after the load, from the bastion, on the new connection's watch, before the abort.
    const probe = fake.events.find((e) => e.kind === 'tcp')!;
    expect(probe).toMatchObject({ host: 'tunnel-1', address: '192.0.2.11', port: 3306, ok: false });
    expect(probe.seq).toBeGreaterThan(prepare!.endSeq!);
    expect(probe.seq).toBeLessThan(abort!.seq);
    expect(fake.opens('mysql-1')[1]!.seq).toBeLessThan(probe.seq);
    expect(abort!.conn).toBe(fake.opens('mysql-1')[1]!.conn);
    // Aborted on the spot: the record is read half a second later, not after the 30 s window.
    expect(r.revertMs).toBeLessThan(5_000);
    expect(fake.host('mysql-1').state).toMatchObject({ liveHash: before, generation: 0, txn: undefined });
    expect(events.map((e) => e.stage)).toEqual(['connecting', 'testing', 'loaded', 'confirming', 'rolling-back', 'rolled-back']);
    expect(fake.openConnections()).toEqual([]);
  });

  it('a vantage host that cannot be reached fails the probe: the host is aborted at once, never confirmed, back on the old rules', async () => {
    const inv = fleetWith({ mysql: [{ port: 3306, pos }] });
    const fake = new FakeTransport({ 'tunnel-1': { reachable: false }, 'mysql-1': { state: { revertsAtDeadline: true } } });
    const before = fake.host('mysql-1').state.liveHash;
    const plan = planFor(inv, fake, 'mysql-1');
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const out = await untilSettled(
      applyPlan(inv, plan, selectWork(plan, inv, false), { window: 30, maxFailures: 1, parallel: 1, user: 'ops', source: 'apply', installPersistent: false }, { transport: fake, onEvent: () => undefined }),
      (ms) => vi.advanceTimersByTimeAsync(ms),
    );
    expect(out.results[0]).toMatchObject({ outcome: 'rolled-back', reason: 'health probe failed: tunnel-1 cannot be reached to probe mysql-1: tunnel-1: connect timed out; the host says: health-probe-failed' });
    expect(fake.verbs('mysql-1')).not.toContain('confirm');
    expect(fake.verbs('mysql-1')).toContain('abort');
    expect(fake.host('mysql-1').state.liveHash).toBe(before);
  });

  it('a passing probe lets the confirmation through', async () => {
    const inv = fleetWith({ mysql: [{ port: 3306, pos }] });
    const fake = new FakeTransport();
    const plan = planFor(inv, fake, 'mysql-1');
    const out = await applyPlan(inv, plan, selectWork(plan, inv, false), { window: 0, maxFailures: 1, parallel: 1, user: 'ops', source: 'apply', installPersistent: false }, { transport: fake, onEvent: () => undefined });
    expect(out.results[0]).toMatchObject({ outcome: 'confirmed', generation: 1 });
    const probe = fake.events.find((e) => e.kind === 'tcp')!;
    const confirm = fake.calls('mysql-1').find((c) => c.verb === 'confirm')!;
    expect(probe.seq).toBeLessThan(confirm.seq);
  });
});
