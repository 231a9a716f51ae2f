import { describe, expect, it } from 'vitest';
import type { HostView, Packet } from './evaluate.js';
import { buildTables, findTableRule } from './fixtures/fleet.js';
import { TCP_FLAG } from './netfilter-names.js';
import { evaluatePath, type PathResult } from './path.js';

const SYN = TCP_FLAG.SYN as number;
const ACK = TCP_FLAG.ACK as number;

// mysql-1: private 192.0.2.11 on eth1, public 203.0.113.11 on eth0.
const view: HostView = { local: new Set(['192.0.2.11', '203.0.113.11']) };

/** SSH from the bastion arriving at mysql-1's private side. */
const arriving = (fields: Partial<Packet> = {}): Packet => ({
  family: 4,
  hook: 'PREROUTING',
  in: 'eth1',
  out: '',
  src: '192.0.2.10',
  dst: '192.0.2.11',
  proto: 'tcp',
  sport: 40000,
  dport: 22,
  state: 'NEW',
  tcpFlags: SYN,
  ...fields,
});

/** mysql-1 opening a connection to another machine. */
const leaving = (fields: Partial<Packet> = {}): Packet => ({
  family: 4,
  hook: 'OUTPUT',
  in: '',
  out: 'eth1',
  src: '192.0.2.11',
  dst: '192.0.2.20',
  proto: 'tcp',
  sport: 40000,
  dport: 443,
  state: 'NEW',
  tcpFlags: SYN,
  ...fields,
});

// One LOG rule per built-in chain of every table: the trace then lists every chain a packet meets, in order.
const LOG_ALL = buildTables({
  raw: ['-A PREROUTING -j LOG', '-A OUTPUT -j LOG'],
  mangle: ['-A PREROUTING -j LOG', '-A INPUT -j LOG', '-A FORWARD -j LOG', '-A OUTPUT -j LOG', '-A POSTROUTING -j LOG'],
  nat: ['-A PREROUTING -j LOG', '-A INPUT -j LOG', '-A OUTPUT -j LOG', '-A POSTROUTING -j LOG'],
  filter: ['-A INPUT -j LOG', '-A FORWARD -j LOG', '-A OUTPUT -j LOG'],
  security: ['-A INPUT -j LOG', '-A FORWARD -j LOG', '-A OUTPUT -j LOG'],
});

const chainsMet = (r: PathResult) => r.trace.map((s) => `${s.table} ${s.chain}`);

const ARRIVE_LOCAL = ['raw PREROUTING', 'mangle PREROUTING', 'nat PREROUTING', 'mangle INPUT', 'filter INPUT', 'security INPUT', 'nat INPUT'];
const ARRIVE_FORWARD = ['raw PREROUTING', 'mangle PREROUTING', 'nat PREROUTING', 'mangle FORWARD', 'filter FORWARD', 'security FORWARD', 'mangle POSTROUTING', 'nat POSTROUTING'];
const LEAVE = ['raw OUTPUT', 'mangle OUTPUT', 'nat OUTPUT', 'filter OUTPUT', 'security OUTPUT', 'mangle POSTROUTING', 'nat POSTROUTING'];
const without = (list: string[], table: string) => list.filter((l) => !l.startsWith(`${table} `));

