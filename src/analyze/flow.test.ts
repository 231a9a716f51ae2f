import { describe, expect, it } from 'vitest';
import { buildFilter, buildTables, findRule, findTableRule } from './fixtures/fleet.js';
import { describePacket, evaluateConnection, legFlags, type Connection, type Flow } from './flow.js';
import { TCP_FLAG } from './netfilter-names.js';

const F = TCP_FLAG as Record<'FIN' | 'SYN' | 'RST' | 'PSH' | 'ACK' | 'URG', number>;

const server = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, [
  '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  '-A INPUT -i eth1 -s 192.0.2.12 -p tcp --dport 3306 -j ACCEPT',
  '-A INPUT -p icmp --icmp-type echo-request -j ACCEPT',
  '-A INPUT -p tcp --dport 25 -j REJECT --reject-with tcp-reset',
  '-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
]);
const client = buildFilter({ INPUT: 'DROP', OUTPUT: 'ACCEPT' }, ['-A INPUT -m state --state ESTABLISHED -j ACCEPT']);

const flow = (fields: Partial<Flow>): Flow => ({
  family: 4,
  proto: 'tcp',
  port: 3306,
  client: { name: 'web-1', addr: '192.0.2.12', iface: 'eth1', rs: client },
  server: { name: 'mysql-1', addr: '192.0.2.11', iface: 'eth1', rs: server },
  ...fields,
});

/** A client connecting from 192.0.2.12:40000 with the flags a working connection uses. */
const web: Connection = { src: '192.0.2.12', sport: 40000, flags: legFlags('allow', F.SYN) };
const legs = (r: ReturnType<typeof evaluateConnection>) => r.legs.map((l) => `${l.leg}:${l.evaluation.verdict}`);

