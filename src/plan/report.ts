// A plan as text (terminal), markdown (pull-request comment) or JSON (machines).
import { Chalk } from 'chalk';
import type { HostPlan, Plan } from './plan.js';

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

/** `exitHint: false` inside apply, where the plan's own exit code does not apply. */
export function formatPlanText(plan: Plan, opts: { color: boolean; showInSync?: boolean; exitHint?: boolean }): string {
  const c = paint(opts.color);
  const out: string[] = [c.bold(`fleetfw plan: ${plan.inventory} (${plan.mode}, ${plan.summary.hosts} hosts)`), ''];
  for (const h of plan.hosts) {
    if (h.status === 'in-sync') {
      if (opts.showInSync !== false) out.push(`${c.dim('=')} ${h.host}: in sync`);
    } else if (h.status === 'changes') {
      out.push(c.yellow(`~ ${h.host}: ${counts(h)}`));
      for (const d of h.diffs) out.push(indent(colorPatch(d.patch, c)));
    } else {
      out.push(c.red(`! ${h.host}: ${h.status}: ${h.error ?? ''}`));
    }
    for (const p of h.preserved) out.push(c.dim(`    preserved (foreign): ${p}`));
    for (const n of h.notes) out.push(c.dim(`    note: ${n}`));
    if (h.persistedDrift) out.push(c.yellow('    warning: persisted rules.v4/rules.v6 differ from the live rules'));
    if (h.persistedBroken) out.push(c.red(`    error: ${h.persistedBroken}`));
    if (h.unpersisted) out.push(c.red(`    error: ${h.unpersisted}`));
    for (const w of h.warnings ?? []) out.push(c.yellow(`    warning: ${w}`));
    if (h.leftover) {
      const l = h.leftover;
      out.push(c.yellow(`    leftover transaction ${l.id} (${l.state}, watchdog ${l.watchdogAlive ? 'armed' : 'gone'}, by ${l.user} at ${l.started})`));
    }
  }
  const s = plan.summary;
  out.push('', summaryLine(plan), c.dim(`plan hash ${plan.planHash}`));
  if (s.changes > 0 && opts.exitHint !== false) out.push(c.dim('exit code 2: changes to apply'));
  return out.join('\n') + '\n';
}

export function summaryLine(plan: Plan): string {
  const s = plan.summary;
  const parts = [`${s.changes} to change`, `${s.inSync} in sync`];
  if (s.unreachable) parts.push(`${s.unreachable} unreachable`);
  if (s.errors) parts.push(`${s.errors} failed`);
  return `Plan: ${parts.join(', ')}.`;
}

export function formatPlanMarkdown(plan: Plan): string {
  const shown = plan.hosts.filter((h) => h.status !== 'in-sync');
  const out = [`### fleetfw plan for ${markdownCode(plan.inventory)}`, '', `**${summaryLine(plan)}**`, ''];
  if (shown.length > 0) {
    out.push('| host | status | added | removed | notes |', '|---|---|---:|---:|---|');
    for (const h of shown) {
      const added = h.diffs.reduce((n, d) => n + d.added, 0);
      const removed = h.diffs.reduce((n, d) => n + d.removed, 0);
      const notes = [h.error, ...h.preserved.map((p) => `preserved ${p}`), h.leftover && `leftover transaction ${h.leftover.id}`, ...(h.warnings ?? []).map((w) => `warning: ${w}`)]
        .filter(Boolean)
        .join('; ');
      out.push(`| ${markdownCode(h.host).replace(/\|/g, '\\|')} | ${h.status} | ${added} | ${removed} | ${markdownCell(notes)} |`);
    }
    out.push('');
  }
  for (const h of shown.filter((x) => x.diffs.length > 0)) {
    // A fence longer than any backtick run in the rules (comments can hold backticks).
    const fence = '`'.repeat(Math.max(3, longestBacktickRun(h.diffs.map((d) => d.patch).join('\n')) + 1));
    out.push(`<details><summary><code>${escapeHtml(h.host)}</code>: ${counts(h)}</summary>`, '', `${fence}diff`);
    for (const d of h.diffs) out.push(d.patch.trimEnd());
    out.push(fence, '', '</details>', '');
  }
  const hidden = plan.summary.inSync;
  out.push(`<sub>${hidden} unchanged host${hidden === 1 ? '' : 's'} hidden · ${plan.mode} plan · hash \`${plan.planHash}\`</sub>`, '');
  return out.join('\n');
}

export function formatPlanJson(plan: Plan): string {
  return JSON.stringify(plan, null, 2) + '\n';
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
