// A plan as text (terminal), markdown (pull-request comment) or JSON (machines).
import { Chalk } from 'chalk';
import { UsageError } from '../errors.js';
import type { HostPlan, Plan } from './plan.js';
import { compareWeights } from './importance.js';
import { planJsonChunks, streamOf, type StreamedPlan } from './streamed-plan.js';
import { formatReachMarkdown, formatReachText, type ReachReport } from './reach-report.js';
import type { PlanMatrix } from './reach-plan.js';

/** A plan's reachability diff, and what could not be compared. */
export type PlanReach = ReachReport & { notes: string[]; skipped?: boolean; matrix?: () => PlanMatrix };

/** The markdown's reachability section gets at most this share of the comment. */
const REACH_SHARE = 0.3;

function paint(color: boolean) {
  return new Chalk({ level: color ? 1 : 0 });
}

function colorPatch(patch: string, c: InstanceType<typeof Chalk>): string {
  return patch
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      if (l.startsWith('+++') || l.startsWith('---')) return c.bold(l);
      if (l.startsWith('+')) return c.green(l);
      if (l.startsWith('-')) return c.red(l);
      if (l.startsWith('@@')) return c.cyan(l);
      return l;
    })
    .join('\n');
}

function counts(h: HostPlan): string {
  const added = h.diffs.reduce((n, d) => n + d.added, 0);
  const removed = h.diffs.reduce((n, d) => n + d.removed, 0);
  return `+${added} -${removed} (${h.diffs.map((d) => d.what ?? `rules.v${d.family}`).join(', ')})`;
}

export interface TextOptions {
  color: boolean;
  showInSync?: boolean;
  /** `false` inside apply, where the plan's own exit code does not apply. */
  exitHint?: boolean;
  /** The reachability diff, printed after the hosts. */
  reach?: PlanReach;
}

/** The plan as text for a terminal (formatPlanText), in pieces: one per host. */
export function* planTextChunks(input: Plan | StreamedPlan, opts: TextOptions): Generator<string> {
  const plan = streamOf(input);
  const c = paint(opts.color);
  yield `${c.bold(`fleetfw plan: ${plan.inventory} (${plan.mode}, ${plan.summary.hosts} hosts)`)}\n\n`;
  for (const h of plan.hosts()) {
    // Each line ends with a newline; a diff (up to 400 KB for a new host's sets) is its own piece, not copied into the host's.
    let out = '';
    const line = (text: string) => (out += `${text}\n`);
    if (h.status === 'in-sync') {
      if (opts.showInSync !== false) line(`${c.dim('=')} ${h.host}: in sync`);
    } else if (h.status === 'changes') {
      line(c.yellow(`~ ${h.host}: ${counts(h)}`));
      for (const d of h.diffs) {
        yield out;
        out = '\n';
        yield opts.color ? indent(colorPatch(d.patch, c)) : indentPlain(d.patch);
      }
    } else {
      line(c.red(`! ${h.host}: ${h.status}: ${h.error ?? ''}`));
    }
    for (const p of h.preserved) line(c.dim(`    preserved (foreign): ${p}`));
    for (const n of h.notes) line(c.dim(`    note: ${n}`));
    if (h.persistedDrift) line(c.yellow('    warning: persisted rules.v4/rules.v6 differ from the live rules'));
    if (h.persistedBroken) line(c.red(`    error: ${h.persistedBroken}`));
    if (h.unpersisted) line(c.red(`    error: ${h.unpersisted}`));
    for (const w of h.warnings ?? []) line(c.yellow(`    warning: ${w}`));
    if (h.leftover) {
      const l = h.leftover;
      line(c.yellow(`    leftover transaction ${l.id} (${l.state}, watchdog ${l.watchdogAlive ? 'armed' : 'gone'}, by ${l.user} at ${l.started})`));
    }
    if (out) yield out;
  }
  if (opts.reach) {
    yield '\n';
    for (const n of opts.reach.notes) yield `${c.yellow(`note: ${n}`)}\n`;
    yield formatReachText(opts.reach)
      .split('\n')
      .map((l) => (l.startsWith('  +') ? c.green(l) : l.startsWith('  -') ? c.red(l) : l.startsWith('  ?') ? c.yellow(l) : l))
      .join('\n');
  }
  const tail = ['', summaryLine(plan), c.dim(`plan hash ${plan.planHash}`)];
  if (plan.summary.changes > 0 && opts.exitHint !== false) tail.push(c.dim('exit code 2: changes to apply'));
  yield `${tail.join('\n')}\n`;
}

export function formatPlanText(plan: Plan | StreamedPlan, opts: TextOptions): string {
  return [...planTextChunks(plan, opts)].join('');
}

export function summaryLine(plan: Pick<Plan, 'summary'>): string {
  const s = plan.summary;
  const parts = [`${s.changes} to change`, `${s.inSync} in sync`];
  if (s.unreachable) parts.push(`${s.unreachable} unreachable`);
  if (s.errors) parts.push(`${s.errors} failed`);
  return `Plan: ${parts.join(', ')}.`;
}

