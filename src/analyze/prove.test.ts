import { describe, expect, it } from 'vitest';
import type { IpSet, RuleSet } from '../model/ruleset.js';
import { addressOfValue, addressValue } from './cidr.js';
import { describeExample } from './explain.js';
import { buildFilter, findRule } from './fixtures/fleet.js';
import { evaluateConnection, type Flow, type FlowResult } from './flow.js';
import { TCP_FLAG } from './netfilter-names.js';
import {
  ANY_CLIENT_PORTS,
  EVERY_PORT,
  LINUX_CLIENT_PORTS,
  OPEN_ANY,
  OPEN_CONNECT,
  proveFlow,
  sourceRange,
  splitIntervals,
  type Interval,
} from './prove.js';

const F = TCP_FLAG as Record<'FIN' | 'SYN' | 'RST' | 'PSH' | 'ACK' | 'URG', number>;
const ESTABLISHED = '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT';

const allowed = (r: FlowResult) => r.outcome === 'allow';
const denied = (r: FlowResult) => r.outcome === 'drop' || r.outcome === 'reject';
const ranges = (xs: Array<Interval<bigint>>) => xs.map(([a, b]) => `${addressOfValue(a, 4)}-${addressOfValue(b, 4)}`);

/** SSH from the bastion's private address to mysql-1's. */
const bastionToMysql = (rs: RuleSet, client?: RuleSet): Flow => ({
  family: 4,
  proto: 'tcp',
  port: 22,
  client: { name: 'tunnel-1', addr: '192.0.2.10', iface: 'eth1', ...(client ? { rs: client } : {}) },
  server: { name: 'mysql-1', addr: '192.0.2.11', iface: 'eth1', rs },
});

/** Operators of 203.0.113.0/24 to the bastion's public SSH. */
const operatorsToBastion = (rs: RuleSet): Flow => ({
  family: 4,
  proto: 'tcp',
  port: 22,
  client: { name: 'operator 203.0.113.0/24', addr: '203.0.113.0/24' },
  server: { name: 'tunnel-1', addr: '203.0.113.10', iface: 'eth0', rs, local: new Set(['203.0.113.10', '192.0.2.10']) },
});

describe('splitIntervals', () => {
  it('cuts where a boundary falls inside an interval', () => {
    expect(splitIntervals([[0, 10]], [5])).toEqual([
      [0, 4],
      [5, 10],
    ]);
    expect(splitIntervals([[0, 10]], [10])).toEqual([
      [0, 9],
      [10, 10],
    ]);
  });

  it('a boundary at the interval\'s first value or just past its last does not cut it', () => {
    expect(splitIntervals([[5, 10]], [0, 5, 11, 99])).toEqual([[5, 10]]);
    expect(splitIntervals([[5, 10]], [])).toEqual([[5, 10]]);
  });

  it('several intervals and boundaries, in order', () => {
    expect(splitIntervals([[0, 9], [20, 29]], [3, 4, 25, 40])).toEqual([
      [0, 2],
      [3, 3],
      [4, 9],
      [20, 24],
      [25, 29],
    ]);
  });

  it('works on addresses (bigint)', () => {
    const [lo, hi] = [addressValue('203.0.113.0'), addressValue('203.0.113.255')];
    const cuts = [addressValue('203.0.113.77'), addressValue('203.0.113.78')];
    expect(splitIntervals([[lo, hi]], cuts).map(([a, b]) => `${addressOfValue(a, 4)}-${addressOfValue(b, 4)}`)).toEqual([
      '203.0.113.0-203.0.113.76',
      '203.0.113.77-203.0.113.77',
      '203.0.113.78-203.0.113.255',
    ]);
  });
});