describe('evaluatePath: the order of tables and hooks', () => {
  it('arriving for this host: raw, mangle, nat PREROUTING, then mangle, filter, security, nat INPUT', () => {
    const r = evaluatePath(LOG_ALL, arriving(), 'in', view, { trace: true });
    expect(r).toMatchObject({ verdict: 'ACCEPT', hops: ARRIVE_LOCAL, rewrites: [] });
    expect(chainsMet(r)).toEqual(ARRIVE_LOCAL.flatMap((h) => [h, h]));
    expect(r.forwarded).toBeUndefined();
  });

  it('arriving for another machine: routed through FORWARD and POSTROUTING', () => {
    const r = evaluatePath(LOG_ALL, arriving({ dst: '192.0.2.99' }), 'in', view, { trace: true });
    expect(r).toMatchObject({ verdict: 'ACCEPT', hops: ARRIVE_FORWARD, forwarded: true });
    // The policy of the filter table's FORWARD chain is what let it through.
    expect(r.decidedBy).toEqual({ kind: 'policy', table: 'filter', chain: 'FORWARD' });
  });

  it('leaving: raw, mangle, nat, filter, security OUTPUT, then mangle and nat POSTROUTING', () => {
    const r = evaluatePath(LOG_ALL, leaving(), 'out', view, { trace: true });
    expect(r).toMatchObject({ verdict: 'ACCEPT', hops: LEAVE, decidedBy: { kind: 'policy', table: 'filter', chain: 'OUTPUT' } });
    expect(chainsMet(r)).toEqual(LEAVE.flatMap((h) => [h, h]));
  });

  it('loopback is this host too', () => {
    expect(evaluatePath(LOG_ALL, arriving({ in: 'lo', src: '127.0.0.1', dst: '127.0.0.1' }), 'in', view).hops).toEqual(ARRIVE_LOCAL);
  });

  it('tables the rule set does not have are not hops', () => {
    const rs = buildTables({ filter: ['-A INPUT -j LOG'] });
    expect(evaluatePath(rs, arriving(), 'in', view).hops).toEqual(['filter INPUT']);
  });

  it('the nat table sees only NEW packets: replies and later packets skip it', () => {
    for (const state of ['ESTABLISHED', 'RELATED', 'INVALID'] as const) {
      expect(evaluatePath(LOG_ALL, arriving({ state, tcpFlags: ACK }), 'in', view).hops).toEqual(without(ARRIVE_LOCAL, 'nat'));
      expect(evaluatePath(LOG_ALL, leaving({ state, tcpFlags: ACK }), 'out', view).hops).toEqual(without(LEAVE, 'nat'));
    }
  });

  // iptables refuses these in the built-in chains, but not in a user chain they jump to.
  it('the interfaces a hook does not have are empty: -o on PREROUTING/INPUT and -i on OUTPUT never match', () => {
    const rs = buildTables({ mangle: ['-A PREROUTING -j NO_OUT', '-A INPUT -j NO_OUT', '-A OUTPUT -j NO_IN', '-A NO_OUT -o eth1 -j DROP', '-A NO_IN -i eth1 -j DROP'] });
    expect(evaluatePath(rs, arriving(), 'in', view).verdict).toBe('ACCEPT');
    expect(evaluatePath(rs, leaving(), 'out', view).verdict).toBe('ACCEPT');
  });

  it('a forwarded packet has no known outgoing interface: an -o match there is unknown', () => {
    const rs = buildTables({ filter: ['-A FORWARD -o eth0 -j ACCEPT', '-A FORWARD -j DROP'] });
    const r = evaluatePath(rs, arriving({ dst: '192.0.2.99' }), 'in', view);
    expect(r).toMatchObject({ verdict: 'unknown', forwarded: true, decidedBy: { kind: 'unmodelled', rule: findTableRule(rs, 'filter', 'FORWARD', 1) } });
  });
});

