// The pull-request comment: its structure is what reviewers and the sticky
// comment workflow rely on.
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFleet } from '../../bench/fleet.js';
import { loadInventory } from '../inventory/load.js';
import { formatIpSets } from '../render/ipsets.js';
import { loadTemplates } from '../render/load-templates.js';
import { renderFleet } from '../render/render.js';
import { assemblePlan, failedHostPlan, planOfflineHost } from './plan.js';
import { formatPlanMarkdown, markdownCell, markdownCode, MARKDOWN_LIMIT } from './report.js';
import { streamPlan } from './streamed-plan.js';
import type { RenderedHost } from '../render/render.js';

const BASE = '*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n';

function rendered(host: string, v4: string): RenderedHost {
  return { host, v4: { text: v4, origins: [], closedByDefault: false }, v6: { text: '', origins: [], closedByDefault: true }, notes: [] };
}

const withComment = BASE.replace('COMMIT', '-A INPUT -p tcp -m comment --comment "```x` | y" -m tcp --dport 80 -j ACCEPT\nCOMMIT');
const plan = assemblePlan('offline', 'inventories/we`ird|name.yaml', [
  planOfflineHost(rendered('web-1', withComment), { v4: BASE, v6: '' }),
  planOfflineHost(rendered('web-2', BASE.replace('COMMIT', '-A INPUT -p tcp -m tcp --dport 443 -j ACCEPT\nCOMMIT')), { v4: BASE, v6: '' }),
  planOfflineHost(rendered('db-1', BASE), { v4: BASE, v6: '' }),
  planOfflineHost(rendered('db-2', BASE), { v4: BASE, v6: '' }),
  failedHostPlan('mysql-9', 'unreachable', 'ssh: `sshd` said: no | route to <host>\nretry later'),
]);
const md = formatPlanMarkdown(plan);
const lines = md.split('\n');

describe('plan as a pull-request comment', () => {
  it('opens with the inventory and the summary line', () => {
    expect(lines[0]).toBe('### fleetfw plan for ``inventories/we`ird|name.yaml``');
    expect(md).toContain('**Plan: 2 to change, 2 in sync, 1 unreachable.**');
  });

  it('has a summary table of exactly the hosts that change or fail, unchanged hosts hidden', () => {
    const header = lines.indexOf('| host | status | added | removed | notes |');
    expect(header).toBeGreaterThan(0);
    expect(lines[header + 1]).toBe('|---|---|---:|---:|---|');
    const rows = lines.slice(header + 2, lines.indexOf('', header));
    expect(rows.map((r) => r.split(' | ')[0])).toEqual(['| `mysql-9`', '| `web-1`', '| `web-2`']);
    expect(rows[1]).toBe('| `web-1` | changes | 1 | 0 |  |');
    expect(md).not.toMatch(/db-1|db-2/);
    expect(md).toContain('<sub>2 unchanged hosts hidden · offline plan · hash `');
  });

  it('escapes | and backticks in table cells: every row keeps its five columns', () => {
    const row = lines.find((l) => l.startsWith('| `mysql-9`'))!;
    expect(row).toBe('| `mysql-9` | unreachable | 0 | 0 | ssh: \\`sshd\\` said: no \\| route to \\<host\\> retry later |');
    // Five columns: six unescaped pipes.
    expect(row.replace(/\\\|/g, '').split('|')).toHaveLength(7);
  });

  it('has one collapsed diff per changed host, fenced beyond any backticks in the rules', () => {
    const details = lines.filter((l) => l.startsWith('<details>'));
    expect(details).toEqual(['<details><summary><code>web-1</code>: +1 -0 (rules.v4)</summary>', '<details><summary><code>web-2</code>: +1 -0 (rules.v4)</summary>']);
    expect(lines.filter((l) => l === '</details>')).toHaveLength(2);
    // web-1's rule holds a run of three backticks: its fence is four long, and closes.
    const open = lines.indexOf('````diff');
    expect(open).toBeGreaterThan(0);
    expect(lines.indexOf('````', open)).toBeGreaterThan(open);
    expect(lines.slice(open, lines.indexOf('````', open)).some((l) => l.startsWith('+-A INPUT -p tcp -m comment'))).toBe(true);
    // web-2's rules have none: the usual three.
    expect(lines).toContain('```diff');
  });

  it('code spans and cells survive hostile text', () => {
    expect(markdownCode('a`b')).toBe('``a`b``');
    expect(markdownCode('`x')).toBe('`` `x ``');
    expect(markdownCell('a|b *c* _d_ [e](f) \\ <g>')).toBe('a\\|b \\*c\\* \\_d\\_ \\[e\\](f) \\\\ \\<g\\>');
  });
});