/** GitHub refuses a comment over 65,536 characters: the markdown plan stays under this by default. */
export const MARKDOWN_LIMIT = 65_000;
/** Below this the summary, a few hosts and the pointer to the full plan no longer fit. */
export const MARKDOWN_MIN_LIMIT = 2_000;
/** When the plan is cut, the host table takes at most this share of the room, the diffs the rest. */
const TABLE_SHARE = 0.4;
/** A host's diff gets at least this many characters (if it has them) before later hosts get any. */
const DIFF_MIN = 4_000;
/** A table cell's notes are cut beyond this (an error can be long). */
const NOTES_MAX = 300;

export interface MarkdownOptions {
  /** The most characters to print (default MARKDOWN_LIMIT). */
  limit?: number;
  /** Where the full plan is (the `--out` file), named when the comment is cut. */
  fullPlan?: string;
  /** A host's SSH port, for the order of importance (default 22). */
  sshPort?: (host: string) => number | undefined;
  /** The reachability diff: the comment's first section. */
  reach?: PlanReach;
}

/**
 * The plan as a pull-request comment: the summary, a table of the hosts that
 * change or fail, one collapsed diff per host, unchanged hosts hidden. Hosts
 * come most important first (importance.ts). A plan longer than the limit is
 * cut: the table lists the first hosts, the first diffs are shown (each cut
 * to its share), and one line counts the rest and says where the full plan is.
 */
export function formatPlanMarkdown(input: Plan | StreamedPlan, opts: MarkdownOptions = {}): string {
  const limit = opts.limit ?? MARKDOWN_LIMIT;
  const plan = streamOf(input, { sshPort: opts.sshPort });
  const shown = plan.outlines
    .filter((h) => h.status !== 'in-sync')
    .map((h) => ({ host: h.host, outline: h, weight: plan.weights.get(h.host) ?? { concern: 'other' as const, size: 0 } }))
    .sort(compareWeights);
  const reach = opts.reach ? formatReachMarkdown(opts.reach, Math.floor(limit * REACH_SHARE)) : '';
  const head = [`### fleetfw plan for ${markdownCode(plan.inventory)}`, '', `**${summaryLine(plan)}**`, ''].join('\n') + '\n' + reach;
  const hidden = plan.summary.inSync;
  const foot = `<sub>${hidden} unchanged host${hidden === 1 ? '' : 's'} hidden · ${plan.mode} plan · hash \`${plan.planHash}\`</sub>\n`;
  const tableHead = '| host | status | added | removed | notes |\n|---|---|---:|---:|---|\n';
  const rows = shown.map((s) => tableRow(s.outline));

  // The whole plan, if it fits.
  const table = rows.length > 0 ? `${tableHead}${rows.join('')}\n` : '';
  let whole = head.length + table.length + foot.length;
  const blocks: string[] = [];
  for (const s of shown) {
    if (whole > limit) break;
    if (s.outline.diffs.length === 0) continue;
    const block = detailsBlock(plan.host(s.host), Infinity)!;
    blocks.push(block.text);
    whole += block.text.length;
  }
  if (whole <= limit) return `${head}${table}${blocks.join('')}${foot}`;

  // Cut: the first hosts' rows, then the first hosts' diffs, then the count of the rest.
  const order = 'Most important first: hosts that failed or need attention, changes to the management path (SSH), changes that open access, then the rest; the largest changes first within each.\n\n';
  // The line about the rest, at its longest (every host left out: the most digits).
  const moreRoom = moreLine(shown, 0, shown.length, 0, opts.fullPlan, plan.mode).length;
  const fixed = head.length + order.length + tableHead.length + 1 + foot.length + moreRoom;
  if (fixed > limit) throw new UsageError(`a markdown plan of ${plan.inventory} needs at least ${fixed} characters, more than the limit of ${limit} (--markdown-limit)`);
  let listed = 0;
  let tableLength = 0;
  const tableRoom = Math.floor((limit - fixed) * TABLE_SHARE);
  while (listed < rows.length && tableLength + rows[listed]!.length <= tableRoom) tableLength += rows[listed++]!.length;
  let room = limit - fixed - tableLength;
  const cut: string[] = [];
  const withDiffs = shown.slice(0, listed).filter((s) => s.outline.diffs.length > 0);
  for (const [i, s] of withDiffs.entries()) {
    // An equal share of what is left for each host still to show, but enough to read.
    const share = Math.max(DIFF_MIN, Math.floor(room / (withDiffs.length - i)));
    const block = detailsBlock(plan.host(s.host), Math.min(share, room));
    if (!block) break;
    cut.push(block.text);
    room -= block.text.length;
  }
  const tableText = listed > 0 ? `${tableHead}${rows.slice(0, listed).join('')}\n` : '';
  return `${head}${order}${tableText}${cut.join('')}${moreLine(shown, listed, withDiffs.length, cut.length, opts.fullPlan, plan.mode)}${foot}`;
}

