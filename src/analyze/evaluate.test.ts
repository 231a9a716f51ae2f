import { describe, expect, it } from 'vitest';
import { describeDecision, evaluatePacket, type Evaluation, type Packet } from './evaluate.js';
import { buildFilter, findRule, parseStrict } from './fixtures/fleet.js';
import { TCP_FLAG } from './netfilter-names.js';

const F = TCP_FLAG as Record<'FIN' | 'SYN' | 'RST' | 'PSH' | 'ACK' | 'URG', number>;

// The Arch wiki "simple stateful firewall": DROP policy, ESTABLISHED accepted,
// per-protocol chains, REJECT fall-through with tcp-reset / port-unreachable.
const STATEFUL = parseStrict(`*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:TCP - [0:0]
:UDP - [0:0]
:ICMP - [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -p icmp -j ICMP
-A INPUT -p udp -m conntrack --ctstate NEW -j UDP
-A INPUT -p tcp --syn -m conntrack --ctstate NEW -j TCP
-A INPUT -p udp -j REJECT --reject-with icmp-port-unreachable
-A INPUT -p tcp -j REJECT --reject-with tcp-reset
-A INPUT -j REJECT --reject-with icmp-proto-unreachable
-A TCP -p tcp --dport 22 -s 192.0.2.10 -j ACCEPT
-A TCP -p tcp -m multiport --dports 80,443 -j ACCEPT
-A UDP -p udp --dport 53 -j ACCEPT
-A ICMP -p icmp --icmp-type echo-request -j ACCEPT
-A ICMP -p icmp --icmp-type 8/0 -j DROP
COMMIT
`);

const inbound = (fields: Partial<Packet>): Packet => ({
  family: 4,
  hook: 'INPUT',
  in: 'eth1',
  src: '192.0.2.10',
  dst: '192.0.2.11',
  proto: 'tcp',
  sport: 40000,
  dport: 22,
  state: 'NEW',
  tcpFlags: F.SYN,
  ...fields,
});

const events = (ev: Evaluation) => ev.trace.map((s) => `${s.chain}${s.rule ? `#${s.rule.index}` : ''}:${s.event}`);

describe('evaluatePacket on a stateful rule set', () => {
  it('accepts SSH from the bastion through the TCP chain', () => {
    const ev = evaluatePacket(STATEFUL, inbound({}));
    expect(ev.verdict).toBe('ACCEPT');
    expect(ev.decidedBy).toEqual({ kind: 'rule', rule: findRule(STATEFUL, 'TCP', 1) });
    expect(events(ev)).toEqual(['INPUT#1:no-match', 'INPUT#2:no-match', 'INPUT#3:no-match', 'INPUT#4:no-match', 'INPUT#5:no-match', 'INPUT#6:jump', 'TCP#1:match']);
  });

  it('falls through the TCP chain and rejects with tcp-reset', () => {
    const ev = evaluatePacket(STATEFUL, inbound({ src: '192.0.2.99', dport: 3306 }));
    expect(ev).toMatchObject({ verdict: 'REJECT', rejectWith: 'tcp-reset', decidedBy: { kind: 'rule', rule: findRule(STATEFUL, 'INPUT', 8) } });
    expect(events(ev).slice(5)).toEqual(['INPUT#6:jump', 'TCP#1:no-match', 'TCP#2:no-match', 'TCP:return', 'INPUT#7:no-match', 'INPUT#8:match']);
    expect(describeDecision(ev)).toBe('rules.v4 line 15: -A INPUT -p tcp -j REJECT --reject-with tcp-reset');
  });

  it('accepts replies (ESTABLISHED) at the first rule', () => {
    const ev = evaluatePacket(STATEFUL, inbound({ state: 'ESTABLISHED', sport: 443, dport: 40000 }));
    expect(ev.decidedBy).toEqual({ kind: 'rule', rule: findRule(STATEFUL, 'INPUT', 1) });
  });

  it('rejects a non-SYN NEW tcp packet (not --syn) with tcp-reset', () => {
    for (const tcpFlags of [F.ACK, F.SYN | F.ACK, F.SYN | F.RST, F.SYN | F.FIN]) {
      expect(evaluatePacket(STATEFUL, inbound({ tcpFlags }))).toMatchObject({ verdict: 'REJECT', rejectWith: 'tcp-reset', decidedBy: { rule: findRule(STATEFUL, 'INPUT', 8) } });
    }
    // --syn looks at FIN, SYN, RST and ACK only: PSH and URG on the SYN do not matter.
    expect(evaluatePacket(STATEFUL, inbound({ tcpFlags: F.SYN | F.PSH | F.URG })).decidedBy).toEqual({ kind: 'rule', rule: findRule(STATEFUL, 'TCP', 1) });
  });

  it('handles UDP and ICMP chains', () => {
    expect(evaluatePacket(STATEFUL, inbound({ proto: 'udp', dport: 53 })).verdict).toBe('ACCEPT');
    expect(evaluatePacket(STATEFUL, inbound({ proto: 'udp', dport: 161 }))).toMatchObject({ verdict: 'REJECT', rejectWith: 'icmp-port-unreachable' });
    const ping = { proto: 'icmp' as const, sport: undefined, dport: undefined, icmpType: 8, icmpCode: 0 };
    expect(evaluatePacket(STATEFUL, inbound(ping)).verdict).toBe('ACCEPT');
    // ICMP chain falls through for other types, then the proto-unreachable catch-all.
    expect(evaluatePacket(STATEFUL, inbound({ ...ping, icmpType: 13 }))).toMatchObject({ verdict: 'REJECT', rejectWith: 'icmp-proto-unreachable' });
  });

  it('drops INVALID packets', () => {
    expect(evaluatePacket(STATEFUL, inbound({ state: 'INVALID' })).decidedBy).toEqual({ kind: 'rule', rule: findRule(STATEFUL, 'INPUT', 3) });
  });

  it('uses the policy when no rule decides', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -p udp -j ACCEPT']);
    const ev = evaluatePacket(rs, inbound({}));
    expect(ev).toMatchObject({ verdict: 'DROP', decidedBy: { kind: 'policy', table: 'filter', chain: 'INPUT' } });
    expect(events(ev)).toEqual(['INPUT#1:no-match', 'INPUT:policy']);
    expect(describeDecision(ev)).toBe('policy DROP of chain INPUT');
  });

  it('accepts everything when there is no filter table', () => {
    const ev = evaluatePacket({ family: 4, tables: [] }, inbound({}));
    expect(ev).toMatchObject({ verdict: 'ACCEPT', decidedBy: { kind: 'policy', chain: 'INPUT' } });
  });
});

