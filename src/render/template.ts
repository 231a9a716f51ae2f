// Parse a template file (iptables-restore syntax plus two directives) into
// table sections. Pure: the caller reads the file.
import type { Problem } from '../errors.js';
import { suggest } from '../inventory/suggest.js';
import { quote } from '../inventory/tokens.js';

export interface TemplateLine {
  /** The line as written (trailing spaces trimmed). */
  text: string;
  line: number;
  /** Columns of leading white space, so messages point into the file as written. */
  indent: number;
  kind: 'comment' | 'chain' | 'rule' | 'roles' | 'log-drops';
  /** For `%log-drops`: what to log and how often. */
  logDrops?: LogDrops;
}

/** `%log-drops CHAIN [RATE] ["PREFIX"]`: seed 000's rate-limited LOG of what CHAIN is about to drop. */
export interface LogDrops {
  chain: string;
  /** `-m limit --limit` value, e.g. `60/min`. */
  rate: string;
  prefix: string;
}

/** The user chain the directive jumps to; one per table, holding the LOG rule. */
export const LOG_DROPS_CHAIN = 'LOG-DROPS';
export const LOG_DROPS_DEFAULTS = { rate: '60/min', prefix: 'fleetfw DROP: ' } as const;

/** Parse the directive's arguments; a string is the problem. */
export function parseLogDrops(text: string): LogDrops | string {
  const m = /^%log-drops(?:\s+([A-Za-z][A-Za-z0-9_-]*))?(?:\s+(\d+\/[a-z]+))?(?:\s+"([^"]*)")?$/.exec(text);
  if (!m || !m[1]) return 'expected %log-drops CHAIN [RATE] ["PREFIX"], e.g. %log-drops INPUT 60/min "fleetfw DROP: "';
  const rate = m[2] ?? LOG_DROPS_DEFAULTS.rate;
  if (!/^[1-9]\d{0,5}\/(s|sec|second|m|min|minute|h|hour|d|day)$/.test(rate)) return `bad rate ${quote(rate)} (like 60/min, 1/sec, 100/hour)`;
  const prefix = m[3] ?? LOG_DROPS_DEFAULTS.prefix;
  // The kernel keeps 29 characters; quotes or backslashes would need escaping in iptables-save.
  if (prefix.length < 1 || prefix.length > 29 || !/^[A-Za-z0-9 _.:=/-]+$/.test(prefix)) return `bad prefix ${quote(prefix)} (1 to 29 of A-Z a-z 0-9 space _ . : = / -)`;
  return { chain: m[1], rate, prefix };
}

export interface TemplateSection {
  table: string;
  line: number;
  lines: TemplateLine[];
}

export interface Template {
  /** Path shown in messages and provenance, e.g. `templates/roles/db.v4`. */
  file: string;
  /** Comment lines before the first table (the template's own description). */
  preamble: string[];
  sections: TemplateSection[];
  /** `%management off`: the template owns the management path. */
  managementOff: boolean;
  /**
   * What is wrong with the file itself (as parseTemplate returns them): renderFleet reports
   * them together with every reference and rule problem of every template.
   */
  problems?: Problem[];
}

const TABLES = new Set(['filter', 'nat', 'mangle', 'raw', 'security']);

export function parseTemplate(text: string, file: string): { template: Template; problems: Problem[] } {
  const problems: Problem[] = [];
  const template: Template = { file, preamble: [], sections: [], managementOff: false, problems };
  const problem = (line: number, col: number, message: string) =>
    problems.push({ file, line, col, path: '', message });
  let current: TemplateSection | undefined;
  // An unknown table's lines are read (their own mistakes are still reported once) but never rendered.
  let unknownTable = false;

  if (text.startsWith('\uFEFF')) {
    problem(1, 1, 'byte order mark (U+FEFF) at the start of the file: iptables-restore reads it as part of the first line; save the file without it');
    text = text.slice(1);
  }
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const text = raw.replace(/\s+$/, '');
    const trimmed = text.trimStart();
    const col = text.length - trimmed.length + 1;
    if (trimmed === '') return;
    if (trimmed.startsWith('#')) {
      if (current) current.lines.push({ text: trimmed, line, indent: col - 1, kind: 'comment' });
      else template.preamble.push(trimmed);
      return;
    }
    if (trimmed.startsWith('%')) {
      if (trimmed === '%management off') template.managementOff = true;
      else if (/^%log-drops\b/.test(trimmed)) {
        const d = parseLogDrops(trimmed);
        if (typeof d === 'string') problem(line, col, d);
        else if (current?.table !== 'filter') problem(line, col, '%log-drops must be inside the *filter table');
        else current.lines.push({ text: trimmed, line, indent: col - 1, kind: 'log-drops', logDrops: d });
      }
      else if (trimmed === '%roles' && current) current.lines.push({ text: trimmed, line, indent: col - 1, kind: 'roles' });
      else if (trimmed === '%roles') problem(line, col, '%roles must be inside a table (after *filter)');
      else {
        const word = trimmed.split(/\s+/)[0]!;
        const hint = suggest(word, ['%roles', '%management', '%log-drops']);
        problem(line, col, `unknown directive ${quote(trimmed)}${hint ? ` (did you mean ${hint === '%management' ? '%management off' : hint}?)` : ''} (known: %roles, %management off, %log-drops)`);
      }
      return;
    }
    if (trimmed.startsWith('*')) {
      const table = trimmed.slice(1);
      if (current) problem(line, col, `table ${quote(`*${table}`)} starts before COMMIT of *${current.table} (line ${current.line})`);
      unknownTable = !TABLES.has(table);
      if (unknownTable) {
        const hint = suggest(table.toLowerCase(), TABLES) ?? (TABLES.has(table.toLowerCase()) ? table.toLowerCase() : undefined);
        problem(line, col, `unknown table ${quote(`*${table}`)}${hint ? ` (did you mean *${hint}?)` : ''} (known: ${[...TABLES].map((t) => `*${t}`).join(', ')})`);
      }
      current = { table, line, lines: [] };
      return;
    }
    if (trimmed === 'COMMIT') {
      if (!current) problem(line, col, 'COMMIT without a table');
      else if (!unknownTable) template.sections.push(current);
      current = undefined;
      return;
    }
    if (!current) {
      problem(line, col, 'rule outside a table: start the table with a line like *filter');
      return;
    }
    if (trimmed.startsWith(':')) current.lines.push({ text: trimmed, line, indent: col - 1, kind: 'chain' });
    else if (/^-A[ \t]/.test(trimmed)) current.lines.push({ text: trimmed, line, indent: col - 1, kind: 'rule' });
    else if (/^(-[IRDNXPEFZL]|--(insert|replace|delete|new-chain|delete-chain|policy|rename-chain|flush|zero|list))([ \t]|$)/.test(trimmed)) {
      problem(line, col, `${trimmed.split(/[ \t]/)[0]}: a template appends rules in order (-A CHAIN …) and declares chains (:CHAIN POLICY [0:0])`);
    } else problem(line, col, `expected a rule (-A CHAIN …), a chain (:CHAIN POLICY) or COMMIT, got ${quote(trimmed.slice(0, 40))}`);
  });
  if (current) problem(current.line, 1, `table *${current.table} has no COMMIT`);
  return { template, problems };
}

/** Chain name declared by a `:NAME POLICY [p:b]` line. */
export function declaredChain(line: TemplateLine): string {
  return line.text.slice(1).split(/\s+/)[0] ?? '';
}
