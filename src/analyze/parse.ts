// Parse iptables-restore input or iptables-save output into a RuleSet: the
// document (tables, chain declarations, COMMIT) read by iptables-restore's own
// line rules; each rule's options by rule-options.ts and rule-matches.ts. Common
// matches become Rule fields the evaluator understands; anything else is kept
// verbatim in `unmodelled` so that a packet reaching it gets "unknown", never a guess.
import type { Family } from '../model/inventory.js';
import type { Chain, Origin, Rule, RuleSet, Table } from '../model/ruleset.js';
import type { Problem } from '../errors.js';
import { formatRuleSpec } from './format.js';
import { BUILTIN_CHAINS } from './netfilter-names.js';
import { parseRuleTokens } from './rule-options.js';

export interface ParseOptions {
  family: Family;
  /** Name used in origins and problems, e.g. `rules.v4` or `mysql-1 (live)`. */
  file: string;
  /**
   * Rules already parsed, by their line, shared by the parses of one fleet: most
   * rule lines repeat from host to host (90 % of a generated 10,000-host fleet's),
   * and a repeated line is copied instead of parsed again. Rules are never changed
   * once parsed, so the copies share their parts.
   */
  ruleCache?: Map<string, Rule>;
  /** Where each line of `text` was written: `sources[i]` is line i+1's template line (a render's provenance). */
  sources?: ReadonlyArray<Origin | undefined>;
}

export interface ParseResult {
  ruleSet: RuleSet;
  problems: Problem[];
}

import { tokenizeLine, type Token } from './tokenize.js';

// Callers that imported these from here keep working.
export { tokenizeLine };
export { canonicaliseLimit } from './rule-matches.js';

/** Blank-separated words with their columns (iptables-restore reads `*table` and `:chain` lines so). */
function splitBlanks(line: string): { tokens: Token[] } {
  const tokens: Token[] = [];
  for (const m of line.matchAll(/[^ \t]+/g)) tokens.push({ text: m[0], col: (m.index ?? 0) + 1, quoted: false });
  return { tokens };
}

interface OpenTable {
  table: Table;
  line: number;
}