// A DROP in one chain stops the packet there: later tables are never met.
describe('evaluatePath: DROP in each table stops the packet', () => {
  const dropAt = (table: 'raw' | 'mangle' | 'filter' | 'security', chain: string) => {
    const tables: Partial<Record<'raw' | 'mangle' | 'nat' | 'filter' | 'security', string[]>> = {
      raw: ['-A PREROUTING -j LOG', '-A OUTPUT -j LOG'],
      mangle: ['-A PREROUTING -j LOG'],
      nat: ['-A PREROUTING -j LOG'],
      filter: ['-A INPUT -j LOG'],
      security: ['-A INPUT -j LOG'],
    };
    tables[table] = [...(tables[table] ?? []), `-A ${chain} -p tcp -j DROP`];
    return buildTables(tables);
  };

  it.each([
    ['raw', 'PREROUTING', 'in', ARRIVE_LOCAL],
    ['mangle', 'PREROUTING', 'in', ARRIVE_LOCAL],
    ['mangle', 'INPUT', 'in', ARRIVE_LOCAL],
    ['filter', 'INPUT', 'in', ARRIVE_LOCAL],
    ['security', 'INPUT', 'in', ARRIVE_LOCAL],
    ['mangle', 'FORWARD', 'fwd', ARRIVE_FORWARD],
    ['filter', 'FORWARD', 'fwd', ARRIVE_FORWARD],
    ['security', 'FORWARD', 'fwd', ARRIVE_FORWARD],
    ['mangle', 'POSTROUTING', 'fwd', ARRIVE_FORWARD],
    ['raw', 'OUTPUT', 'out', LEAVE],
    ['mangle', 'OUTPUT', 'out', LEAVE],
    ['filter', 'OUTPUT', 'out', LEAVE],
    ['security', 'OUTPUT', 'out', LEAVE],
    ['mangle', 'POSTROUTING', 'out', LEAVE],
  ] as const)('%s %s (%s)', (table, chain, how, order) => {
    const rs = dropAt(table, chain);
    const pkt = how === 'out' ? leaving() : how === 'fwd' ? arriving({ dst: '192.0.2.99' }) : arriving();
    const r = evaluatePath(rs, pkt, how === 'out' ? 'out' : 'in', view);
    const label = `${table} ${chain}`;
    expect(r.verdict).toBe('DROP');
    expect(r.decidedBy).toEqual({ kind: 'rule', rule: findTableRule(rs, table, chain, rs.tables.find((t) => t.name === table)!.chains.find((c) => c.name === chain)!.rules.length) });
    // The hops end at the deciding table: those after it in the kernel's order were not visited.
    const present = new Set(rs.tables.map((t) => t.name));
    expect(r.hops).toEqual(order.slice(0, order.indexOf(label) + 1).filter((h) => present.has(h.split(' ')[0]!)));
  });

  // iptables refuses a DROP rule in the nat table, but a nat chain's policy may be DROP.
  it('a nat chain policy DROP drops the first packet of a connection, and only it', () => {
    const rs = buildTables({ nat: [':PREROUTING DROP [0:0]'], filter: ['-A INPUT -j ACCEPT'] });
    expect(evaluatePath(rs, arriving(), 'in', view)).toMatchObject({ verdict: 'DROP', decidedBy: { kind: 'policy', table: 'nat', chain: 'PREROUTING' }, hops: ['nat PREROUTING'] });
    expect(evaluatePath(rs, arriving({ state: 'ESTABLISHED', tcpFlags: ACK }), 'in', view)).toMatchObject({ verdict: 'ACCEPT', hops: ['filter INPUT'] });
    const post = buildTables({ nat: [':POSTROUTING DROP [0:0]'] });
    expect(evaluatePath(post, leaving(), 'out', view)).toMatchObject({ verdict: 'DROP', decidedBy: { kind: 'policy', table: 'nat', chain: 'POSTROUTING' }, hops: ['nat OUTPUT', 'nat POSTROUTING'] });
    const input = buildTables({ nat: [':INPUT DROP [0:0]'] });
    expect(evaluatePath(input, arriving(), 'in', view)).toMatchObject({ verdict: 'DROP', hops: ['nat PREROUTING', 'nat INPUT'] });
  });

  it('a REJECT in filter is a reject, with its --reject-with', () => {
    const rs = buildTables({ mangle: ['-A PREROUTING -j LOG'], filter: ['-A INPUT -p tcp -j REJECT --reject-with tcp-reset'] });
    expect(evaluatePath(rs, arriving(), 'in', view)).toMatchObject({ verdict: 'REJECT', rejectWith: 'tcp-reset', hops: ['mangle PREROUTING', 'mangle INPUT', 'filter INPUT'] });
  });
});

