// The canonical formatter must print exactly what the real iptables-save prints.
// Root-only: loads hand-written corpora into a throwaway network namespace.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Family } from '../model/inventory.js';
import { FORMAT_VERIFIED_AGAINST, formatRule, formatRuleSet } from './format.js';
import { parseRuleSet } from './parse.js';
import { listIcmpNames, listRejectNames } from './netfilter-names.js';

const CORPUS_V4 = `# hand-written, deliberately non-canonical
*filter
:INPUT DROP [3:120]
:OUTPUT DROP
:ZZZ - [0:0]
:TCP - [0:0]
:B - [0:0]
:_x - [0:0]
:a-1 - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m state --state ESTABLISHED,RELATED,NEW,INVALID,UNTRACKED -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m conntrack ! --ctstate NEW -j ACCEPT
-A INPUT ! -i lo -s 10.0.0.1 -j ACCEPT
-A INPUT -s 192.0.2.5/24 -d 198.51.100.7/255.255.255.0 -j ACCEPT
-A INPUT ! -s 192.0.2.0/24 ! -d 10.0.0.0/8 -j ACCEPT
-A INPUT -s 0.0.0.0/0 -i eth+ -j ACCEPT
-A INPUT -i + -j ACCEPT
-A INPUT -p tcp --dport 22 -j ACCEPT
-A INPUT -p tcp --destination-port 443 --source-port 1024:65535 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 80:80 -j ACCEPT
-A INPUT -p tcp --dport :1023 -j ACCEPT
-A INPUT -p tcp --dport 0:65535 -j ACCEPT
-A INPUT -p tcp ! --dport 22 -j ACCEPT
-A INPUT -p udp --sport 53 --dport 1000:2000 -j ACCEPT
-A INPUT -p udp -m udp ! --sport 53 ! --dport 54 -j ACCEPT
-A INPUT -p tcp --syn -j TCP
-A INPUT -p tcp ! --syn -j DROP
-A INPUT -p tcp --tcp-flags SYN,FIN,ACK,RST SYN -m conntrack --ctstate NEW -j TCP
-A INPUT -p tcp --syn --dport 22 -j ACCEPT
-A INPUT -p tcp --dport 22 -m comment --comment x -m tcp --syn -j ACCEPT
-A INPUT -m conntrack --ctstate NEW -p tcp --dport 22 -j ACCEPT
-A INPUT -m comment --comment "ssh from anywhere" -p tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m multiport --dports 80,443,8000:8080 -j ACCEPT
-A INPUT -p udp -m multiport --sports 53,123 -j ACCEPT
-A INPUT -p tcp -m multiport ! --ports 22,80 -j ACCEPT
-A INPUT -p tcp -m multiport --destination-ports 22 -m multiport --source-ports 1:3 -j ACCEPT
-A INPUT -p tcp --dport 22 -m multiport --sports 1,2 -j ACCEPT
-A INPUT -p icmp --icmp-type echo-request -j ACCEPT
-A INPUT -p icmp -m icmp --icmp-type 3/4 -j ACCEPT
-A INPUT -p icmp --icmp-type port-unreachable -j ACCEPT
-A INPUT -p icmp --icmp-type any -j ACCEPT
-A INPUT -p icmp ! --icmp-type ping -j ACCEPT
-A INPUT -p icmp --icmp-type 8/0 -m conntrack --ctstate NEW -j ACCEPT
-A INPUT -p icmp -m limit --limit 60/min --limit-burst 10 -j ACCEPT
-A INPUT -m limit --limit 5/minute -j LOG --log-prefix "Iptables DROP: " --log-level 4
-A INPUT -m limit --limit 3/hour -j LOG --log-prefix x --log-level debug
-A INPUT -m limit --limit 120/min -j ACCEPT
-A INPUT -m limit --limit 24/day -j ACCEPT
-A INPUT -m limit --limit 90/min -j ACCEPT
-A INPUT -m limit -j ACCEPT
-A INPUT -j LOG --log-uid --log-level error --log-prefix "q'z\\"" --log-tcp-options
-A INPUT -m comment --comment simple -j ACCEPT
-A INPUT -p tcp -m limit --limit 1/s -m comment --comment "a b" -j ACCEPT
-A INPUT -p tcp -j REJECT
-A INPUT -p tcp -j REJECT --reject-with tcp-rst
-A INPUT -p udp -j REJECT --reject-with port-unreach
-A INPUT -j REJECT --reject-with icmp-proto-unreachable
-A INPUT -p 6 -j ACCEPT
-A INPUT -p UDP -j ACCEPT
-A INPUT -p all -j ACCEPT
-A INPUT ! -p tcp -j ACCEPT
-A INPUT -p 47 -j ACCEPT
-A INPUT -g ZZZ
-A INPUT -j a-1
[5:300] -A INPUT -j DROP
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -o eth1 -d 192.0.2.0/24 -p tcp --sport 22 -m state --state ESTABLISHED -j ACCEPT
-A OUTPUT -j RETURN
-A ZZZ -j DROP
-A TCP -p tcp --dport 22 -j RETURN
-A B -j _x
-A _x -j RETURN
-A a-1 -j B
COMMIT
*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o eth0 -s 192.0.2.0/24 -j ACCEPT
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p udp --dport 53 -j ACCEPT
COMMIT
`;