describe('evaluatePacket: chains, RETURN, goto, LOG', () => {
  it('RETURN from a user chain resumes after the jump', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -j CHECK', '-A INPUT -j ACCEPT', '-A CHECK -s 10.0.0.0/8 -j DROP', '-A CHECK -j RETURN', '-A CHECK -j DROP']);
    const ev = evaluatePacket(rs, inbound({}));
    expect(ev.verdict).toBe('ACCEPT');
    expect(events(ev)).toEqual(['INPUT#1:jump', 'CHECK#1:no-match', 'CHECK#2:return', 'INPUT#2:match']);
    expect(evaluatePacket(rs, inbound({ src: '10.1.1.1' })).verdict).toBe('DROP');
  });

  it('RETURN in a built-in chain applies its policy', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -j RETURN', '-A INPUT -j ACCEPT']);
    expect(evaluatePacket(rs, inbound({})).decidedBy).toEqual({ kind: 'policy', table: 'filter', chain: 'INPUT' });
  });

  it('goto does not come back: falling off the goto target returns to the caller of the caller', () => {
    const rs = buildFilter({ INPUT: 'ACCEPT' }, ['-A INPUT -j OUTER', '-A INPUT -j DROP', '-A OUTER -g INNER', '-A OUTER -j ACCEPT', '-A INNER -p udp -j ACCEPT']);
    const ev = evaluatePacket(rs, inbound({}));
    expect(ev.verdict).toBe('DROP');
    expect(events(ev)).toEqual(['INPUT#1:jump', 'OUTER#1:jump', 'INNER#1:no-match', 'INNER:return', 'INPUT#2:match']);
  });

  it('goto from the built-in chain ends at its policy', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -g G', '-A INPUT -j ACCEPT', '-A G -j RETURN']);
    expect(evaluatePacket(rs, inbound({})).decidedBy).toEqual({ kind: 'policy', table: 'filter', chain: 'INPUT' });
  });

  it('LOG continues', () => {
    const rs = buildFilter({ INPUT: 'ACCEPT' }, ['-A INPUT -j LOG --log-prefix "in: "', '-A INPUT -j DROP']);
    const ev = evaluatePacket(rs, inbound({}));
    expect(ev.verdict).toBe('DROP');
    expect(events(ev)).toEqual(['INPUT#1:log', 'INPUT#2:match']);
  });

  it('stops a jump loop with unknown', () => {
    const rs = buildFilter({ INPUT: 'ACCEPT' }, ['-A INPUT -j A', '-A A -j B', '-A B -j A']);
    expect(evaluatePacket(rs, inbound({}))).toMatchObject({ verdict: 'unknown', decidedBy: { kind: 'unmodelled' } });
    const g = buildFilter({ INPUT: 'ACCEPT' }, ['-A INPUT -j A', '-A A -g A']);
    expect(evaluatePacket(g, inbound({})).verdict).toBe('unknown');
  });
});