describe('evaluatePath: ACCEPT ends only its own table', () => {
  it.each([
    ['raw', 'PREROUTING'],
    ['mangle', 'PREROUTING'],
    ['mangle', 'INPUT'],
    ['nat', 'PREROUTING'],
    ['security', 'INPUT'],
  ] as const)('ACCEPT in %s %s, then the filter table still drops', (table, chain) => {
    const rs = buildTables({ [table]: [`-A ${chain} -j ACCEPT`, `-A ${chain} -j ${table === 'nat' ? 'REDIRECT --to-ports 2222' : 'DROP'}`], filter: [':INPUT DROP [0:0]'] });
    const r = evaluatePath(rs, arriving(), 'in', view);
    // The rule after the ACCEPT in the same chain is never met (no rewrite, no drop there).
    expect(r).toMatchObject({ verdict: 'DROP', decidedBy: { kind: 'policy', table: 'filter', chain: 'INPUT' }, rewrites: [] });
    expect(r.packet.dport).toBe(22);
  });

  it('a filter ACCEPT does not skip the security table after it', () => {
    const rs = buildTables({ filter: ['-A INPUT -j ACCEPT'], security: [':INPUT DROP [0:0]'] });
    expect(evaluatePath(rs, arriving(), 'in', view)).toMatchObject({ verdict: 'DROP', hops: ['filter INPUT', 'security INPUT'], decidedBy: { kind: 'policy', table: 'security' } });
  });

  it('for ACCEPT the filter table names the decision; without a filter rule, the first table whose rule accepted', () => {
    const rs = buildTables({ raw: ['-A PREROUTING -p tcp -j ACCEPT'], filter: ['-A INPUT -p tcp --dport 22 -j ACCEPT'] });
    expect(evaluatePath(rs, arriving(), 'in', view).decidedBy).toEqual({ kind: 'rule', rule: findTableRule(rs, 'filter', 'INPUT', 1) });
    const rawOnly = buildTables({ raw: ['-A PREROUTING -p tcp -j ACCEPT'] });
    expect(evaluatePath(rawOnly, arriving(), 'in', view).decidedBy).toEqual({ kind: 'rule', rule: findTableRule(rawOnly, 'raw', 'PREROUTING', 1) });
  });
});

