import { describe, expect, it } from 'vitest';
import type { Chain, RuleSet } from '../model/ruleset.js';
import { buildTables, findTableRule } from './fixtures/fleet.js';
import { targetEffect, type TargetEffect } from './targets.js';

type TableName = 'raw' | 'mangle' | 'nat' | 'filter' | 'security';

/** The effect of the one rule `-A CHAIN …` in `table`, with the table's user chains as jump targets. */
function effectOf(table: TableName, rule: string, family: 4 | 6 = 4): TargetEffect {
  const rs = buildTables({ [table]: [rule] }, family);
  const chain = rule.split(' ')[1] as string;
  return targetEffect(findTableRule(rs, table, chain, 1), userChains(rs, table));
}

function userChains(rs: RuleSet, table: string): Map<string, Chain> {
  const t = rs.tables.find((x) => x.name === table);
  return new Map((t?.chains ?? []).filter((c) => !c.builtin).map((c) => [c.name, c]));
}

describe('targetEffect: verdicts, RETURN, chains', () => {
  it.each([
    ['ACCEPT', { kind: 'verdict', verdict: 'ACCEPT' }],
    ['DROP', { kind: 'verdict', verdict: 'DROP' }],
    ['REJECT --reject-with tcp-reset', { kind: 'verdict', verdict: 'REJECT' }],
    ['RETURN', { kind: 'return' }],
  ] as const)('-j %s', (target, effect) => {
    expect(effectOf('filter', `-A INPUT -p tcp -j ${target}`)).toEqual(effect);
  });

  it('no target changes nothing (a rule that only counts)', () => {
    expect(effectOf('filter', '-A INPUT -p tcp --dport 22')).toEqual({ kind: 'continue' });
  });

  it('a user chain of the table is a jump (with -j or -g) to that very chain', () => {
    const rs = buildTables({ filter: ['-A INPUT -j SSH', '-A INPUT -g SSH', '-A SSH -j ACCEPT'] });
    const chains = userChains(rs, 'filter');
    const ssh = chains.get('SSH');
    expect(ssh?.rules).toHaveLength(1);
    expect(targetEffect(findTableRule(rs, 'filter', 'INPUT', 1), chains)).toEqual({ kind: 'chain', chain: ssh });
    expect(targetEffect(findTableRule(rs, 'filter', 'INPUT', 2), chains)).toEqual({ kind: 'chain', chain: ssh });
  });

  it('a name that is a chain of another table only is not a jump here', () => {
    const rs = buildTables({ nat: ['-A PREROUTING -j DOCKER', '-A DOCKER -j RETURN'], filter: ['-A INPUT -j DOCKER'] });
    expect(targetEffect(findTableRule(rs, 'filter', 'INPUT', 1), userChains(rs, 'filter'))).toMatchObject({ kind: 'undecided' });
    expect(targetEffect(findTableRule(rs, 'nat', 'PREROUTING', 1), userChains(rs, 'nat'))).toMatchObject({ kind: 'chain' });
  });
});

describe('targetEffect: targets that change nothing the model decides on', () => {
  it.each([
    ['filter', '-A INPUT -j LOG --log-prefix "ssh: "'],
    ['filter', '-A INPUT -j NFLOG --nflog-group 2'],
    ['mangle', '-A PREROUTING -j MARK --set-mark 0x1'],
    ['mangle', '-A PREROUTING -j CONNMARK --save-mark'],
    ['mangle', '-A POSTROUTING -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu'],
    ['mangle', '-A OUTPUT -j DSCP --set-dscp 10'],
    ['mangle', '-A OUTPUT -j TOS --set-tos 0x10'],
    ['mangle', '-A POSTROUTING -j CHECKSUM --checksum-fill'],
    ['raw', '-A PREROUTING -j TRACE'],
  ] as const)('%s: %s', (table, rule) => {
    expect(effectOf(table, rule)).toEqual({ kind: 'continue' });
  });
});

describe('targetEffect: connection tracking bypass', () => {
  it('NOTRACK and CT --notrack skip conntrack', () => {
    expect(effectOf('raw', '-A PREROUTING -j NOTRACK')).toEqual({ kind: 'notrack' });
    expect(effectOf('raw', '-A OUTPUT -j CT --notrack')).toEqual({ kind: 'notrack' });
  });

  it('other CT options (zones, helpers) are not followed', () => {
    expect(effectOf('raw', '-A PREROUTING -j CT --zone 1')).toEqual({ kind: 'undecided', why: '-j CT --zone 1 (connection tracking templates are not modelled)' });
    expect(effectOf('raw', '-A PREROUTING -p tcp --dport 21 -j CT --helper ftp')).toEqual({
      kind: 'undecided',
      why: '-j CT --helper ftp (connection tracking templates are not modelled)',
    });
  });
});