describe('evaluatePacket: matches', () => {
  const verdict = (rule: string, pkt: Partial<Packet>) => evaluatePacket(buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, [rule]), inbound(pkt)).verdict;

  it.each([
    ['-A INPUT -s 192.0.2.0/24 -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT ! -s 192.0.2.0/24 -j ACCEPT', {}, 'DROP'],
    ['-A INPUT -d 192.0.2.11 -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT -i eth1 -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT -i eth+ -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT -i eth0 -j ACCEPT', {}, 'DROP'],
    ['-A INPUT ! -i lo -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT -p tcp --dport 20:30 -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT -p tcp ! --dport 22 -j ACCEPT', {}, 'DROP'],
    ['-A INPUT -p tcp --sport 1024:65535 -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT -p tcp -m multiport --ports 22 -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT -p tcp -m multiport --dports 80,443 -j ACCEPT', {}, 'DROP'],
    ['-A INPUT -p udp --dport 22 -j ACCEPT', {}, 'DROP'],
    ['-A INPUT ! -p udp -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT -m state --state NEW -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT -m conntrack ! --ctstate NEW -j ACCEPT', {}, 'DROP'],
    ['-A INPUT -p tcp --syn -j ACCEPT', { state: 'ESTABLISHED', tcpFlags: F.ACK }, 'DROP'],
    ['-A INPUT -p tcp ! --syn -j ACCEPT', { state: 'ESTABLISHED', tcpFlags: F.ACK }, 'ACCEPT'],
    ['-A INPUT -p tcp --syn -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT -p tcp --tcp-flags SYN,ACK SYN,ACK -j ACCEPT', { tcpFlags: F.SYN | F.ACK | F.PSH }, 'ACCEPT'],
    ['-A INPUT -p tcp --tcp-flags SYN,ACK SYN,ACK -j ACCEPT', { tcpFlags: F.SYN }, 'DROP'],
    ['-A INPUT -p tcp --tcp-flags ALL NONE -j ACCEPT', { tcpFlags: 0 }, 'ACCEPT'],
    ['-A INPUT -p tcp ! --tcp-flags ALL SYN -j ACCEPT', { tcpFlags: F.SYN | F.URG }, 'ACCEPT'],
    ['-A INPUT -p tcp --syn -j ACCEPT', { proto: 'udp' }, 'DROP'],
    ['-A INPUT -p tcp --syn -j ACCEPT', { tcpFlags: undefined }, 'unknown'],
    ['-A INPUT -p udp --dport 22 -j ACCEPT', { tcpFlags: undefined }, 'DROP'],
    ['-A INPUT -m addrtype --dst-type LOCAL -j ACCEPT', { dst: '127.0.0.1' }, 'ACCEPT'],
    ['-A INPUT -m addrtype --dst-type LOCAL -j ACCEPT', {}, 'DROP'],
    ['-A INPUT -m addrtype --dst-type MULTICAST -j ACCEPT', { dst: '224.0.0.251' }, 'ACCEPT'],
    ['-A INPUT -m addrtype --dst-type BROADCAST -j ACCEPT', { dst: '255.255.255.255' }, 'ACCEPT'],
    ['-A INPUT -m addrtype ! --src-type UNICAST -j ACCEPT', {}, 'DROP'],
    ['-A INPUT -f -j ACCEPT', {}, 'DROP'],
    ['-A INPUT ! -f -j ACCEPT', {}, 'ACCEPT'],
    ['-A INPUT -p icmp --icmp-type any -j ACCEPT', { proto: 'icmp', icmpType: 0 }, 'ACCEPT'],
    ['-A INPUT -p icmp --icmp-type 3/4 -j ACCEPT', { proto: 'icmp', icmpType: 3, icmpCode: 3 }, 'DROP'],
    ['-A INPUT -m limit --limit 1/sec -j LOG', {}, 'DROP'],
    ['-A INPUT -m comment --comment "just a note" -j ACCEPT', {}, 'ACCEPT'],
  ] as const)('%s on %j → %s', (rule, pkt, expected) => {
    expect(verdict(rule, pkt)).toBe(expected);
  });

  it('IPv6 ICMP is ipv6-icmp, not icmp', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -p icmp -j ACCEPT', '-A INPUT -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT'], 6);
    const ev = evaluatePacket(rs, { family: 6, hook: 'INPUT', in: 'eth0', src: '2001:db8::1', dst: '2001:db8::2', proto: 'icmp', state: 'NEW', icmpType: 128 });
    expect(ev.decidedBy).toEqual({ kind: 'rule', rule: findRule(rs, 'INPUT', 2) });
  });
});

