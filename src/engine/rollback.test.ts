// Rollback: a host's earlier generation read from the host, planned like any
// apply (today's foreign chains merged in), judged for the management path, and
// applied through the same path, recorded as a rollback.
import { describe, expect, it } from 'vitest';
import { ExitCode, UsageError } from '../errors.js';
import { buildInventory } from '../analyze/fixtures/fleet.js';
import type { RenderedHost } from '../render/render.js';
import { FakeTransport, OPEN_V4, OPEN_V6, rulesHash, type FakeRules } from '../transport/fake.js';
import { applyPlan, selectWork } from './apply.js';
import { planRollback } from './rollback.js';
import type { Fleet } from './fleet.js';

const filter = (...rules: string[]) => ['*filter', ':INPUT DROP [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]', '-A INPUT -i lo -j ACCEPT', ...rules, 'COMMIT', ''].join('\n');
const ESTABLISHED = '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT';
// SSH from the bastion's private address (tunnel-1, 192.0.2.10) to mysql-1's private side (eth1).
const FROM_BASTION = '-A INPUT -s 192.0.2.10/32 -i eth1 -p tcp -m tcp --dport 22 -j ACCEPT';
const rules = (v4: string): FakeRules => ({ v4, v6: OPEN_V6 });
/** Generation 1 drops the management path; 2 keeps it; 3 (current) also opens MySQL. */
const GEN1 = rules(filter(ESTABLISHED));
const GEN2 = rules(filter(ESTABLISHED, FROM_BASTION));
const GEN3 = rules(filter(ESTABLISHED, FROM_BASTION, '-A INPUT -s 192.0.2.12/32 -p tcp -m tcp --dport 3306 -j ACCEPT'));

const inv = buildInventory();
const mysql = inv.hosts.find((h) => h.name === 'mysql-1')!;
const render = (host: string, v4: string): RenderedHost => ({ host, v4: { text: v4, origins: [], closedByDefault: false }, v6: { text: OPEN_V6, origins: [], closedByDefault: true }, notes: [] });
const fleet: Fleet = { inv, display: 'inventory.yaml', rendered: [render('mysql-1', GEN3.v4), render('tunnel-1', OPEN_V4), render('web-1', OPEN_V4)] };

/** mysql-1 at generation `current`, with generations 1..current kept (of GEN1..GEN3). */
function hostAt(current: number, live: FakeRules = [GEN1, GEN2, GEN3][current - 1]!) {
  const gens = [GEN1, GEN2, GEN3].slice(0, current);
  return new FakeTransport({
    'mysql-1': {
      state: {
        generation: current,
        live,
        generations: new Map(gens.map((r, i) => [i + 1, { rules: r, meta: { generation: String(i + 1), txid: `t${i + 1}`, user: 'ops', when: '2025-01-01T00:00:00Z', plan_hash: `p${i + 1}`, source: 'apply', hash: rulesHash(r) } }])),
      },
    },
  });
}

