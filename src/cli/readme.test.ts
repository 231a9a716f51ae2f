// The README's examples are true: every YAML inventory it shows validates and its
// intents hold, every template excerpt is the template, every command it shows is
// run by a test (the ones that need no lab run here, in-process, and print what the
// README says they print; the lab's run in test/readme.test.ts).
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { blocks, commands, missingLines, readme, ROOT, RUNS, shellWords } from './fixtures/readme.js';
import { run } from './fixtures/run-cli.js';

const README = readme();
const scratch = mkdtempSync(join(tmpdir(), 'fleetfw-readme-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const home = process.cwd();
afterEach(() => process.chdir(home));

/** A copy of templates/ and inventories/s1.yaml to change. */
function workspace(name: string): string {
  const dir = join(scratch, name);
  cpSync(join(ROOT, 'templates'), join(dir, 'templates'), { recursive: true });
  mkdirSync(join(dir, 'inventories'));
  cpSync(join(ROOT, 'inventories/s1.yaml'), join(dir, 'inventories/s1.yaml'));
  return dir;
}

/** Run a README command line in `cwd` and compare with the output the README shows under it. */
async function runShown(command: string, cwd: string, exit: number): Promise<void> {
  const shown = commands(README).find((c) => c.command === command);
  expect(shown, `README shows \`${command}\``).toBeDefined();
  expect(RUNS[command]).toBe('unit');
  const words = shellWords(command);
  const args = words.slice(words[0] === 'npx' ? 2 : 1);
  process.chdir(cwd);
  const { code, output } = await run(args);
  expect(code, output).toBe(exit);
  expect(missingLines(shown!.output, output), `README line ${shown!.line}: ${command}\n--- real output:\n${output}`).toEqual([]);
}

describe('the README', () => {
  it('runs every command it shows in a test, and lists none it no longer shows', () => {
    const shown = [...new Set(commands(README).map((c) => c.command))];
    expect(shown.filter((c) => !(c in RUNS)), 'README commands no test runs: add them to RUNS in fixtures/readme.ts').toEqual([]);
    expect(Object.keys(RUNS).filter((c) => !shown.includes(c)), 'RUNS lists commands the README no longer shows').toEqual([]);
    // The two first-screen commands are what CI and the demo test run.
    expect(readFileSync(join(ROOT, '.ci/run'), 'utf8')).toMatch(/^sh scripts\/install-debian-deps\.sh$/m);
    expect(readFileSync(join(ROOT, 'package.json'), 'utf8')).toContain('"demo": "npm run build --silent && sh scripts/as-root.sh node dist/cli/main.js demo"');
  });

  it('shows YAML inventories that validate, whose intents hold', async () => {
    const yaml = blocks(README).filter((b) => b.lang === 'yaml');
    expect(yaml.length).toBeGreaterThan(0);
    for (const b of yaml) {
      const dir = workspace(`yaml-${b.line}`);
      const file = join(dir, 'inventories/readme.yaml');
      writeFileSync(file, b.lines.join('\n'));
      const { code, output } = await run(['verify', '-i', file]);
      expect(code, `README line ${b.line}:\n${output}`).toBe(0);
      expect(output).toMatch(/^(\d+) of \1 intents hold\.$/m);
    }
  });

  it('shows template excerpts as the templates have them', () => {
    const excerpts = blocks(README).filter((b) => /^# templates\/\S+$/.test(b.lines[0] ?? ''));
    expect(excerpts.length).toBeGreaterThan(0);
    for (const b of excerpts) {
      const file = readFileSync(join(ROOT, b.lines[0]!.slice(2)), 'utf8');
      const rules = file.split('\n').filter((l) => l && !l.startsWith('#'));
      expect(b.lines.slice(1).filter((l) => l), `README line ${b.line}`).toEqual(rules);
    }
  });

  it('shows the reachability diff of a seventh WordPress host as the golden file has it', () => {
    const shown = blocks(README).find((b) => b.lines[0]?.startsWith('Reachability: '));
    expect(shown, 'the README shows a reachability diff').toBeDefined();
    expect(`${shown!.lines.join('\n')}\n`).toBe(readFileSync(join(ROOT, 'src/cli/fixtures/reach/seventh-host.txt'), 'utf8'));
  });

  it('plan --offline --limit with a typo: exit 64 and the "did you mean" it shows', async () => {
    await runShown("fleetfw plan --offline --limit 'wordpress,!wordpres-2'", ROOT, 64);
  });

  it('inventories/bad.yaml: exit 3 and the four problems it shows, at their file:line:col', async () => {
    await runShown('npx fleetfw plan --offline -i inventories/bad.yaml', ROOT, 3);
  });

  it('verify with three template mistakes: exit 3 at the template lines it shows', async () => {
    const dir = workspace('verify');
    writeFileSync(
      join(dir, 'templates/roles/mysql.v4'),
      '# MySQL servers: reached by the backend whitelist.\n#\n*filter\n-A INPUT -d {{ self.privat }} -p tcp --dport 3306 -j ACCEPT\nCOMMIT\n',
    );
    writeFileSync(
      join(dir, 'templates/roles/wordpress.v4'),
      '# WordPress application servers: HTTP from the load balancer only.\n*filter\n-A INPUT -p tcp --dprot 80 -s {{ group.haproxy.private }} -j ACCEPT\n-A INPUT -j ACCEPTT\nCOMMIT\n',
    );
    await runShown('fleetfw verify -i inventories/s1.yaml', dir, 3);
  });

  it('explain --from a group: one trace per member and the verdicts it shows', async () => {
    await runShown('fleetfw explain mysql-1 --from wordpress --port 3306 -i inventories/s1.yaml', ROOT, 0);
  });
});
