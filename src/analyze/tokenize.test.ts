// The tokenizer's rules, one case each (tokenize-differential.host.test.ts checks
// them against the real iptables-restore).
import { describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES, MAX_TOKEN_BYTES, MAX_TOKENS, tokenizeLine, type Token } from './tokenize.js';

const texts = (line: string): string[] | { error: string; col: number } => {
  const r = tokenizeLine(line);
  return 'error' in r ? r : r.tokens.map((t) => t.text);
};
const tokens = (line: string): Token[] => {
  const r = tokenizeLine(line);
  expect(r).toHaveProperty('tokens');
  return 'tokens' in r ? r.tokens : [];
};

describe('tokenizeLine', () => {
  it('splits on runs of spaces and tabs, with 1-based columns', () => {
    expect(tokens('-A  INPUT\t\t-j ACCEPT ')).toEqual([
      { text: '-A', col: 1, quoted: false },
      { text: 'INPUT', col: 5, quoted: false },
      { text: '-j', col: 12, quoted: false },
      { text: 'ACCEPT', col: 15, quoted: false },
    ]);
    expect(texts('')).toEqual([]);
    expect(texts(' \t ')).toEqual([]);
  });

  it('groups double-quoted text and unescapes \\ inside quotes', () => {
    expect(texts('--log-prefix "Iptables DROP: " --comment "a \\"b\\""')).toEqual(['--log-prefix', 'Iptables DROP: ', '--comment', 'a "b"']);
    expect(texts('"a\\\\b" "\\x"')).toEqual(['a\\b', 'x']);
  });

  it('ends the argument at the closing quote, even an empty one', () => {
    expect(texts('""')).toEqual(['']);
    expect(texts('"" ""')).toEqual(['', '']);
    expect(texts('""""')).toEqual(['', '']);
    expect(texts('"abc"def')).toEqual(['abc', 'def']);
    expect(texts('"abc""def"')).toEqual(['abc', 'def']);
    expect(tokens('x ""y')).toEqual([
      { text: 'x', col: 1, quoted: false },
      { text: '', col: 3, quoted: true },
      { text: 'y', col: 5, quoted: false },
    ]);
  });

  it('continues an unquoted argument into a quote that opens in the middle of it', () => {
    expect(tokens('abc"def ghi" x')).toEqual([
      { text: 'abcdef ghi', col: 1, quoted: true },
      { text: 'x', col: 14, quoted: false },
    ]);
    expect(texts('abc"def"ghi')).toEqual(['abcdef', 'ghi']);
    expect(texts('--dport 2"2"')).toEqual(['--dport', '22']);
  });

  it('takes backslashes, single quotes and # outside quotes literally', () => {
    expect(texts('a\\b a\\"b c" \'x y\' #z a#b')).toEqual(['a\\b', 'a\\b c', "'x", "y'", '#z', 'a#b']);
    expect(texts('a\\ b')).toEqual(['a\\', 'b']);
  });

  it('splits only on space, tab and newline: other white space is part of the argument', () => {
    expect(texts('a\u000bb c\u00a0d e\rf g\fh')).toEqual(['a\u000bb', 'c\u00a0d', 'e\rf', 'g\fh']);
    expect(texts('a\nb')).toEqual(['a', 'b']);
    expect(texts('"a\nb"')).toEqual(['a\nb']);
  });

  it('marks a token quoted only when a quote opened in it, `!` included', () => {
    expect(tokens('"!" ! "-p"').map((t) => [t.text, t.quoted])).toEqual([
      ['!', true],
      ['!', false],
      ['-p', true],
    ]);
  });

  it('refuses an unterminated quote, pointing at the quote', () => {
    expect(tokenizeLine('-A INPUT --comment "oops')).toEqual({ error: 'unterminated quote', col: 20 });
    expect(tokenizeLine('-A INPUT --comment ab"c d')).toEqual({ error: 'unterminated quote', col: 22 });
    expect(tokenizeLine('"a\\"')).toEqual({ error: 'unterminated quote', col: 1 });
    expect(tokenizeLine('"a\\')).toEqual({ error: 'unterminated quote', col: 1 });
  });

  it('refuses what iptables-restore would read cut short or in pieces', () => {
    expect(tokenizeLine('-j ACCEPT\0 -j DROP')).toEqual({ error: expect.stringMatching(/^NUL character/), col: 10 });
    const argOk = `x${'y'.repeat(MAX_TOKEN_BYTES - 1)}`;
    expect(texts(`-c ${argOk}`)).toEqual(['-c', argOk]);
    expect(tokenizeLine(`-c "é${'y'.repeat(MAX_TOKEN_BYTES - 1)}"`)).toEqual({ error: `argument longer than ${MAX_TOKEN_BYTES} bytes`, col: 4 });
    const many = Array.from({ length: MAX_TOKENS }, () => 'x').join(' ');
    expect('tokens' in tokenizeLine(many)).toBe(true);
    expect(tokenizeLine(`${many} y`)).toEqual({ error: `more than ${MAX_TOKENS} arguments (iptables-restore's limit)`, col: many.length + 2 });
    const pad = (n: number): string => `-j ACCEPT${' '.repeat(n - 9)}`;
    expect('tokens' in tokenizeLine(pad(MAX_LINE_BYTES))).toBe(true);
    expect(tokenizeLine(pad(MAX_LINE_BYTES + 1))).toEqual({ error: expect.stringMatching(/^line longer than/), col: 1 });
  });
});