describe('evaluatePacket: unknown instead of a guess', () => {
  it('an unmodelled option on a rule the packet reaches is unknown', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -p tcp -m recent --name ssh --rcheck -j DROP', '-A INPUT -j ACCEPT']);
    const ev = evaluatePacket(rs, inbound({}));
    expect(ev).toMatchObject({ verdict: 'unknown', decidedBy: { kind: 'unmodelled', rule: findRule(rs, 'INPUT', 1), option: '-m recent --name ssh --rcheck' } });
    expect(describeDecision(ev)).toBe('rules.v4 line 5: -A INPUT -p tcp -m recent --name ssh --rcheck -j DROP (cannot evaluate: -m recent --name ssh --rcheck)');
  });

  it('but a definite mismatch of a modelled option still skips the rule', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -p udp -m recent --name dns --rcheck -j DROP', '-A INPUT -j ACCEPT']);
    expect(evaluatePacket(rs, inbound({})).verdict).toBe('ACCEPT');
  });

  it('a rate limit that would decide is unknown; a LOG under a limit is harmless', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -p tcp -m limit --limit 10/sec -j ACCEPT']);
    expect(evaluatePacket(rs, inbound({}))).toMatchObject({ verdict: 'unknown', decidedBy: { option: '-m limit --limit 10/sec' } });
  });

  it('an interface match on a packet whose interface is not given is unknown', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -i eth1 -j ACCEPT']);
    const { in: _omit, ...pkt } = inbound({});
    expect(evaluatePacket(rs, pkt).verdict).toBe('unknown');
  });

  it('an unknown target or a jump to a missing chain is unknown, and says why', () => {
    const rs = parseStrict('*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j NFQUEUE --queue-num 1\nCOMMIT\n');
    const ev = evaluatePacket(rs, inbound({}));
    expect(ev).toMatchObject({ verdict: 'unknown', decidedBy: { kind: 'unmodelled', rule: findRule(rs, 'INPUT', 1), option: '-j NFQUEUE (a userspace program decides the verdict)' } });
    expect(describeDecision(ev)).toBe('rules.v4 line 3: -A INPUT -j NFQUEUE --queue-num 1 (cannot evaluate: -j NFQUEUE (a userspace program decides the verdict))');
    const missing = parseStrict('*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j NOWHERE\nCOMMIT\n');
    expect(evaluatePacket(missing, inbound({}))).toMatchObject({
      verdict: 'unknown',
      decidedBy: { option: '-j NOWHERE (not a chain of this table, nor a target fleetfw models)' },
    });
  });

  it('an unknown match on a LOG rule, or an unknown target the packet does not match, changes nothing', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -m recent --name ssh --set -j LOG', '-A INPUT -p udp -j NFQUEUE', '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const ev = evaluatePacket(rs, inbound({}));
    expect(ev).toMatchObject({ verdict: 'ACCEPT', decidedBy: { rule: findRule(rs, 'INPUT', 3) } });
    expect(events(ev)).toEqual(['INPUT#1:skip', 'INPUT#2:no-match', 'INPUT#3:match']);
  });

  it('a state match sees the state conntrack gives; an unknown set is unknown', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT']);
    expect(evaluatePacket(rs, inbound({ state: 'UNTRACKED' })).verdict).toBe('ACCEPT');
    expect(evaluatePacket(rs, inbound({})).verdict).toBe('DROP');
    const set = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -m set --match-set admins src -j ACCEPT']);
    expect(evaluatePacket(set, inbound({})).decidedBy).toMatchObject({ kind: 'unmodelled', option: '--match-set admins src (contents of set admins not known)' });
    const known = { ...set, sets: new Map([['admins', { name: 'admins', family: 4 as const, members: ['192.0.2.10'] }]]) };
    expect(evaluatePacket(known, inbound({})).verdict).toBe('ACCEPT');
    expect(evaluatePacket(known, inbound({ src: '192.0.2.12' })).verdict).toBe('DROP');
  });
});