describe('evaluateConnection', () => {
  it('allows when every leg accepts, reporting the server rule that let it in', () => {
    const r = evaluateConnection(flow({}), web);
    expect(r.outcome).toBe('allow');
    expect(r.host).toBe('mysql-1');
    expect(r.evaluation?.decidedBy).toEqual({ kind: 'rule', rule: findRule(server, 'INPUT', 2) });
    // Each flag variant of a leg is its own packet: SYN-ACK and four data/close packets back, four forward.
    expect([...new Set(legs(r))]).toEqual([
      'client-out:ACCEPT',
      'server-in:ACCEPT',
      'server-reply-out:ACCEPT',
      'client-reply-in:ACCEPT',
      'client-ack-out:ACCEPT',
      'server-ack-in:ACCEPT',
    ]);
    expect(r.legs.map((l) => l.leg)).toEqual([
      'client-out',
      'server-in',
      ...Array(5).fill('server-reply-out'),
      ...Array(5).fill('client-reply-in'),
      ...Array(4).fill('client-ack-out'),
      ...Array(4).fill('server-ack-in'),
    ]);
    expect(r.legs[2]?.packet).toMatchObject({ hook: 'OUTPUT', src: '192.0.2.11', dst: '192.0.2.12', sport: 3306, dport: 40000, state: 'ESTABLISHED', tcpFlags: F.SYN | F.ACK });
    expect(r.legs.at(-1)?.packet).toMatchObject({ hook: 'PREROUTING', in: 'eth1', src: '192.0.2.12', dst: '192.0.2.11', sport: 40000, dport: 3306, state: 'ESTABLISHED', tcpFlags: F.FIN | F.PSH | F.ACK });
    expect(describePacket(r.legs[1]!.packet)).toBe('192.0.2.12:40000 -> 192.0.2.11:3306/tcp SYN (NEW)');
  });

  it('without flags, one packet per leg: six legs for TCP', () => {
    const r = evaluateConnection(flow({}), { src: '192.0.2.12', sport: 40000 });
    expect(legs(r)).toEqual(['client-out:ACCEPT', 'server-in:ACCEPT', 'server-reply-out:ACCEPT', 'client-reply-in:ACCEPT', 'client-ack-out:ACCEPT', 'server-ack-in:ACCEPT']);
  });

  it('drops at the server INPUT policy for another source', () => {
    const r = evaluateConnection(flow({ client: { name: 'intruder', addr: '192.0.2.250' } }), { ...web, src: '192.0.2.250' });
    expect(r).toMatchObject({ outcome: 'drop', leg: 'server-in', host: 'mysql-1', evaluation: { decidedBy: { kind: 'policy', chain: 'INPUT' }, hops: ['filter INPUT'] } });
    // The external client has no rule set: only the server's leg was evaluated.
    expect(legs(r)).toEqual(['server-in:DROP']);
  });

  it('reports reject with the REJECT rule', () => {
    expect(evaluateConnection(flow({ port: 25 }), web)).toMatchObject({ outcome: 'reject', leg: 'server-in', evaluation: { rejectWith: 'tcp-reset', decidedBy: { rule: findRule(server, 'INPUT', 4) } } });
  });

  it('a reply leg can deny: server OUTPUT DROP without ESTABLISHED', () => {
    const noReply = buildFilter({ INPUT: 'ACCEPT', OUTPUT: 'DROP' }, []);
    expect(evaluateConnection(flow({ server: { name: 'mysql-1', addr: '192.0.2.11', iface: 'eth1', rs: noReply } }), web)).toMatchObject({
      outcome: 'drop',
      leg: 'server-reply-out',
      host: 'mysql-1',
    });
  });

  it('the handshake\'s ACK can deny: a client whose OUTPUT lets only SYNs out', () => {
    const synOnly = buildFilter({ OUTPUT: 'DROP' }, ['-A OUTPUT -p tcp --syn -j ACCEPT']);
    const r = evaluateConnection(flow({ client: { name: 'web-1', addr: '192.0.2.12', iface: 'eth1', rs: synOnly } }), web);
    expect(r).toMatchObject({ outcome: 'drop', leg: 'client-ack-out', host: 'web-1' });
    expect(r.legs.at(-1)?.packet).toMatchObject({ tcpFlags: F.ACK, state: 'ESTABLISHED' });
  });

  it('the server\'s side of the handshake\'s ACK: INPUT without ESTABLISHED drops it', () => {
    const newOnly = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -p tcp --dport 3306 -m conntrack --ctstate NEW -j ACCEPT']);
    expect(evaluateConnection(flow({ server: { name: 'mysql-1', addr: '192.0.2.11', iface: 'eth1', rs: newOnly } }), web)).toMatchObject({ outcome: 'drop', leg: 'server-ack-in' });
  });

  it('a client that blocks its own traffic denies at client-out', () => {
    const closed = buildFilter({ OUTPUT: 'DROP' }, []);
    const r = evaluateConnection(flow({ client: { name: 'web-1', addr: '192.0.2.12', iface: 'eth1', rs: closed } }), web);
    expect(r).toMatchObject({ outcome: 'drop', leg: 'client-out', host: 'web-1' });
    expect(legs(r)).toEqual(['client-out:DROP']);
  });

  it('ICMP echo: request NEW in, reply ESTABLISHED out (an external client has no legs of its own)', () => {
    const r = evaluateConnection(flow({ proto: 'icmp', client: { name: 'internet', addr: '203.0.113.200' } }), { src: '203.0.113.200' });
    expect(r.outcome).toBe('allow');
    expect(r.legs.map((l) => [l.leg, l.packet.icmpType, l.packet.sport])).toEqual([
      ['server-in', 8, undefined],
      ['server-reply-out', 0, undefined],
    ]);
  });

  it('IPv6 echo uses types 128/129', () => {
    const v6 = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -p ipv6-icmp --icmpv6-type 128 -j ACCEPT'], 6);
    const r = evaluateConnection(
      { family: 6, proto: 'icmp', client: { name: 'internet', addr: '2001:db8:ffff::1' }, server: { name: 'h', addr: '2001:db8::2', rs: v6 } },
      { src: '2001:db8:ffff::1' },
    );
    expect(r.outcome).toBe('allow');
    expect(r.legs.map((l) => l.packet.icmpType)).toEqual([128, 129]);
  });

  it('UDP: four legs; a request-only connection stops after the request arrives', () => {
    const dns = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, ['-A INPUT -p udp --dport 53 -j ACCEPT']);
    const f = flow({ proto: 'udp', port: 53, server: { name: 'ns', addr: '192.0.2.11', iface: 'eth1', rs: dns } });
    expect(evaluateConnection(f, { src: '192.0.2.12', sport: 40000 })).toMatchObject({ outcome: 'drop', leg: 'server-reply-out' });
    const request = evaluateConnection(f, { src: '192.0.2.12', sport: 40000, requestOnly: true });
    expect(request.outcome).toBe('allow');
    expect(legs(request)).toEqual(['client-out:ACCEPT', 'server-in:ACCEPT']);
  });

  it('two externals: nothing to evaluate, allowed', () => {
    expect(evaluateConnection(flow({ client: { name: 'a', addr: '10.0.0.1' }, server: { name: 'b', addr: '10.0.0.2' } }), { src: '10.0.0.1', sport: 40000 })).toEqual({
      outcome: 'allow',
      legs: [],
      rewrites: [],
    });
  });

  it('unknown on the first leg wins even if a later leg would deny', () => {
    const odd = buildFilter({ OUTPUT: 'ACCEPT' }, ['-A OUTPUT -m owner --uid-owner 0 -j ACCEPT']);
    expect(evaluateConnection(flow({ client: { name: 'web-1', addr: '192.0.2.12', iface: 'eth1', rs: odd }, port: 9 }), web)).toMatchObject({
      outcome: 'unknown',
      leg: 'client-out',
      evaluation: { decidedBy: { kind: 'unmodelled', option: '-m owner --uid-owner 0' } },
    });
  });
});

