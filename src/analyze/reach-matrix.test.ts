// The matrix is held to the whole-flow proof: for every cell of every example
// fleet, a port is listed for every pair exactly when proveFlow, evaluating both
// hosts' rules together, proves every connection from the source host to some
// address of the destination admitted for each pair; `some` when for some pairs.
// A host added to a fleet changes exactly the cells of its groups.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Family, HostSpec, Side } from '../model/inventory.js';
import { loadInventory } from '../inventory/load.js';
import { loadTemplates } from '../render/load-templates.js';
import { renderFleet } from '../render/render.js';
import { parseFleet } from '../plan/checks.js';
import type { FlowEnd } from './flow.js';
import { localOf } from './lockout.js';
import { LINUX_CLIENT_PORTS, OPEN_CONNECT, proveFlow } from './prove.js';
import { ReachTooLarge, type HostRuleSets, type ReachProto } from './reach.js';
import { MAX_MATRIX_PAIRS, reachMatrix, type MatrixPorts } from './reach-matrix.js';

const INVENTORIES = join(import.meta.dirname, '../../inventories');
const PORTS: Record<ReachProto, number[]> = { tcp: [1, 22, 80, 443, 3306, 8080, 24007, 65535], udp: [53, 123, 51820] };

function end(h: HostSpec, sets: HostRuleSets, side: Side, family: Family): FlowEnd | undefined {
  const addr = h[`${side}${family === 6 ? '6' : ''}` as 'public' | 'private' | 'public6' | 'private6'];
  return addr ? { name: h.name, addr, iface: h.interfaces[side], rs: family === 4 ? sets.v4 : sets.v6, local: localOf(h) } : undefined;
}

const reachAt = (ps: readonly MatrixPorts[], port: number) => ps.find((p) => p.ports[0] <= port && port <= p.ports[1])?.reach;

function fleet(name: string) {
  const inv = loadInventory(join(INVENTORIES, `${name}.yaml`));
  return { inv, sets: parseFleet(renderFleet(inv, loadTemplates(inv))) };
}