describe('targetEffect: address rewriting', () => {
  it.each([
    ['-j DNAT --to-destination 192.0.2.20', { kind: 'dnat', addr: '192.0.2.20' }],
    ['-j DNAT --to-destination 192.0.2.20:8080', { kind: 'dnat', addr: '192.0.2.20', port: 8080 }],
    ['-p tcp -j REDIRECT', { kind: 'dnat' }],
    ['-p tcp -j REDIRECT --to-ports 2222', { kind: 'dnat', port: 2222 }],
  ] as const)('one destination: %s', (target, effect) => {
    expect(effectOf('nat', `-A PREROUTING ${target}`)).toEqual(effect);
  });

  it('an IPv6 DNAT destination is canonical, with its port', () => {
    expect(effectOf('nat', '-A PREROUTING -p tcp -j DNAT --to-destination [2001:DB8:0::1]:8080', 6)).toEqual({ kind: 'dnat', addr: '2001:db8::1', port: 8080 });
    expect(effectOf('nat', '-A PREROUTING -j DNAT --to-destination [2001:db8::1]', 6)).toEqual({ kind: 'dnat', addr: '2001:db8::1' });
  });

  it.each([
    ['-j DNAT --to-destination 192.0.2.20-192.0.2.29', '-j DNAT --to-destination 192.0.2.20-192.0.2.29 (ranges pick per connection)'],
    ['-p tcp -j DNAT --to-destination 192.0.2.20:8000-8009', '-j DNAT --to-destination 192.0.2.20:8000-8009 (ranges pick per connection)'],
    ['-p tcp -j REDIRECT --to-ports 8000-8009', '-j REDIRECT --to-ports 8000-8009 (a port range picks ports per connection)'],
  ] as const)('a range picks per connection: %s', (target, why) => {
    expect(effectOf('nat', `-A PREROUTING ${target}`)).toEqual({ kind: 'undecided', why });
  });

  it('SNAT to one address, MASQUERADE to the interface address', () => {
    expect(effectOf('nat', '-A POSTROUTING -j SNAT --to-source 203.0.113.11')).toEqual({ kind: 'snat', addr: '203.0.113.11' });
    expect(effectOf('nat', '-A POSTROUTING -o eth0 -j MASQUERADE')).toEqual({ kind: 'snat' });
  });

  it('SNAT ranges and ports, and MASQUERADE with ports, are not followed', () => {
    expect(effectOf('nat', '-A POSTROUTING -j SNAT --to-source 203.0.113.11-203.0.113.12')).toEqual({
      kind: 'undecided',
      why: '-j SNAT --to-source 203.0.113.11-203.0.113.12 (ranges and ports pick per connection)',
    });
    expect(effectOf('nat', '-A POSTROUTING -p tcp -j SNAT --to-source 203.0.113.11:1024')).toMatchObject({ kind: 'undecided' });
    expect(effectOf('nat', '-A POSTROUTING -p tcp -j MASQUERADE --to-ports 1024-2047')).toEqual({
      kind: 'undecided',
      why: '-j MASQUERADE --to-ports 1024-2047 (port ranges pick per connection)',
    });
  });
});

describe('targetEffect: targets fleetfw does not follow say why', () => {
  it.each([
    ['filter', '-A INPUT -j NFQUEUE --queue-num 0', '-j NFQUEUE (a userspace program decides the verdict)'],
    ['filter', '-A INPUT -j QUEUE', '-j QUEUE (a userspace program decides the verdict)'],
    ['mangle', '-A PREROUTING -p tcp -j TPROXY --on-port 3128', '-j TPROXY (transparent proxying diverts the packet to a local socket)'],
    ['filter', '-A INPUT -p tcp -j SYNPROXY --sack-perm', '-j SYNPROXY (the SYN proxy answers the handshake itself)'],
    ['filter', '-A INPUT -j SET --add-set seen src', '-j SET (it changes an ipset while packets pass)'],
    ['nat', '-A PREROUTING -j NETMAP --to 10.0.0.0/24', '-j NETMAP (prefix mapping rewrites addresses per packet)'],
    ['mangle', '-A PREROUTING -j TTL --ttl-set 64', '-j TTL (a changed TTL can end the packet on its way)'],
    ['filter', '-A INPUT -j NOWHERE', '-j NOWHERE (not a chain of this table, nor a target fleetfw models)'],
  ] as const)('%s: %s', (table, rule, why) => {
    expect(effectOf(table, rule)).toEqual({ kind: 'undecided', why });
  });

  it('IPv6 hop limit and prefix translation', () => {
    expect(effectOf('mangle', '-A PREROUTING -j HL --hl-set 64', 6)).toEqual({ kind: 'undecided', why: '-j HL (a changed hop limit can end the packet on its way)' });
    expect(effectOf('mangle', '-A POSTROUTING -j SNPT --src-pfx 2001:db8::/64 --dst-pfx 2001:db8:1::/64', 6)).toEqual({
      kind: 'undecided',
      why: '-j SNPT (prefix translation rewrites addresses per packet)',
    });
  });
});
