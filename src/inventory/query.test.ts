import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadInventory } from './load.js';
import { bastionOf, groupMembers } from './query.js';

const inv = loadInventory(path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/good/full.yaml'));
const host = (name: string) => inv.hosts.find((h) => h.name === name)!;

describe('groupMembers', () => {
  it('maps every group, role and `all` to its hosts sorted by name', () => {
    const names = new Map([...groupMembers(inv)].map(([g, hs]) => [g, hs.map((h) => h.name)]));
    expect(Object.fromEntries(names)).toEqual({
      all: ['mysql-1', 'mysql-2', 'tunnel-1', 'tunnel-2', 'www-1'],
      bastion: ['tunnel-1', 'tunnel-2'],
      db: ['mysql-1', 'mysql-2'],
      haproxy: ['www-1'],
      mysql: ['mysql-1', 'mysql-2'],
      perimeter: ['mysql-2'],
      wordpress: ['www-1'],
    });
  });
});

describe('bastionOf', () => {
  it('finds the bastion of the host network; a bastion is its own', () => {
    expect(bastionOf(inv, host('mysql-1')).name).toBe('tunnel-1');
    expect(bastionOf(inv, host('www-1')).name).toBe('tunnel-2');
    expect(bastionOf(inv, host('tunnel-2')).name).toBe('tunnel-2');
  });

  it('throws on a hand-built inventory without that network', () => {
    expect(() => bastionOf(inv, { ...host('mysql-1'), network: 'nowhere' })).toThrow(/has no bastion/);
  });
});
