import { describe, expect, it } from 'vitest';
import type { RuleSet } from '../model/ruleset.js';
import { isExpected, verifyIntents } from './intents.js';
import { buildFilter, buildIntent, buildInventory } from './fixtures/fleet.js';

const ESTABLISHED = '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT';
const v6Closed = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED], 6);

const ruleSets = new Map<string, { v4: RuleSet; v6: RuleSet }>([
  [
    'mysql-1',
    {
      v4: buildFilter({ INPUT: 'DROP' }, [
        ESTABLISHED,
        '-A INPUT -i eth1 -s 192.0.2.12 -p tcp --dport 3306 -j ACCEPT',
        '-A INPUT -p tcp --dport 3306 -j REJECT --reject-with tcp-reset',
        '-A INPUT -p icmp --icmp-type echo-request -j ACCEPT',
      ]),
      v6: v6Closed,
    },
  ],
  ['tunnel-1', { v4: buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT']), v6: buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT'], 6) }],
  ['web-1', { v4: buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp -m multiport --dports 80,443 -j ACCEPT']), v6: v6Closed }],
]);

const verify = (...intents: Parameters<typeof buildIntent>[]) =>
  verifyIntents(buildInventory({ intents: intents.map((args) => buildIntent(...args)) }), ruleSets);

