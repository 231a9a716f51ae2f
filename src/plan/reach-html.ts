// The plan as one self-contained HTML page: who can reach whom (reach-matrix.ts)
// before and after, changed cells highlighted, then the plan's reachability lines
// and its hosts. Inline CSS only, no script, no reference to anything outside the
// file, every inventory-derived text escaped: it is kept as a CI artifact and
// opened from disk.
import type { Interval } from '../analyze/prove.js';
import type { MatrixAxis, MatrixCell, MatrixEntry, MatrixPorts, ReachMatrix } from '../analyze/reach-matrix.js';
import type { Plan } from './plan.js';
import type { PlanMatrix } from './reach-plan.js';
import { formatPorts, formatReachLine, reachCounts, type ReachLine } from './reach-report.js';
import { summaryLine, type PlanReach } from './report.js';
import { outlinesOf, type StreamedPlan } from './streamed-plan.js';

/** Past these, the lists are cut (the text and JSON plans hold them whole). */
const MAX_LINES = 500;
const MAX_HOSTS = 200;

const ENTITY: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text for an element or a quoted attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITY[c]!);
}

const CSS = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #59636e; --bg: #fff; --line: #d1d9e0; --head: #f6f8fa;
  --open: #d2f4da; --open-fg: #0f5c25; --close: #ffdcd9; --close-fg: #8f1d12; --unknown: #ffeab0; --unknown-fg: #6b4a00; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117; --line: #3d444d; --head: #151b23;
    --open: #12391e; --open-fg: #7ee2a1; --close: #4a1714; --close-fg: #ffaba3; --unknown: #3f2f05; --unknown-fg: #f2cc60; }
}
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 28px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; } h3 { font-size: 14px; margin: 18px 0 6px; }
code, .mono, td.cell { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
.summary { color: var(--muted); margin: 0; }
.summary b { color: var(--fg); }
.warn { background: var(--unknown); color: var(--unknown-fg); padding: 8px 12px; border-radius: 6px; }
table { border-collapse: collapse; }
table.matrix { margin-top: 4px; }
.matrix th, .matrix td { border: 1px solid var(--line); padding: 6px 10px; vertical-align: top; text-align: left; }
.matrix caption { text-align: left; padding: 0 0 6px; }
.matrix thead th { background: var(--head); white-space: nowrap; }
.matrix thead .corner { color: var(--muted); background: var(--head); white-space: nowrap; }
.matrix tbody th { background: var(--head); white-space: nowrap; }
.matrix small, .hosts small { display: block; color: var(--muted); font-weight: normal; font-size: 12px; }
td.cell { min-width: 9em; }
td.na { color: var(--muted); text-align: center; }
td.none { color: var(--muted); }
td.open { background: var(--open); } td.close { background: var(--close); } td.unknown { background: var(--unknown); }
td.mixed { background: linear-gradient(135deg, var(--open) 50%, var(--close) 50%); }
.entry { white-space: nowrap; }
.proto { color: var(--muted); }
.was { color: var(--muted); text-decoration: line-through; }
.tag { font-size: 11px; padding: 0 4px; border-radius: 3px; border: 1px solid var(--line); color: var(--muted); margin-left: 2px; }
.d { display: block; font-weight: 600; }
.d-open { color: var(--open-fg); } .d-close { color: var(--close-fg); } .d-unknown { color: var(--unknown-fg); }
.pairs { display: block; color: var(--muted); font-size: 12px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 10px 0 0; padding: 0; list-style: none; color: var(--muted); max-width: 72em; }
.swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid var(--line); vertical-align: -1px; margin-right: 5px; }
.swatch.open { background: var(--open); } .swatch.close { background: var(--close); } .swatch.unknown { background: var(--unknown); }
.swatch.mixed { background: linear-gradient(135deg, var(--open) 50%, var(--close) 50%); }
.meaning { color: var(--muted); max-width: 72em; margin: 8px 0 0; }
ul.lines { list-style: none; padding: 0; margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
ul.lines li { padding: 1px 6px; border-left: 3px solid transparent; }
ul.lines li.open { border-color: var(--open-fg); } ul.lines li.close { border-color: var(--close-fg); } ul.lines li.unknown { border-color: var(--unknown-fg); }
.mark { font-family: system-ui, sans-serif; font-size: 11px; padding: 0 5px; border-radius: 8px; background: var(--unknown); color: var(--unknown-fg); margin-left: 4px; }
.mark.internet { background: var(--close); color: var(--close-fg); }
.hosts th, .hosts td { border-bottom: 1px solid var(--line); padding: 3px 14px 3px 0; text-align: left; }
`;

const CHANGE_WORD: Record<'open' | 'close' | 'unknown', string> = { open: 'opened', close: 'closed', unknown: 'cannot tell' };
const SIGN: Record<'open' | 'close' | 'unknown', string> = { open: '+', close: '−', unknown: '?' };
const MARK_TEXT: Record<ReachLine['marks'][number], string> = { internet: 'internet', management: 'management', wide: 'wider than any group' };

const protoName = (e: Pick<MatrixEntry, 'proto' | 'family'>) => `${e.proto}${e.family === 6 ? '6' : ''}`;
const portsText = (ps: ReadonlyArray<Interval<number>>) => formatPorts(ps);

/** Ports by how many pairs reach them: `22,80 3306 some`. */
function reachText(ps: readonly MatrixPorts[], html: boolean): string {
  if (ps.length === 0) return html ? '<span class="proto">none</span>' : 'none';
  const parts: string[] = [];
  for (const reach of ['all', 'some', 'unknown'] as const) {
    const ports = ps.filter((p) => p.reach === reach).map((p) => p.ports);
    if (ports.length === 0) continue;
    const tag = reach === 'all' ? '' : reach === 'some' ? 'some' : '?';
    parts.push(html ? `${portsText(ports)}${tag ? `<span class="tag">${tag}</span>` : ''}` : `${portsText(ports)}${tag ? ` (${reach === 'some' ? 'some pairs' : 'cannot tell'})` : ''}`);
  }
  return parts.join(' ');
}

function cellClass(entries: readonly MatrixEntry[]): 'open' | 'close' | 'unknown' | 'mixed' | 'same' {
  const has = (k: 'open' | 'close' | 'unknown') => entries.some((e) => e[k].length > 0);
  if (has('unknown')) return 'unknown';
  if (has('open') && has('close')) return 'mixed';
  return has('open') ? 'open' : has('close') ? 'close' : 'same';
}

const same = (a: readonly MatrixPorts[], b: readonly MatrixPorts[]) => JSON.stringify(a) === JSON.stringify(b);

function formatCell(row: MatrixAxis, col: MatrixAxis, cell: MatrixCell): string {
  const where = `${row.name} → ${col.name}`;
  if (cell.pairs.before === 0 && cell.pairs.after === 0) return `<td class="cell na" title="${escapeHtml(`${where}: no pair of distinct hosts`)}">—</td>`;
  const kind = cellClass(cell.entries);
  if (cell.entries.length === 0) return `<td class="cell none" title="${escapeHtml(`${where}: nothing reached, before or after`)}">·</td>`;
  const title: string[] = [where];
  const body = cell.entries.map((e) => {
    const changes = (['open', 'close', 'unknown'] as const).filter((k) => e[k].length > 0);
    const moved = !same(e.before, e.after);
    title.push(`${protoName(e)}: ${moved ? `${reachText(e.before, false)} → ${reachText(e.after, false)}` : reachText(e.after, false)}${changes.map((k) => `; ${CHANGE_WORD[k]} for some pair: ${portsText(e[k])}`).join('')}`);
    const now = moved ? `<span class="was">${reachText(e.before, true)}</span> → ${reachText(e.after, true)}` : reachText(e.after, true);
    const diff = changes.map((k) => `<span class="d d-${k}">${SIGN[k]} ${portsText(e[k])}<span class="proto">/${protoName(e)}</span></span>`).join('');
    return `<div class="entry"><span class="proto">${protoName(e)}</span> ${now}${diff}</div>`;
  });
  const counted = cell.pairs.before !== cell.pairs.after ? `<span class="pairs">${cell.pairs.before} → ${cell.pairs.after} pairs</span>` : '';
  if (cell.pairs.before !== cell.pairs.after) title.push(`${cell.pairs.before} → ${cell.pairs.after} pairs`);
  return `<td class="cell ${kind}" title="${escapeHtml(title.join('\n'))}">${body.join('')}${counted}</td>`;
}

function axisHead(a: MatrixAxis, scope: 'row' | 'col'): string {
  const what =
    a.kind === 'any' ? (a.side === 'public' ? 'the internet' : 'the private network') : a.kind === 'external' ? `external, ${a.side}` : a.kind === 'host' ? 'host' : `${a.members.length} host${a.members.length === 1 ? '' : 's'}`;
  const members = a.kind === 'group' ? ` title="${escapeHtml(a.members.join(', '))}"` : '';
  return `<th scope="${scope}"${members}>${escapeHtml(a.name)}<small>${escapeHtml(what)}</small></th>`;
}

function formatMatrix(m: ReachMatrix): string {
  const head = `<tr><td class="corner">from ↓ &nbsp; to →</td>${m.columns.map((c) => axisHead(c, 'col')).join('')}</tr>`;
  const rows = m.rows.map((r, i) => `<tr>${axisHead(r, 'row')}${m.columns.map((c, j) => formatCell(r, c, m.cells[i]![j]!)).join('')}</tr>`);
  return `<table class="matrix">
<caption class="meaning">Destination ports each source can open a connection to, before → after this plan.</caption>
<thead>${head}</thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>
<ul class="legend">
<li><span class="swatch open"></span>opened for some pair (+)</li>
<li><span class="swatch close"></span>closed for some pair (−)</li>
<li><span class="swatch mixed"></span>both</li>
<li><span class="swatch unknown"></span>fleetfw cannot tell (?)</li>
<li><code>*</code> every port</li>
<li><span class="tag">some</span> only some pairs</li>
<li><span class="was">struck</span> before</li>
<li>· nothing &nbsp; — no pair</li>
</ul>
<p class="meaning">Groups are the inventory's, as it is now. A cell holds every pair of a host of its row and a host of its column (a host never with itself; a host that does not exist before or after is in no pair then). A port is listed when every pair can open a connection to it, through either address of the destination, for every packet of the class (proven on the rules, as the reachability lines are); <span class="tag">some</span> when only some pairs can and the others are proven not to; <span class="tag">?</span> when not every pair can and fleetfw cannot tell for some. Any other address: every address no host or external of that side has, arriving on that side. The colour shows what the plan changes for any pair in the cell, so a new host reaching what its group already reached is highlighted too.</p>`;
}

