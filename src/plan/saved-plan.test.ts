import { describe, expect, it } from 'vitest';
import type { RenderedHost } from '../render/render.js';
import { assemblePlan, type HostPlan } from './plan.js';
import { buildSavedPlan, findSourceChanges, formatSavedPlan, parseSavedPlan, sha256 } from './saved-plan.js';
import { formatPlanJson } from './report.js';

const V4 = '*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n';
const V6 = '*filter\n:INPUT DROP [0:0]\nCOMMIT\n';
const INVENTORY = 'version: 1\nhosts: {}\n';

function rendered(host: string, v4 = V4): RenderedHost {
  return { host, v4: { text: v4, origins: [], closedByDefault: false }, v6: { text: V6, origins: [], closedByDefault: true }, notes: [] };
}

function hostPlan(host: string, status: HostPlan['status'], liveHash: string): HostPlan {
  return { host, status, diffs: [], preserved: [], notes: [], desired: { v4: V4, v6: V6 }, liveHash };
}

const plan = assemblePlan('live', 'inventories/s1.yaml', [hostPlan('web-1', 'changes', 'a'.repeat(64)), hostPlan('db-1', 'in-sync', 'b'.repeat(64))]);
const fleet = [rendered('web-1'), rendered('db-1'), rendered('other')];
const saved = buildSavedPlan(plan, { inventoryPath: 'inventories/s1.yaml', inventoryText: INVENTORY, rendered: fleet, createdBy: 'ops@laptop', now: new Date('2025-01-02T03:04:05.678Z') });

describe('saved plan file', () => {
  it('pins the inventory bytes, each planned host\'s render and its live hash; round-trips', () => {
    expect(saved).toMatchObject({
      format: 'fleetfw-saved-plan',
      version: 1,
      createdAt: '2025-01-02T03:04:05Z',
      createdBy: 'ops@laptop',
      inventory: { path: 'inventories/s1.yaml', sha256: sha256(INVENTORY) },
    });
    // Only the planned hosts' renders: a plan made with --limit pins no more than it covers.
    expect(Object.keys(saved.renders).sort()).toEqual(['db-1', 'web-1']);
    expect(saved.plan.hosts.find((h) => h.host === 'web-1')?.liveHash).toBe('a'.repeat(64));
    const back = parseSavedPlan(formatSavedPlan(saved));
    expect(back).toEqual({ saved });
  });

  it('keeps host fields it does not know (added by later versions of the plan)', () => {
    const text = formatSavedPlan({ ...saved, plan: { ...saved.plan, hosts: saved.plan.hosts.map((h) => ({ ...h, futureField: 1 })) } });
    const back = parseSavedPlan(text);
    expect('saved' in back && (back.saved.plan.hosts[0] as unknown as { futureField: number }).futureField).toBe(1);
  });

  it('reads plans saved by older versions (with unmanagedTables) and by this one (without)', () => {
    const older = { ...saved, plan: { ...saved.plan, hosts: saved.plan.hosts.map((h) => ({ ...h, unmanagedTables: ['raw (v4)'] })) } };
    const back = parseSavedPlan(JSON.stringify(older));
    expect('saved' in back && back.saved.plan.hosts.map((h) => h.desired)).toEqual([{ v4: V4, v6: V6 }, { v4: V4, v6: V6 }]);
    expect(formatSavedPlan(saved)).not.toContain('unmanagedTables');
    expect(parseSavedPlan(formatSavedPlan(saved))).toEqual({ saved });
  });

  it('refuses what is not a saved plan, saying why', () => {
    expect(parseSavedPlan('{')).toMatchObject({ error: expect.stringMatching(/^not JSON/) });
    expect(parseSavedPlan(formatPlanJson(plan))).toMatchObject({ error: expect.stringContaining('plan --out FILE') });
    expect(parseSavedPlan(JSON.stringify({ ...saved, version: 2 }))).toMatchObject({ error: expect.stringContaining('version 2 is not supported') });
    expect(parseSavedPlan(JSON.stringify({ ...saved, inventory: { path: 'x', sha256: 'nope' } }))).toMatchObject({
      error: expect.stringContaining('inventory.sha256'),
    });
    expect(parseSavedPlan('{"format":"something-else"}')).toMatchObject({ error: expect.stringContaining('not a fleetfw saved plan') });
  });
});

describe('findSourceChanges', () => {
  it('finds nothing when the inventory and the renders are as planned', () => {
    expect(findSourceChanges(saved, { inventoryText: INVENTORY, rendered: fleet })).toEqual([]);
  });

  it('names a changed inventory with both hashes', () => {
    const [p] = findSourceChanges(saved, { inventoryText: `${INVENTORY}# edited\n`, rendered: fleet });
    expect(p).toBe(
      `inventory inventories/s1.yaml changed since the plan was made (plan: sha256 ${sha256(INVENTORY).slice(0, 12)}, now: ${sha256(`${INVENTORY}# edited\n`).slice(0, 12)})`,
    );
  });

  it('names the hosts whose render changed (a template edit leaves the inventory bytes alone)', () => {
    const changed = [rendered('web-1', V4.replace('COMMIT', '-A INPUT -p tcp --dport 80 -j ACCEPT\nCOMMIT')), rendered('db-1'), rendered('other', '')];
    expect(findSourceChanges(saved, { inventoryText: INVENTORY, rendered: changed })).toEqual(['the inventory and templates now render different rules for: web-1']);
  });

  it('keeps a host\'s ipsets: the reviewed plan applies its sets, and a change of members is a change of render', () => {
    const sets = 'create fleetfw-web-private hash:ip family inet\nadd fleetfw-web-private 192.0.2.5\n';
    const withSets = assemblePlan('live', 'inventories/s1.yaml', [{ ...hostPlan('web-1', 'changes', 'a'.repeat(64)), desired: { v4: V4, v6: V6, ipsets: sets } }]);
    const members = (m: string[]): RenderedHost => ({ ...rendered('web-1'), ipsets: [{ name: 'fleetfw-web-private', family: 4, members: m }] });
    const file = buildSavedPlan(withSets, { inventoryPath: 'i.yaml', inventoryText: INVENTORY, rendered: [members(['192.0.2.5'])], createdBy: 'ops' });
    const back = parseSavedPlan(formatSavedPlan(file));
    expect('saved' in back && back.saved.plan.hosts[0]!.desired).toEqual({ v4: V4, v6: V6, ipsets: sets });
    expect(findSourceChanges(file, { inventoryText: INVENTORY, rendered: [members(['192.0.2.5'])] })).toEqual([]);
    expect(findSourceChanges(file, { inventoryText: INVENTORY, rendered: [members(['192.0.2.5', '192.0.2.6'])] })).toEqual([
      'the inventory and templates now render different rules for: web-1',
    ]);
  });

  it('names planned hosts that left the inventory', () => {
    expect(findSourceChanges(saved, { inventoryText: INVENTORY, rendered: [rendered('web-1')] })).toEqual(['hosts no longer in the inventory: db-1']);
  });
});