const CORPUS_V6 = `*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:zz - [0:0]
:ICMP - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A INPUT -s 2001:0db8::1 -d 2001:db8:0:0::5/64 -j ACCEPT
-A INPUT -s 2001:db8::1/128 -j ACCEPT
-A INPUT -s ::/0 -j ACCEPT
-A INPUT -s fe80::/10 -j ACCEPT
-A INPUT -s ::ffff:1.2.3.4 -j ACCEPT
-A INPUT -s 2001:db8:0:1:0:0:0:1 -j ACCEPT
-A INPUT -s 2001:0:0:1::1 -j ACCEPT
-A INPUT -p icmpv6 --icmpv6-type echo-request -j ACCEPT
-A INPUT -p ipv6-icmp --icmpv6-type neighbor-solicitation -j ACCEPT
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 1/4 -j ACCEPT
-A INPUT -p ipv6-icmp --icmpv6-type port-unreachable -j ACCEPT
-A INPUT -p ipv6-icmp ! --icmpv6-type 129 -j ICMP
-A INPUT -p 58 -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp --dport 22 -s 2001:db8::/32 -j zz
-A INPUT -p udp -m multiport --dports 500,4500 -j ACCEPT
-A INPUT -p tcp --syn -m conntrack --ctstate NEW -j ACCEPT
-A INPUT -m limit --limit 60/min -j LOG --log-prefix "v6 "
-A INPUT -p tcp -j REJECT
-A INPUT -p tcp -j REJECT --reject-with tcp-reset
-A INPUT -j REJECT --reject-with adm-prohibited
-A INPUT -j REJECT --reject-with no-route
-A INPUT -m comment --comment "end of v6" -j DROP
-A FORWARD -i eth0 -o eth1 -s 2001:db8::/64 -j ACCEPT
-A ICMP -j RETURN
-A zz -j ACCEPT
COMMIT
`;

