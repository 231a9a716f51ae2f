// Send each command only the part of the host script its verbs need (issue #16):
// every connection's login shell parses the whole command line, then sh parses the
// script again, and a plan sends it to every host. The script's top level is
// function definitions, variable assignments (among them the long single-quoted
// programs, CANON_AWK='...') and a few statements. For a set of verbs this keeps
// every statement that is neither a function nor a quoted string, and the functions
// and strings they reach, starting from those statements, the dispatcher and the
// verbs' cmd_ functions. Conservative: a name counts as used wherever it appears as
// a word in the text that is sent (code, trap strings, programs run by eval, sh -c,
// awk: too many is only bytes, too few would be a bug). The dispatcher's (and the
// top level's) calls of cmd_ functions are its routes, not uses: a verb that was
// not sent gets a stub that says so (exit 64, the usage code), never "not found".
import { FleetError } from '../errors.js';

export type BlockKind = 'function' | 'string' | 'other';

export interface Block {
  kind: BlockKind;
  /** The function's or variable's name. */
  name?: string;
  /** Its lines, with the comment and blank lines just before it. */
  text: string;
}

const FUNCTION = /^([A-Za-z_][A-Za-z0-9_]*)\(\)\s*\{(.*)$/;
const STRING = /^([A-Za-z_][A-Za-z0-9_]*)='/;
const WORD = /[A-Za-z_][A-Za-z0-9_]*/g;
const DISPATCHER = 'dispatch';
/** The function the stubs of verbs not sent call. */
const STUB = 'unsent';
/** Shorter strings are kept whatever uses them: a few bytes, and one reason less to be wrong. */
const MIN_STRING = 256;
const SPECIAL = /^(IFS|PATH|CDPATH|ENV|BASH_ENV|HOME|SHELL|TMPDIR|TZ|LANG|LANGUAGE|LC_[A-Z_]+|PS[1-4]|OPTIND|OPTARG|POSIXLY_CORRECT|FLEETFW_[A-Z0-9_]+)$/;
/** A case arm on one line of the dispatcher: `verb) ...` or `a|b) ...`. */
const ARM = /^([a-z][a-z0-9-]*(?:\|[a-z][a-z0-9-]*)*)\)(.*)$/;

/**
 * Where the statement starting at `from` ends: the first newline outside quotes and
 * not escaped (sh quoting: '...', "...", \x; comments at a word's start). Returns the
 * index of that newline, or text.length.
 */
function statementEnd(text: string, from: number): number {
  let i = from;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '\n') return i;
    if (c === '\\') i += 2;
    else if (c === "'") {
      const close = text.indexOf("'", i + 1);
      if (close < 0) throw new FleetError('host script: unterminated single quote at the top level');
      i = close + 1;
    } else if (c === '"') {
      i++;
      while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      if (i >= text.length) throw new FleetError('host script: unterminated double quote at the top level');
      i++;
    } else if (c === '#' && (i === from || /\s/.test(text[i - 1]!))) {
      const nl = text.indexOf('\n', i);
      return nl < 0 ? text.length : nl;
    } else i++;
  }
  return i;
}

/** The script's top level, in order; joined, the blocks give the text back. */
export function topLevel(script: string): Block[] {
  const blocks: Block[] = [];
  const lines = script.split('\n');
  // Offsets of line starts, for statements that span lines (quoted strings).
  const starts: number[] = [];
  for (let i = 0, at = 0; i < lines.length; at += lines[i]!.length + 1, i++) starts.push(at);
  let pending: string[] = [];
  const push = (kind: BlockKind, from: number, to: number, name?: string) => {
    blocks.push({ kind, ...(name === undefined ? {} : { name }), text: [...pending, ...lines.slice(from, to)].join('\n') });
    pending = [];
  };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (/^\s*(#.*)?$/.test(line)) {
      pending.push(line);
      i++;
      continue;
    }
    const fn = FUNCTION.exec(line);
    if (fn) {
      const rest = fn[2]!.trim();
      if (rest.endsWith('}') && !rest.startsWith('#')) {
        push('function', i, i + 1, fn[1]);
        i++;
        continue;
      }
      let j = i + 1;
      while (j < lines.length && !/^\}\s*(#.*)?$/.test(lines[j]!)) {
        if (FUNCTION.test(lines[j]!)) throw new FleetError(`host script: function ${fn[1]} has no closing brace at column 0 before ${lines[j]}`);
        j++;
      }
      if (j >= lines.length) throw new FleetError(`host script: function ${fn[1]} does not end`);
      push('function', i, j + 1, fn[1]);
      i = j + 1;
      continue;
    }
    // Any other statement, to its end (a quoted string may span lines).
    const end = statementEnd(script, starts[i]!);
    let j = i;
    while (j + 1 < lines.length && starts[j + 1]! <= end) j++;
    // NAME='...' alone (quoted parts only, nothing run), long enough to matter and no
    // variable the shell or a tool reads by itself: a string, kept only if used.
    const str = STRING.exec(line);
    const value = str ? script.slice(starts[i]! + str[0].length - 1, end) : '';
    if (str && value.length >= MIN_STRING && !SPECIAL.test(str[1]!) && isQuotedWord(value)) push('string', i, j + 1, str[1]);
    else push('other', i, j + 1);
    i = j + 1;
  }
  if (pending.length > 0) blocks.push({ kind: 'other', text: pending.join('\n') });
  return blocks;
}

