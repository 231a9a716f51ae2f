import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Inventory } from '../model/inventory.js';
import type { Listener } from '../model/listener.js';
import { loadInventory } from '../inventory/load.js';
import { loadTemplates } from '../render/load-templates.js';
import { renderFleet } from '../render/render.js';
import { parseFleet } from '../plan/checks.js';
import { assessListeners, formatSocket, listenerWarnings } from './exposure.js';
import { buildFilter, buildInventory } from './fixtures/fleet.js';
import { ownAddresses } from './lockout.js';

const INVENTORIES = join(dirname(fileURLToPath(import.meta.url)), '../../inventories');

function fleet(name: string): { inv: Inventory; assess: (host: string, listeners: Listener[], inv?: Inventory) => ReturnType<typeof assessListeners> } {
  const inv = loadInventory(join(INVENTORIES, `${name}.yaml`));
  const parsed = parseFleet(renderFleet(inv, loadTemplates(inv)));
  return {
    inv,
    assess: (host, listeners, other = inv) => assessListeners(other, other.hosts.find((h) => h.name === host)!, parsed.get(host)!, listeners),
  };
}

const tcp = (address: string, port: number, process = 'socat'): Listener => ({ proto: 'tcp', address, port, process });

describe('assessListeners (S1 rendered rules)', () => {
  const s1 = fleet('s1');

  it('sshd is the management path; the MySQL port is reachable from the backends; loopback is left out', () => {
    const [ssh, mysql, memcached] = s1.assess('mysql-1', [tcp('0.0.0.0', 22, 'sshd'), tcp('*', 3306), tcp('127.0.0.1', 11211)]);
    expect(ssh).toMatchObject({ status: 'management', sides: ['public', 'private'] });
    expect(ssh!.summary).toMatch(/^management SSH: bastion tunnel-1/);
    expect(ssh!.reach.find((r) => r.kind === 'internet')).toMatchObject({ outcome: 'drop' });
    expect(mysql).toMatchObject({ status: 'ok' });
    // Seed 000 whitelists the private servers for each other: 3 backends plus haproxy-www's peers.
    expect(mysql!.summary).toMatch(/^reachable from \d of 4 private peers$/);
    expect(memcached).toMatchObject({ status: 'local', summary: 'loopback only', reach: [] });
  });

  it('a port nobody may reach is blocked (haproxy-www opens only 80 to the internet)', () => {
    const [redis] = s1.assess('haproxy-www', [tcp('*', 6379, 'redis-server')]);
    expect(redis).toMatchObject({ status: 'blocked' });
    expect(redis!.summary).toBe('listening but the rules let nobody in (tried internet, bastion, peer)');
  });

  it("haproxy's port 80 is public, and an intent says so", () => {
    const [web] = s1.assess('haproxy-www', [tcp('0.0.0.0', 80, 'haproxy')]);
    expect(web).toMatchObject({ status: 'public' });
    expect(web!.reach.find((r) => r.kind === 'internet')).toMatchObject({ side: 'public', outcome: 'allow' });
  });

  it('a socket bound to the private address is only checked from the private side', () => {
    const [db] = s1.assess('mysql-1', [tcp('192.0.2.14', 3306)]);
    expect(db!.sides).toEqual(['private']);
    expect(db!.reach.some((r) => r.kind === 'internet')).toBe(false);
  });

  it('warnings name the process, the socket and why', () => {
    const w = listenerWarnings(s1.assess('haproxy-www', [tcp('0.0.0.0', 22, 'sshd'), tcp('*', 6379, 'redis-server')]));
    expect(w).toEqual(['redis-server listens on *:6379/tcp: would be blocked: listening but the rules let nobody in (tried internet, bastion, peer)']);
  });
});

describe('exposure without an intent (S2)', () => {
  const s2 = fleet('s2');

  it('is a warning naming the accepting rule; with the intent it is fine', () => {
    const bare = { ...s2.inv, intents: [] };
    const [exposed] = s2.assess('web', [tcp('0.0.0.0', 80, 'nginx')], bare);
    expect(exposed).toMatchObject({ status: 'exposed' });
    expect(exposed!.summary).toMatch(/^open to the internet on eth0 and no intent says so \(.*-A TCP .*--dport 80 -j ACCEPT\)$/);
    expect(s2.assess('web', [tcp('0.0.0.0', 80, 'nginx')])[0]).toMatchObject({ status: 'public' });
  });

  it('formats IPv6 sockets with brackets', () => {
    expect(formatSocket({ proto: 'udp', address: '::', port: 53 })).toBe('[::]:53/udp');
    expect(formatSocket({ proto: 'tcp', address: '0.0.0.0', port: 22, device: 'eth1' })).toBe('0.0.0.0%eth1:22/tcp');
  });
});