describe('evaluatePath: connection tracking', () => {
  it('a state match in the raw table is unknown (conntrack has not seen the packet yet)', () => {
    const rs = buildTables({ raw: ['-A PREROUTING -m conntrack --ctstate NEW -j ACCEPT'] });
    const r = evaluatePath(rs, arriving(), 'in', view);
    expect(r).toMatchObject({ verdict: 'unknown', hops: ['raw PREROUTING'] });
    expect(r.decidedBy).toEqual({
      kind: 'unmodelled',
      rule: findTableRule(rs, 'raw', 'PREROUTING', 1),
      option: '-m conntrack in the raw table (before conntrack has seen the packet)',
    });
    const state = buildTables({ raw: ['-A OUTPUT -m state --state ESTABLISHED -j ACCEPT'] });
    expect(evaluatePath(state, leaving(), 'out', view).decidedBy).toMatchObject({ option: '-m state in the raw table (before conntrack has seen the packet)' });
    // A state match in mangle is fine: conntrack ran in between.
    const mangle = buildTables({ mangle: ['-A PREROUTING -m conntrack --ctstate NEW -j DROP'] });
    expect(evaluatePath(mangle, arriving(), 'in', view).verdict).toBe('DROP');
  });

  it.each([['-j NOTRACK'], ['-j CT --notrack']])('%s makes later --ctstate UNTRACKED match and skips the nat table', (target) => {
    const rs = buildTables({
      raw: [`-A PREROUTING -p tcp --dport 22 ${target}`],
      nat: ['-A PREROUTING -p tcp --dport 22 -j REDIRECT --to-ports 2222'],
      filter: [':INPUT DROP [0:0]', '-A INPUT -m conntrack --ctstate UNTRACKED -p tcp --dport 22 -j ACCEPT'],
    });
    const r = evaluatePath(rs, arriving(), 'in', view, { trace: true });
    expect(r).toMatchObject({ verdict: 'ACCEPT', hops: ['raw PREROUTING', 'filter INPUT'], rewrites: [], decidedBy: { kind: 'rule', rule: findTableRule(rs, 'filter', 'INPUT', 1) } });
    expect(r.trace.map((s) => s.event)).toEqual(['notrack', 'policy', 'match']);
    // Without the NOTRACK rule the same packet is NEW: redirected, and the UNTRACKED accept does not match.
    const withoutNotrack = buildTables({
      nat: ['-A PREROUTING -p tcp --dport 22 -j REDIRECT --to-ports 2222'],
      filter: [':INPUT DROP [0:0]', '-A INPUT -m conntrack --ctstate UNTRACKED -p tcp --dport 22 -j ACCEPT'],
    });
    const tracked = evaluatePath(withoutNotrack, arriving(), 'in', view);
    expect(tracked).toMatchObject({ verdict: 'DROP', packet: { dport: 2222 } });
  });

  it('NOTRACK on a leaving packet skips nat OUTPUT and POSTROUTING', () => {
    const rs = buildTables({ raw: ['-A OUTPUT -j NOTRACK'], nat: [':POSTROUTING DROP [0:0]'], filter: [':OUTPUT DROP [0:0]', '-A OUTPUT -m state --state UNTRACKED -j ACCEPT'] });
    expect(evaluatePath(rs, leaving(), 'out', view)).toMatchObject({ verdict: 'ACCEPT', hops: ['raw OUTPUT', 'filter OUTPUT'] });
  });

  it('NOTRACK does not decide: a later DROP in raw still drops, and a non-matching NOTRACK leaves the packet NEW', () => {
    const rs = buildTables({ raw: ['-A PREROUTING -j NOTRACK', '-A PREROUTING -p tcp -j DROP'] });
    expect(evaluatePath(rs, arriving(), 'in', view)).toMatchObject({ verdict: 'DROP', decidedBy: { rule: findTableRule(rs, 'raw', 'PREROUTING', 2) } });
    const other = buildTables({ raw: ['-A PREROUTING -p udp -j NOTRACK'], filter: [':INPUT DROP [0:0]', '-A INPUT -m conntrack --ctstate NEW -j ACCEPT'] });
    expect(evaluatePath(other, arriving(), 'in', view).verdict).toBe('ACCEPT');
  });

  it('NOTRACK reached through RETURN and the chain policy still marks the packet', () => {
    const rs = buildTables({
      raw: ['-A PREROUTING -j NT', '-A NT -j NOTRACK', '-A NT -j RETURN'],
      filter: [':INPUT DROP [0:0]', '-A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT'],
    });
    expect(evaluatePath(rs, arriving(), 'in', view).verdict).toBe('ACCEPT');
  });
});

