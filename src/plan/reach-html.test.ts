// The HTML page as a string: every inventory-derived text escaped (names are
// validated, but the page does not rely on it), nothing outside the file referred
// to, and a matrix too large to draw said rather than drawn.
import { describe, expect, it } from 'vitest';
import type { ReachMatrix } from '../analyze/reach-matrix.js';
import { PLAN_FORMAT, PLAN_VERSION, type Plan } from './plan.js';
import { escapeHtml, formatPlanHtml } from './reach-html.js';
import { REACH_FORMAT, REACH_VERSION } from './reach-report.js';
import type { PlanReach } from './report.js';

const EVIL = `<img src=x onerror="alert('x')">&amp;`;

/** A plan, its reachability and its matrix, every name ending in `name`. */
function fixture(name: string): { plan: Plan; reach: PlanReach; matrix: ReachMatrix } {
  const plan: Plan = {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    mode: 'offline',
    inventory: `inventories/${name}.yaml`,
    planHash: '0123456789abcdef',
    hosts: [{ host: `web-${name}`, status: 'changes', diffs: [{ family: 4, added: 2, removed: 1, patch: '' }], preserved: [], notes: [] }],
    summary: { hosts: 1, changes: 1, inSync: 0, unreachable: 0, errors: 0 },
  };
  const line = { change: 'open' as const, from: `g-${name}`, fromKind: 'host' as const, to: `h-${name}`, proto: 'tcp' as const, ports: '443', side: 'public' as const, family: 4 as const, marks: ['internet' as const] };
  const reach: PlanReach = { format: REACH_FORMAT, version: REACH_VERSION, lines: [line], uncovered: [line], notes: [`note ${name}`] };
  const matrix: ReachMatrix = {
    rows: [{ name: `src-${name}`, kind: 'group', members: [`m-${name}`] }],
    columns: [{ name: `dst-${name}`, kind: 'group', members: [`n-${name}`] }],
    cells: [[{ pairs: { before: 1, after: 2 }, entries: [{ proto: 'tcp', family: 4, before: [], after: [{ ports: [443, 443], reach: 'some' }], open: [[443, 443]], close: [], unknown: [] }] }]],
  };
  return { plan, reach, matrix };
}

describe('formatPlanHtml', () => {
  it('escapes every name, note and path: no markup of the inventory reaches the page', () => {
    const { plan, reach, matrix } = fixture(EVIL);
    const page = formatPlanHtml(plan, reach, { matrix });
    expect(page).not.toContain('<img');
    expect(page).not.toContain('onerror="');
    expect(page).toContain('&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;amp;');
    // Names in attributes too (a cell's and a group's title).
    expect(page).toMatch(/title="src-&lt;img[^"]*→ dst-&lt;img/);
    expect(page).toContain('title="m-&lt;img');
    for (const where of ['<title>', '<h1>', '<th scope="row" title=', '<li class="open">', '<p class="warn">note ']) expect(page, where).toContain(where);
    expect(page).toMatch(/<td class="cell open"[^>]*><div class="entry"><span class="proto">tcp<\/span> <span class="was"><span class="proto">none<\/span><\/span> → 443<span class="tag">some<\/span><span class="d d-open">\+ 443/);
  });

  it('refers to nothing outside the file: no URL, link, script, image or font', () => {
    const { plan, reach, matrix } = fixture('web');
    const page = formatPlanHtml(plan, reach, { matrix });
    expect(page).not.toMatch(/https?:|\/\/[a-z]|src=|href=|url\(|@import|@font-face|<link|<script|<img|<iframe/i);
    expect(page.startsWith('<!DOCTYPE html>\n<html lang="en">')).toBe(true);
  });

  it('a matrix too large to draw is said, and the changed flows are still listed', () => {
    const { plan, reach } = fixture(EVIL);
    const page = formatPlanHtml(plan, reach, { tooLarge: '999000 pairs of hosts, more than 100000' });
    expect(page).toContain('<p class="warn">The matrix is not drawn: 999000 pairs of hosts, more than 100000.');
    expect(page).not.toContain('<table class="matrix">');
    expect(page).toContain('<li class="open">+ g-&lt;img');
  });

  it('escapeHtml escapes the five characters markup and attributes need', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });
});
