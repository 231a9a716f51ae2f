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
      { from: 'internet', to: 'tunnel-1', fromAddr: '2001:db8:ffff::200', toAddr: '2001:db8::10', outcome: 'allow', expected: 'deny', ok: false, decidedBy: 'tunnel-1 rules.v6 line 6: -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT' },
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

  it('isExpected never accepts unknown', () => {
    for (const e of ['allow', 'deny', 'reject', 'drop'] as const) expect(isExpected(e, 'unknown')).toBe(false);
  });
});