describe('evaluatePath: NAT rewriting', () => {
  it('REDIRECT: filter INPUT sees the new port', () => {
    const rs = buildTables({
      nat: ['-A PREROUTING -i eth1 -p tcp --dport 2222 -j REDIRECT --to-ports 22'],
      filter: [':INPUT DROP [0:0]', '-A INPUT -p tcp --dport 22 -j ACCEPT'],
    });
    const r = evaluatePath(rs, arriving({ dport: 2222 }), 'in', view);
    expect(r).toMatchObject({ verdict: 'ACCEPT', packet: { dst: '192.0.2.11', dport: 22 }, decidedBy: { rule: findTableRule(rs, 'filter', 'INPUT', 1) } });
    expect(r.rewrites).toEqual([{ outcome: { rule: findTableRule(rs, 'nat', 'PREROUTING', 1), effect: { kind: 'dnat', port: 22 } }, field: 'dport', from: '2222', to: '22' }]);
    // The old port is no longer what filter sees.
    const old = buildTables({ nat: ['-A PREROUTING -p tcp --dport 2222 -j REDIRECT --to-ports 22'], filter: [':INPUT DROP [0:0]', '-A INPUT -p tcp --dport 2222 -j ACCEPT'] });
    expect(evaluatePath(old, arriving({ dport: 2222 }), 'in', view)).toMatchObject({ verdict: 'DROP', packet: { dport: 22 } });
  });

  it('REDIRECT keeps the address the packet came to (an address of this host)', () => {
    const rs = buildTables({ nat: ['-A PREROUTING -p tcp -j REDIRECT'] });
    expect(evaluatePath(rs, arriving({ in: 'eth0', dst: '203.0.113.11' }), 'in', view)).toMatchObject({ verdict: 'ACCEPT', packet: { dst: '203.0.113.11', dport: 22 }, rewrites: [] });
  });

  it('REDIRECT of a packet for another machine: the model does not know the interface address, so unknown', () => {
    const rs = buildTables({ nat: ['-A PREROUTING -p tcp -j REDIRECT --to-ports 3128'] });
    const r = evaluatePath(rs, arriving({ dst: '198.51.100.1', dport: 80 }), 'in', view);
    expect(r).toMatchObject({ verdict: 'unknown', decidedBy: { kind: 'unmodelled', rule: findTableRule(rs, 'nat', 'PREROUTING', 1), option: 'REDIRECT to an address of eth1 that the inventory does not give' } });
  });

  it('REDIRECT in OUTPUT sends the host to its own loopback', () => {
    const rs = buildTables({ nat: ['-A OUTPUT -p tcp --dport 443 -j REDIRECT --to-ports 8443'] });
    const r = evaluatePath(rs, leaving(), 'out', view);
    expect(r).toMatchObject({ verdict: 'ACCEPT', packet: { dst: '127.0.0.1', dport: 8443 } });
    expect(r.rewrites.map((w) => [w.field, w.from, w.to])).toEqual([
      ['dst', '192.0.2.20', '127.0.0.1'],
      ['dport', '443', '8443'],
    ]);
  });

  it('DNAT to another address of this host: delivered, and filter sees the new destination', () => {
    const rs = buildTables({
      nat: ['-A PREROUTING -d 192.0.2.11 -p tcp --dport 22 -j DNAT --to-destination 203.0.113.11:2022'],
      filter: [':INPUT DROP [0:0]', '-A INPUT -d 203.0.113.11 -p tcp --dport 2022 -j ACCEPT'],
    });
    const r = evaluatePath(rs, arriving(), 'in', view);
    expect(r).toMatchObject({ verdict: 'ACCEPT', packet: { dst: '203.0.113.11', dport: 2022 }, hops: ['nat PREROUTING', 'filter INPUT', 'nat INPUT'] });
    expect(r.forwarded).toBeUndefined();
    expect(r.rewrites.map((w) => [w.field, w.from, w.to])).toEqual([
      ['dst', '192.0.2.11', '203.0.113.11'],
      ['dport', '22', '2022'],
    ]);
  });

  it('DNAT to an address not the host\'s: forwarded through FORWARD (dropped there by its policy)', () => {
    const rs = buildTables({
      nat: ['-A PREROUTING -p tcp --dport 22 -j DNAT --to-destination 172.17.0.2'],
      filter: [':INPUT ACCEPT [0:0]', ':FORWARD DROP [0:0]'],
    });
    const r = evaluatePath(rs, arriving(), 'in', view);
    expect(r).toMatchObject({ verdict: 'DROP', forwarded: true, hops: ['nat PREROUTING', 'filter FORWARD'], decidedBy: { kind: 'policy', table: 'filter', chain: 'FORWARD' }, packet: { dst: '172.17.0.2', dport: 22 } });
    const open = buildTables({ nat: ['-A PREROUTING -p tcp --dport 22 -j DNAT --to-destination 172.17.0.2'] });
    expect(evaluatePath(open, arriving(), 'in', view)).toMatchObject({ verdict: 'ACCEPT', forwarded: true, hops: ['nat PREROUTING', 'nat POSTROUTING'] });
  });

  it('DNAT in nat INPUT (after routing) is not followed', () => {
    const rs = buildTables({ nat: ['-A PREROUTING -j LOG', '-A INPUT -j SNAT --to-source 192.0.2.10'] });
    // nat INPUT sees the packet with its own source: SNAT to it changes nothing.
    expect(evaluatePath(rs, arriving(), 'in', view).verdict).toBe('ACCEPT');
    const other = buildTables({ nat: ['-A INPUT -j SNAT --to-source 192.0.2.99'] });
    expect(evaluatePath(other, arriving(), 'in', view)).toMatchObject({ verdict: 'unknown', hops: ['nat PREROUTING', 'nat INPUT'] });
  });

  it('SNAT or MASQUERADE to the packet\'s own source is a no-op', () => {
    for (const rule of ['-A POSTROUTING -o eth1 -j MASQUERADE', '-A POSTROUTING -o eth1 -j SNAT --to-source 192.0.2.11']) {
      const rs = buildTables({ nat: [rule], filter: [':OUTPUT DROP [0:0]', '-A OUTPUT -p tcp --dport 443 -j ACCEPT'] });
      const r = evaluatePath(rs, leaving(), 'out', view);
      expect(r).toMatchObject({ verdict: 'ACCEPT', rewrites: [], packet: { src: '192.0.2.11' }, hops: ['nat OUTPUT', 'filter OUTPUT', 'nat POSTROUTING'] });
    }
  });

  it('SNAT to another source, or MASQUERADE of a forwarded packet, is unknown naming the rule', () => {
    const snat = buildTables({ nat: ['-A POSTROUTING -j SNAT --to-source 203.0.113.11'] });
    expect(evaluatePath(snat, leaving(), 'out', view)).toMatchObject({
      verdict: 'unknown',
      hops: ['nat OUTPUT', 'nat POSTROUTING'],
      decidedBy: { kind: 'unmodelled', rule: findTableRule(snat, 'nat', 'POSTROUTING', 1), option: 'SNAT rewrites the source 192.0.2.11 to 203.0.113.11 (fleetfw does not follow rewritten sources)' },
    });
    const masq = buildTables({ nat: ['-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE'] });
    expect(evaluatePath(masq, arriving({ dst: '198.51.100.1' }), 'in', view)).toMatchObject({
      verdict: 'unknown',
      forwarded: true,
      decidedBy: { option: 'MASQUERADE rewrites the source 192.0.2.10 to the interface address (fleetfw does not follow rewritten sources)' },
    });
  });

  it('a nat rule that does not match, or a later packet without the mapping, changes nothing', () => {
    const rs = buildTables({ nat: ['-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 172.17.0.2'], filter: [':INPUT DROP [0:0]', '-A INPUT -p tcp --dport 22 -j ACCEPT'] });
    expect(evaluatePath(rs, arriving(), 'in', view)).toMatchObject({ verdict: 'ACCEPT', rewrites: [] });
    expect(evaluatePath(rs, arriving({ dport: 80, state: 'ESTABLISHED', tcpFlags: ACK }), 'in', view)).toMatchObject({ verdict: 'DROP', packet: { dst: '192.0.2.11', dport: 80 } });
  });

  it('a later packet of a rewritten connection is rewritten at the nat hook without the nat table', () => {
    const rs = buildTables({
      mangle: ['-A PREROUTING -p tcp --dport 2222 -j LOG'],
      nat: [':PREROUTING DROP [0:0]'],
      filter: [':INPUT DROP [0:0]', '-A INPUT -p tcp --dport 22 -m conntrack --ctstate ESTABLISHED -j ACCEPT'],
    });
    const r = evaluatePath(rs, arriving({ dport: 2222, state: 'ESTABLISHED', tcpFlags: ACK }), 'in', view, { mapping: { dst: '192.0.2.11', dport: 22 }, trace: true });
    expect(r).toMatchObject({ verdict: 'ACCEPT', hops: ['mangle PREROUTING', 'mangle INPUT', 'filter INPUT'], packet: { dport: 22 } });
    // mangle PREROUTING comes before the nat hook: it still saw the original port.
    expect(r.trace.filter((s) => s.event !== 'policy').map((s) => `${s.table}:${s.event}`)).toEqual(['mangle:log', 'filter:match']);
  });
});