describe('planRollback', () => {
  it("reads the host's generation and plans the one before it as a one-host plan named after it", async () => {
    const fake = hostAt(3);
    const r = await planRollback(fleet, mysql, undefined, fake);
    expect(r).toMatchObject({ from: 3, target: 2, lockout: { ok: true } });
    expect(r.plan.planHash).toBe('rollback-to-2');
    expect(r.plan.hosts).toHaveLength(1);
    expect(r.hostPlan).toMatchObject({ host: 'mysql-1', status: 'changes', liveHash: fake.host('mysql-1').state.liveHash });
    expect(r.plan.hosts[0]).toMatchObject({ host: 'mysql-1', status: 'changes', desired: { v4: GEN2.v4 } });
    expect(r.hostPlan.notes).toContain('rollback to generation 2');
    // The diff is live (generation 3) to generation 2: the MySQL rule goes.
    expect(r.hostPlan.diffs.map((d) => [d.family, d.added, d.removed])).toEqual([[4, 0, 1]]);
    expect(fake.calls('mysql-1').map((c) => `${c.verb}:${c.args.join(',')}`)).toEqual(['facts:', 'generation:2']);
    expect(fake.openConnections()).toEqual([]);
  });

  it('always runs the transaction, even onto live rules that already look like the generation', async () => {
    const r = await planRollback(fleet, mysql, undefined, hostAt(3, GEN2));
    expect(r.hostPlan.status).toBe('in-sync');
    expect(r.plan.hosts[0]!.status).toBe('changes');
    expect(r.plan.summary.changes).toBe(1);
    expect(selectWork(r.plan, inv, false).todo.map((h) => h.host)).toEqual(['mysql-1']);
  });

  it('reports a lockout when the generation cuts the path from the bastion', async () => {
    const r = await planRollback(fleet, mysql, 1, hostAt(3));
    expect(r.target).toBe(1);
    expect(r.plan.planHash).toBe('rollback-to-1');
    expect(r.lockout.ok).toBe(false);
    if (!r.lockout.ok) {
      expect(r.lockout.path).toMatch(/^tunnel-1 \(192\.0\.2\.10\) -> mysql-1 eth1 192\.0\.2\.11:22\/tcp/);
      expect(r.lockout.cutBy).toMatch(/policy DROP of chain INPUT/);
    }
  });

  it('refuses when there is no previous generation, before asking the host for one', async () => {
    const fake = hostAt(1);
    const err = await planRollback(fleet, mysql, undefined, fake).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(ExitCode.usage);
    expect((err as Error).message).toBe('mysql-1 has no previous generation to roll back to (current: 1); see fleetfw history mysql-1');
    expect(fake.verbs('mysql-1')).toEqual(['facts']);
  });

  it("passes on the host's refusal of a generation it no longer keeps", async () => {
    const err = await planRollback(fleet, mysql, 7, hostAt(3)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toBe('mysql-1: no generation 7 on this host');
  });

  it("drops the foreign chains the generation saved and merges in today's", async () => {
    const withF2b = (chain: string) => rules(filter(ESTABLISHED, FROM_BASTION).replace(':OUTPUT ACCEPT [0:0]\n', `:OUTPUT ACCEPT [0:0]\n:${chain} - [0:0]\n`).replace('COMMIT', `-A INPUT -p tcp -m tcp --dport 22 -j ${chain}\n-A ${chain} -j RETURN\nCOMMIT`));
    const fake = hostAt(3, withF2b('f2b-sshd'));
    fake.host('mysql-1').state.generations.get(2)!.rules = withF2b('f2b-old');
    const r = await planRollback(fleet, mysql, undefined, fake);
    const v4 = r.plan.hosts[0]!.desired!.v4;
    expect(v4).toContain('-A INPUT -p tcp -m tcp --dport 22 -j f2b-sshd');
    expect(v4).not.toContain('f2b-old');
    expect(r.lockout.ok).toBe(true);
  });

  it('is applied like any plan: the host gets the old rules as a new generation recorded as a rollback', async () => {
    const fake = hostAt(3);
    const r = await planRollback(fleet, mysql, undefined, fake);
    const out = await applyPlan(inv, r.plan, selectWork(r.plan, inv, true), { window: 0, maxFailures: 1, parallel: 1, user: 'ops', source: 'rollback', installPersistent: false }, { transport: fake, onEvent: () => undefined });
    expect(out.exitCode).toBe(ExitCode.ok);
    expect(out.results).toMatchObject([{ host: 'mysql-1', outcome: 'confirmed', generation: 4 }]);
    const s = fake.host('mysql-1').state;
    expect(s.live.v4).toBe(GEN2.v4);
    expect(s.generations.get(4)!.meta).toMatchObject({ source: 'rollback', plan_hash: 'rollback-to-2' });
    const prepare = fake.calls('mysql-1').find((c) => c.verb === 'prepare')!;
    // Against the live hash the rollback was planned on: a host changed in between refuses it.
    expect(prepare.args[2]).toBe(r.hostPlan.liveHash);
    expect(fake.calls('mysql-1').find((c) => c.verb === 'confirm')!.args.slice(1)).toEqual(['5', 'rollback']);
  });
});