function formatLines(lines: readonly ReachLine[]): string {
  const shown = lines.slice(0, MAX_LINES).map((l) => {
    const marks = l.marks.map((m) => `<span class="mark ${m}">${escapeHtml(MARK_TEXT[m])}</span>`).join('');
    // The text line without its notes of marks (shown as badges); side and family stay.
    const text = formatReachLine({ ...l, marks: [] });
    return `<li class="${l.change}">${escapeHtml(text)}${marks}</li>`;
  });
  const more = lines.length > MAX_LINES ? `<li>… and ${lines.length - MAX_LINES} more (in the text or JSON plan)</li>` : '';
  return `<ul class="lines">\n${shown.join('\n')}${more ? `\n${more}` : ''}\n</ul>`;
}

function formatHosts(plan: Plan | StreamedPlan): string {
  const hosts = outlinesOf(plan).filter((h) => h.status !== 'in-sync');
  if (hosts.length === 0) return '<p>Every host is in sync.</p>';
  const rows = hosts.slice(0, MAX_HOSTS).map((h) => {
    const added = h.diffs.reduce((n, d) => n + d.added, 0);
    const removed = h.diffs.reduce((n, d) => n + d.removed, 0);
    const what = h.status === 'changes' ? `+${added} −${removed} (${h.diffs.map((d) => d.what ?? `rules.v${d.family}`).join(', ')})` : (h.error ?? '');
    return `<tr><th scope="row">${escapeHtml(h.host)}</th><td>${escapeHtml(h.status)}</td><td class="mono">${escapeHtml(what)}</td></tr>`;
  });
  const more = hosts.length > MAX_HOSTS ? `<tr><td colspan="3">… and ${hosts.length - MAX_HOSTS} more hosts</td></tr>` : '';
  return `<table class="hosts">\n<thead><tr><th scope="col">host</th><th scope="col">status</th><th scope="col">lines</th></tr></thead>\n<tbody>\n${rows.join('\n')}${more}\n</tbody>\n</table>`;
}