describe('sourceRange', () => {
  it('leaves out the host\'s own addresses', () => {
    expect(ranges(sourceRange('203.0.113.0/24', ['203.0.113.10', '2001:db8::10']))).toEqual(['203.0.113.0-203.0.113.9', '203.0.113.11-203.0.113.255']);
    expect(sourceRange('203.0.113.10/32', ['203.0.113.10'])).toEqual([]);
  });

  it('the whole space stands for the internet: private, shared, link-local, loopback, multicast and reserved are left out', () => {
    expect(ranges(sourceRange('0.0.0.0/0', ['192.0.2.10']))).toEqual([
      '1.0.0.0-9.255.255.255',
      '11.0.0.0-100.63.255.255',
      '100.128.0.0-126.255.255.255',
      '128.0.0.0-169.253.255.255',
      '169.255.0.0-172.15.255.255',
      '172.32.0.0-192.0.2.9',
      '192.0.2.11-192.167.255.255',
      '192.169.0.0-223.255.255.255',
    ]);
  });

  it('a private network named as operators is kept', () => {
    expect(ranges(sourceRange('10.0.0.0/8', []))).toEqual(['10.0.0.0-10.255.255.255']);
    expect(ranges(sourceRange('127.0.0.0/7', []))).toEqual(['126.0.0.0-126.255.255.255']);
  });
});

