// The reachability diff proves each end of a connection apart (the client's rules
// with a server that accepts everything, and the other way round) and combines the
// two. These tests hold it to the whole-flow proof: for every pair of hosts of every
// example fleet, a port is reported reachable exactly when proveFlow, evaluating
// both hosts' rules together, proves every connection to it admitted.
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
import { rangeToCidrs, reachChanges, ReachTooLarge, type HostRuleSets, type ReachProto } from './reach.js';

const INVENTORIES = join(import.meta.dirname, '../../inventories');
const PORTS: Record<ReachProto, number[]> = { tcp: [1, 21, 22, 23, 80, 443, 3306, 8080, 24007, 65535], udp: [53, 123, 1194, 51820] };

function end(h: HostSpec, sets: HostRuleSets, side: Side, family: Family): FlowEnd | undefined {
  const addr = h[`${side}${family === 6 ? '6' : ''}` as 'public' | 'private' | 'public6' | 'private6'];
  return addr ? { name: h.name, addr, iface: h.interfaces[side], rs: family === 4 ? sets.v4 : sets.v6, local: localOf(h) } : undefined;
}

describe('reachChanges against the whole-flow proof', () => {
  for (const name of ['s1', 's2', 's3', 's4']) {
    it(`${name}: every host newly added is reachable from each other host exactly where proveFlow says`, () => {
      const inv = loadInventory(join(INVENTORIES, `${name}.yaml`));
      const sets = parseFleet(renderFleet(inv, loadTemplates(inv)));
      let compared = 0;
      for (const dst of inv.hosts) {
        // Before: the fleet without dst. After: with it. Every flow to dst is then "opened".
        const before = new Map([...sets].filter(([h]) => h !== dst.name));
        const changes = reachChanges({ inv, before, after: sets }).filter((c) => c.to === dst.name && c.change === 'open' && c.from.kind === 'host');
        for (const src of inv.hosts.filter((h) => h.name !== dst.name)) {
          for (const side of ['private', 'public'] as const) {
            const client = end(src, sets.get(src.name)!, side, 4);
            const server = end(dst, sets.get(dst.name)!, side, 4);
            if (!client || !server) continue;
            for (const proto of ['tcp', 'udp'] as const) {
              const open = changes.filter((c) => c.from.kind === 'host' && c.from.name === src.name && c.side === side && c.proto === proto && c.family === 4).flatMap((c) => c.ports);
              for (const port of PORTS[proto]) {
                const whole = proveFlow({ family: 4, proto, port, client, server }, { sports: [LINUX_CLIENT_PORTS], open: OPEN_CONNECT, mode: 'allow' }, (r) => r.outcome === 'allow');
                const reported = open.some(([a, b]) => a <= port && port <= b);
                expect(reported, `${name}: ${src.name} -> ${dst.name}:${port}/${proto} via ${side}: ${whole.result.outcome}`).toBe(whole.ok);
                compared++;
              }
            }
          }
        }
      }
      expect(compared).toBeGreaterThan(20);
    });
  }

  it('refuses to compare more pairs than it can, rather than taking minutes', () => {
    const inv = loadInventory(join(INVENTORIES, 's1.yaml'));
    const sets = parseFleet(renderFleet(inv, loadTemplates(inv)));
    const many = { ...inv, hosts: Array.from({ length: 400 }, (_, i) => ({ ...inv.hosts[1]!, name: `h${i}` })) };
    const after = new Map(many.hosts.map((h) => [h.name, sets.get('wordpress-1')!]));
    expect(() => reachChanges({ inv: many, before: new Map(), after })).toThrow(ReachTooLarge);
  });
});

describe('rangeToCidrs', () => {
  it('covers a range exactly with the fewest CIDRs', () => {
    expect(rangeToCidrs('192.0.2.0', '192.0.2.255')).toEqual(['192.0.2.0/24']);
    expect(rangeToCidrs('192.0.2.1', '192.0.2.6')).toEqual(['192.0.2.1/32', '192.0.2.2/31', '192.0.2.4/31', '192.0.2.6/32']);
    expect(rangeToCidrs('0.0.0.0', '255.255.255.255')).toEqual(['0.0.0.0/0']);
    expect(rangeToCidrs('2001:db8::', '2001:db8::ffff')).toEqual(['2001:db8::/112']);
  });
});
