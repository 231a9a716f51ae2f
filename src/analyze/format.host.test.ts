// The canonical formatter must print exactly what the real iptables-save prints.
// Root-only: loads hand-written corpora into a throwaway network namespace.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Family } from '../model/inventory.js';
import { FORMAT_VERIFIED_AGAINST, formatRuleSet } from './format.js';
import { parseRuleSet } from './parse.js';
import { listIcmpNames, listRejectNames } from './netfilter-names.js';
import { CORPUS_V4, CORPUS_V6 } from './fixtures/format-corpus.js';

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