describe('reachMatrix against the whole-flow proof', () => {
  for (const name of ['s1', 's2', 's3', 's4']) {
    it(`${name}: every host-group cell lists a port for all pairs, some pairs or none exactly as proveFlow says`, () => {
      const { inv, sets } = fleet(name);
      const m = reachMatrix({ inv, before: sets, after: sets });
      const byName = new Map(inv.hosts.map((h) => [h.name, h]));
      let compared = 0;
      m.rows.forEach((row, i) => {
        if (row.kind !== 'group' && row.kind !== 'host') return;
        m.columns.forEach((col, j) => {
          const cell = m.cells[i]![j]!;
          // Nothing changes when the rules are the same before and after.
          for (const e of cell.entries) expect([e.open, e.close, e.unknown, e.before]).toEqual([[], [], [], e.after]);
          for (const family of [4, 6] as const) {
            for (const proto of ['tcp', 'udp'] as const) {
              const entry = cell.entries.find((e) => e.family === family && e.proto === proto);
              for (const port of PORTS[proto]) {
                let pairs = 0;
                let allowed = 0;
                for (const s of row.members) {
                  for (const d of col.members) {
                    if (s === d) continue;
                    const sides = (['public', 'private'] as const).flatMap((side) => {
                      const client = end(byName.get(s)!, sets.get(s)!, side, family);
                      const server = end(byName.get(d)!, sets.get(d)!, side, family);
                      return client && server ? [{ client, server }] : [];
                    });
                    if (sides.length === 0) continue;
                    pairs++;
                    const ok = sides.some(({ client, server }) => proveFlow({ family, proto, port, client, server }, { sports: [LINUX_CLIENT_PORTS], open: OPEN_CONNECT, mode: 'allow' }, (r) => r.outcome === 'allow').ok);
                    if (ok) allowed++;
                  }
                }
                const want = pairs > 0 && allowed === pairs ? 'all' : allowed > 0 ? 'some' : undefined;
                expect(reachAt(entry?.after ?? [], port), `${name}: ${row.name} -> ${col.name}:${port}/${proto} IPv${family}: ${allowed} of ${pairs} pairs`).toBe(want);
                compared++;
              }
            }
          }
        });
      });
      expect(compared).toBeGreaterThan(40);
    });
  }

  it('a host added: the cells of its groups (as source and as destination) open, no other cell changes, and no cell closes', () => {
    const { inv, sets } = fleet('s1');
    const before = new Map([...sets].filter(([h]) => h !== 'wordpress-2'));
    const m = reachMatrix({ inv, before, after: sets });
    const groups = ['backend', 'wordpress'];
    m.rows.forEach((row, i) =>
      m.columns.forEach((col, j) => {
        const cell = m.cells[i]![j]!;
        const changed = cell.entries.filter((e) => e.open.length + e.close.length + e.unknown.length > 0);
        expect(cell.entries.flatMap((e) => [...e.close, ...e.unknown])).toEqual([]);
        const touches = groups.includes(col.name) || (groups.includes(row.name) && cell.pairs.after > 0);
        // A group's cell whose pairs all reach nothing stays unchanged (haproxy -> mysql, say).
        if (!touches) expect(changed, `${row.name} -> ${col.name}`).toEqual([]);
        if (touches && cell.entries.some((e) => e.after.length > 0) && row.kind !== 'any' && row.kind !== 'external') expect(changed.length, `${row.name} -> ${col.name}`).toBeGreaterThan(0);
        if (groups.includes(col.name) && row.kind === 'group') expect(cell.pairs.after, `${row.name} -> ${col.name}`).toBeGreaterThan(cell.pairs.before);
      }),
    );
    const wordpress = m.cells[m.rows.findIndex((r) => r.name === 'wordpress')]![m.columns.findIndex((c) => c.name === 'backend')]!;
    // Before: wordpress-1 to mysql-1 and mysql-2; after: both WordPress hosts to the three other backends each.
    expect(wordpress.pairs).toEqual({ before: 2, after: 6 });
    expect(wordpress.entries.find((e) => e.proto === 'tcp')).toMatchObject({ before: [{ ports: [1, 65535], reach: 'all' }], after: [{ ports: [1, 65535], reach: 'all' }], open: [[1, 65535]] });
  });

  it('externals and any other address: the ports of S1 the internet reaches, on the public side only', () => {
    const { inv, sets } = fleet('s1');
    const m = reachMatrix({ inv, before: sets, after: sets });
    const row = (name: string) => m.cells[m.rows.findIndex((r) => r.name === name)]!;
    const ports = (name: string) => Object.fromEntries(m.columns.map((c, j) => [c.name, row(name)[j]!.entries.flatMap((e) => e.after.map((p) => `${p.ports.join('-')}/${e.proto} ${p.reach}`))]));
    expect(ports('internet')).toEqual({ backend: [], bastion: ['22-22/tcp all'], haproxy: ['80-80/tcp all'], mysql: [], wordpress: [] });
    expect(ports('any other address (public)')).toEqual(ports('internet'));
    expect(ports('intruder')).toEqual({ backend: [], bastion: [], haproxy: [], mysql: [], wordpress: [] });
  });

  it('refuses more pairs than it can draw, at once', () => {
    const { inv, sets } = fleet('s1');
    const n = Math.ceil(Math.sqrt(MAX_MATRIX_PAIRS)) + 2;
    const many = { ...inv, hosts: Array.from({ length: n }, (_, i) => ({ ...inv.hosts[1]!, name: `h${i}` })) };
    const after = new Map(many.hosts.map((h) => [h.name, sets.get('wordpress-1')!]));
    const t = performance.now();
    expect(() => reachMatrix({ inv: many, before: new Map(), after })).toThrow(ReachTooLarge);
    expect(performance.now() - t).toBeLessThan(1000);
  });
});
