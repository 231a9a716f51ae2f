// First contact: every mistake gets a clear answer. Each case of the broken-input
// corpus (fixtures/broken-inputs.ts) breaks a fresh copy of the example templates
// and inventory, and every command that reads them must answer exit 3 (invalid
// input) or 64 (usage) pointing at the mistake, never "internal error". The CLI
// runs in-process (runCli), so the corpus takes about a second.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { FOLDER, INVENTORY_CASES, TEMPLATE_CASES, USAGE_CASES, type BrokenCase } from './fixtures/broken-inputs.js';
import { run } from './fixtures/run-cli.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const scratch = mkdtempSync(join(tmpdir(), 'fleetfw-broken-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A fresh copy of templates/ and inventories/s1.yaml with the case's edits. */
function workspace(c: BrokenCase, n: number): { dir: string; read: (path: string) => string } {
  const dir = join(scratch, String(n));
  cpSync(join(ROOT, 'templates'), join(dir, 'templates'), { recursive: true });
  mkdirSync(join(dir, 'inventories'));
  cpSync(join(ROOT, 'inventories/s1.yaml'), join(dir, 'inventories/s1.yaml'));
  for (const [path, edit] of Object.entries(c.edit)) {
    const target = join(dir, path);
    if (edit === FOLDER) {
      rmSync(target, { force: true });
      mkdirSync(target);
    } else {
      writeFileSync(target, typeof edit === 'function' ? edit(existsSync(target) ? readFileSync(target, 'utf8') : '') : edit);
    }
  }
  return { dir, read: (path) => readFileSync(join(dir, path), 'utf8') };
}

const COMMANDS = [['render', '--out', '$OUT'], ['verify'], ['plan', '--offline'], ['apply', '--yes']];

let counter = 0;
function corpus(title: string, cases: BrokenCase[]): void {
  describe(title, () => {
    for (const c of cases) {
      it(c.name, async () => {
        const { dir, read } = workspace(c, counter++);
        const inv = join(dir, 'inventories/s1.yaml');
        const out = join(dir, 'out');
        const at = (typeof c.at === 'function' ? c.at(read) : c.at).map((a) => a.replace(/^(templates|inventories)\//, (m) => (m === 'inventories/' ? `${dir}/inventories/` : m)));
        for (const command of c.commands ?? COMMANDS) {
          const args = [...command, ...(c.args ?? [])].map((a) => a.replace('$OUT', out).replace('$DIR', dir));
          if (!args.includes('-i')) args.push('-i', inv);
          const { code, output } = await run(args);
          const what = `fleetfw ${command.join(' ')}:\n${output}`;
          expect(output, what).not.toMatch(/internal error|This is a bug/);
          expect(code, what).toBe(c.exit ?? 3);
          for (const where of at) expect(output, what).toContain(where);
          if (c.says) expect(output, what).toMatch(c.says);
          // render validates exactly as plan does: nothing is written.
          if (command[0] === 'render') expect(existsSync(out), what).toBe(false);
        }
      });
    }
  });
}

describe('the broken-input corpus', () => {
  it('has at least 40 cases of templates and inventories, and the untouched copy is valid', async () => {
    expect(TEMPLATE_CASES.length + INVENTORY_CASES.length).toBeGreaterThanOrEqual(40);
    const { dir } = workspace({ name: 'untouched', edit: {}, at: [] }, counter++);
    const inv = join(dir, 'inventories/s1.yaml');
    expect((await run(['verify', '-i', inv])).code).toBe(0);
    expect((await run(['render', '--out', join(dir, 'out'), '-i', inv])).code).toBe(0);
    expect(readFileSync(join(dir, 'out/mysql-1/rules.v4'), 'utf8')).toBe(readFileSync(join(ROOT, 'inventories/s1.rendered/mysql-1/rules.v4'), 'utf8'));
  });
});

corpus('broken templates: exit 3 at the template file:line:col', TEMPLATE_CASES);
corpus('broken inventories: exit 3 at the inventory file:line', INVENTORY_CASES);
corpus('usage errors: exit 64 naming the argument', USAGE_CASES);
