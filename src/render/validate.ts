// Every rendered rule set is read by the analyser's parser (the one plan, verify
// and apply use) before anything else sees it, and whatever it cannot read, or a
// template could only have meant otherwise, is reported as invalid input at the
// template's file:line:col. One path for render, verify, plan and apply: parseFleet
// takes the rule sets parsed here.
import type { Problem } from '../errors.js';
import type { Family } from '../model/inventory.js';
import type { Origin, Rule, RuleSet } from '../model/ruleset.js';
import { parseRuleSet } from '../analyze/parse.js';
import { tokenizeLine } from '../analyze/tokenize.js';
import { COMPLETE_MODULES, knownOptionNames } from '../analyze/rule-options.js';
import { BUILTIN_CHAINS, EXTENSION_TARGETS, MATCH_MODULES, VERDICT_TARGETS, canonicaliseProto, listIcmpNames, listRejectNames } from '../analyze/netfilter-names.js';
import { suggest } from '../inventory/suggest.js';
import { quote } from '../inventory/tokens.js';

/** One argument of a rendered line: where it was written, and what wrote it when not the template itself. */
export interface Piece {
  text: string;
  /** 1-based column in the template line (of the reference, for a substituted value). */
  col: number;
  /** `{{ group.web.private }}`, `%log-drops`: the value is not the template's own text. */
  from?: string;
}

/** A rendered family: its text and the template line of each of its lines. */
export interface RenderedText {
  text: string;
  origins: ReadonlyArray<Origin | undefined>;
}

/** The arguments of a rendered line (1-based) as render wrote them; undefined for a line fleetfw wrote itself. */
export type RenderedPieces = (line: number) => readonly Piece[] | undefined;

/** A problem found on one host's rendered rules; the same template mistake on many hosts is reported once. */
export interface Found {
  problem: Problem;
  /** `rendered web-1/rules.v4 line 16`: said once, with how many other hosts share the mistake. */
  where?: string;
  /** What makes two hosts' problems the same (default: the message), e.g. the message without the host's name. */
  same?: string;
}

/** Shared by the validations of one fleet: lines repeat from host to host. */
export interface ValidationCache {
  rules: Map<string, Rule>;
  scans: Map<string, LineScan>;
}

export function newValidationCache(): ValidationCache {
  return { rules: new Map(), scans: new Map() };
}

// The rule sets render validated, for parseFleet: one parse per rendered family.
const validated = new WeakMap<object, RuleSet>();

/**
 * Parse one host's rendered family and check it as a template must be: the
 * analyser's problems, plus jumps to chains the table does not declare, targets
 * and match modules iptables does not have, and options a fully known module
 * does not take (the analyser keeps those verbatim for live rules, fail closed).
 * A family render already validated is not parsed again.
 */