/** The page: `matrix` is the plan's matrix (PlanReach.matrix), or undefined when there is none. */
export function formatPlanHtml(plan: Plan | StreamedPlan, reach: PlanReach | undefined, matrix: PlanMatrix | undefined): string {
  const title = `fleetfw plan: ${plan.inventory}`;
  const counts = reach ? (reach.skipped ? 'Reachability: not compared.' : reach.lines.length === 0 ? 'Reachability: no flow opened or closed.' : `Reachability: ${reachCounts(reach)}.`) : '';
  const matrixPart = !matrix
    ? '<p class="warn">No reachability matrix for this plan.</p>'
    : 'tooLarge' in matrix
      ? `<p class="warn">The matrix is not drawn: ${escapeHtml(matrix.tooLarge)}. The flows the plan changes are listed below.</p>`
      : formatMatrix(matrix.matrix);
  const sections = [
    `<section aria-labelledby="matrix"><h2 id="matrix">Who can reach whom</h2>\n${matrixPart}\n</section>`,
    reach
      ? `<section aria-labelledby="flows"><h2 id="flows">Flows this plan changes</h2>
${reach.notes.map((n) => `<p class="warn">${escapeHtml(n)}</p>`).join('\n')}
${reach.lines.length > 0 ? formatLines(reach.lines) : `<p>${escapeHtml(counts)}</p>`}
${reach.uncovered.length > 0 ? `<h3>Opened flows no intent covers</h3>\n${formatLines(reach.uncovered)}` : ''}
</section>`
      : '',
    `<section aria-labelledby="hosts"><h2 id="hosts">Hosts that change</h2>\n${formatHosts(plan)}\n</section>`,
  ];
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>${escapeHtml(title)}</h1>
<p class="summary"><b>${escapeHtml(summaryLine(plan))}</b> ${escapeHtml(`${plan.mode} plan of ${plan.summary.hosts} hosts.`)} ${escapeHtml(counts)} <span class="mono">plan hash ${escapeHtml(plan.planHash)}</span></p>
</header>
<main>
${sections.filter(Boolean).join('\n')}
</main>
</body>
</html>
`;
}