/** Every ICMP name and every --reject-with alias, one rule each, in a table of its own chain. */
function buildNameCorpus(family: Family): string {
  const icmp = family === 4 ? '-p icmp --icmp-type' : '-p ipv6-icmp --icmpv6-type';
  const lines = ['*filter', ':NAMES - [0:0]'];
  for (const n of listIcmpNames(family)) lines.push(`-A NAMES ${icmp} ${n} -j ACCEPT`);
  for (const n of listRejectNames(family)) lines.push(`-A NAMES -p tcp -j REJECT --reject-with ${n}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

function runIn(ns: string, cmd: string, input?: string): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd], { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Load `text` with the real iptables-restore and return the real iptables-save, comments dropped. */
function dumpReal(text: string, family: Family, ipsets?: string): string {
  const ns = `ffw-fmt-${randomBytes(4).toString('hex')}`;
  const bin = family === 4 ? 'iptables' : 'ip6tables';
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    // Sets are per network namespace; rules that match them need them to exist.
    if (ipsets) execFileSync('ip', ['netns', 'exec', ns, 'ipset', 'restore'], { input: ipsets, stdio: ['pipe', 'pipe', 'pipe'] });
    runIn(ns, `${bin}-restore`, text);
    const saved = runIn(ns, `${bin}-save`);
    return saved
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]$/, '[0:0]'))
      .join('\n');
  } finally {
    execFileSync('ip', ['netns', 'delete', ns]);
  }
}

function formatParsed(text: string, family: Family): string {
  const { ruleSet, problems } = parseRuleSet(text, { family, file: 'corpus' });
  expect(problems).toEqual([]);
  return formatRuleSet(ruleSet);
}

describe('formatRuleSet against the real iptables-save (root, network namespace)', () => {
  it('runs as root (required: this test fails rather than skips)', () => {
    expect(process.getuid?.()).toBe(0);
  });

  it.each([
    ['IPv4 corpus', CORPUS_V4, 4 as const],
    ['IPv6 corpus', CORPUS_V6, 6 as const],
    ['IPv4 names', buildNameCorpus(4), 4 as const],
    ['IPv6 names', buildNameCorpus(6), 6 as const],
  ])('%s prints byte for byte like iptables-save', (_name, text, family) => {
    expect(formatParsed(text, family)).toBe(dumpReal(text, family));
  });

  it('ipset matches (as render writes them) print like iptables-save', () => {
    const sets = 'create fleetfw-web-private hash:ip family inet\ncreate fleetfw-db-private hash:ip family inet\n';
    const text = [
      '*filter',
      '-A INPUT -i eth1 -p tcp ! -s 192.0.2.3 -m set --match-set fleetfw-web-private src -j ACCEPT',
      '-A OUTPUT -o eth1 -p tcp -m set --match-set fleetfw-web-private dst --dport 80 -j ACCEPT',
      '-A INPUT -p tcp --dport 3306 -m set ! --match-set fleetfw-db-private src -m conntrack --ctstate NEW -j DROP',
      '-A INPUT -m set --match-set fleetfw-web-private src -m set --match-set fleetfw-db-private dst -j ACCEPT',
      'COMMIT',
      '',
    ].join('\n');
    expect(formatParsed(text, 4)).toBe(dumpReal(text, 4, sets));
  });

  it(`is verified against the iptables on this machine (${FORMAT_VERIFIED_AGAINST})`, () => {
    // The claim hosts rely on to skip canonicalisation: the version these tests ran against.
    const version = execFileSync('iptables', ['-V'], { encoding: 'utf8' }).trim();
    expect(version).toBe(`iptables v${FORMAT_VERIFIED_AGAINST.replace('-', ' (')})`);
  });

  it('the corpora are large enough to mean something', () => {
    const count = (t: string) => t.split('\n').filter((l) => /^(\[\d+:\d+\] )?-A /.test(l)).length;
    expect(count(CORPUS_V4)).toBeGreaterThanOrEqual(40);
    expect(count(CORPUS_V6)).toBeGreaterThanOrEqual(20);
  });
});

describe('formatRuleSet round trips', () => {
  it.each([
    [CORPUS_V4, 4 as const],
    [CORPUS_V6, 6 as const],
  ])('is a fixed point: format(parse(format(parse(x)))) == format(parse(x))', (text, family) => {
    const once = formatParsed(text, family);
    expect(formatParsed(once, family)).toBe(once);
  });

  it('prints hand-built rules (no matchOrder) in the canonical module order', () => {
    const text = formatRule({
      table: 'filter',
      chain: 'INPUT',
      index: 1,
      src: { cidr: '192.0.2.12/32', negate: false },
      proto: { name: 'tcp', negate: false },
      dport: { ranges: [[3306, 3306]], negate: false },
      state: { states: ['NEW'], negate: false },
      comment: 'db',
      unmodelled: [],
      target: 'ACCEPT',
      goto: false,
      targetArgs: [],
      text: '',
    });
    expect(text).toBe('-A INPUT -s 192.0.2.12/32 -p tcp -m tcp --dport 3306 -m conntrack --ctstate NEW -m comment --comment db -j ACCEPT');
  });

  it('stores the canonical text on each parsed rule', () => {
    const { ruleSet } = parseRuleSet('*filter\n-A INPUT -p tcp --syn --dport 22 -j ACCEPT\nCOMMIT\n', { family: 4, file: 'x' });
    expect(ruleSet.tables[0]?.chains[0]?.rules[0]?.text).toBe('-p tcp -m tcp --dport 22 --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT');
  });

  it('prints an empty rule set as nothing', () => {
    expect(formatRuleSet({ family: 4, tables: [] })).toBe('');
  });
});
