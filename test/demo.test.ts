// `npm run demo` end to end: the command it runs after the build, as root.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blocks, missingLines, readme } from '../src/cli/fixtures/readme.js';
import { requireLabPrerequisites, ROOT } from './support.js';

describe('npm run demo', () => {
  it('plans, applies, proves S1, shows trap 1 refused then reverted by the host, tears down, in under two minutes', async () => {
    requireLabPrerequisites();
    const t0 = Date.now();
    const child = spawn(process.execPath, [join(ROOT, 'dist/cli/main.js'), 'demo'], { cwd: ROOT, env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    const ms = Date.now() - t0;
    expect(code, stdout + stderr).toBe(0);
    expect(ms).toBeLessThan(120_000);
    for (const line of [
      /^== 1\/7 {2}Lab: the S1 fleet of seed 000 in network namespaces/m,
      /^ {5}Plan: 6 to change, 0 in sync\.$/m,
      /^ {5}6 confirmed, 0 unchanged, 0 rolled back, 0 failed, 0 unknown, 0 skipped\.$/m,
      /^ {3}\$ fleetfw verify --live -i inventories\/s1\.yaml$/m,
      /^ {5}ok {3}internet -> haproxy-www:80 allow {2}\(1 pair: 1 held; \d+ ms\)$/m,
      /^ {5}ok {3}intruder -> all:3306 deny {2}\(6 pairs: 6 held; \d+ ms\)$/m,
      /^ {5}47 of 47 pairs held with real packets; \d+ listeners started and removed/m,
      /^ {5}error: mysql-1: SSH from bastion tunnel-1 to mysql-1 would be dropped/m,
      /nothing was sent to any host/,
      /^ {5}mysql-1 +rolled-back .*reverted [\d.]+s after load$/m,
      /^ {3}tunnel-1 -> mysql-1:22 after the revert: open$/m,
      /^ {5}= mysql-1: in sync$/m,
      /^ {3}lab stopped, namespaces removed\. Total [\d.]+s\.$/m,
    ]) {
      expect(stdout).toMatch(line);
    }
    expect(stdout).not.toMatch(/FAIL/);
    // The README's "Real output" of the demo is this output (times and ids aside).
    const shown = blocks(readme()).find((b) => b.lines[0]?.startsWith('== '));
    expect(shown, 'the README shows the demo').toBeDefined();
    expect(missingLines(shown!.lines, stdout), `README line ${shown!.line}: the demo's output`).toEqual([]);
    console.log(`npm run demo: ${ms} ms`);
    // Nothing of the demo's lab is left behind.
    const prefix = /namespaces (ffw[0-9a-f]+)-\*/.exec(stdout)![1]!;
    const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith(`${prefix}-`));
    expect(left).toEqual([]);
  });
});