describe('evaluateConnection: NAT on the way', () => {
  const redirect = buildTables({
    nat: ['-A PREROUTING -i eth1 -p tcp --dport 3306 -j REDIRECT --to-ports 3307'],
    filter: [':INPUT DROP [0:0]', ':OUTPUT DROP [0:0]', '-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT', '-A INPUT -p tcp --dport 3307 -j ACCEPT', '-A OUTPUT -p tcp --sport 3307 -j ACCEPT'],
  });

  it('a REDIRECT at the server: allowed, with the rewrite, replies from the new port and later packets rewritten the same way', () => {
    const r = evaluateConnection(flow({ server: { name: 'mysql-1', addr: '192.0.2.11', iface: 'eth1', rs: redirect } }), web);
    expect(r.outcome).toBe('allow');
    expect(r.rewrites.map((w) => [w.field, w.from, w.to])).toEqual([['dport', '3306', '3307']]);
    expect(r.rewrites[0]?.outcome.rule).toBe(findTableRule(redirect, 'nat', 'PREROUTING', 1));
    // The reply leaves from port 3307 (filter OUTPUT sees it), the client sees it come from 3306.
    expect(r.legs.find((l) => l.leg === 'server-reply-out')?.packet).toMatchObject({ sport: 3307 });
    expect(r.legs.find((l) => l.leg === 'client-reply-in')?.packet).toMatchObject({ sport: 3306 });
    expect(r.legs.find((l) => l.leg === 'server-ack-in')?.evaluation.packet).toMatchObject({ dport: 3307 });
  });

  it('a DNAT at the server to another machine: diverted (routed on, not delivered)', () => {
    const fwd = buildTables({ nat: ['-A PREROUTING -p tcp --dport 3306 -j DNAT --to-destination 192.0.2.99'] });
    expect(evaluateConnection(flow({ server: { name: 'mysql-1', addr: '192.0.2.11', iface: 'eth1', rs: fwd } }), web)).toMatchObject({
      outcome: 'diverted',
      leg: 'server-in',
      evaluation: { forwarded: true, packet: { dst: '192.0.2.99' } },
    });
  });

  it('a DNAT at the client: diverted at client-out', () => {
    const elsewhere = buildTables({ nat: ['-A OUTPUT -p tcp --dport 3306 -j DNAT --to-destination 192.0.2.13'] });
    expect(evaluateConnection(flow({ client: { name: 'web-1', addr: '192.0.2.12', iface: 'eth1', rs: elsewhere } }), web)).toMatchObject({ outcome: 'diverted', leg: 'client-out', host: 'web-1' });
  });
});
