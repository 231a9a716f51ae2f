// The pull-request comment: its structure is what reviewers and the sticky
// comment workflow rely on.
import { describe, expect, it } from 'vitest';
import { assemblePlan, failedHostPlan, planOfflineHost } from './plan.js';
import { formatPlanMarkdown, markdownCell, markdownCode } from './report.js';
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