describe('a plan too long for one comment (GitHub refuses more than 65,536 characters)', () => {
  // 1,000 new hosts of an S1-like fleet: about 41 MB of markdown uncut.
  const file = writeFleet(1000);
  const inv = loadInventory(file, { displayPath: 'inventories/s1-1000.yaml' });
  const fleet = renderFleet(inv, loadTemplates(inv));
  const byName = new Map(fleet.map((r) => [r.host, r]));
  const big = streamPlan('offline', 'inventories/s1-1000.yaml', [...byName.keys()], (name) => planOfflineHost(byName.get(name)!, {}));
  const cut = formatPlanMarkdown(big, { fullPlan: 'plan-offline.json' });
  const cutLines = cut.split('\n');
  const rows = cutLines.filter((l) => l.startsWith('| `'));
  afterAll(() => rmSync(dirname(file), { recursive: true, force: true }));

  it('stays under the limit: the markdown of 1,000 new hosts is under 65,000 characters', () => {
    expect(cut.length).toBeLessThanOrEqual(MARKDOWN_LIMIT);
    expect(MARKDOWN_LIMIT).toBeLessThan(65_536);
    // Most of the room is used.
    expect(cut.length).toBeGreaterThan(MARKDOWN_LIMIT - 5_000);
  });

  it('keeps the structure: title, summary, the order, a table, diffs, the rest counted, where the full plan is, the footer', () => {
    expect(cutLines[0]).toBe('### fleetfw plan for `inventories/s1-1000.yaml`');
    expect(cutLines[2]).toBe('**Plan: 1000 to change, 0 in sync.**');
    expect(cutLines[4]).toMatch(/^Most important first: hosts that failed or need attention, changes to the management path \(SSH\), changes that open access, then the rest/);
    expect(cutLines[6]).toBe('| host | status | added | removed | notes |');
    expect(cutLines[7]).toBe('|---|---|---:|---:|---|');
    expect(rows.length).toBeGreaterThan(100);
    expect(rows.length).toBeLessThan(1000);
    const details = cutLines.filter((l) => l.startsWith('<details>'));
    expect(details.length).toBeGreaterThan(3);
    expect(cutLines.filter((l) => l === '</details>')).toHaveLength(details.length);
    // The diffs are of the first hosts listed, in the table's order.
    expect(details.map((l) => /<code>(.*)<\/code>/.exec(l)![1])).toEqual(rows.slice(0, details.length).map((r) => /`([^`]*)`/.exec(r)![1]));
    // Each diff is cut with a note, its fence closed.
    expect(cutLines.filter((l) => /^_… \d+ more lines of this diff: in the full plan\._$/.test(l))).toHaveLength(details.length);
    expect(cutLines.filter((l) => l === '```diff')).toHaveLength(details.length);
    expect(cutLines.filter((l) => l === '```')).toHaveLength(details.length);
    const more = cutLines.find((l) => l.startsWith('**… and '))!;
    expect(more).toMatch(new RegExp(`^\\*\\*… and ${1000 - rows.length} more hosts\\*\\* \\(\\+\\d+ -0 lines\\), not listed\\. The diffs of ${rows.length - details.length} listed hosts are not shown\\. The full plan: \`plan-offline\\.json\`\\.$`));
    expect(cutLines.at(-2)).toMatch(/^<sub>0 unchanged hosts hidden · offline plan · hash `[0-9a-f]{16}`<\/sub>$/);
  });

  it('lists the hosts most important first: every new host changes its management path; the larger first, then by name', () => {
    const listed = rows.map((r) => /`([^`]*)`/.exec(r)![1]!);
    const sizes = rows.map((r) => Number(r.split(' | ')[2]));
    expect([...sizes].sort((a, b) => b - a)).toEqual(sizes);
    expect(big.weights.get(listed[0]!)!.concern).toBe('management');
    for (let i = 1; i < listed.length; i++) if (sizes[i] === sizes[i - 1]) expect(listed[i - 1]! < listed[i]!).toBe(true);
  });

  it('a failed host comes first even in a cut table; a host that only opens access, after the management paths', () => {
    const failed = failedHostPlan('zz-unreachable', 'unreachable', 'timed out');
    const opens = planOfflineHost(byName.get('mysql-1')!, { v4: byName.get('mysql-1')!.v4.text.replace(/^-A INPUT .*--match-set .*\n/m, ''), v6: byName.get('mysql-1')!.v6.text, ipsets: formatIpSets(byName.get('mysql-1')!.ipsets ?? []) });
    const mixed = streamPlan('offline', 'x.yaml', ['zz-unreachable', ...byName.keys()], (name) => (name === 'zz-unreachable' ? failed : name === 'mysql-1' ? opens : planOfflineHost(byName.get(name)!, {})));
    const md = formatPlanMarkdown(mixed);
    const first = md.split('\n').filter((l) => l.startsWith('| `')).slice(0, 1);
    expect(first).toEqual(['| `zz-unreachable` | unreachable | 0 | 0 | timed out |']);
    expect(md.length).toBeLessThanOrEqual(MARKDOWN_LIMIT);
    expect(mixed.weights.get('mysql-1')).toEqual({ concern: 'opens', size: 1 });
    // 999 new hosts change their management path: mysql-1 is counted among the rest.
    expect(md).not.toContain('`mysql-1`');
    expect(formatPlanMarkdown(mixed, { limit: 1e9 }).split('\n').filter((l) => l.startsWith('| `')).at(-1)).toBe('| `mysql-1` | changes | 1 | 0 |  |');
  });

  it('a smaller limit (two plans in one comment) and no --out: the same structure, says how to get the full plan', () => {
    const small = formatPlanMarkdown(big, { limit: 30_000 });
    expect(small.length).toBeLessThanOrEqual(30_000);
    expect(small).toContain('The full plan: `fleetfw plan --offline --format text`, or `--out FILE` to save it.');
    expect(small.match(/<details>/g)!.length).toBeGreaterThan(0);
  });

  it('one host with a diff longer than the limit: the diff is cut, its fence closed', () => {
    const one = streamPlan('offline', 'x.yaml', ['wordpress-1'], () => planOfflineHost(byName.get('wordpress-1')!, {}));
    const md = formatPlanMarkdown(one, { limit: 5_000 });
    expect(md.length).toBeLessThanOrEqual(5_000);
    expect(md).not.toContain('more host');
    expect(md).toMatch(/```diff\n--- wordpress-1\/rules\.v4 \(absent\)\n[^]*\n```\n\n_… \d+ more lines of this diff: in the full plan\._\n\n<\/details>/);
  });

  it('a limit too small for the summary itself is refused', () => {
    expect(() => formatPlanMarkdown(big, { limit: 300 })).toThrow(/at least \d+ characters/);
  });

  it('a plan that fits is printed whole: no order line, nothing counted as left out', () => {
    expect(md).not.toContain('Most important first');
    expect(md).not.toContain('more host');
    expect(formatPlanMarkdown(plan, { limit: md.length })).toBe(md);
    expect(formatPlanMarkdown(plan, { limit: md.length - 1 })).toContain('Most important first');
  });
});
