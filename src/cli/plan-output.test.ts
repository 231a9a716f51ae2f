// `fleetfw plan` output for large fleets, in-process (runCli): the markdown
// comment stays under GitHub's limit and names the full plan that --out saves.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFleet } from '../../bench/fleet.js';
import { parseSavedPlan } from '../plan/saved-plan.js';
import { runCli } from './program.js';

/** Run the CLI in-process; stdout and stderr apart. */
async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const errs: string[] = [];
  const capture = (into: string[]) =>
    ((chunk: string | Uint8Array) => {
      into.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      return true;
    }) as typeof process.stdout.write;
  const { write: stdout } = process.stdout;
  const { write: stderr } = process.stderr;
  process.stdout.write = capture(out);
  process.stderr.write = capture(errs);
  try {
    const code = await runCli(['node', 'fleetfw', ...args]);
    return { code, stdout: out.join(''), stderr: errs.join('') };
  } finally {
    process.stdout.write = stdout;
    process.stderr.write = stderr;
  }
}

const big = writeFleet(1000);
const mid = writeFleet(200);
afterAll(() => {
  for (const f of [big, mid]) rmSync(dirname(f), { recursive: true, force: true });
});

describe('plan --format markdown of a large fleet', () => {
  it('1,000 new hosts: under 65,000 characters, the most important first, then "and N more hosts"', async () => {
    const r = await run(['plan', '--offline', '-i', big, '--format', 'markdown', '--no-color']);
    expect(r.code).toBe(2);
    // out() ends the comment with one newline.
    expect(r.stdout.length).toBeLessThan(65_000);
    // A whole new fleet opens too many flows to list one by one: said in one line, then the hosts.
    expect(r.stdout).toMatch(/^### fleetfw plan for `[^`]+s1-1000\.yaml`\n\n\*\*Plan: 1000 to change, 0 in sync\.\*\*\n\n#### Reachability: not compared\n\n- reachability not compared: the change touches more than 100000 flows that change[^\n]+\n\nMost important first: /);
    expect(r.stdout).toMatch(/\n\*\*… and \d+ more hosts\*\* \(\+\d+ -0 lines\), not listed\. The diffs of \d+ listed hosts are not shown\. The full plan: `fleetfw plan --offline --format text`, or `--out FILE` to save it\.\n/);
  });

  it('with --out: names the saved file, which holds the whole plan', async () => {
    const file = join(dirname(mid), 'plan-offline.json');
    const r = await run(['plan', '--offline', '-i', mid, '--format', 'markdown', '--out', file, '--markdown-limit', '20000']);
    expect(r.code).toBe(2);
    expect(r.stdout.length).toBeLessThanOrEqual(20_001);
    expect(r.stdout).toContain(`The full plan: \`${file}\`.`);
    expect(r.stderr).toContain(`saved the plan to ${file}`);
    const saved = parseSavedPlan(readFileSync(file, 'utf8'));
    if ('error' in saved) throw new Error(saved.error);
    expect(saved.saved.plan.summary).toMatchObject({ hosts: 200, changes: 200 });
    expect(saved.saved.plan.hosts.every((h) => h.diffs.length >= 2 && h.desired?.v4)).toBe(true);
    expect(saved.saved.plan.hosts.filter((h) => h.desired?.ipsets).length).toBeGreaterThan(150);
    expect(Object.keys(saved.saved.renders)).toHaveLength(200);
    expect(existsSync(`${file}.tmp-${process.pid}`)).toBe(false);
  });

  it('--markdown-limit must leave room for the summary', async () => {
    for (const bad of ['100', 'lots', '2000.5']) {
      const r = await run(['plan', '--offline', '-i', mid, '--format', 'markdown', '--markdown-limit', bad]);
      expect(r.code, bad).toBe(64);
      expect(r.stderr).toContain('--markdown-limit must be a whole number of characters, at least 2000');
    }
  });
});

describe('plan --format text and json of a large fleet', () => {
  it('200 new hosts: text and JSON written in pieces, the JSON whole and valid', async () => {
    const text = await run(['plan', '--offline', '-i', mid, '--format', 'text', '--no-color']);
    expect(text.code).toBe(2);
    expect(text.stdout).toMatch(/^fleetfw plan: .*s1-200\.yaml \(offline, 200 hosts\)\n/);
    expect(text.stdout).toMatch(/\nPlan: 200 to change, 0 in sync\.\nplan hash [0-9a-f]{16}\nexit code 2: changes to apply\n$/);
    const json = await run(['plan', '--offline', '-i', mid, '--format', 'json']);
    const plan = JSON.parse(json.stdout) as { format: string; version: number; hosts: unknown[]; summary: { hosts: number } };
    expect(plan).toMatchObject({ format: 'fleetfw-plan', version: 1, summary: { hosts: 200, changes: 200 } });
    expect(plan.hosts).toHaveLength(200);
    expect(json.stdout.endsWith('}\n')).toBe(true);
  });
});

describe('plan --format html', () => {
  it('1,000 new hosts: the page says the matrix is not drawn, rather than proving a million pairs', async () => {
    const t = performance.now();
    const r = await run(['plan', '--offline', '-i', big, '--format', 'html']);
    const took = performance.now() - t;
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^<!DOCTYPE html>\n/);
    expect(r.stdout).toContain('<p class="warn">The matrix is not drawn: 999000 pairs of hosts, more than 100000.');
    expect(r.stdout).toContain('… and 800 more hosts');
    expect(r.stdout.endsWith('</html>\n')).toBe(true);
    expect(took).toBeLessThan(15_000);
  });

  it('200 new hosts with --out: the page drawn on stdout, the whole plan saved as JSON for apply', async () => {
    const file = join(dirname(mid), 'plan-html.json');
    const r = await run(['plan', '--offline', '-i', mid, '--format', 'html', '--out', file]);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^<!DOCTYPE html>\n[^]*<table class="matrix">[^]*<\/html>\n$/);
    expect(r.stderr).toContain(`saved the plan to ${file}`);
    const saved = parseSavedPlan(readFileSync(file, 'utf8'));
    if ('error' in saved) throw new Error(saved.error);
    expect(saved.saved.plan.summary).toMatchObject({ hosts: 200, changes: 200 });
  });

  it('only plan takes it: verify and status refuse --format html (exit 64), and only plan --help names it', async () => {
    for (const cmd of ['verify', 'status']) {
      const r = await run([cmd, '-i', mid, '--format', 'html']);
      expect(r.code, cmd).toBe(64);
      expect(r.stderr).toMatch(/argument 'html' is invalid\. Allowed choices are text, markdown, json\./);
    }
    const help = (await run(['plan', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(help).toMatch(/--format <format> output format \(html: one self-contained page[^(]*\(choices: "text", "markdown", "json", "html", default: "text"\)/);
    expect((await run(['verify', '--help'])).stdout).not.toContain('html');
  });
});
