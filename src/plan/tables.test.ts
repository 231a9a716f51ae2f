import { describe, expect, it } from 'vitest';
import { parseRuleSet } from '../analyze/parse.js';
import { emptiedTable, formatComparable, isEmptyTable, tablesToEmpty } from './tables.js';

const parse4 = (t: string) => parseRuleSet(t, { family: 4, file: 't' }).ruleSet;
const FILTER = '*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n';
const EMPTY_NAT = '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n';

describe('empty tables', () => {
  it('an empty table is built-in chains only, every policy ACCEPT, no rule', () => {
    const table = (text: string) => parse4(text).tables[0]!;
    expect(isEmptyTable(table(EMPTY_NAT))).toBe(true);
    expect(isEmptyTable(table('*raw\nCOMMIT\n'))).toBe(true);
    expect(isEmptyTable(table(EMPTY_NAT.replace(':OUTPUT ACCEPT', ':OUTPUT DROP')))).toBe(false);
    expect(isEmptyTable(table(EMPTY_NAT.replace('COMMIT', ':MINE - [0:0]\nCOMMIT')))).toBe(false);
    expect(isEmptyTable(table(EMPTY_NAT.replace('COMMIT', '-A OUTPUT -j ACCEPT\nCOMMIT')))).toBe(false);
    expect(isEmptyTable(emptiedTable('mangle'))).toBe(true);
  });

  it('compares an empty table as an absent one', () => {
    expect(formatComparable(parse4(`${EMPTY_NAT}${FILTER}`))).toBe(formatComparable(parse4(FILTER)));
    expect(formatComparable(parse4(EMPTY_NAT))).toBe('');
    expect(formatComparable(parse4(EMPTY_NAT.replace(':OUTPUT ACCEPT', ':OUTPUT DROP')))).toContain('*nat');
  });

  it('empties the live tables with rules that the desired rules lack, and only those', () => {
    const live = parse4(`*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j NOTRACK\nCOMMIT\n${EMPTY_NAT}${FILTER}`);
    expect(tablesToEmpty(live, parse4(FILTER))).toEqual([emptiedTable('raw')]);
    expect(emptiedTable('raw').chains.map((c) => `${c.name} ${c.policy}`)).toEqual(['PREROUTING ACCEPT', 'OUTPUT ACCEPT']);
  });
});
