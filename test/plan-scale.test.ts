// Plans of any size, through the built CLI (no lab): an offline plan of 10,000
// new hosts completes within 1 GB, its markdown under GitHub's comment limit,
// and text and JSON are streamed (a plan of 2,000 new hosts is hundreds of MB).
// Peak memory by GNU time (scripts/install-debian-deps.sh installs it).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFleet } from '../bench/fleet.js';
import { ROOT } from './support.js';

const CLI = join(ROOT, 'dist/cli/main.js');
const GIB = 1024 * 1024 * 1024;
const scratch = mkdtempSync(join(tmpdir(), 'fleetfw-plan-scale-'));
const fleets: string[] = [];
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  for (const f of fleets) rmSync(dirname(f), { recursive: true, force: true });
});

/** `fleetfw ARGS | FILTER` under GNU time: the CLI's exit code, peak RSS and wall time, and what FILTER printed. */
function timed(args: string[], filter: string): { code: number; rssBytes: number; seconds: number; stdout: string; stderr: string } {
  expect(existsSync('/usr/bin/time'), 'GNU time must be installed (scripts/install-debian-deps.sh)').toBe(true);
  const stats = join(scratch, `time-${Date.now()}`);
  const r = spawnSync('bash', ['-c', `set -o pipefail; /usr/bin/time -f '%x %M %e' -o "$0" node "$1" "\${@:2}" | ${filter}`, stats, CLI, ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  const [code, kb, seconds] = readFileSync(stats, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
  return { code: code!, rssBytes: kb! * 1024, seconds: seconds!, stdout: r.stdout, stderr: r.stderr };
}

describe('an offline plan of 10,000 new hosts', () => {
  const file = writeFleet(10_000);
  fleets.push(file);

  it('markdown: completes within 1 GB, under 65,000 characters, the rest counted', () => {
    const r = timed(['plan', '--offline', '-i', file, '--format', 'markdown'], 'cat');
    expect(r.code, r.stderr).toBe(2);
    expect(r.rssBytes).toBeLessThan(GIB);
    expect(r.stdout.length).toBeLessThan(65_000);
    expect(r.stdout).toContain('**Plan: 10000 to change, 0 in sync.**');
    expect(r.stdout).toMatch(/\*\*… and \d+ more hosts\*\* \(\+\d+ -0 lines\), not listed\./);
    console.log(`10,000 hosts, markdown: ${r.seconds} s, peak RSS ${Math.round(r.rssBytes / 1e6)} MB`);
  });
});

describe('an offline plan of 2,000 new hosts, streamed', () => {
  const file = writeFleet(2_000);
  fleets.push(file);

  it('text: every host written, the summary last, within 1 GB', () => {
    // 180 MB of text: only its end comes back.
    const r = timed(['plan', '--offline', '-i', file, '--format', 'text', '--no-color'], 'tail -n 3');
    expect(r.code, r.stderr).toBe(2);
    expect(r.rssBytes).toBeLessThan(GIB);
    expect(r.stdout).toMatch(/^Plan: 2000 to change, 0 in sync\.\nplan hash [0-9a-f]{16}\nexit code 2: changes to apply\n$/);
    console.log(`2,000 hosts, text: ${r.seconds} s, peak RSS ${Math.round(r.rssBytes / 1e6)} MB`);
  });

  it('json: one document, its summary after every host, within 1 GB', () => {
    const r = timed(['plan', '--offline', '-i', file, '--format', 'json'], `tee -p >(head -c 200 >"${scratch}/json-head") | tail -c 200`);
    expect(r.code, r.stderr).toBe(2);
    expect(r.rssBytes).toBeLessThan(GIB);
    expect(readFileSync(join(scratch, 'json-head'), 'utf8')).toMatch(/^\{\n {2}"format": "fleetfw-plan",\n {2}"version": 1,\n {2}"mode": "offline",/);
    // After the hosts, the reachability diff (not compared for a whole new fleet), then the summary.
    expect(r.stdout).toMatch(/"skipped": true\n {2}\},\n {2}"summary": \{\n {4}"hosts": 2000,\n {4}"changes": 2000,\n {4}"inSync": 0,\n {4}"unreachable": 0,\n {4}"errors": 0\n {2}\}\n\}\n$/);
    console.log(`2,000 hosts, json: ${r.seconds} s, peak RSS ${Math.round(r.rssBytes / 1e6)} MB`);
  });
});