/** Parse a whole iptables-restore / iptables-save document. Never throws: problems are returned. */
export function parseRuleSet(text: string, opts: ParseOptions): ParseResult {
  const { family, file } = opts;
  const problems: Problem[] = [];
  const tables: Table[] = [];
  let open: OpenTable | undefined;

  /** The chain `-A NAME` appends to: declared, or a built-in one iptables-restore creates on use (policy ACCEPT). */
  const chainFor = (table: Table, name: string): Chain | undefined => {
    let chain = table.chains.find((c) => c.name === name);
    if (!chain && (BUILTIN_CHAINS[table.name] ?? []).includes(name)) {
      chain = { name, builtin: true, policy: 'ACCEPT', rules: [] };
      table.chains.push(chain);
    }
    return chain;
  };

  const lines = text.split('\n');
  lines.forEach((rawLine, idx) => {
    const lineNo = idx + 1;
    const line = rawLine;
    const report = (col: number, message: string, path = ''): void => {
      problems.push({ file, line: lineNo, col, path, message });
    };
    // iptables-restore's own line rules: `#` only in the first column, `*`, `:` and
    // COMMIT only there too, blank-only lines refused, a carriage return kept as text.
    if (line === '' || line.startsWith('#')) return;
    const trimmed = line.trim();
    const cr = line.indexOf('\r');
    if (cr >= 0) {
      report(cr + 1, 'carriage return in the line (CRLF line endings?): iptables-restore reads it as part of the rule');
      return;
    }
    if (trimmed === '') {
      report(1, 'a line of only blanks (iptables-restore refuses it)');
      return;
    }
    if (/^\s/.test(line) && /^(#|\*|:|COMMIT)/.test(trimmed)) {
      report(1, `${JSON.stringify(trimmed.slice(0, 12))} must start in the first column (iptables-restore reads it as a rule otherwise)`);
      return;
    }
    const cacheKey = open && opts.ruleCache ? `${family} ${open.table.name} ${line}` : undefined;
    const seen = cacheKey === undefined ? undefined : opts.ruleCache?.get(cacheKey);
    // The same line parsed fine in the same table; its chain must exist here too (else the full parse says why).
    const seenChain = seen && open ? chainFor(open.table, seen.chain) : undefined;
    if (seen && seenChain) {
      const copy: Rule = { ...seen, index: seenChain.rules.length + 1, origin: { file, line: lineNo } };
      const source = opts.sources?.[idx];
      if (source) copy.source = source;
      else delete copy.source;
      seenChain.rules.push(copy);
      return;
    }
    // Table and chain lines are split at blanks only, quotes and all; rule lines as arguments.
    const tk = line.startsWith('*') || line.startsWith(':') ? splitBlanks(line) : tokenizeLine(line);
    if ('error' in tk) {
      report(tk.col, tk.error);
      return;
    }
    let tokens = tk.tokens;
    const first = tokens[0] as Token;
    if (/^\[\d+:\d+\]$/.test(first.text)) tokens = tokens.slice(1); // `[packets:bytes] -A …`
    const head = tokens[0];
    if (!head) {
      report(first.col, 'counters without a rule');
      return;
    }

    if (head.text.startsWith('*')) {
      const name = head.text.slice(1);
      if (open) report(head.col, `*${name} before COMMIT of *${open.table.name} (line ${open.line})`);
      if (!BUILTIN_CHAINS[name]) {
        report(head.col + 1, `unknown table ${JSON.stringify(name)} (filter, nat, mangle, raw, security)`);
        open = undefined;
        return;
      }
      if (tokens.length > 1) report((tokens[1] as Token).col, 'unexpected text after the table name');
      if (tables.some((t) => t.name === name)) report(head.col, `table ${name} appears twice`);
      const table: Table = { name, chains: [] };
      tables.push(table);
      open = { table, line: lineNo };
      return;
    }
    if (head.text === 'COMMIT' || line.startsWith('COMMIT')) {
      if (line !== 'COMMIT') {
        report(head.col, 'COMMIT takes nothing after it');
        return;
      }
      if (!open) report(head.col, 'COMMIT without a *table');
      open = undefined;
      return;
    }
    if (head.text.startsWith(':')) {
      if (!open) {
        report(head.col, 'chain declaration before any *table');
        return;
      }
      const name = head.text.slice(1);
      const policy = tokens[1]?.text;
      const path = `${open.table.name}.${name}`;
      const builtin = (BUILTIN_CHAINS[open.table.name] ?? []).includes(name);
      if (!/^[^\s!"\\-][^\s"\\]{0,28}$/.test(name)) report(head.col + 1, `bad chain name ${JSON.stringify(name)}`, path);
      if (tokens[2] && !/^\[\d+:\d+\]$/.test(tokens[2].text)) report(tokens[2].col, 'expected [packets:bytes]', path);
      const polCol = tokens[1]?.col ?? head.col + head.text.length;
      if (builtin && policy !== 'ACCEPT' && policy !== 'DROP') {
        report(polCol, `unknown policy ${JSON.stringify(policy ?? '')} for built-in chain (ACCEPT or DROP)`, path);
      } else if (!builtin && policy !== '-') {
        report(polCol, `user-defined chain takes policy "-", not ${JSON.stringify(policy ?? '')}`, path);
      }
      if (open.table.chains.some((c) => c.name === name)) {
        report(head.col, `chain ${name} declared twice`, path);
        return;
      }
      const chain: Chain = { name, builtin, rules: [], origin: { file, line: lineNo } };
      if (builtin) chain.policy = policy === 'DROP' ? 'DROP' : 'ACCEPT';
      open.table.chains.push(chain);
      return;
    }
    if (head.text === '-A' || head.text === '--append') {
      if (!open) {
        report(head.col, 'rule before any *table');
        return;
      }
      const chainTok = tokens[1];
      if (!chainTok) {
        report(head.col, '-A needs a chain name');
        return;
      }
      const table = open.table;
      const chain = chainFor(table, chainTok.text);
      const path = `${table.name}.${chainTok.text}`;
      if (!chain) {
        report(chainTok.col, `chain ${chainTok.text} is not declared in *${table.name} (add :${chainTok.text} - [0:0])`, path);
        return;
      }
      const rule: Rule = {
        table: table.name,
        chain: chain.name,
        index: chain.rules.length + 1,
        unmodelled: [],
        goto: false,
        targetArgs: [],
        text: '',
        origin: { file, line: lineNo },
      };
      const source = opts.sources?.[idx];
      if (source) rule.source = source;
      const before = problems.length;
      parseRuleTokens(tokens.slice(2), rule, family, (col, message) => report(col, message, path));
      // iptables refuses an interface the hook cannot have (no output device on INPUT, no input on OUTPUT).
      const noOut = ['INPUT', 'PREROUTING'].includes(chain.name) && chain.builtin;
      const noIn = ['OUTPUT', 'POSTROUTING'].includes(chain.name) && chain.builtin;
      if ((noOut && rule.out) || (noIn && rule.in)) {
        const opt = noOut ? '-o' : '-i';
        report(tokens.find((t) => t.text === opt || t.text === (noOut ? '--out-interface' : '--in-interface'))?.col ?? 1, `can't use ${opt} with ${chain.name}`, path);
      }
      if (problems.length > before) return;
      rule.text = formatRuleSpec(rule);
      chain.rules.push(rule);
      if (cacheKey !== undefined) opts.ruleCache?.set(cacheKey, rule);
      return;
    }
    if (/^-[A-Z]$|^--[a-z-]+$/.test(head.text)) {
      report(head.col, `${head.text}: only -A rules belong in a rule set document`);
      return;
    }
    report(head.col, `unrecognised line: ${JSON.stringify(trimmed.slice(0, 40))}`);
  });
  if (open) {
    problems.push({ file, line: open.line, col: 1, path: '', message: `*${open.table.name} has no COMMIT` });
  }
  return { ruleSet: { family, tables }, problems };
}
