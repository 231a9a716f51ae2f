// Render splits template lines where iptables-restore does, so re-joining the
// arguments with single spaces never changes how a line is read.
import { describe, expect, it } from 'vitest';
import { generatedCorpus, handWrittenCorpus } from '../analyze/fixtures/tokenize-corpus.js';
import { tokenizeLine } from '../analyze/tokenize.js';
import { tokenizeRule } from './refs.js';

const rejoin = (line: string): string => tokenizeRule(line).map((t) => t.text).join(' ');
/** How iptables-restore reads a line: its arguments, or just "refused". */
const reading = (line: string) => {
  const r = tokenizeLine(line);
  return 'error' in r ? 'refused' : r.tokens.map((t) => [t.text, t.quoted]);
};

describe('tokenizeRule', () => {
  it('keeps references whole and reports 1-based columns', () => {
    expect(tokenizeRule('-A INPUT  -s {{ self.private }}\t-j ACCEPT')).toEqual([
      { text: '-A', col: 1 },
      { text: 'INPUT', col: 4 },
      { text: '-s', col: 11 },
      { text: '{{ self.private }}', col: 14 },
      { text: '-j', col: 33 },
      { text: 'ACCEPT', col: 36 },
    ]);
  });

  it('keeps what touches a reference in the same argument, so it is refused as not a reference', () => {
    expect(tokenizeRule('x{{ a }} {{ a }}y "{{ a }}" {{ a }}{{ b }}').map((t) => t.text)).toEqual(['x{{ a }}', '{{ a }}y', '"{{ a }}"', '{{ a }}{{ b }}']);
  });

  it('splits where iptables-restore does: after a closing quote, never at other white space', () => {
    expect(tokenizeRule('"abc"def ab"c d"e "a\\" b" x{{y a\u00a0b a\u000bb').map((t) => t.text)).toEqual([
      '"abc"',
      'def',
      'ab"c d"',
      'e',
      '"a\\" b"',
      'x{{y',
      'a\u00a0b',
      'a\u000bb',
    ]);
    expect(tokenizeRule('--comment "open   quote').map((t) => t.text)).toEqual(['--comment', '"open   quote']);
  });

  it('re-joined, every corpus line reads as it did', () => {
    const corpus = [...handWrittenCorpus(), ...generatedCorpus(1, 300, 4), ...generatedCorpus(2, 200, 6)];
    for (const { line } of corpus) expect(reading(rejoin(`-A ${line}`)), JSON.stringify(line)).toEqual(reading(`-A ${line}`));
  });
});
