// Split one line of iptables-restore input into arguments exactly as
// iptables-restore 1.8.9 does (add_param_to_argv), so the analyser never reads
// a rule differently from the tool that loads it. Where that tool would do
// something we do not reproduce (an open quote at the end of the line, a NUL
// that cuts the line short, a line it reads in two pieces), we refuse instead.

export interface Token {
  text: string;
  /** 1-based column of the token's first character (its opening quote, if any). */
  col: number;
  /** A double quote opened inside this token (iptables-restore notes the same). */
  quoted: boolean;
}

export type TokenizeResult = { tokens: Token[] } | { error: string; col: number };

/** iptables-restore reads lines with a 10240-byte buffer: a longer line is read as two. */
export const MAX_LINE_BYTES = 10239;
/** Longer arguments are refused ("Parameter too long!"). */
export const MAX_TOKEN_BYTES = 1023;
/**
 * iptables-restore keeps 254 argv entries: 3 are its own (program, -t, table) and
 * `-c` adds 3 for counters; beyond that it refuses the line.
 */
export const MAX_TOKENS = 248;

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

/**
 * Outside a quote, space, tab and newline end a non-empty argument and `"` opens a
 * quote that continues the argument; inside, `\` takes the next character as is and
 * the closing `"` ends the argument at once, even an empty one (`""`, `"a"b` is two).
 * Everything else, `\` and `'` outside quotes and `#` after column 1 included, is literal.
 */
export function tokenizeLine(line: string): TokenizeResult {
  if (bytes(line) > MAX_LINE_BYTES) {
    return { error: `line longer than ${MAX_LINE_BYTES} bytes (iptables-restore would read it as two lines)`, col: 1 };
  }
  const nul = line.indexOf('\0');
  if (nul >= 0) return { error: 'NUL character (iptables-restore would ignore the rest of the line)', col: nul + 1 };

  const tokens: Token[] = [];
  let text = '';
  let start = -1; // index where the pending argument began; -1 = none
  let quoted = false;
  let quoteAt = -1; // index of the open quote; -1 = outside quotes
  let escaped = false;
  const push = (): void => {
    tokens.push({ text, col: start + 1, quoted });
    text = '';
    start = -1;
    quoted = false;
  };

  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (quoteAt >= 0) {
      if (escaped) {
        text += c;
        escaped = false;
      } else if (c === '\\') {
        escaped = true;
      } else if (c === '"') {
        quoteAt = -1;
        push();
      } else {
        text += c;
      }
    } else if (c === '"') {
      if (start < 0) start = i;
      quoteAt = i;
      quoted = true;
    } else if (c === ' ' || c === '\t' || c === '\n') {
      if (start >= 0) push();
    } else {
      if (start < 0) start = i;
      text += c;
    }
  }
  // iptables-restore would take the newline and the rest into the argument.
  if (quoteAt >= 0) return { error: 'unterminated quote', col: quoteAt + 1 };
  if (start >= 0) push();

  const long = tokens.find((t) => bytes(t.text) > MAX_TOKEN_BYTES);
  if (long) return { error: `argument longer than ${MAX_TOKEN_BYTES} bytes`, col: long.col };
  if (tokens.length > MAX_TOKENS) {
    return { error: `more than ${MAX_TOKENS} arguments (iptables-restore's limit)`, col: (tokens[MAX_TOKENS] as Token).col };
  }
  return { tokens };
}