/** Is `w` one shell word of quoted parts only ('...', "..."), so that assigning it runs nothing? */
function isQuotedWord(w: string): boolean {
  let i = 0;
  while (i < w.length) {
    if (w[i] === "'") {
      const close = w.indexOf("'", i + 1);
      if (close < 0) return false;
      i = close + 1;
    } else if (w[i] === '"') {
      i++;
      while (i < w.length && w[i] !== '"') {
        if (w[i] === '\\') i++;
        else if (w[i] === '$' && w[i + 1] === '(') return false;
        else if (w[i] === '`') return false;
        i++;
      }
      if (i >= w.length) return false;
      i++;
    } else return false;
  }
  return true;
}

/** Lines as sent (see compactScript in run.ts): no indentation, comment or blank line. */
function compactLines(text: string): string {
  return text
    .split('\n')
    .map((l) => l.trimStart())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .join('\n');
}

const wordsOf = (text: string): Set<string> => new Set(compactLines(text).match(WORD) ?? []);
/** The dispatcher's words but its arms' patterns (verb names, not commands: `listeners)`). */
const dispatcherWords = (text: string): Set<string> =>
  new Set(
    compactLines(text)
      .split('\n')
      .flatMap((l) => (ARM.exec(l)?.[2] ?? l).match(WORD) ?? []),
  );

/** The verbs the script knows (the dispatcher's arms, and cmd_ functions the top level calls), each with the cmd_ functions it runs. */
export function scriptVerbs(script: string): Map<string, string[]> {
  return analyse(topLevel(script)).verbs;
}

interface Analysis {
  blocks: Block[];
  /** Each name's definitions (a name defined twice, or as a function and a string, keeps both). */
  defined: Map<string, Block[]>;
  uses: Map<Block, Set<string>>;
  verbs: Map<string, string[]>;
  /** cmd_ functions the dispatcher or the top level calls. */
  routes: Set<string>;
}

function analyse(blocks: Block[]): Analysis {
  const defined = new Map<string, Block[]>();
  for (const b of blocks) if (b.kind !== 'other' && b.name !== undefined) defined.set(b.name, [...(defined.get(b.name) ?? []), b]);
  const dispatchers = defined.get(DISPATCHER) ?? [];
  if (dispatchers.length !== 1 || dispatchers[0]!.kind !== 'function') throw new FleetError(`host script: not one ${DISPATCHER} function`);
  if (defined.has(STUB)) throw new FleetError(`host script: ${STUB} is the shaker's own name`);
  const dispatcher = dispatchers[0]!;
  const isCmd = (w: string) => w.startsWith('cmd_') && (defined.get(w) ?? []).every((b) => b.kind === 'function');
  const uses = new Map<Block, Set<string>>();
  const routes = new Set<string>();
  for (const b of blocks) {
    const words = b === dispatcher ? dispatcherWords(b.text) : wordsOf(b.text);
    const used = new Set<string>();
    const routing = b.kind === 'other' || b === dispatcher;
    for (const w of words) {
      if (w === b.name || !defined.has(w)) continue;
      if (routing && isCmd(w)) routes.add(w);
      else used.add(w);
    }
    uses.set(b, used);
  }
  const verbs = new Map<string, string[]>();
  for (const line of compactLines(dispatcher.text).split('\n')) {
    const arm = ARM.exec(line);
    if (!arm) continue;
    const cmds = (arm[2]!.match(WORD) ?? []).filter(isCmd);
    for (const v of arm[1]!.split('|')) verbs.set(v, cmds);
  }
  for (const r of routes) {
    const v = r.slice(4).replace(/_/g, '-');
    if (![...verbs.values()].some((c) => c.includes(r))) verbs.set(v, [r]);
  }
  return { blocks, defined, uses, verbs, routes };
}

/**
 * The script with only what `verbs` need (see the header); verbs the script does not
 * know are ignored (its dispatcher refuses them). In the order of the script, with
 * the comments of what it keeps: compact it to send it.
 */
export function shakeScript(script: string, verbs: readonly string[]): string {
  const a = analyse(topLevel(script));
  const wanted = [...new Set(verbs)].filter((v) => a.verbs.has(v)).sort();
  const roots = new Set<string>(wanted.flatMap((v) => a.verbs.get(v)!));
  const keep = new Set<Block>();
  const queue: Block[] = [];
  const reach = (b: Block) => {
    if (keep.has(b)) return;
    keep.add(b);
    queue.push(b);
  };
  for (const b of a.blocks) if (b.kind === 'other' || b.name === DISPATCHER) reach(b);
  for (const r of roots) a.defined.get(r)!.forEach(reach);
  while (queue.length > 0) for (const w of a.uses.get(queue.shift()!)!) a.defined.get(w)!.forEach(reach);
  const missing = [...a.routes].filter((r) => !a.defined.get(r)!.some((b) => keep.has(b))).sort();
  const stubs =
    missing.length === 0
      ? []
      : [
          `# Verbs this script was not sent for (its verbs: ${wanted.join(' ') || 'none'}).`,
          `${STUB}() { echo "fleetfw-host: verb $1 is not in the script fleetfw sent for ${wanted.join(' ') || 'nothing'}" >&2; exit 64; }`,
          ...missing.map((r) => `${r}() { ${STUB} ${r.slice(4).replace(/_/g, '-')}; }`),
        ];
  const out: string[] = [];
  for (const b of a.blocks) {
    if (b.name === DISPATCHER && b.kind === 'function') out.push(...stubs);
    if (keep.has(b)) out.push(b.text);
  }
  return out.join('\n');
}