export function validateRendered(
  host: string,
  family: Family,
  rendered: RenderedText,
  cache: ValidationCache,
  pieces?: RenderedPieces,
): { ruleSet: RuleSet; found: Found[] } {
  const done = validated.get(rendered);
  if (done) return { ruleSet: done, found: [] };
  const file = `${host}/rules.v${family}`;
  const { ruleSet, problems } = parseRuleSet(rendered.text, { family, file, ruleCache: cache.rules, sources: rendered.origins });
  let lines: string[] | undefined;
  const lineText = (line: number): string => (lines ??= rendered.text.split('\n'))[line - 1] ?? '';
  // `own`: fleetfw's template checks, which word their hints themselves; the analyser's messages get one here.
  const raw: Array<{ line: number; col: number; message: string; own?: boolean }> = problems.map((p) => ({ line: p.line, col: p.col, message: p.message }));
  const badTarget = new Set<number>();

  /** The template checks of one rule line; `rule` when it parsed. */
  const check = (line: number, table: string, chains: ReadonlySet<string>, rule: Rule | undefined): void => {
    const text = lineText(line);
    const scan = scanLine(text, cache);
    if (!scan) return;
    const typos = rule && rule.unmodelled.length > 0 && scan.mayHideOption ? unknownModuleOptions(rule, scan, text) : [];
    // "-m comment needs an option" says less than "unknown option --coment after -m comment".
    for (const p of scan.problems) if (!p.alone || !typos.some((t) => t.module === p.alone)) raw.push({ line, own: true, col: p.col, message: p.message });
    for (const p of typos) raw.push({ line, own: true, col: p.col, message: p.message });
    const j = scan.jump;
    if (j && !VERDICT_TARGETS.has(j.name) && !EXTENSION_TARGETS.has(j.name) && !chains.has(j.name)) {
      badTarget.add(line);
      raw.push({ line, col: j.col, own: true, message: unknownTarget(j, table, [...chains]) });
    }
  };

  // Only what a template wrote: a saved plan's rules carry live chains (Docker, fail2ban)
  // that are judged as live rules are, and fleetfw's own lines are not the user's.
  const fromTemplate = (line: number) => rendered.origins[line - 1] !== undefined;
  const zeros = LEADING_ZERO.test(rendered.text);
  // The rules that parsed: most need no more than a glance (no unmodelled part, a
  // target that exists, no port written with a leading zero).
  for (const t of ruleSet.tables) {
    let chains: Set<string> | undefined;
    const chainsOf = () => (chains ??= new Set(t.chains.map((c) => c.name)));
    for (const c of t.chains) {
      for (const r of c.rules) {
        const line = r.origin?.line;
        if (line === undefined || !fromTemplate(line)) continue;
        const jumps = r.target !== undefined && !VERDICT_TARGETS.has(r.target) && !EXTENSION_TARGETS.has(r.target);
        if (r.unmodelled.length === 0 && !(jumps && !chainsOf().has(r.target!)) && !(zeros && LEADING_ZERO.test(lineText(line)))) continue;
        check(line, t.name, chainsOf(), r);
      }
    }
  }
  // The rule lines the parser refused: what else is wrong with them is said too.
  for (const line of new Set(problems.map((p) => p.line))) {
    const text = lineText(line);
    if (!fromTemplate(line) || !(text.startsWith('-A ') || text.startsWith('--append '))) continue;
    const name = tableAt(line, lineText);
    const t = name === undefined ? undefined : ruleSet.tables.find((x) => x.name === name);
    if (t) check(line, t.name, new Set(t.chains.map((c) => c.name)), undefined);
  }
  raw.sort((a, b) => a.line - b.line || a.col - b.col);

  const found: Found[] = [];
  for (const p of raw) {
    // "LOGG takes no options" says less than "no target LOGG" on the same line.
    if (badTarget.has(p.line) && / takes no options$/.test(p.message)) continue;
    const message = p.own ? p.message : p.message + hintFor(p.message, lineText(p.line), family, ruleSet);
    const origin = rendered.origins[p.line - 1];
    const at = origin ? templateColumn(pieces?.(p.line), p.col) : undefined;
    const where = `rendered ${file} line ${p.line}${at?.from ? `, in the value of ${at.from}` : ''}`;
    found.push({
      problem: origin ? { file: origin.file, line: origin.line, col: at?.col ?? 1, path: `hosts.${host}`, message } : { file, line: p.line, col: p.col, path: `hosts.${host}`, message },
      where,
    });
  }
  if (found.length === 0) validated.set(rendered, ruleSet);
  return { ruleSet, found };
}

/** A port-match value written with a leading zero, which iptables reads as octal. */
const LEADING_ZERO = /-(?:-d|-s|-destination-|-source-)?ports? \S*\b0\d/;

/** The table a rendered line is in: the `*table` line above it, unless a COMMIT came between. */
function tableAt(line: number, lineText: (line: number) => string): string | undefined {
  for (let i = line - 1; i >= 1; i--) {
    const text = lineText(i);
    if (text === 'COMMIT') return undefined;
    if (text.startsWith('*')) return text.slice(1).trim();
  }
  return undefined;
}

