import { describe, expect, it } from 'vitest';
import { lintRuleSet } from './checks.js';
import { buildFilter, parseStrict } from './fixtures/fleet.js';

const GOOD = [
  '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  '-A INPUT -i lo -j ACCEPT',
  '-A INPUT -p tcp --dport 22 -j ACCEPT',
];
const codes = (rules: string[], policies: Parameters<typeof buildFilter>[0] = { INPUT: 'DROP' }) => lintRuleSet(buildFilter(policies, rules)).map((f) => f.code);

describe('lintRuleSet', () => {
  it('finds nothing in a sound rule set', () => {
    expect(lintRuleSet(buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, [...GOOD, '-A OUTPUT -o lo -j ACCEPT', '-A OUTPUT -m state --state ESTABLISHED -j ACCEPT']))).toEqual([]);
  });

  describe('undefined-jump', () => {
    it('is an error naming the rule', () => {
      const rs = parseStrict('*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -j TCP\n-A INPUT -g ELSEWHERE\nCOMMIT\n');
      const f = lintRuleSet(rs);
      expect(f.map((x) => [x.severity, x.code, x.rule?.index])).toEqual([
        ['error', 'undefined-jump', 1],
        ['error', 'undefined-jump', 2],
      ]);
      expect(f[0]?.message).toBe('rules.v4 line 3: -A INPUT -p tcp -j TCP: jump to chain TCP, which is not declared in *filter');
    });
    it('is absent for declared chains and extension targets', () => {
      expect(codes([...GOOD, '-A INPUT -j MINE', '-A MINE -j RETURN', '-A INPUT -j LOG', '-A INPUT -j NFLOG'])).not.toContain('undefined-jump');
    });
  });

  describe('shadowed-rule', () => {
    it.each([
      ['-A INPUT -p tcp -j ACCEPT', '-A INPUT -p tcp --dport 22 -s 10.0.0.1 -j DROP'],
      ['-A INPUT -s 10.0.0.0/8 -j DROP', '-A INPUT -s 10.1.0.0/16 -p udp -j ACCEPT'],
      ['-A INPUT -p tcp -m multiport --dports 20:30,80 -j ACCEPT', '-A INPUT -p tcp --dport 22 -j ACCEPT'],
      ['-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT', '-A INPUT -m conntrack --ctstate ESTABLISHED -p tcp -j ACCEPT'],
      ['-A INPUT -i eth+ -j DROP', '-A INPUT -i eth1 -j ACCEPT'],
      ['-A INPUT ! -s 10.0.0.0/8 -j DROP', '-A INPUT -s 192.0.2.1 -j ACCEPT'],
      ['-A INPUT ! -p tcp -j REJECT', '-A INPUT -p udp --dport 53 -j ACCEPT'],
      ['-A INPUT -p icmp -j ACCEPT', '-A INPUT -p icmp --icmp-type 8 -j DROP'],
      ['-A INPUT -j RETURN', '-A INPUT -j ACCEPT'],
    ])('%s shadows %s', (first, second) => {
      const f = lintRuleSet(buildFilter({}, [first, second])).filter((x) => x.code === 'shadowed-rule');
      expect(f.map((x) => [x.severity, x.rule?.index])).toEqual([['warning', 2]]);
    });

    it.each([
      ['-A INPUT -p tcp --dport 22 -j ACCEPT', '-A INPUT -p tcp -j DROP'],
      ['-A INPUT -s 10.1.0.0/16 -j DROP', '-A INPUT -s 10.0.0.0/8 -j ACCEPT'],
      ['-A INPUT -p tcp -j LOG', '-A INPUT -p tcp -j DROP'],
      ['-A INPUT -p tcp -j CHECK', '-A INPUT -p tcp -j DROP'],
      ['-A INPUT -p tcp -m limit --limit 1/sec -j ACCEPT', '-A INPUT -p tcp -j DROP'],
      ['-A INPUT -p tcp -m recent --name x --rcheck -j DROP', '-A INPUT -p tcp -j ACCEPT'],
      ['-A INPUT -p tcp ! --dport 22 -j DROP', '-A INPUT -p tcp --dport 22 -j ACCEPT'],
      ['-A INPUT -i eth0 -j DROP', '-A INPUT -j ACCEPT'],
      ['-A INPUT -m state --state NEW -j DROP', '-A INPUT -m state --state NEW,ESTABLISHED -j ACCEPT'],
      ['-A INPUT -p icmp --icmp-type 3/4 -j ACCEPT', '-A INPUT -p icmp --icmp-type 3 -j DROP'],
    ])('%s does not shadow %s', (first, second) => {
      expect(codes([first, second, '-A CHECK -j RETURN'], { INPUT: 'ACCEPT' })).not.toContain('shadowed-rule');
    });
  });

  describe('no-established', () => {
    it('warns for INPUT DROP without an ESTABLISHED accept', () => {
      const f = lintRuleSet(buildFilter({ INPUT: 'DROP' }, ['-A INPUT -i lo -j ACCEPT', '-A INPUT -p tcp --dport 22 -j ACCEPT']));
      expect(f.map((x) => [x.code, x.chain])).toEqual([['no-established', 'INPUT']]);
    });
    it('warns for OUTPUT DROP, and for a closing REJECT under an ACCEPT policy', () => {
      expect(codes([...GOOD], { INPUT: 'DROP', OUTPUT: 'DROP' })).toEqual(['no-established']);
      expect(codes(['-A INPUT -i lo -j ACCEPT', '-A INPUT -p tcp --dport 22 -j ACCEPT', '-A INPUT -j REJECT'], { INPUT: 'ACCEPT' })).toEqual(['no-established']);
    });
    it('is absent for a chain sealed on purpose (accepts nothing but loopback)', () => {
      expect(codes(['-A INPUT -i lo -j ACCEPT', '-A OUTPUT -o lo -j ACCEPT'], { INPUT: 'DROP', OUTPUT: 'DROP' })).toEqual([]);
    });
    it('counts an accept reachable through a user chain', () => {
      expect(codes(['-A INPUT -i lo -j ACCEPT', '-A INPUT -j STATE', '-A STATE -m state --state ESTABLISHED -j ACCEPT'])).toEqual([]);
    });
  });

  describe('no-loopback', () => {
    it('warns for INPUT DROP without -i lo', () => {
      const f = lintRuleSet(buildFilter({ INPUT: 'DROP' }, ['-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT']));
      expect(f.map((x) => [x.severity, x.code])).toEqual([['warning', 'no-loopback']]);
    });
    it('is absent with an ACCEPT policy or an lo accept', () => {
      expect(codes([], { INPUT: 'ACCEPT' })).toEqual([]);
      expect(codes(GOOD)).toEqual([]);
    });
  });

  describe('unknown-match', () => {
    it('warns about options the evaluator cannot judge', () => {
      const f = lintRuleSet(buildFilter({}, ['-A INPUT -m recent --name x --set']));
      expect(f.map((x) => [x.severity, x.code])).toEqual([['warning', 'unknown-match']]);
      expect(f[0]?.message).toContain('-m recent --name x --set');
    });
    it('ignores other tables', () => {
      const rs = parseStrict('*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -m addrtype --src-type LOCAL -j MASQUERADE\nCOMMIT\n');
      expect(lintRuleSet(rs)).toEqual([]);
    });
  });
});
