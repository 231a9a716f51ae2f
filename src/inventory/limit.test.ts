import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { loadInventory } from './load.js';
import { globToRegExp, parseLimit, selectByLimit } from './limit.js';

const S1 = loadInventory(path.join(path.dirname(fileURLToPath(import.meta.url)), '../../inventories/s1.yaml'));
const names = (limit: string | undefined) => selectByLimit(S1, limit).map((h) => h.name);
const refusal = (limit: string): string => {
  try {
    selectByLimit(S1, limit);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as UsageError).message;
  }
  throw new Error(`--limit ${limit} was accepted`);
};

describe('--limit, as Ansible patterns', () => {
  it('no limit is every host, in inventory order', () => {
    expect(names(undefined)).toEqual(S1.hosts.map((h) => h.name));
  });

  it('names hosts and groups, comma- or colon-separated', () => {
    expect(names('mysql-1')).toEqual(['mysql-1']);
    expect(names('wordpress')).toEqual(['wordpress-1', 'wordpress-2']);
    expect(names('haproxy, mysql-2')).toEqual(['haproxy-www', 'mysql-2']);
    expect(names('bastion:haproxy')).toEqual(['haproxy-www', 'tunnel-1']);
    expect(names('all')).toHaveLength(6);
  });

  it('globs match host names and group names', () => {
    expect(names('wordpress*')).toEqual(['wordpress-1', 'wordpress-2']);
    expect(names('*-1')).toEqual(['mysql-1', 'tunnel-1', 'wordpress-1']);
    expect(names('mysql-?')).toEqual(['mysql-1', 'mysql-2']);
    expect(names('mysql-[!1]')).toEqual(['mysql-2']);
    expect(names('*')).toHaveLength(6);
    // `hap*` matches the group haproxy (and so its member), `back*` the group backend.
    expect(names('hap*')).toEqual(['haproxy-www']);
    expect(names('back*')).toEqual(['mysql-1', 'mysql-2', 'wordpress-1', 'wordpress-2']);
  });

  it('!pattern excludes; exclusions alone mean every host but those', () => {
    expect(names('all,!mysql')).toEqual(['haproxy-www', 'tunnel-1', 'wordpress-1', 'wordpress-2']);
    expect(names('!mysql')).toEqual(names('all,!mysql'));
    expect(names('wordpress,!wordpress-2')).toEqual(['wordpress-1']);
    expect(names('backend,!mysql-*,!wordpress-1')).toEqual(['wordpress-2']);
  });

  it('&pattern intersects', () => {
    expect(names('backend,&*-2')).toEqual(['mysql-2', 'wordpress-2']);
    expect(names('all,&mysql,!mysql-1')).toEqual(['mysql-2']);
  });

  it('a pattern that matches nothing is a usage error with "did you mean", every one at once', () => {
    expect(refusal('wordpres-1')).toBe('--limit: no host or group named "wordpres-1" (did you mean "wordpress-1"?)');
    expect(refusal('wordpress,!wordpres-2')).toContain('no host or group named "wordpres-2" (in "!wordpres-2") (did you mean "wordpress-2"?)');
    const both = refusal('mysq,wbe*');
    expect(both).toContain('"mysq" (did you mean "mysql"?)');
    expect(both).toMatch(/"wbe\*" matches no host or group \(groups: all, backend, bastion, haproxy, mysql, wordpress\)/);
  });

  it('a limit that leaves no host, or names none, is a usage error', () => {
    expect(refusal('mysql,!mysql')).toMatch(/selects no host: its exclusions remove every host it names/);
    expect(refusal('mysql,&wordpress')).toMatch(/selects no host/);
    expect(refusal(' , ')).toMatch(/names no host or group/);
    expect(refusal('all,!')).toMatch(/"!" needs a host or group after "!"/);
  });
});

describe('parseLimit and globToRegExp', () => {
  it('splits into operations', () => {
    expect(parseLimit('a, !b ,&c')).toEqual([
      { op: 'add', pattern: 'a' },
      { op: 'not', pattern: 'b' },
      { op: 'and', pattern: 'c' },
    ]);
  });

  it('is fnmatch: dots and dashes are literal, an unclosed [ is a character', () => {
    expect(globToRegExp('web.*').test('web.1')).toBe(true);
    expect(globToRegExp('web.*').test('webx1')).toBe(false);
    expect(globToRegExp('a[0-9]').test('a7')).toBe(true);
    expect(globToRegExp('a[').test('a[')).toBe(true);
    expect(globToRegExp('db?').test('db')).toBe(false);
  });
});
