// Sessions kept from a plan's read to the transaction: the prepare reuses the
// read's connection and host script, released ones are closed, and a kept one
// that died is replaced by a new connection before anything is sent.
import { describe, expect, it } from 'vitest';
import type { Inventory } from '../model/inventory.js';
import { buildInventory } from '../analyze/fixtures/fleet.js';
import { assemblePlan } from '../plan/plan.js';
import { FakeTransport, OPEN_V6 } from '../transport/fake.js';
import { applyPlan, selectWork } from '../engine/apply.js';
import { SessionPool } from './session-pool.js';
import { readFacts } from './transaction.js';

const desired = { v4: '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n', v6: OPEN_V6 };
const spec = (inv: Inventory, name: string) => inv.hosts.find((h) => h.name === name)!;

/** Read `hosts` into the pool (as planFleet does), keep `keep`, then apply to them. */
async function readThenApply(fake: FakeTransport, hosts: string[], keep: string[]) {
  const inv = buildInventory();
  const pool = new SessionPool();
  const facts = await Promise.all(hosts.map((h) => readFacts(fake, spec(inv, h), undefined, pool)));
  await pool.release(new Set(keep));
  const afterRelease = fake.openConnections();
  const plan = assemblePlan(
    'live',
    'inventory.yaml',
    keep.map((host, i) => ({ host, status: 'changes' as const, diffs: [], preserved: [], notes: [], desired, liveHash: facts[hosts.indexOf(host)]!.liveHash, generation: i })),
  );
  const out = await applyPlan(inv, plan, selectWork(plan, inv, false), { window: 0, maxFailures: 1, parallel: 2, user: 'ops', source: 'apply', installPersistent: false }, { transport: fake, pool, onEvent: () => undefined });
  await pool.release();
  return { out, afterRelease };
}

describe('SessionPool in an apply', () => {
  it("runs the prepare in the read's kept host script: no new connection for it, one new one to confirm", async () => {
    const fake = new FakeTransport();
    const { out, afterRelease } = await readThenApply(fake, ['mysql-1', 'web-1'], ['mysql-1']);
    expect(out.results).toMatchObject([{ host: 'mysql-1', outcome: 'confirmed', generation: 1 }]);
    const [read, confirm] = fake.opens('mysql-1');
    expect(fake.opens('mysql-1')).toHaveLength(2);
    // The read, the liveness checks and the prepare: one process on the first connection. No loopback
    // answer here, so the confirm is a command on the new connection.
    expect(fake.calls('mysql-1').map((c) => `${c.verb} ${c.via} ${c.conn}`)).toEqual([
      `facts serve ${read!.conn}`,
      `ping serve ${read!.conn}`,
      `prepare serve ${read!.conn}`,
      `ping serve ${read!.conn}`,
      `confirm exec ${confirm!.conn}`,
    ]);
    // web-1, released after the read, was closed before the apply and never touched again.
    const web = fake.opens('web-1')[0]!;
    expect(afterRelease).not.toContain(web.conn);
    expect(afterRelease).toContain(read!.conn);
    expect(fake.verbs('web-1')).toEqual(['facts']);
    expect(fake.openConnections()).toEqual([]);
  });

  it('with a loopback answer, confirms in the kept script too, proven by a token read through the new connection', async () => {
    const fake = new FakeTransport({ 'mysql-1': { loopback: true } });
    const { out } = await readThenApply(fake, ['mysql-1'], ['mysql-1']);
    expect(out.results[0]).toMatchObject({ outcome: 'confirmed', generation: 1 });
    const [read, proof] = fake.opens('mysql-1');
    const confirm = fake.calls('mysql-1').find((c) => c.verb === 'confirm')!;
    expect(confirm).toMatchObject({ via: 'serve', conn: read!.conn });
    const loop = fake.events.find((e) => e.kind === 'loopback')!;
    expect(loop).toMatchObject({ conn: proof!.conn });
    expect(confirm.args.slice(3)).toEqual([String((loop as { port: number }).port), fake.host('mysql-1').state.loopbackAnswers.get((loop as { port: number }).port)!.token]);
    // Nothing ran as a command on the proof's connection: it only carried the token.
    expect(fake.calls('mysql-1').filter((c) => c.conn === proof!.conn)).toEqual([]);
  });

  it('a kept script that died while parked is replaced by a new connection before the prepare', async () => {
    const fake = new FakeTransport();
    const inv = buildInventory();
    const pool = new SessionPool();
    const facts = await readFacts(fake, spec(inv, 'mysql-1'), undefined, pool);
    fake.killServers('mysql-1');
    const plan = assemblePlan('live', 'inventory.yaml', [{ host: 'mysql-1', status: 'changes', diffs: [], preserved: [], notes: [], desired, liveHash: facts.liveHash }]);
    const out = await applyPlan(inv, plan, selectWork(plan, inv, false), { window: 0, maxFailures: 1, parallel: 1, user: 'ops', source: 'apply', installPersistent: false }, { transport: fake, pool, onEvent: () => undefined });
    expect(out.results[0]).toMatchObject({ outcome: 'confirmed' });
    const [read, fresh, confirm] = fake.opens('mysql-1');
    expect(fake.opens('mysql-1')).toHaveLength(3);
    expect(fake.calls('mysql-1').map((c) => `${c.verb} ${c.via} ${c.conn}`)).toEqual([`facts serve ${read!.conn}`, `prepare exec ${fresh!.conn}`, `confirm exec ${confirm!.conn}`]);
    expect(fake.openConnections()).toEqual([]);
  });
});

describe('SessionPool', () => {
  it('take: the parked session once, then a new connection', async () => {
    const fake = new FakeTransport();
    const pool = new SessionPool();
    const s = await fake.open('web-1');
    pool.park(s);
    const first = await pool.take(fake, 'web-1');
    expect(first).toMatchObject({ session: s, reused: true });
    const second = await pool.take(fake, 'web-1');
    expect(second.reused).toBe(false);
    expect(second.session).not.toBe(s);
    expect(fake.opens('web-1')).toHaveLength(2);
  });

  it('park replaces and closes an older session of the same host; release closes all but those kept', async () => {
    const fake = new FakeTransport();
    const pool = new SessionPool();
    const [a1, a2, b] = [await fake.open('a'), await fake.open('a'), await fake.open('b')];
    pool.park(a1);
    pool.park(a2);
    pool.park(b);
    await Promise.resolve();
    expect(fake.openConnections()).toEqual([2, 3]);
    await pool.release(new Set(['a']));
    expect(fake.openConnections()).toEqual([2]);
    expect((await pool.take(fake, 'a')).session).toBe(a2);
    await pool.release();
    expect(fake.openConnections()).toEqual([2]);
  });
});
