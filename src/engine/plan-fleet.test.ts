// planFleet against simulated hosts: what each host is asked, how its answer
// becomes a status, and which sessions stay open for the apply.
import { describe, expect, it } from 'vitest';
import { buildInventory } from '../analyze/fixtures/fleet.js';
import { FORMAT_VERIFIED_AGAINST } from '../analyze/format.js';
import type { RenderedHost } from '../render/render.js';
import { joinFamilies } from '../host/run.js';
import { SessionPool } from '../apply/session-pool.js';
import { FAKE_EXIT, FakeTransport, hostFailure, OPEN_V4, OPEN_V6 } from '../transport/fake.js';
import { planFleet } from './plan-fleet.js';
import type { Fleet } from './fleet.js';

const CLOSED = '*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n';
const render = (host: string, v4: string): RenderedHost => ({ host, v4: { text: v4, origins: [], closedByDefault: false }, v6: { text: OPEN_V6, origins: [], closedByDefault: true }, notes: [] });
const inv = buildInventory();
// tunnel-1 runs what it should; mysql-1 and web-1 are still open.
const fleet: Fleet = { inv, display: 'inventory.yaml', rendered: [render('mysql-1', CLOSED), render('tunnel-1', OPEN_V4), render('web-1', CLOSED)] };

describe('planFleet', () => {
  it('reads every host once, with its candidate, and plans changes, in sync and unreachable', async () => {
    const fake = new FakeTransport({ 'web-1': { reachable: false } });
    const plan = await planFleet(fleet, inv.hosts, fake, 2);
    expect(plan.hosts.map((h) => [h.host, h.status])).toEqual([
      ['mysql-1', 'changes'],
      ['tunnel-1', 'in-sync'],
      ['web-1', 'unreachable'],
    ]);
    expect(plan.hosts[2]!.error).toBe('web-1: connect timed out');
    const mysql = plan.hosts[0]!;
    expect(mysql).toMatchObject({ liveHash: fake.host('mysql-1').state.liveHash, generation: 0, desired: { v4: CLOSED, v6: OPEN_V6 } });
    // An empty all-ACCEPT table compares as no table: the whole rendered filter table is added.
    expect(mysql.diffs.map((d) => [d.family, d.added, d.removed])).toEqual([[4, 6, 0]]);
    // This host's iptables is the verified one: it need not print the candidate back, which is not sent.
    const [facts] = fake.calls('mysql-1');
    expect(fake.verbs('mysql-1')).toEqual(['facts']);
    expect(facts).toMatchObject({ via: 'exec', args: ['canonical', FORMAT_VERIFIED_AGAINST], stdin: '' });
    expect(fake.openConnections()).toEqual([]);
  });

  it('with a pool, keeps each read host script running for the transaction', async () => {
    const fake = new FakeTransport({ 'web-1': { reachable: false } });
    const pool = new SessionPool();
    await planFleet(fleet, inv.hosts, fake, 3, pool);
    expect(fake.calls().map((c) => `${c.host} ${c.verb} ${c.via}`).sort()).toEqual(['mysql-1 facts serve', 'tunnel-1 facts serve']);
    expect(fake.openConnections()).toEqual(fake.opens().map((o) => o.conn));
    await pool.release();
    expect(fake.openConnections()).toEqual([]);
  });

  it("compares the host's own printing of the candidate when its iptables is not the verified one", async () => {
    const fake = new FakeTransport({ 'mysql-1': { state: { iptablesVersion: '1.8.7-legacy' } } });
    const plan = await planFleet(fleet, inv.hosts.filter((h) => h.name === 'mysql-1'), fake, 1);
    expect(plan.hosts[0]).toMatchObject({ host: 'mysql-1', status: 'changes', desired: { v4: CLOSED } });
    // Facts says the candidate is wanted; the canonical verb, on the same connection, gets it.
    expect(fake.calls('mysql-1').map((c) => [c.verb, c.stdin])).toEqual([
      ['facts', ''],
      ['canonical', joinFamilies(CLOSED, OPEN_V6)],
    ]);
    expect(fake.opens().filter((o) => o.host === 'mysql-1')).toHaveLength(1);
  });

  it('plans a host whose canonical verb fails with fleetfw\'s own printing, and says so', async () => {
    const fake = new FakeTransport({
      'mysql-1': { state: { iptablesVersion: '1.8.7-legacy' }, script: (r) => (r.verb === 'canonical' ? hostFailure(FAKE_EXIT.space, 'cannot write /tmp/x: disk full?') : undefined) },
    });
    const plan = await planFleet(fleet, inv.hosts.filter((h) => h.name === 'mysql-1'), fake, 1);
    expect(plan.hosts[0]).toMatchObject({ host: 'mysql-1', status: 'changes' });
    expect(plan.hosts[0]!.notes.join('\n')).toContain('host could not canonicalise the rules (cannot write /tmp/x: disk full?)');
  });
});