describe('proveFlow: a counterexample where the rules cut out a single packet', () => {
  it('only ONE source port of the client\'s range is dropped', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --sport 40000 --dport 22 -j DROP', '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const flow = bastionToMysql(rs);
    // A sample from the start of the range passes.
    expect(evaluateConnection(flow, { src: '192.0.2.10', sport: 32768 }).outcome).toBe('allow');
    const proof = proveFlow(flow, { sports: [LINUX_CLIENT_PORTS], open: OPEN_CONNECT, mode: 'allow' }, allowed);
    expect(proof).toMatchObject({ ok: false, example: { src: '192.0.2.10', sport: 40000 }, range: { sport: [40000, 40000] }, connections: 2 });
    expect(proof.result).toMatchObject({ outcome: 'drop', leg: 'server-in', host: 'mysql-1' });
    expect(proof.result.evaluation?.decidedBy).toEqual({ kind: 'rule', rule: findRule(rs, 'INPUT', 2) });
    expect(describeExample(proof)).toEqual({ packet: '192.0.2.10:40000 -> 192.0.2.11:22/tcp SYN (NEW)', path: 'mysql-1: filter INPUT' });
  });

  it('only ONE address of the operators\' network is dropped', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -s 203.0.113.77 -p tcp --dport 22 -j DROP', '-A INPUT -s 203.0.113.0/24 -p tcp --dport 22 -j ACCEPT']);
    const proof = proveFlow(operatorsToBastion(rs), { srcs: sourceRange('203.0.113.0/24', ['203.0.113.10']), sports: [ANY_CLIENT_PORTS], open: OPEN_CONNECT, mode: 'allow' }, allowed);
    expect(proof).toMatchObject({ ok: false, example: { src: '203.0.113.77', sport: 32768 }, range: { src: ['203.0.113.77', '203.0.113.77'], sport: [32768, 65535] }, connections: 3 });
    expect(proof.result).toMatchObject({ outcome: 'drop', leg: 'server-in' });
    expect(proof.result.evaluation?.decidedBy).toEqual({ kind: 'rule', rule: findRule(rs, 'INPUT', 2) });
    expect(describeExample(proof).packet).toBe('203.0.113.77:32768 -> 203.0.113.10:22/tcp SYN (NEW), as for every packet of source ports 32768-65535');
  });

  it('a cut on the client\'s side counts too: its OUTPUT drops one source port', () => {
    const server = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const client = buildFilter({}, ['-A OUTPUT -p tcp --sport 50000 -j DROP']);
    const proof = proveFlow(bastionToMysql(server, client), { sports: [LINUX_CLIENT_PORTS], open: OPEN_CONNECT, mode: 'allow' }, allowed);
    expect(proof).toMatchObject({ ok: false, example: { sport: 50000 }, result: { outcome: 'drop', leg: 'client-out', host: 'tunnel-1' } });
  });

  it('allow: every reply and data flag must pass (a connection that cannot close is cut)', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT', '-A OUTPUT -p tcp --tcp-flags FIN FIN -j DROP']);
    const proof = proveFlow(bastionToMysql(rs), { sports: [LINUX_CLIENT_PORTS], open: OPEN_CONNECT, mode: 'allow' }, allowed);
    expect(proof.ok).toBe(false);
    expect(proof.result).toMatchObject({ outcome: 'drop', leg: 'server-reply-out' });
    expect(proof.result.legs.at(-1)?.packet).toMatchObject({ src: '192.0.2.11', sport: 22, dport: 32768, state: 'ESTABLISHED', tcpFlags: F.FIN | F.ACK });
  });

  it('deny: only SYN|URG among the opening flags is let through, and that is the counterexample', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --tcp-flags SYN,URG SYN,URG --dport 22 -j ACCEPT']);
    const flow: Flow = { family: 4, proto: 'tcp', port: 22, client: { name: 'internet', addr: '203.0.113.200' }, server: { name: 'h', addr: '203.0.113.11', iface: 'eth0', rs } };
    // A plain SYN is dropped.
    expect(proveFlow(flow, { sports: [EVERY_PORT], open: OPEN_CONNECT, mode: 'deny' }, denied)).toMatchObject({ ok: true, result: { outcome: 'drop' } });
    const proof = proveFlow(flow, { sports: [EVERY_PORT], open: OPEN_ANY, mode: 'deny' }, denied);
    // Opening flags the rules cannot tell apart are tried once: SYN (with SYN|PSH), then SYN|URG (with SYN|PSH|URG).
    expect(proof).toMatchObject({ ok: false, connections: 2, example: { sport: 0, flags: { open: [F.SYN | F.URG] } }, result: { outcome: 'allow' } });
    expect(proof.result.legs.find((l) => l.leg === 'server-in')?.packet).toMatchObject({ tcpFlags: F.SYN | F.URG, state: 'NEW', sport: 0, dport: 22 });
  });

  it('deny of UDP counts only the request: a datagram that arrives is delivered, answered or not', () => {
    const rs = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, ['-A INPUT -p udp --dport 53 -j ACCEPT']);
    const udp: Flow = { family: 4, proto: 'udp', port: 53, client: { name: 'internet', addr: '203.0.113.200' }, server: { name: 'h', addr: '203.0.113.11', iface: 'eth0', rs } };
    const deny = proveFlow(udp, { sports: [EVERY_PORT], mode: 'deny' }, denied);
    expect(deny).toMatchObject({ ok: false, example: { requestOnly: true }, result: { outcome: 'allow' } });
    expect(deny.result.legs.map((l) => l.leg)).toEqual(['server-in']);
    // An allowed one needs its answer: the server's OUTPUT drops it.
    expect(proveFlow(udp, { sports: [EVERY_PORT], mode: 'allow' }, allowed)).toMatchObject({ ok: false, result: { outcome: 'drop', leg: 'server-reply-out' } });
    // TCP through the same rules is denied: without the SYN-ACK there is no connection.
    const tcp = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, ['-A INPUT -p tcp --dport 53 -j ACCEPT']);
    expect(proveFlow({ ...udp, proto: 'tcp', server: { ...udp.server, rs: tcp } }, { sports: [EVERY_PORT], open: OPEN_ANY, mode: 'deny' }, denied)).toMatchObject({
      ok: true,
      result: { outcome: 'drop', leg: 'server-reply-out' },
    });
  });

  // An attacker picks the flags of the handshake's third packet: a bare ACK, or PSH|ACK
  // carrying data (Linux completes the handshake on either). A deny must hold for each.
  it('deny: the handshake completed by PSH|ACK when a bare ACK is dropped is not denied', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -p tcp --tcp-flags ALL ACK -j DROP', ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const flow: Flow = { family: 4, proto: 'tcp', port: 22, client: { name: 'internet', addr: '203.0.113.200' }, server: { name: 'h', addr: '203.0.113.11', iface: 'eth0', rs } };
    // The connection works with PSH|ACK as its third packet ...
    expect(evaluateConnection(flow, { src: '203.0.113.200', sport: 1024, flags: { open: [F.SYN], reply: [F.SYN | F.ACK], ack: [F.PSH | F.ACK] } }).outcome).toBe('allow');
    // ... so "every connection is denied" must not be proven.
    expect(proveFlow(flow, { sports: [EVERY_PORT], open: OPEN_ANY, mode: 'deny' }, denied).ok).toBe(false);
  });
});

