// Which inventory a command reads when none is named: the commands that read or
// change real hosts never fall back to the embedded example.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { EMBEDDED_INVENTORY, hostNamed, resolveInventory, type ExampleUse } from './context.js';
import { loadInventory } from '../inventory/load.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const away = mkdtempSync(join(tmpdir(), 'fleetfw-context-'));
const withFile = mkdtempSync(join(tmpdir(), 'fleetfw-context-'));
writeFileSync(join(withFile, 'fleetfw.yaml'), 'version: 1\n');
mkdirSync(join(away, 'folder.yaml'));
afterAll(() => [away, withFile].forEach((d) => rmSync(d, { recursive: true, force: true })));

const rule = (example: ExampleUse) => ({ withoutInventory: { command: 'apply', example } });
const refusal = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('not refused');
};

describe('resolveInventory', () => {
  it('--inventory first, then FLEETFW_INVENTORY, then ./fleetfw.yaml', () => {
    const env = { FLEETFW_INVENTORY: EMBEDDED_INVENTORY };
    expect(resolveInventory({ inventory: EMBEDDED_INVENTORY, ...rule('never') }, {}, withFile)).toMatchObject({ from: 'option' });
    expect(resolveInventory(rule('never'), env, withFile)).toMatchObject({ from: 'env', file: EMBEDDED_INVENTORY });
    // Relative, as found: a saved plan keeps it relative.
    expect(resolveInventory(rule('never'), {}, withFile)).toMatchObject({ from: 'cwd', file: 'fleetfw.yaml' });
  });

  it('never: refused with a hint, even inside fleetfw own folder', () => {
    for (const cwd of [away, ROOT]) {
      const message = refusal(() => resolveInventory(rule('never'), {}, cwd));
      expect(message).toMatch(/^apply: no inventory given: name one with --inventory FILE, set FLEETFW_INVENTORY, or put a fleetfw\.yaml in this folder/);
      expect(message).toContain('never falls back to the embedded example');
    }
  });

  it('in-project: the example inside fleetfw own folder (and below it), refused elsewhere', () => {
    expect(resolveInventory(rule('in-project'), {}, ROOT)).toMatchObject({ from: 'example', file: EMBEDDED_INVENTORY });
    expect(resolveInventory(rule('in-project'), {}, join(ROOT, 'inventories'))).toMatchObject({ from: 'example' });
    expect(refusal(() => resolveInventory(rule('in-project'), {}, away))).toMatch(/only inside fleetfw's own folder/);
  });

  it('always (the lab, the demo, and calls that set no rule): the example', () => {
    expect(resolveInventory(rule('always'), {}, away)).toMatchObject({ from: 'example' });
    expect(resolveInventory({}, {}, away)).toMatchObject({ from: 'example' });
  });

  it('a named file that is missing or a folder is a usage error naming where it came from', () => {
    expect(refusal(() => resolveInventory({ inventory: join(away, 'nope.yaml') }, {}, away))).toBe(`inventory file not found: ${join(away, 'nope.yaml')}`);
    expect(refusal(() => resolveInventory(rule('never'), { FLEETFW_INVENTORY: join(away, 'nope.yaml') }, away))).toMatch(/not found: .*nope\.yaml \(from FLEETFW_INVENTORY\)$/);
    expect(refusal(() => resolveInventory({ inventory: join(away, 'folder.yaml') }, {}, away))).toMatch(/is a folder/);
  });
});

describe('hostNamed', () => {
  const inv = loadInventory(EMBEDDED_INVENTORY);
  it('says what a name is when it is not a host', () => {
    expect(hostNamed(inv, 'mysql-1', 'explain').name).toBe('mysql-1');
    expect(refusal(() => hostNamed(inv, 'mysql', 'explain'))).toBe('"mysql" is a group (mysql-1, mysql-2): explain takes one host, e.g. mysql-1');
    expect(refusal(() => hostNamed(inv, 'internet', 'explain'))).toMatch(/is an external/);
    expect(refusal(() => hostNamed(inv, 'mysql-11', 'explain'))).toBe('no host named "mysql-11" in the inventory (did you mean "mysql-1"?)');
  });
});
