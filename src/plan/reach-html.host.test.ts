// The HTML plan in a real browser (Debian's headless Chromium, installed by
// scripts/install-debian-deps.sh; without it this test fails): the matrix of the
// S1 seventh-host plan renders, its changed cells are highlighted in colour and
// the others are not; a removed role's closed cell is red.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run } from '../cli/fixtures/run-cli.js';
import { htmlOf, REMOVED_ROLE, s1Copy, SEVENTH } from '../cli/fixtures/s1-edits.js';
import { openInChromium } from './fixtures/chromium.js';

const scratch = mkdtempSync(join(tmpdir(), 'fleetfw-html-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** What the browser made of the page: the matrix's shape and each cell's class, text and computed colour. */
const PROBE = `
  const table = document.querySelector('table.matrix');
  if (!table) return { table: false };
  const box = table.getBoundingClientRect();
  return {
    table: true, title: document.title, lang: document.documentElement.lang,
    width: box.width, height: box.height,
    columns: [...table.querySelectorAll('thead th[scope=col]')].map((th) => th.firstChild.textContent),
    rows: [...table.querySelectorAll('tbody tr')].map((tr) => ({
      name: tr.querySelector('th[scope=row]').firstChild.textContent,
      cells: [...tr.querySelectorAll('td')].map((td) => ({ kind: td.className.replace('cell ', ''), text: td.innerText, bg: getComputedStyle(td).backgroundColor, image: getComputedStyle(td).backgroundImage, visible: td.getBoundingClientRect().height > 0 })),
    })),
  };`;

interface Probed {
  table: boolean;
  title: string;
  lang: string;
  width: number;
  height: number;
  columns: string[];
  rows: Array<{ name: string; cells: Array<{ kind: string; text: string; bg: string; image: string; visible: boolean }> }>;
}

const rgb = (css: string): [number, number, number] => {
  const m = /rgba?\((\d+), (\d+), (\d+)/.exec(css);
  if (!m) throw new Error(`not a colour: ${css}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
};

async function pageOf(name: string, edit: (t: string) => string): Promise<Probed> {
  const r = await run(['plan', '--offline', '-i', s1Copy(join(scratch, name), { inventory: edit }), '--format', 'html']);
  expect(r.code, r.output).toBe(2);
  return openInChromium(htmlOf(r.output), { probe: PROBE, width: 1200, height: 900 }).probed as Probed;
}

describe('plan --format html in headless Chromium', () => {
  it('the seventh-host plan: a 9 x 5 matrix, the changed cells green and every other cell plain', async () => {
    const p = await pageOf('seventh', SEVENTH);
    expect(p.table).toBe(true);
    expect(p.lang).toBe('en');
    expect(p.title).toMatch(/^fleetfw plan: .*s1\.yaml$/);
    expect(p.width).toBeGreaterThan(400);
    expect(p.columns).toEqual(['backend', 'bastion', 'haproxy', 'mysql', 'wordpress']);
    expect(p.rows.map((r) => r.name)).toEqual(['any other address (public)', 'any other address (private)', 'internet', 'intruder', 'backend', 'bastion', 'haproxy', 'mysql', 'wordpress']);
    const cells = p.rows.flatMap((r) => r.cells.map((c, i) => ({ ...c, where: `${r.name} -> ${p.columns[i]}` })));
    expect(cells).toHaveLength(45);
    expect(cells.every((c) => c.visible)).toBe(true);
    const changed = cells.filter((c) => c.kind === 'open');
    expect(changed.map((c) => c.where).sort()).toEqual(
      [
        ...['backend', 'bastion', 'haproxy', 'mysql', 'wordpress'].flatMap((to) => [`backend -> ${to}`, `wordpress -> ${to}`]),
        'bastion -> backend',
        'bastion -> wordpress',
        'haproxy -> backend',
        'haproxy -> wordpress',
        'mysql -> backend',
        'mysql -> wordpress',
      ].sort(),
    );
    // Highlighted: one green, and no other cell has it; the unchanged cells keep the page's background.
    const green = new Set(changed.map((c) => c.bg));
    expect(green.size).toBe(1);
    const [r, g, b] = rgb([...green][0]!);
    expect(g).toBeGreaterThan(r);
    expect(g).toBeGreaterThan(b);
    for (const c of cells.filter((x) => x.kind !== 'open')) expect(green.has(c.bg), c.where).toBe(false);
    // What a reviewer reads in a changed cell: the protocol and ports, the opened ports, the pairs before and after.
    const wp = cells.find((c) => c.where === 'wordpress -> backend')!;
    expect(wp.text).toContain('tcp *');
    expect(wp.text).toContain('+ */tcp');
    expect(wp.text).toContain('6 → 12 pairs');
    expect(cells.find((c) => c.where === 'internet -> haproxy')!.text).toBe('tcp 80');
  });

  it('a removed role: its closed cell is red', async () => {
    const p = await pageOf('removed', REMOVED_ROLE);
    const cells = p.rows.flatMap((r) => r.cells.map((c, i) => ({ ...c, where: `${r.name} -> ${p.columns[i]}` })));
    const closed = cells.filter((c) => c.kind === 'close');
    expect(closed.map((c) => c.where)).toEqual(['haproxy -> backend']);
    const [r, g] = rgb(closed[0]!.bg);
    expect(r).toBeGreaterThan(g);
    expect(closed[0]!.text).toContain('− 80/tcp');
  });
});
