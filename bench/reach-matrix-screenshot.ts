// docs/reach-matrix.png: the HTML plan (`fleetfw plan --format html`) of S1 with a
// seventh WordPress host, in Debian's headless Chromium, the whole page.
// Run: npx tsx bench/reach-matrix-screenshot.ts [out.png]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../src/cli/fixtures/run-cli.js';
import { htmlOf, s1Copy, SEVENTH } from '../src/cli/fixtures/s1-edits.js';
import { openInChromium } from '../src/plan/fixtures/chromium.js';

const out = process.argv[2] ?? fileURLToPath(new URL('../docs/reach-matrix.png', import.meta.url));
const WIDTH = 1040;
const dir = mkdtempSync(join(tmpdir(), 'fleetfw-screenshot-'));
try {
  const r = await run(['plan', '--offline', '-i', s1Copy(dir, { inventory: SEVENTH }), '--format', 'html']);
  // The page names the inventory as found: the temporary copy's path is shown as S1's own.
  const page = htmlOf(r.output).replace(/(fleetfw plan: )[^<]*s1\.yaml/g, '$1inventories/s1.yaml (+ wordpress-3)');
  const { probed } = openInChromium(page, { probe: 'return Math.ceil(document.documentElement.scrollHeight);', width: WIDTH });
  openInChromium(page, { screenshot: out, width: WIDTH, height: probed as number, scale: 2 });
  console.log(`${out}: ${WIDTH} x ${String(probed)} CSS pixels (x2)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