/**
 * One problem per template position and mistake: a template shared by a thousand
 * hosts fails once, naming the first host (and its rendered line) and how many
 * other hosts fail the same way. A message word for word the same on every host
 * (a reference that is not one) is simply said once.
 */
export function mergeFound(found: Found[]): Problem[] {
  const byKey = new Map<string, { f: Found; others: number; differ: boolean }>();
  for (const f of found) {
    const p = f.problem;
    const key = `${p.file}:${p.line}:${p.col}:${f.same ?? p.message}`;
    const seen = byKey.get(key);
    if (!seen) byKey.set(key, { f, others: 0, differ: false });
    else {
      seen.others++;
      seen.differ ||= p.message !== seen.f.problem.message;
    }
  }
  return [...byKey.values()].map(({ f, others, differ }) => {
    const count = others > 0 && (f.where !== undefined || differ);
    const notes = [...(f.where ? [f.where] : []), ...(count ? [`the same on ${others} other host${others === 1 ? '' : 's'}`] : [])];
    return notes.length > 0 ? { ...f.problem, message: `${f.problem.message} (${notes.join('; ')})` } : f.problem;
  });
}

/** Where a rendered column was written: the same character of a literal argument, or the reference that gave the value. */
function templateColumn(pieces: readonly Piece[] | undefined, col: number): { col: number; from?: string } | undefined {
  if (!pieces || pieces.length === 0) return undefined;
  const at = (p: Piece, offset: number) => (p.from ? { col: p.col, from: p.from } : { col: p.col + offset });
  let start = 1;
  for (let k = 0; k < pieces.length; k++) {
    const p = pieces[k]!;
    const end = start + p.text.length;
    if (col < end || k === pieces.length - 1) return at(p, Math.max(0, Math.min(col - start, p.text.length - 1)));
    start = end + 1; // render joins arguments with one space
    if (col < start) return at(pieces[k + 1]!, 0);
  }
  return undefined;
}

export interface LineScan {
  modules: Array<{ name: string; col: number }>;
  jump?: { name: string; col: number; goto: boolean };
  /** What the text alone shows: unknown match modules, unknown states; `alone`: the module given without an option. */
  problems: Array<{ col: number; message: string; alone?: string }>;
  /** A fully known module is written (or implied by -p): the parse may have kept a mistyped option of it verbatim. */
  mayHideOption: boolean;
}

/** The `-m` modules and the `-j`/`-g` target of a rule line, as iptables-restore splits it (cached by text). */
function scanLine(text: string, cache: ValidationCache): LineScan | undefined {
  const hit = cache.scans.get(text);
  if (hit) return hit;
  const tk = tokenizeLine(text);
  if ('error' in tk) return undefined; // the parser reports it
  const scan: LineScan = { modules: [], problems: [], mayHideOption: false };
  const tokens = tk.tokens;
  for (let i = 2; i < tokens.length - 1; i++) {
    const t = tokens[i]!;
    const v = tokens[i + 1]!;
    if (t.quoted) continue;
    if ((t.text === '-m' || t.text === '--match') && v.text !== '') {
      scan.modules.push({ name: v.text, col: v.col });
      if (allOptions(v.text)) scan.mayHideOption = true;
      if (!MATCH_MODULES.has(v.text)) {
        scan.problems.push({ col: v.col, message: `unknown match ${quote(`-m ${v.text}`)}${didYouMean(closest(v.text, MATCH_MODULES), (s) => `-m ${s}`)}: iptables has no such match extension` });
      }
    }
    if (t.text === '-p' || t.text === '--protocol') scan.mayHideOption ||= COMPLETE_MODULES.has(protoModule(canonicaliseProto(v.text) ?? ''));
    if (t.text === '--ctstate' || t.text === '--state') {
      const known = t.text === '--ctstate' ? CT_STATES : STATES;
      const bad = v.text.split(',').find((x) => !known.includes(x.toUpperCase()));
      if (bad !== undefined) scan.problems.push({ col: v.col, message: `unknown state ${quote(bad)} in ${t.text} ${v.text}${didYouMean(closest(bad.toUpperCase(), known))} (${known.join(', ')})` });
    }
    if (PORT_OPTIONS.has(t.text)) {
      const zero = v.text.split(/[,:]/).find((x) => /^0\d/.test(x));
      if (zero !== undefined) {
        const reads = /^0[0-7]+$/.test(zero) ? `port ${parseInt(zero, 8)}` : 'no number: it refuses the rule';
        scan.problems.push({ col: v.col, message: `port ${zero} starts with 0: iptables reads it as an octal number (${reads}); write ${Number(zero)} for port ${Number(zero)}` });
      }
    }
    if (['-j', '--jump', '-g', '--goto'].includes(t.text) && v.text !== '') scan.jump ??= { name: v.text, col: v.col, goto: t.text.startsWith('-g') || t.text === '--goto' };
  }
  for (const m of scan.modules) {
    const own = NEEDS_AN_OPTION.has(m.name) ? allOptions(m.name) : undefined;
    if (own && !tokens.some((t) => !t.quoted && own.includes(t.text))) {
      scan.problems.push({ col: m.col, alone: m.name, message: `-m ${m.name} needs one of its options (${own.join(', ')}): iptables refuses it alone` });
    }
  }
  cache.scans.set(text, scan);
  return scan;
}