describe('proveFlow: address types', () => {
  // -m addrtype tells addresses apart too (the host's own, loopback, multicast,
  // broadcast): a class that holds such an address must be cut there. sourceRange leaves
  // them out of the management path's class, but proveFlow takes any class.
  it('a class holding a multicast source is cut where -m addrtype tells it apart', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -m addrtype --src-type MULTICAST -j DROP', '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const flow = operatorsToBastion(rs);
    expect(evaluateConnection(flow, { src: '224.0.0.1', sport: 40000 }).outcome).toBe('drop');
    const proof = proveFlow(flow, { srcs: [[0n, 2n ** 32n - 1n]], sports: [[40000, 40000]], open: OPEN_CONNECT, mode: 'allow' }, allowed);
    expect(proof).toMatchObject({ ok: false, example: { src: '224.0.0.0' }, result: { outcome: 'drop', leg: 'server-in' } });
  });
});

describe('proveFlow: cost', () => {
  it('proves a whole class with one connection per piece the rules tell apart', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    // 32768-60999 holds no port boundary (22, 23): one connection.
    expect(proveFlow(bastionToMysql(rs), { sports: [LINUX_CLIENT_PORTS], open: OPEN_CONNECT, mode: 'allow' }, allowed)).toMatchObject({ ok: true, connections: 1, result: { outcome: 'allow' } });
    // Every public address of the internet and every client port: one connection per interval of sourceRange.
    const internet = proveFlow(operatorsToBastion(rs), { srcs: sourceRange('0.0.0.0/0', ['203.0.113.10', '192.0.2.10']), sports: [ANY_CLIENT_PORTS], open: OPEN_CONNECT, mode: 'allow' }, allowed);
    expect(internet).toMatchObject({ ok: true, connections: 9, example: { src: '1.0.0.0', sport: 32768 } });
  });

  it('an allowed connection is one connection whatever the opening flags; a denied one, one per flag group', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --syn --dport 22 -j ACCEPT']);
    const flow = bastionToMysql(rs);
    expect(proveFlow(flow, { sports: [[40000, 40000]], open: OPEN_ANY, mode: 'allow' }, allowed)).toMatchObject({ ok: true, connections: 1, example: { flags: { open: [F.SYN] } } });
    // --syn tells none of the opening variants apart.
    expect(proveFlow(flow, { sports: [[40000, 40000]], open: OPEN_ANY, mode: 'deny' }, allowed)).toMatchObject({ ok: true, connections: 1 });
  });

  it('past the cap on pieces the answer is unknown, with the reason, and nothing is evaluated', () => {
    const members = Array.from({ length: 10_001 }, (_, i) => addressOfValue(addressValue('10.0.0.0') + BigInt(2 * i), 4));
    const set: IpSet = { name: 'big', family: 4, members };
    const rs = { ...buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -m set --match-set big src -p tcp --dport 22 -j ACCEPT']), sets: new Map([['big', set]]) };
    const proof = proveFlow(operatorsToBastion(rs), { srcs: [[0n, 2n ** 32n - 1n]], sports: [[40000, 40000]], open: OPEN_CONNECT, mode: 'allow' }, allowed);
    expect(proof).toMatchObject({ ok: false, connections: 0, result: { outcome: 'unknown', legs: [], reason: 'the rules cut this class into 20003 pieces; fleetfw proves at most 20000' } });
  });
});
