// parseInventory is pure: templates are known only through the function it is given.
// A file of its own because the file system is replaced for the whole file.
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { InputError } from '../errors.js';
import { parseInventory } from './load.js';
import type { TemplateExists } from './load.js';

// Every use of the file system is recorded and refused.
const touched = vi.hoisted(() => [] as string[]);
vi.mock('node:fs', () => {
  const refuse =
    (name: string) =>
    (...args: unknown[]): never => {
      touched.push(`${name}(${String(args[0])})`);
      throw new Error(`the file system was used: ${name}`);
    };
  const fs = { existsSync: refuse('existsSync'), readFileSync: refuse('readFileSync'), statSync: refuse('statSync') };
  return { ...fs, default: fs };
});

const TEXT = `version: 1
defaults:
  base: isolated
networks:
  lan:
    bastion: tunnel-1
hosts:
  tunnel-1:
    public: 203.0.113.10
    private: 192.0.2.10
    roles: [bastion]
  mysql-1:
    private: 192.0.2.11
    roles: [mysql]
`;
// Nothing here exists on disk: only the injected function can say it does.
const FILE = '/nonexistent/fleet/inventories/x.yaml';
const TEMPLATES = '/nonexistent/fleet/templates';

/** A TemplateExists over a fixed set of paths that records every question. */
function fakeTemplates(present: string[]): { exists: TemplateExists; asked: [string, string][] } {
  const asked: [string, string][] = [];
  const exists: TemplateExists = (p, kind) => {
    asked.push([p, kind]);
    return present.includes(p);
  };
  return { exists, asked };
}

function problemsOf(parse: () => unknown): string[] {
  try {
    parse();
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return (e as InputError).message.split('\n');
  }
  throw new Error('expected an InputError');
}

describe('parseInventory: templates only through the injected function', () => {
  afterEach(() => {
    expect(touched.splice(0)).toEqual([]);
  });

  it('reports a missing role template that the function says is missing', () => {
    const t = fakeTemplates([TEMPLATES, path.join(TEMPLATES, 'bases/isolated.v4'), path.join(TEMPLATES, 'roles/bastion.v4')]);
    const missing = path.relative(process.cwd(), path.join(TEMPLATES, 'roles/mysql.v4'));
    expect(problemsOf(() => parseInventory(TEXT, 'x.yaml', FILE, t.exists))).toEqual([
      `x.yaml:14:13: hosts.mysql-1.roles[0]: role "mysql" has no template (expected ${missing})`,
    ]);
    expect(t.asked).toEqual([
      [TEMPLATES, 'folder'],
      [path.join(TEMPLATES, 'bases/isolated.v4'), 'file'],
      [path.join(TEMPLATES, 'roles/bastion.v4'), 'file'],
      [path.join(TEMPLATES, 'roles/mysql.v4'), 'file'],
    ]);
  });

  it('accepts templates the function says exist, though the disk has none', () => {
    const t = fakeTemplates([TEMPLATES, ...['bases/isolated.v4', 'roles/bastion.v4', 'roles/mysql.v4'].map((f) => path.join(TEMPLATES, f))]);
    const inv = parseInventory(TEXT, 'x.yaml', FILE, t.exists);
    expect(inv.templatesDir).toBe(TEMPLATES);
    expect(inv.hosts.map((h) => h.name)).toEqual(['mysql-1', 'tunnel-1']);
  });

  it('reports a missing templates folder and asks about no template in it', () => {
    const t = fakeTemplates([]);
    const folder = path.relative(process.cwd(), TEMPLATES);
    expect(problemsOf(() => parseInventory(TEXT, 'x.yaml', FILE, t.exists))).toEqual([`x.yaml:1:1: templates: templates folder ${folder} not found`]);
    expect(t.asked).toEqual([[TEMPLATES, 'folder']]);
  });
});

describe('parseInventory: a host reached over IPv6', () => {
  const all = fakeTemplates([TEMPLATES, ...['bases/isolated.v4', 'roles/bastion.v4', 'roles/mysql.v4'].map((f) => path.join(TEMPLATES, f))]);
  const v6 = (bastion6: string) =>
    TEXT.replace('    private: 192.0.2.11\n', '    private6: 2001:db8:1::11\n').replace('    private: 192.0.2.10\n', `    private: 192.0.2.10\n${bastion6}`);

  it('is reached at its private IPv6 address when it has no IPv4 one', () => {
    const inv = parseInventory(v6('    private6: 2001:db8:1::10\n'), 'x.yaml', FILE, all.exists);
    expect(inv.hosts.find((h) => h.name === 'mysql-1')).toMatchObject({ private6: '2001:db8:1::11' });
  });

  it('needs the bastion to have a private IPv6 address too, said at the host\'s address', () => {
    expect(problemsOf(() => parseInventory(v6(''), 'x.yaml', FILE, all.exists))).toEqual([
      'x.yaml:13:15: hosts.mysql-1.private6: host "mysql-1" is reached at its private6 address, but bastion "tunnel-1" has no private6 address to reach it from',
    ]);
  });
});