const PORT_OPTIONS = new Set(['--dport', '--sport', '--destination-port', '--source-port', '--dports', '--sports', '--ports', '--destination-ports', '--source-ports']);
/** Modules iptables refuses without one of their options (`-m state` alone). */
const NEEDS_AN_OPTION = new Set(['state', 'conntrack', 'comment', 'set']);

// libxt_state and libxt_conntrack read these names (in any case); the analysis models all but SNAT and DNAT.
const STATES = ['INVALID', 'NEW', 'RELATED', 'ESTABLISHED', 'UNTRACKED'];
const CT_STATES = [...STATES, 'SNAT', 'DNAT'];

const ALL_TARGETS = [...VERDICT_TARGETS, ...EXTENSION_TARGETS];

function unknownTarget(j: { name: string; col: number; goto: boolean }, table: string, chains: string[]): string {
  const user = chains.filter((c) => !(BUILTIN_CHAINS[table] ?? []).includes(c));
  const meant = closest(j.name, [...ALL_TARGETS, ...user]);
  const opt = j.goto ? '-g' : '-j';
  if (meant) return `${opt} ${j.name}: no target or chain ${quote(j.name)} in *${table} (did you mean ${meant}?)`;
  const declared = user.length > 0 ? `declared: ${user.join(', ')}` : 'no chain declared';
  return `${opt} ${j.name}: ${j.goto ? 'goto' : 'jump'} to chain ${j.name}, which is not declared in *${table} (${declared}; declare it with :${j.name} - [0:0])`;
}

const OPTIONS = knownOptionNames();

/**
 * Every option of the modules the analysis models only in part (libxt_conntrack and
 * libxt_set of iptables 1.8.9, as `iptables -m NAME -h` lists them): the analysis keeps
 * an option it does not model verbatim, and only these lists tell a typo from one.
 */
const PARTLY_MODELLED: Record<string, readonly string[]> = {
  conntrack: ['--ctstate', '--ctproto', '--ctorigsrc', '--ctorigdst', '--ctreplsrc', '--ctrepldst', '--ctorigsrcport', '--ctorigdstport', '--ctreplsrcport', '--ctrepldstport', '--ctstatus', '--ctexpire', '--ctdir'],
  set: ['--match-set', '--set', '--return-nomatch', '--update-counters', '--update-subcounters', '--packets-eq', '--packets-lt', '--packets-gt', '--bytes-eq', '--bytes-lt', '--bytes-gt'],
};