/** A 60-host S1-like fleet (the backends' mutual whitelist is an ipset, some peers are named by address), rendered and parsed. */
async function withFleet60(fn: (inv: Inventory, parsed: ReturnType<typeof parseFleet>) => void): Promise<void> {
  const { fleetYaml } = await import('../../bench/fleet.js');
  const { writeFileSync, mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'fleetfw-exposure-'));
  try {
    const file = join(dir, 's1-60.yaml');
    writeFileSync(file, fleetYaml(60));
    const inv = loadInventory(file);
    fn(inv, parseFleet(renderFleet(inv, loadTemplates(inv))));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('assessListeners at fleet scale', () => {
  it('firstPeer gives the same warnings and statuses, trying fewer peers', async () => {
    await withFleet60((inv, parsed) => {
      // Let in by peers (3306 on a backend), by the bastion (22), by nobody (6379), by the internet (80 on haproxy).
      const listeners = [tcp('0.0.0.0', 3306), tcp('0.0.0.0', 22, 'sshd'), tcp('*', 6379, 'redis'), tcp('0.0.0.0', 80, 'haproxy')];
      let tried = 0;
      let triedAll = 0;
      for (const name of ['mysql-1', 'wordpress-1', 'haproxy-www', 'tunnel-1']) {
        const host = inv.hosts.find((h) => h.name === name)!;
        const all = assessListeners(inv, host, parsed.get(name)!, listeners);
        const first = assessListeners(inv, host, parsed.get(name)!, listeners, { firstPeer: true });
        expect(first.map((a) => a.status)).toEqual(all.map((a) => a.status));
        expect(listenerWarnings(first)).toEqual(listenerWarnings(all));
        tried += first.flatMap((a) => a.reach).length;
        triedAll += all.flatMap((a) => a.reach).length;
      }
      expect(tried).toBeLessThan(triedAll * 0.6);
    });
  });

  it('gives every peer the verdict a flow of its own gets, though peers the rules cannot tell apart share one evaluation', async () => {
    const { proveFlow, EVERY_PORT, OPEN_ANY } = await import('./prove.js');
    const { decidedBy } = await import('./explain.js');
    await withFleet60((inv, parsed) => {
      for (const name of ['mysql-1', 'wordpress-1', 'haproxy-www']) {
        const host = inv.hosts.find((h) => h.name === name)!;
        const sets = parsed.get(name)!;
        const [mysql] = assessListeners(inv, host, sets, [tcp('0.0.0.0', 3306)]);
        const peers = mysql!.reach.filter((r) => r.kind === 'peer');
        expect(peers.length).toBeGreaterThan(50);
        for (const r of peers) {
          const peer = inv.hosts.find((h) => `peer ${h.name}` === r.source)!;
          // The same class of connections as the assessment, from this peer alone.
          const { result: alone } = proveFlow(
            {
              family: 4,
              proto: 'tcp',
              port: 3306,
              client: { name: r.source, addr: peer.private! },
              server: { name, addr: host.private!, iface: host.interfaces.private, rs: sets.v4, local: new Set(ownAddresses(host)) },
            },
            { sports: [EVERY_PORT], open: OPEN_ANY, mode: 'deny' },
            (x) => x.outcome === 'reject' || x.outcome === 'drop',
          );
          expect({ source: r.source, outcome: r.outcome, decidedBy: r.decidedBy }).toEqual({
            source: r.source,
            outcome: alone.outcome,
            decidedBy: alone.evaluation ? decidedBy(alone) : '',
          });
        }
      }
    });
  });
});

describe('assessListeners: every connection an outsider may open', () => {
  const inv = buildInventory();
  const mysql = inv.hosts.find((h) => h.name === 'mysql-1')!;
  const ESTABLISHED = '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT';
  const assess = (rules: string[], port = 80) => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, ...rules]);
    return assessListeners(inv, mysql, { v4: rs, v6: buildFilter({ INPUT: 'DROP' }, [], 6) }, [tcp('0.0.0.0', port, 'nginx')])[0]!;
  };

  it('a hole for one source port (the old "DNS replies" rule) exposes the service', () => {
    const a = assess(['-A INPUT -p tcp --sport 53 -j ACCEPT']);
    expect(a.status).toBe('exposed');
    expect(a.summary).toBe('open to the internet on eth0 and no intent says so (rules.v4 line 6: -A INPUT -p tcp -m tcp --sport 53 -j ACCEPT)');
    expect(a.reach.map((r) => [r.source, r.outcome])).toEqual([
      ['internet', 'allow'],
      ['bastion tunnel-1', 'allow'],
      ['peer web-1', 'allow'],
    ]);
  });

  it('an opening only SYN|URG gets through exposes the service', () => {
    expect(assess(['-A INPUT -p tcp --dport 80 --tcp-flags SYN,URG SYN,URG -j ACCEPT']).status).toBe('exposed');
  });

  it('nobody in: blocked, with the rule or policy that stops them', () => {
    const a = assess(['-A INPUT -p tcp --dport 80 -j REJECT --reject-with tcp-reset']);
    expect(a).toMatchObject({ status: 'blocked', summary: 'listening but the rules let nobody in (tried internet, bastion, peer)' });
    expect(a.reach.map((r) => [r.outcome, r.decidedBy])).toEqual(Array(3).fill(['reject', 'rules.v4 line 6: -A INPUT -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset']));
  });

  // Connections from source ports 1024 and up are accepted: the undecided rule for the
  // low ports must not hide that the service is open to the internet.
  it('an undecided rule for some connections does not hide others that get in', () => {
    const a = assess(['-A INPUT -p tcp --sport 0:1023 -m recent --name x --rcheck -j DROP', '-A INPUT -p tcp --dport 80 -j ACCEPT']);
    expect(a.status).toBe('exposed');
    expect(a.reach.find((r) => r.kind === 'internet')).toMatchObject({ outcome: 'allow', decidedBy: 'rules.v4 line 7: -A INPUT -p tcp -m tcp --dport 80 -j ACCEPT' });
  });
});