function tableRow(h: HostPlan): string {
  const added = h.diffs.reduce((n, d) => n + d.added, 0);
  const removed = h.diffs.reduce((n, d) => n + d.removed, 0);
  const notes = [h.error, ...h.preserved.map((p) => `preserved ${p}`), h.leftover && `leftover transaction ${h.leftover.id}`, ...(h.warnings ?? []).map((w) => `warning: ${w}`)]
    .filter(Boolean)
    .join('; ');
  const cell = notes.length > NOTES_MAX ? `${notes.slice(0, NOTES_MAX)}…` : notes;
  return `| ${markdownCode(h.host).replace(/\|/g, '\\|')} | ${h.status} | ${added} | ${removed} | ${markdownCell(cell)} |\n`;
}

/**
 * One host's collapsed diff, at most `max` characters: its lines in order
 * (rules files before sets), cut at a line with a note of what is left out;
 * undefined when not even its first lines fit.
 */
function detailsBlock(h: HostPlan, max: number): { text: string } | undefined {
  const open = `<details><summary><code>${escapeHtml(h.host)}</code>: ${counts(h)}</summary>\n\n`;
  const patch = h.diffs.map((d) => d.patch.trimEnd()).join('\n');
  if (max === Infinity) {
    const fence = fenceFor(patch);
    return { text: `${open}${fence}diff\n${patch}\n${fence}\n\n</details>\n\n` };
  }
  // Room for the fences (longer ones only if the rules hold backtick runs), the note and the close.
  const overhead = open.length + 2 * 8 + 'diff\n'.length + 120 + '\n\n</details>\n\n'.length;
  let end = 0;
  while (end < patch.length) {
    const next = patch.indexOf('\n', end + 1);
    const stop = next === -1 ? patch.length : next;
    if (overhead + stop > max) break;
    end = stop;
  }
  if (end === 0) return undefined;
  const shown = patch.slice(0, end);
  const fence = fenceFor(shown);
  if (fence.length > 8) return undefined;
  const left = end >= patch.length ? 0 : countLines(patch, end + 1);
  const note = left > 0 ? `_… ${left} more line${left === 1 ? '' : 's'} of this diff: in the full plan._\n\n` : '';
  return { text: `${open}${fence}diff\n${shown}\n${fence}\n\n${note}</details>\n\n` };
}

/** Lines from `from` to the end of `text` (the last without a newline counts). */
function countLines(text: string, from: number): number {
  let n = 1;
  for (let i = text.indexOf('\n', from); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** What a cut comment leaves out, and where the full plan is. */
function moreLine(shown: ReadonlyArray<{ outline: HostPlan }>, listed: number, withDiffs: number, diffsShown: number, fullPlan: string | undefined, mode: Plan['mode']): string {
  const parts: string[] = [];
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  if (listed < shown.length) {
    const rest = shown.slice(listed);
    const added = rest.reduce((n, r) => n + r.outline.diffs.reduce((m, d) => m + d.added, 0), 0);
    const removed = rest.reduce((n, r) => n + r.outline.diffs.reduce((m, d) => m + d.removed, 0), 0);
    parts.push(`**… and ${plural(rest.length, 'more host')}** (+${added} -${removed} lines), not listed.`);
  }
  if (diffsShown < withDiffs) parts.push(`The diffs of ${plural(withDiffs - diffsShown, 'listed host')} are not shown.`);
  const how = mode === 'offline' ? 'fleetfw plan --offline' : 'fleetfw plan';
  parts.push(fullPlan ? `The full plan: ${markdownCode(fullPlan)}.` : `The full plan: \`${how} --format text\`, or \`--out FILE\` to save it.`);
  return `${parts.join(' ')}\n\n`;
}

function fenceFor(text: string): string {
  // A fence longer than any backtick run in the rules (comments can hold backticks).
  return '`'.repeat(Math.max(3, longestBacktickRun(text) + 1));
}

/** The plan as JSON (the `fleetfw-plan` version 1 format), in pieces: one per host; with its reachability diff when given. */
export function planJson(plan: Plan | StreamedPlan, reach?: PlanReach): Generator<string> {
  return planJsonChunks(streamOf(plan), '', reach ? { reachability: reach } : undefined);
}

export function formatPlanJson(plan: Plan | StreamedPlan, reach?: PlanReach): string {
  return `${[...planJson(plan, reach)].join('')}\n`;
}

/** indent(colorPatch(patch)) without colour (each line indented, empty lines dropped), at about copy speed. */
function indentPlain(patch: string): string {
  // A patch's only empty line is the one after its last newline.
  const body = patch.endsWith('\n') ? patch.slice(0, -1) : patch;
  if (body.startsWith('\n') || body.endsWith('\n') || body.includes('\n\n')) return indent(body.split('\n').filter((l) => l !== '').join('\n'));
  return `    ${body.split('\n').join('\n    ')}`;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

function longestBacktickRun(text: string): number {
  return Math.max(0, ...(text.match(/`+/g) ?? []).map((r) => r.length));
}

/** Inline code that survives backticks in the text. */
export function markdownCode(text: string): string {
  const fence = '`'.repeat(longestBacktickRun(text) + 1);
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

/** Plain text in a table cell: no column break, no markup, no HTML, one line. */
export function markdownCell(text: string): string {
  return text.replace(/[\\`|*_[\]<>]/g, (ch) => `\\${ch}`).replace(/\r?\n/g, ' ');
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