/** Every option of a module whose options are all known, or undefined. */
function allOptions(module: string): readonly string[] | undefined {
  return COMPLETE_MODULES.has(module) ? OPTIONS.modules[module] : PARTLY_MODELLED[module];
}

/**
 * Options a module was given that no module of the rule takes, where every module of
 * the rule is one whose options are all known: the analyser keeps such a module
 * verbatim (a live rule may carry options it does not model), but in a template it is
 * a typo (`-p tcp --dport 80 --sprot 22`, `-m conntrack --ctstat NEW`).
 */
function unknownModuleOptions(rule: Rule, scan: LineScan, text: string): Array<{ col: number; message: string; module: string }> {
  const out: Array<{ col: number; message: string; module: string }> = [];
  const named = [...new Set([...scan.modules.map((m) => m.name), ...(rule.proto ? [protoModule(rule.proto.name)] : [])])];
  // A module whose options we do not all know could own the option: nothing can be said then.
  if (named.some((m) => !allOptions(m))) return out;
  const ofRule = named.flatMap((m) => allOptions(m) ?? []);
  const known = new Set([...OPTIONS.core, ...ofRule, ...(rule.target ? OPTIONS.targets[rule.target] ?? [] : [])]);
  for (const entry of rule.unmodelled) {
    const m = /^-m (\S+)/.exec(entry);
    const takes = m ? allOptions(m[1]!) : undefined;
    if (!m || !takes) continue;
    const module = m[1]!;
    const written = scan.modules.find((x) => x.name === module);
    const shown = written ? `-m ${module}` : `-p ${rule.proto?.name ?? module}`;
    // After `-A CHAIN`, from the module on (an implicit protocol match: from the start).
    const tk = tokenizeLine(text);
    for (const t of 'tokens' in tk ? tk.tokens.slice(2) : []) {
      if (scan.jump && t.col > scan.jump.col) break; // the target's own options
      if (t.quoted || t.col < (written?.col ?? 0) || !/^--?[A-Za-z]/.test(t.text) || known.has(t.text)) continue;
      const near = closest(t.text, takes) ?? closest(t.text, ofRule);
      const hint = near ? ` (did you mean ${near}?)` : optionOwner(t.text) ?? ` (${shown} takes ${takes.join(', ')})`;
      out.push({ col: t.col, module, message: `unknown option ${t.text} after ${shown}${hint}` });
      break;
    }
  }
  return out;
}

/** ` (write -p tcp before it)` when `word` is an option of a module or target the rule lacks. */
function optionOwner(word: string): string | undefined {
  const owners = Object.entries(OPTIONS.modules).filter(([, names]) => names.includes(word)).map(([module]) => module);
  const protos = owners.filter((x) => x === 'tcp' || x === 'udp');
  if (protos.length > 0) return ` (write ${protos.map((x) => `-p ${x}`).join(' or ')} before it)`;
  if (owners.length > 0) return ` (write ${owners.map((x) => `-m ${x}`).join(' or ')} before it)`;
  const partly = Object.entries(PARTLY_MODELLED).filter(([, names]) => names.includes(word)).map(([module]) => `-m ${module}`);
  if (partly.length > 0) return ` (write ${partly.join(' or ')} before it)`;
  const targets = Object.entries(OPTIONS.targets).filter(([, names]) => names.includes(word)).map(([target]) => `-j ${target}`);
  if (targets.length > 0) return ` (an option of ${targets.join(' or ')}: write it after the target)`;
  return undefined;
}

/**
 * The name meant: a case slip, two swapped neighbours (`tpc` is `tcp`, not `bpf`), the
 * one name the word abbreviates, else the closest within edit distance 2 (1 for short
 * words: `WEB` is not `TEE`).
 */
function closest(word: string, names: Iterable<string>): string | undefined {
  const list = [...names].filter((n) => n !== word);
  // The same mistake comes back once per host: each answer is worked out once.
  const key = `${word}\0${list.join('\0')}`;
  if (closestSeen.has(key)) return closestSeen.get(key);
  const meant = closestOf(word, list);
  if (closestSeen.size > 10_000) closestSeen.clear();
  closestSeen.set(key, meant);
  return meant;
}
const closestSeen = new Map<string, string | undefined>();