// Docker's nat rules send every packet for a local address through its DOCKER chain; the
// packets that are not for a published port come back unchanged.
describe('evaluatePath: -m addrtype and Docker', () => {
  const DOCKER = buildTables({
    nat: [
      ':DOCKER - [0:0]',
      '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
      '-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER',
      '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE',
      '-A DOCKER -i docker0 -j RETURN',
      '-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80',
    ],
    filter: [':INPUT DROP [0:0]', ':FORWARD DROP [0:0]', '-A INPUT -p tcp --dport 22 -j ACCEPT', '-A FORWARD -d 172.17.0.2 -p tcp --dport 80 -j ACCEPT'],
  });

  it('SSH to a local address goes through DOCKER, comes back, and is accepted', () => {
    const r = evaluatePath(DOCKER, arriving(), 'in', view, { trace: true });
    expect(r).toMatchObject({ verdict: 'ACCEPT', rewrites: [], hops: ['nat PREROUTING', 'filter INPUT', 'nat INPUT'] });
    expect(r.trace.map((s) => `${s.chain}${s.rule ? `#${s.rule.index}` : ''}:${s.event}`)).toEqual([
      'PREROUTING#1:jump',
      'DOCKER#1:no-match',
      'DOCKER#2:no-match',
      'DOCKER:return',
      'PREROUTING:policy',
      'INPUT#1:match',
      'INPUT:policy',
    ]);
  });

  it('a published port is DNATed to the container and forwarded', () => {
    const r = evaluatePath(DOCKER, arriving({ in: 'eth0', dst: '203.0.113.11', dport: 8080 }), 'in', view);
    expect(r).toMatchObject({ verdict: 'ACCEPT', forwarded: true, packet: { dst: '172.17.0.2', dport: 80 }, hops: ['nat PREROUTING', 'filter FORWARD', 'nat POSTROUTING'] });
  });

  it('LOCAL is decided by the host\'s addresses: without them the address is UNICAST', () => {
    const rs = buildTables({ nat: ['-A PREROUTING -m addrtype --dst-type LOCAL -p tcp -j REDIRECT --to-ports 2222'] });
    expect(evaluatePath(rs, arriving(), 'in', view).packet.dport).toBe(2222);
    // Another host's view: 192.0.2.11 is not local there, so no redirect (and the packet is routed on).
    const other: HostView = { local: new Set(['192.0.2.12']) };
    expect(evaluatePath(rs, arriving(), 'in', other)).toMatchObject({ packet: { dport: 22 }, forwarded: true });
    const notLocal = buildTables({ filter: [':INPUT DROP [0:0]', '-A INPUT -m addrtype ! --dst-type LOCAL -j DROP', '-A INPUT -m addrtype --src-type UNICAST -j ACCEPT'] });
    expect(evaluatePath(notLocal, arriving(), 'in', view).decidedBy).toEqual({ kind: 'rule', rule: findTableRule(notLocal, 'filter', 'INPUT', 2) });
  });
});
