// The canonical formatter: fixed points and hand-built rules (the comparison with
// the real iptables-save is format.host.test.ts).
import { describe, expect, it } from 'vitest';
import type { Family } from '../model/inventory.js';
import { formatRule, formatRuleSet } from './format.js';
import { parseRuleSet } from './parse.js';
import { CORPUS_V4, CORPUS_V6 } from './fixtures/format-corpus.js';

function formatParsed(text: string, family: Family): string {
  const { ruleSet, problems } = parseRuleSet(text, { family, file: 'corpus' });
  expect(problems).toEqual([]);
  return formatRuleSet(ruleSet);
}

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