function closestOf(word: string, list: string[]): string | undefined {
  const exact = list.find((n) => n.toLowerCase() === word.toLowerCase());
  if (exact) return exact;
  const swapped = list.find((n) => {
    if (n.length !== word.length) return false;
    const diff = [...n].flatMap((c, i) => (c === word[i] ? [] : [i]));
    return diff.length === 2 && diff[1] === diff[0]! + 1 && n[diff[0]!] === word[diff[1]!] && n[diff[1]!] === word[diff[0]!];
  });
  if (swapped) return swapped;
  const longer = word.length >= 3 ? list.filter((n) => n.startsWith(word)) : [];
  if (longer.length === 1) return longer[0];
  const near = suggest(word, list);
  return near !== undefined && (word.length > 4 || oneEditApart(word, near)) ? near : undefined;
}

function oneEditApart(a: string, b: string): boolean {
  if (Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return a.slice(i + (a.length >= b.length ? 1 : 0)) === b.slice(i + (b.length >= a.length ? 1 : 0));
}

function protoModule(proto: string): string {
  return proto === 'ipv6-icmp' ? 'icmp6' : proto;
}

function didYouMean(s: string | undefined, shape: (s: string) => string = (x) => x): string {
  return s ? ` (did you mean ${shape(s)}?)` : '';
}

const PROTOCOLS = ['tcp', 'udp', 'icmp', 'ipv6-icmp', 'icmpv6', 'all', 'sctp', 'udplite', 'esp', 'ah', 'gre'].filter((p) => canonicaliseProto(p));

/** A "did you mean" for the analyser's messages that name something unknown. */
function hintFor(message: string, text: string, family: Family, ruleSet: RuleSet): string {
  let m = /^unknown option (\S+)/.exec(message);
  if (m) {
    const word = m[1]!;
    const tokens = text.split(/\s+/);
    const modules = new Set<string>();
    tokens.forEach((t, i) => {
      const v = tokens[i + 1];
      if ((t === '-m' || t === '--match') && v) modules.add(v);
      if ((t === '-p' || t === '--protocol') && v) modules.add(protoModule(canonicaliseProto(v) ?? v));
    });
    const local = [...OPTIONS.core, ...[...modules].flatMap((x) => allOptions(x) ?? OPTIONS.modules[x] ?? [])];
    const owner = optionOwner(word);
    if (owner) return owner;
    const near = closest(word, local);
    if (near) return ` (did you mean ${near}?)`;
    for (const [module, names] of [...Object.entries(OPTIONS.modules), ...Object.entries(PARTLY_MODELLED)]) {
      const s = closest(word, names);
      if (s) return ` (did you mean ${s}, an option of -m ${module}${module === 'tcp' || module === 'udp' ? ` or -p ${module}` : ''}?)`;
    }
    return '';
  }
  m = /^(\S+) has no option (\S+)/.exec(message);
  if (m) return didYouMean(closest(m[2]!, OPTIONS.targets[m[1]!] ?? []));
  m = /^chain (\S+) is not declared in \*(\S+)/.exec(message);
  if (m) return didYouMean(closest(m[1]!, ruleSet.tables.find((t) => t.name === m![2])?.chains.map((c) => c.name) ?? BUILTIN_CHAINS[m[2]!] ?? []));
  m = /^unknown protocol: (\S+)/.exec(message);
  if (m) return didYouMean(closest(m[1]!.toLowerCase(), PROTOCOLS));
  m = /^unknown --reject-with for IPv\d: (\S+)/.exec(message);
  if (m) return didYouMean(closest(m[1]!, listRejectNames(family)));
  m = /^unknown ICMP(?:v6)? type: (\S+)/.exec(message);
  if (m) return didYouMean(closest(m[1]!, listIcmpNames(family)));
  return '';
}