describe('verifyIntents', () => {
  it('allow over private addresses between hosts, naming the accepting rule', () => {
    const [r] = verify(['web -> mysql:3306 allow', { from: 'web', to: 'mysql', port: 3306, expect: 'allow' }]);
    expect(r).toMatchObject({ ok: true });
    expect(r?.pairs).toEqual([
      { from: 'web-1', to: 'mysql-1', fromAddr: '192.0.2.12', toAddr: '192.0.2.11', outcome: 'allow', expected: 'allow', ok: true, decidedBy: 'mysql-1 rules.v4 line 6: -A INPUT -s 192.0.2.12/32 -i eth1 -p tcp -m tcp --dport 3306 -j ACCEPT' },
    ]);
  });

  it('an external decides the side: internet reaches the public address and is rejected', () => {
    const [r] = verify(['internet -> db:3306 reject', { from: 'internet', to: 'db', port: 3306, expect: 'reject' }]);
    expect(r?.ok).toBe(true);
    expect(r?.pairs[0]).toMatchObject({ outcome: 'reject', decidedBy: 'mysql-1 rules.v4 line 7: -A INPUT -p tcp -m tcp --dport 3306 -j REJECT --reject-with tcp-reset' });
  });

  it('deny accepts drop or reject; drop is exact', () => {
    const results = verify(
      ['intruder -> mysql-1:22 deny', { from: 'intruder', to: 'mysql-1', port: 22, expect: 'deny' }],
      ['intruder -> mysql-1:22 drop', { from: 'intruder', to: 'mysql-1', port: 22, expect: 'drop' }],
      ['intruder -> mysql-1:3306 drop', { from: 'intruder', to: 'mysql-1', port: 3306, expect: 'drop' }],
    );
    expect(results.map((r) => [r.ok, r.pairs[0]?.outcome])).toEqual([
      [true, 'drop'],
      [true, 'drop'],
      [false, 'reject'],
    ]);
    expect(results[0]?.pairs[0]?.decidedBy).toBe('mysql-1 policy DROP of chain INPUT');
  });

  it('a violated intent is not ok and says which pair', () => {
    const [r] = verify(['all -> mysql-1:3306 allow', { from: 'all', to: 'mysql-1', port: 3306, expect: 'allow' }]);
    expect(r?.ok).toBe(false);
    // Self-pairs are skipped.
    expect(r?.pairs.map((p) => [p.from, p.outcome, p.ok])).toEqual([
      ['tunnel-1', 'reject', false],
      ['web-1', 'allow', true],
    ]);
  });

  it('via public uses public addresses and interfaces', () => {
    const [r] = verify(['web -> mysql:3306 allow via public', { from: 'web', to: 'mysql', port: 3306, expect: 'allow', via: 'public' }]);
    expect(r?.pairs[0]).toMatchObject({ outcome: 'reject', ok: false });
  });

  it('hosts to an external: the client OUTPUT decides (ACCEPT policy)', () => {
    const [r] = verify(['web-1 -> internet:443 allow', { from: 'web-1', to: 'internet', port: 443, expect: 'allow' }]);
    expect(r?.pairs[0]).toMatchObject({ outcome: 'allow', decidedBy: 'web-1 policy ACCEPT of chain OUTPUT' });
  });

  it('icmp echo', () => {
    const [r] = verify(['internet -> mysql-1:icmp allow', { from: 'internet', to: 'mysql-1', proto: 'icmp', expect: 'allow' }]);
    expect(r?.ok).toBe(true);
  });

  it('IPv6: an endpoint without a v6 address is unknown with a reason; unknown is never ok', () => {
    const [r] = verify(
      ['internet -> all:22 deny ipv6', { from: 'internet', to: 'all', port: 22, expect: 'deny', family: 6 }],
    );
    expect(r?.pairs).toEqual([
      { from: 'internet', to: 'mysql-1', fromAddr: '2001:db8:ffff::200', toAddr: '2001:db8::11', outcome: 'drop', expected: 'deny', ok: true, decidedBy: 'mysql-1 policy DROP of chain INPUT' },
      {
        from: 'internet',
        to: 'tunnel-1',
        fromAddr: '2001:db8:ffff::200',
        toAddr: '2001:db8::10',
        outcome: 'allow',
        expected: 'deny',
        ok: false,
        decidedBy: 'tunnel-1 rules.v6 line 6: -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT',
        counterexample: '[2001:db8:ffff::200]:0 -> [2001:db8::10]:22/tcp SYN (NEW), as for every packet of source ports 0-21',
        path: 'tunnel-1: filter INPUT',
      },
      { from: 'internet', to: 'web-1', outcome: 'unknown', expected: 'deny', ok: false, decidedBy: '', reason: 'web-1 has no public IPv6 address' },
    ]);
    expect(r?.ok).toBe(false);
  });

  it('a host without rule sets is unknown; an empty expansion is not ok', () => {
    const results = verifyIntents(
      buildInventory({
        intents: [
          buildIntent('web-1 -> mysql-1:3306 allow', { from: 'web-1', to: 'mysql-1', port: 3306, expect: 'allow' }),
          buildIntent('nobody -> mysql-1:3306 allow', { from: 'nobody', to: 'mysql-1', port: 3306, expect: 'allow' }),
        ],
      }),
      new Map(),
    );
    expect(results[0]?.pairs[0]).toMatchObject({ outcome: 'unknown', reason: 'no rule set for web-1', ok: false });
    expect(results[1]).toMatchObject({ ok: false, pairs: [], reason: 'no pair of endpoints: nobody -> mysql-1' });
  });

  // The counterexample goes with decidedBy: the packet that rule let in is the opening SYN,
  // not the handshake's last ACK (which the ESTABLISHED rule accepted).
  it('a violated deny shows the opening packet the accepting rule let in', () => {
    const [r] = verify(['internet -> tunnel-1:22 deny', { from: 'internet', to: 'tunnel-1', port: 22, expect: 'deny' }]);
    expect(r?.pairs[0]).toMatchObject({
      outcome: 'allow',
      decidedBy: 'tunnel-1 rules.v4 line 6: -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT',
      counterexample: '203.0.113.200:0 -> 203.0.113.10:22/tcp SYN (NEW), as for every packet of source ports 0-21',
    });
  });

  it('an allow intent is proven for every client port: one port dropped is the counterexample', () => {
    const sets = new Map(ruleSets);
    sets.set('mysql-1', {
      v4: buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -s 192.0.2.12 -p tcp --sport 50000 -j DROP', '-A INPUT -s 192.0.2.12 -p tcp --dport 3306 -j ACCEPT']),
      v6: v6Closed,
    });
    const [r] = verifyIntents(buildInventory({ intents: [buildIntent('web-1 -> mysql-1:3306 allow', { from: 'web-1', to: 'mysql-1', port: 3306, expect: 'allow' })] }), sets);
    expect(r?.pairs[0]).toEqual({
      from: 'web-1',
      to: 'mysql-1',
      fromAddr: '192.0.2.12',
      toAddr: '192.0.2.11',
      outcome: 'drop',
      expected: 'allow',
      ok: false,
      decidedBy: 'mysql-1 rules.v4 line 6: -A INPUT -s 192.0.2.12/32 -p tcp -m tcp --sport 50000 -j DROP',
      counterexample: '192.0.2.12:50000 -> 192.0.2.11:3306/tcp SYN (NEW)',
      path: 'mysql-1: filter INPUT',
    });
  });

  it('an external client of an allow intent may use any port from 32768 up; a fleet host uses Linux\'s range', () => {
    const sets = new Map(ruleSets);
    sets.set('mysql-1', { v4: buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --sport 32768:60999 --dport 3306 -j ACCEPT']), v6: v6Closed });
    const results = verifyIntents(
      buildInventory({
        intents: [
          buildIntent('web-1 -> mysql-1:3306 allow', { from: 'web-1', to: 'mysql-1', port: 3306, expect: 'allow' }),
          buildIntent('internet -> mysql-1:3306 allow', { from: 'internet', to: 'mysql-1', port: 3306, expect: 'allow' }),
        ],
      }),
      sets,
    );
    expect(results[0]?.ok).toBe(true);
    expect(results[1]?.pairs[0]).toMatchObject({ ok: false, outcome: 'drop', counterexample: '203.0.113.200:61000 -> 203.0.113.11:3306/tcp SYN (NEW), as for every packet of source ports 61000-65535' });
  });

  it('a deny intent is proven for every opening an attacker may send: SYN|URG let through is the counterexample', () => {
    const sets = new Map(ruleSets);
    sets.set('mysql-1', { v4: buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 --tcp-flags SYN,URG SYN,URG -j ACCEPT']), v6: v6Closed });
    const [r] = verifyIntents(buildInventory({ intents: [buildIntent('intruder -> mysql-1:22 deny', { from: 'intruder', to: 'mysql-1', port: 22, expect: 'deny' })] }), sets);
    expect(r?.pairs[0]).toMatchObject({ ok: false, outcome: 'allow', decidedBy: 'mysql-1 rules.v4 line 6: -A INPUT -p tcp -m tcp --dport 22 --tcp-flags SYN,URG SYN,URG -j ACCEPT', path: 'mysql-1: filter INPUT' });
    expect(r?.pairs[0]?.counterexample).toMatch(/^192\.0\.2\.250:0 -> 192\.0\.2\.11:22\/tcp /);
  });

  it('a deny of UDP holds when the request is dropped, fails when it arrives (answered or not)', () => {
    const sets = new Map(ruleSets);
    sets.set('mysql-1', { v4: buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, ['-A INPUT -p udp --dport 161 -j ACCEPT']), v6: v6Closed });
    const results = verifyIntents(
      buildInventory({
        intents: [
          buildIntent('intruder -> mysql-1:161/udp deny', { from: 'intruder', to: 'mysql-1', proto: 'udp', port: 161, expect: 'deny' }),
          buildIntent('intruder -> mysql-1:162/udp deny', { from: 'intruder', to: 'mysql-1', proto: 'udp', port: 162, expect: 'deny' }),
        ],
      }),
      sets,
    );
    expect(results.map((x) => [x.ok, x.pairs[0]?.outcome])).toEqual([
      [false, 'allow'],
      [true, 'drop'],
    ]);
    expect(results[0]?.pairs[0]?.counterexample).toBe('192.0.2.250:0 -> 192.0.2.11:161/udp (NEW), as for every packet of source ports 0-160');
  });

  it('isExpected never accepts unknown', () => {
    for (const e of ['allow', 'deny', 'reject', 'drop'] as const) expect(isExpected(e, 'unknown')).toBe(false);
  });
});
