// A reviewed plan applied later: refused whole when its sources moved, host by
// host when a host's live rules did, and otherwise applied exactly as saved.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitCode, FleetError } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import { buildHost, buildInventory } from '../analyze/fixtures/fleet.js';
import type { RenderedHost } from '../render/render.js';
import { assemblePlan, type HostPlan } from '../plan/plan.js';
import { buildSavedPlan, short } from '../plan/saved-plan.js';
import { SessionPool } from '../apply/session-pool.js';
import { FakeTransport, OPEN_V6 } from '../transport/fake.js';
import { applyPlan, selectWork } from './apply.js';
import { checkSavedSources, recheckSaved, savedRules } from './saved-plan.js';

const pos = { file: 'inventory.yaml', line: 1, col: 1 };
const desired = { v4: '*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n', v6: OPEN_V6 };
const dir = mkdtempSync(join(tmpdir(), 'fleetfw-saved-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** tunnel-1 (bastion) and a..e behind it. */
function fleetInv(): Inventory {
  const h = (name: string, n: number) => buildHost(name, { public: `203.0.113.${n}`, private: `192.0.2.${n}` });
  return buildInventory({ networks: [{ name: 'lan', bastion: 'tunnel-1', pos }], hosts: [h('a', 1), h('b', 2), h('c', 3), h('d', 4), h('e', 5), h('tunnel-1', 10)] });
}

const rendered = (host: string, v4 = desired.v4): RenderedHost => ({ host, v4: { text: v4, origins: [], closedByDefault: false }, v6: { text: OPEN_V6, origins: [], closedByDefault: true }, notes: [] });

/**
 * Saved against the fake hosts as they are now: a, b, c change, d is in sync, e
 * was unreachable. Then b's rules move and c goes down.
 */
function savedFleet() {
  const inv = fleetInv();
  const fake = new FakeTransport({ d: {}, e: {} });
  const hp = (host: string, status: HostPlan['status']): HostPlan => ({ host, status, diffs: [], preserved: [], notes: [], desired, liveHash: fake.host(host).state.liveHash });
  const plan = assemblePlan('live', 'inventory.yaml', [hp('a', 'changes'), hp('b', 'changes'), hp('c', 'changes'), hp('d', 'in-sync'), { host: 'e', status: 'unreachable', error: 'e: connect timed out', diffs: [], preserved: [], notes: [] }]);
  const saved = buildSavedPlan(plan, { inventoryPath: 'inventory.yaml', inventoryText: 'version: 1\n', rendered: ['a', 'b', 'c', 'd', 'e'].map((h) => rendered(h)), createdBy: 'reviewer@ci' });
  // As read from the file: the reviewed hash is kept verbatim, never recomputed.
  saved.plan.planHash = 'a1b2c3d4e5f60718';
  const planned = fake.host('b').state.liveHash;
  fake.host('b').state.liveHash = 'b0b0b0b0b0b0b0b0b0b0';
  fake.host('c').reachable = false;
  return { inv, fake, saved, planned };
}

describe('recheckSaved', () => {
  it('refuses by name the host whose live rules moved, keeps the others and the reviewed plan hash', async () => {
    const { inv, fake, saved, planned } = savedFleet();
    const { plan, refused } = await recheckSaved(saved, inv, fake, 4);
    const why = `live rules changed since the plan was made (planned against ${short(planned)}, now b0b0b0b0b0b0): not applied, plan again`;
    expect(refused).toEqual([{ host: 'b', why }]);
    expect(plan.planHash).toBe(saved.plan.planHash);
    expect(plan.hosts.map((h) => [h.host, h.status, h.error])).toEqual([
      ['a', 'changes', undefined],
      ['b', 'error', why],
      ['c', 'unreachable', 'c: connect timed out'],
      ['d', 'in-sync', undefined],
      ['e', 'unreachable', 'e: connect timed out'],
    ]);
    // Desired rules are those reviewed, untouched.
    expect(plan.hosts.find((h) => h.host === 'a')!.desired).toEqual(desired);
    expect(plan.summary).toMatchObject({ changes: 1, errors: 1, unreachable: 2, inSync: 1 });
    // Only the changing hosts are read, once each, with a plain facts (no candidate): nothing is sent to d or e.
    expect(['a', 'b'].map((h) => fake.calls(h).map((c) => `${c.verb}:${c.args.join(',')}`))).toEqual([['facts:'], ['facts:']]);
    expect(fake.events.filter((e) => e.kind === 'open-failed').map((e) => e.host)).toEqual(['c']);
    expect(fake.span('d')).toBeUndefined();
    expect(fake.span('e')).toBeUndefined();
    expect(fake.openConnections()).toEqual([]);
  });

  it('then applies the kept hosts only, on the sessions the recheck kept, and reports the refused one by name', async () => {
    const { inv, fake, saved } = savedFleet();
    const pool = new SessionPool();
    const { plan } = await recheckSaved(saved, inv, fake, 4, pool);
    const work = selectWork(plan, inv, false);
    expect(work.todo.map((h) => h.host)).toEqual(['a']);
    await pool.release(new Set(['a']));
    const out = await applyPlan(inv, plan, work, { window: 0, maxFailures: 3, parallel: 2, user: 'ops', source: 'apply', installPersistent: false }, { transport: fake, pool, onEvent: () => undefined });
    await pool.release();
    expect(out.results.map((r) => [r.host, r.outcome])).toEqual([
      ['a', 'confirmed'],
      ['b', 'failed'],
      ['c', 'failed'],
      ['d', 'unchanged'],
      ['e', 'failed'],
    ]);
    expect(out.results[1]!.reason).toMatch(/^live rules changed since the plan was made/);
    expect(out.exitCode).toBe(ExitCode.hostsFailed);
    // The generation records the reviewed plan's hash.
    expect(fake.host('a').state.generations.get(1)!.meta.plan_hash).toBe(saved.plan.planHash);
    expect(fake.verbs('b')).toEqual(['facts']);
    // a: one connection for the recheck and prepare, one to confirm.
    expect(fake.calls('a').map((c) => c.verb)).toEqual(['facts', 'ping', 'prepare', 'ping', 'confirm']);
    expect(fake.opens('a')).toHaveLength(2);
    expect(fake.openConnections()).toEqual([]);
  });
});

describe('checkSavedSources', () => {
  const setup = (inventoryText: string) => {
    const file = join(dir, `inv-${Math.random().toString(16).slice(2)}.yaml`);
    writeFileSync(file, inventoryText);
    const inv = { ...fleetInv(), file };
    const plan = assemblePlan('live', 'inventory.yaml', [{ host: 'a', status: 'changes', diffs: [], preserved: [], notes: [], desired, liveHash: 'x' }]);
    const r = [rendered('a'), rendered('b')];
    return { file, inv, r, saved: buildSavedPlan(plan, { inventoryPath: 'inventory.yaml', inventoryText, rendered: r, createdBy: 'u' }) };
  };

  it('accepts a plan whose inventory and renders are unchanged', () => {
    const { inv, r, saved } = setup('version: 1\n');
    expect(() => checkSavedSources('plan.json', saved, { inv, display: 'inventory.yaml', rendered: r })).not.toThrow();
  });

  it('refuses (exit 8) a plan whose inventory bytes or planned renders changed, saying which', () => {
    const { file, inv, r, saved } = setup('version: 1\n');
    const moved = [rendered('a', desired.v4.replace('INPUT DROP', 'INPUT ACCEPT')), r[1]!];
    let err: unknown;
    try {
      checkSavedSources('plan.json', saved, { inv, display: 'inventory.yaml', rendered: moved });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FleetError);
    expect((err as FleetError).exitCode).toBe(ExitCode.stalePlan);
    expect((err as FleetError).message).toBe('plan.json is stale: the inventory and templates now render different rules for: a. Nothing was applied: plan again and review.');
    writeFileSync(file, 'version: 1\n# edited\n');
    expect(() => checkSavedSources('plan.json', saved, { inv, display: 'inventory.yaml', rendered: r })).toThrow(/^plan\.json is stale: inventory inventory\.yaml changed since the plan was made/);
  });
});

describe('savedRules', () => {
  it('puts the saved desired rules in place of the render for planned hosts only', () => {
    const plan = assemblePlan('live', 'inventory.yaml', [{ host: 'a', status: 'changes', diffs: [], preserved: [], notes: [], desired: { v4: 'SAVED4', v6: 'SAVED6' } }]);
    const saved = buildSavedPlan(plan, { inventoryPath: 'i', inventoryText: '', rendered: [rendered('a')], createdBy: 'u' });
    const out = savedRules(saved, [rendered('a'), rendered('b')]);
    expect(out.map((r) => [r.host, r.v4.text, r.v6.text])).toEqual([
      ['a', 'SAVED4', 'SAVED6'],
      ['b', desired.v4, OPEN_V6],
    ]);
  });
});
