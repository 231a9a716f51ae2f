#!/usr/bin/env node
// `npm run reliability`: turn the figures the end-to-end suite recorded in
// test-results/reliability.jsonl (test/results.ts) into the one table between
// the reliability markers of README.md. Fails (exit 1) when the file is
// missing or empty, or when any host was left stranded: that figure must be 0.
import console from 'node:console';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const resultsFile = join(root, 'test-results', 'reliability.jsonl');
const readme = join(root, 'README.md');
const START = '<!-- reliability:start -->';
const END = '<!-- reliability:end -->';

function fail(message) {
  console.error(`reliability: ${message}`);
  process.exit(1);
}

if (!existsSync(resultsFile)) fail(`${resultsFile} is missing: run the end-to-end suite first (npm test)`);
const records = [];
readFileSync(resultsFile, 'utf8')
  .split('\n')
  .forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      records.push(JSON.parse(line));
    } catch {
      fail(`${resultsFile}:${i + 1}: not JSON`);
    }
  });
if (records.length === 0) fail(`${resultsFile} is empty: run the end-to-end suite first (npm test)`);

const of = (kind) => records.filter((r) => r.kind === kind);
const passed = (rs) => rs.filter((r) => r.ok).length;
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Each matrix record says "N probes, M failed": add them up. */
function probeTotals(rs) {
  let sent = 0;
  let failed = 0;
  for (const r of rs) {
    const m = /(\d+) probes, (\d+) failed/.exec(r.detail ?? '');
    if (m) {
      sent += Number(m[1]);
      failed += Number(m[2]);
    }
  }
  return `${sent} probes, ${failed} not as the intent says`;
}

const traps = of('trap');
const reverts = traps.filter((r) => r.ok && typeof r.revertMs === 'number').map((r) => r.revertMs);
const stranded = records.filter((r) => r.stranded === true);
const row = (what, rs, verb, extra = '') => `| ${what} | ${rs.length} | ${passed(rs)} ${verb} | ${extra} |`;

const table = [
  '| what | tried | result | notes |',
  '|---|---:|---|---|',
  row('lockout traps pushed past the checks', traps, 'recovered by the host itself', reverts.length ? `load to verified revert: median ${seconds(median(reverts))}, max ${seconds(Math.max(...reverts))}` : ''),
  row('faults injected', of('fault'), 'survived', ''),
  row('bad inputs', of('bad-input'), 'rejected at validation', ''),
  row('scenario steps S1-S4 (apply, reboots, rollback, reload)', of('scenario'), 'succeeded', ''),
  row('real-packet probe matrices (`verify --live` after apply, reboot, rollback, reload)', of('probe'), 'held', probeTotals(of('probe'))),
  `| **hosts left stranded** | | **${stranded.length}** | must be 0 |`,
].join('\n');

const text = readFileSync(readme, 'utf8');
const a = text.indexOf(START);
const b = text.indexOf(END);
if (a < 0 || b < a) fail(`README.md has no ${START} ... ${END} section`);
writeFileSync(readme, `${text.slice(0, a + START.length)}\n${table}\n${text.slice(b)}`);
console.log(table);

const failedNames = records.filter((r) => !r.ok).map((r) => `${r.kind}: ${r.name}${r.detail ? ` (${r.detail})` : ''}`);
if (failedNames.length) console.error(`reliability: ${failedNames.length} recorded checks failed:\n  ${failedNames.join('\n  ')}`);
if (stranded.length > 0) fail(`${stranded.length} host(s) left stranded: ${stranded.map((r) => r.name).join('; ')}`);
