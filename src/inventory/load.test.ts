import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import { isTemplateOnDisk, loadInventory, parseInventory } from './load.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
/** Template paths in messages are relative to the working directory. */
const template = (rel: string) => path.relative(process.cwd(), path.join(FIXTURES, 'templates', rel));

function problemsOf(load: () => Inventory): string[] {
  try {
    load();
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return (e as InputError).message.split('\n');
  }
  throw new Error('expected an InputError');
}
const badFixture = (name: string) =>
  problemsOf(() => loadInventory(path.join(FIXTURES, 'bad', `${name}.yaml`), { displayPath: `bad/${name}.yaml` }));

describe('loadInventory: a valid inventory', () => {
  const file = path.join(FIXTURES, 'good/full.yaml');
  const inv = loadInventory(file, { displayPath: 'full.yaml' });
  const at = (line: number, col: number) => ({ file: 'full.yaml', line, col });

  it('resolves paths, operators, settings and preserve', () => {
    expect(inv.file).toBe(file);
    expect(inv.templatesDir).toBe(path.join(FIXTURES, 'templates'));
    expect(inv.operators).toEqual(['203.0.113.0/24', '198.51.100.7/32', '2001:db8:1::/48']);
    expect(inv.settings).toEqual({ window: 30, generations: 5, installPersistent: true, knownHosts: '~/.ssh/fleet_known_hosts' });
    expect(inv.preserve).toEqual(['f2b-*', 'DOCKER-USER']);
    expect(inv.networks).toEqual([
      { name: 'lan', bastion: 'tunnel-1', pos: at(4, 3) },
      { name: 'dc2', bastion: 'tunnel-2', pos: at(6, 3) },
    ]);
  });

  it('sorts hosts and merges defaults field by field', () => {
    expect(inv.hosts.map((h) => h.name)).toEqual(['mysql-1', 'mysql-2', 'tunnel-1', 'tunnel-2', 'www-1']);
    expect(inv.hosts[1]).toEqual({
      name: 'mysql-2',
      public: '203.0.113.15',
      private: '192.0.2.15',
      interfaces: { public: 'eth0', private: 'ens4' },
      roles: ['mysql'],
      groups: ['all', 'db', 'mysql', 'perimeter'],
      base: 'isolated',
      network: 'lan',
      ssh: { user: 'deploy', port: 22, identityFile: '~/.ssh/id_ed25519', sudo: true },
      vars: { ntp: '192.0.2.123', dns: ['192.0.2.53', '192.0.2.54'], port: '3306' },
      pos: at(26, 3),
    });
    expect(inv.hosts[2]).toMatchObject({ name: 'tunnel-1', public6: '2001:db8::10', network: 'lan', ssh: { sudo: false } });
    expect(inv.hosts[4]).toMatchObject({
      name: 'www-1',
      roles: ['haproxy', 'wordpress'],
      network: 'dc2',
      ssh: { user: 'root', port: 2222, sudo: false },
      vars: { ntp: '10.0.0.123', range: '8000:8100' },
    });
  });

  it('adds the built-in externals unless given', () => {
    expect(inv.externals).toEqual([
      { name: 'internet', address: '203.0.113.201', address6: '2001:db8:ff::1', side: 'public', pos: at(18, 3) },
      { name: 'intruder', address: '192.0.2.250', side: 'private' },
      { name: 'mgmt-peer', address: '198.51.100.9', side: 'private', pos: at(19, 3) },
    ]);
  });

  it('parses every intent form', () => {
    expect(inv.intents.map(({ text: _text, pos: _pos, ...rest }) => rest)).toEqual([
      { from: 'internet', to: 'haproxy', proto: 'tcp', port: 80, expect: 'allow', family: 4 },
      { from: 'intruder', to: 'mysql-1', proto: 'tcp', port: 3306, expect: 'deny', family: 4 },
      { from: 'wordpress', to: 'mysql', proto: 'tcp', port: 3306, expect: 'allow', family: 4 },
      { from: 'all', to: 'internet', proto: 'tcp', port: 443, expect: 'allow', family: 4 },
      { from: 'internet', to: 'db', proto: 'tcp', port: 3306, expect: 'reject', family: 4 },
      { from: 'internet', to: 'perimeter', proto: 'tcp', port: 22, expect: 'deny', family: 6 },
      { from: 'mgmt-peer', to: 'perimeter', proto: 'udp', port: 1194, expect: 'allow', family: 4, via: 'private' },
      { from: 'perimeter', to: 'internet', proto: 'icmp', expect: 'drop', family: 4 },
    ]);
    expect(inv.intents[0]).toMatchObject({ text: 'internet -> haproxy:80 allow', pos: at(53, 5) });
  });

  it('applies defaults to a minimal inventory', () => {
    const min = loadInventory(path.join(FIXTURES, 'good/minimal.yaml'));
    expect(min.operators).toEqual(['0.0.0.0/0']);
    expect(min.settings).toEqual({ window: 60, generations: 5, installPersistent: true });
    expect(min.hosts[0]).toMatchObject({ name: 'mysql-1', interfaces: { public: 'eth0', private: 'eth1' }, ssh: { sudo: false }, network: 'lan' });
    expect(min.externals.map((x) => x.name)).toEqual(['internet', 'intruder']);
  });

  it('parseInventory gives the same result from text', () => {
    expect(parseInventory(readFileSync(file, 'utf8'), 'full.yaml', file, isTemplateOnDisk)).toEqual(inv);
  });
});

describe('loadInventory: one problem per rule', () => {
  const cases: [string, string][] = [
    ['syntax', '15:1: Flow sequence in block collection must be sufficiently indented and end with a ]'],
    ['version-missing', '1:1: version: missing "version" (expected version: 1)'],
    ['version-wrong', '1:10: version: unsupported version 2 (expected 1)'],
    ['unknown-key', '14:5: hosts.mysql-1.privat: unknown key "privat" (did you mean "private"?)'],
    ['unknown-key-top', '15:1: foo: unknown key "foo"'],
    ['wrong-type-roles', '14:12: hosts.mysql-1.roles: expected a list of strings, got a string'],
    ['wrong-type-port', '4:16: defaults.ssh.port: expected an integer, got a string'],
    ['wrong-type-hosts', '7:8: hosts: expected a map, got a list'],
    ['bad-ipv4', '13:14: hosts.mysql-1.private: "192.0.2.300" is not an IPv4 address'],
    ['bad-ipv6', '14:15: hosts.mysql-1.private6: "2001:db8:::11" is not an IPv6 address'],
    ['wrong-family', '11:14: hosts.tunnel-1.public6: "1.2.3.4" is an IPv4 address, expected IPv6'],
    ['bad-operator', '2:13: operators[0]: "203.0.113.0/33" has an invalid prefix length (expected 0-32)'],
    ['dup-address', '16:14: hosts.mysql-2.private: address 192.0.2.11 is already used by hosts.mysql-1.private'],
    ['dup-host', '15:3: hosts.mysql-1: duplicate host name "mysql-1" (first defined at line 12)'],
    ['bad-host-name', '15:3: hosts.mysql..2: "mysql..2" is not a valid host name (1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit, no "..")'],
    ['bad-interface', '15:28: hosts.mysql-1.interfaces.private: "eth1+": interface wildcards ("+") are not allowed'],
    ['bad-group', '15:14: hosts.mysql-1.groups[0]: "db.main" is not a valid name (1-28 of A-Z a-z 0-9 _ -, starting with a letter or digit)'],
    ['bad-port', '4:16: defaults.ssh.port: port must be 1-65535, got 70000'],
    ['host-group-clash', '15:3: hosts.mysql: host name "mysql" is also a group name'],
    ['no-role-template', `14:20: hosts.mysql-1.roles[1]: role "cache" has no template (expected ${template('roles/cache.v4')})`],
    ['no-base-template', `15:11: hosts.mysql-1.base: base "open" has no template (expected ${template('bases/open.v4')})`],
    ['no-templates-dir', `2:12: templates: templates folder ${path.relative(process.cwd(), path.join(FIXTURES, 'nowhere'))} not found`],
    ['no-networks', '1:1: networks: no networks defined (each private network needs a bastion)'],
    ['bastion-not-host', '6:14: networks.lan.bastion: bastion "tunnel-9" is not a host (did you mean "tunnel-1"?)'],
    ['bastion-no-public', '6:14: networks.lan.bastion: bastion "tunnel-1" has no public address'],
    ['unknown-network', '15:14: hosts.mysql-1.network: unknown network "lam" (did you mean "lan"?)'],
    ['ambiguous-network', '14:3: hosts.mysql-1.network: no "network" given and there are 2 networks (lan, dc2)'],
    ['no-private', '12:3: hosts.mysql-1: host "mysql-1" has no private address (private or private6), so bastion "tunnel-1" cannot reach it'],
    [
      'bad-var-value',
      '15:31: hosts.mysql-1.vars.dns[1]: "192.0.2.54; reboot" is not a valid value (an address, CIDR, port, port range, interface name or word of A-Z a-z 0-9 _ . : / -, at most 64 characters)',
    ],
    ['bad-var-name', '15:13: hosts.mysql-1.vars.9lives: "9lives" is not a valid var name (1-64 of A-Z a-z 0-9 _, not starting with a digit)'],
    [
      'malformed-intent',
      '16:5: intents[0]: malformed intent "internet -> mysql-1 allow" (expected FROM -> TO:PORT[/tcp|/udp] EXPECT [ipv6] [via public|private])',
    ],
    ['unknown-endpoint', '16:5: intents[0]: unknown host, group or external "mysqll" (did you mean "mysql"?)'],
    ['unknown-expectation', '16:5: intents[0]: unknown expectation "alow" (did you mean "allow"?)'],
    ['intent-port-range', '16:5: intents[0]: port must be 1-65535, got 70000'],
    ['external-clash', '3:3: externals.mysql-1: external name "mysql-1" is already a host name'],
    ['external-default-clash', '15:3: hosts.internet: "internet" is the name of a built-in external (externals.internet)'],
    ['bad-window', '3:11: settings.window: window (seconds) must be 5-3600, got 2'],
    ['bad-generations', '3:16: settings.generations: generations must be 1-100, got 101'],
    ['bad-install-persistent', '3:23: settings.install_persistent: expected true or false, got a string'],
    ['bad-known-hosts', '3:16: settings.known_hosts: expected a string, got a list'],
    ['bad-ipset-threshold', '3:20: settings.ipset_threshold: ipset_threshold (members) must be 0-1000000, got -1'],
    ['bad-preserve', '2:12: preserve[0]: "f2b *" is not a valid chain pattern (1-28 of A-Z a-z 0-9 _ . + * -)'],
  ];
  it.each(cases)('%s', (name, expected) => {
    expect(badFixture(name)).toEqual([`bad/${name}.yaml:${expected}`]);
  });

  it('missing-base: every host without a base', () => {
    expect(badFixture('missing-base')).toEqual([
      'bad/missing-base.yaml:8:3: hosts.tunnel-1.base: no base given (set "base" here or in defaults)',
      'bad/missing-base.yaml:12:3: hosts.mysql-1.base: no base given (set "base" here or in defaults)',
    ]);
  });

  it('bad-health: unknown role, unknown probing host, missing port', () => {
    expect(badFixture('bad-health')).toEqual([
      'bad/bad-health.yaml:16:3: health.mysq: unknown role or group "mysq" (did you mean "mysql"?)',
      'bad/bad-health.yaml:19:27: health.mysql[0].from: unknown host "tunel-1" (did you mean "tunnel-1"?)',
      'bad/bad-health.yaml:20:7: health.mysql[1]: missing "port"',
    ]);
  });

  it('settings.ipset_threshold loads (absent = the renderer default)', () => {
    const text = readFileSync(path.join(FIXTURES, 'bad', 'bad-window.yaml'), 'utf8');
    const at = path.join(FIXTURES, 'bad', 'x.yaml');
    expect(parseInventory(text.replace('window: 2', 'ipset_threshold: 20'), 'x.yaml', at, isTemplateOnDisk).settings.ipsetThreshold).toBe(20);
    expect(parseInventory(text.replace('window: 2', 'window: 30'), 'x.yaml', at, isTemplateOnDisk).settings.ipsetThreshold).toBeUndefined();
  });

  it('health probes load per role', () => {
    const text = readFileSync(path.join(FIXTURES, 'bad', 'unknown-network.yaml'), 'utf8').replace('    network: lam\n', '');
    const inv = parseInventory(`${text}health:\n  mysql:\n    - { port: 3306 }\n    - { port: 22, from: tunnel-1 }\n`, 'x.yaml', path.join(FIXTURES, 'bad', 'x.yaml'), isTemplateOnDisk);
    expect(Object.keys(inv.health)).toEqual(['mysql']);
    expect(inv.health.mysql!.map(({ port, from }) => ({ port, from }))).toEqual([{ port: 3306, from: undefined }, { port: 22, from: 'tunnel-1' }]);
  });

  it('an unreadable file is one problem', () => {
    expect(problemsOf(() => loadInventory(path.join(FIXTURES, 'missing.yaml'), { displayPath: 'missing.yaml' }))).toEqual([
      'missing.yaml:1:1: cannot read the inventory (ENOENT)',
    ]);
  });

  it('an empty file is one problem', () => {
    expect(problemsOf(() => parseInventory('', 'empty.yaml', '/x/empty.yaml', isTemplateOnDisk))).toEqual(['empty.yaml:1:1: the file is empty']);
  });
});

describe('loadInventory: several problems', () => {
  it('reports all of them, sorted by line and column', () => {
    const name = 'several';
    expect(badFixture(name)).toEqual(
      [
        '7:16: defaults.ssh.port: port must be 1-65535, got 0',
        '14:14: hosts.mysql-1.private: address 192.0.2.10 is already used by hosts.tunnel-1.private',
        `15:20: hosts.mysql-1.roles[1]: role "cache" has no template (expected ${template('roles/cache.v4')})`,
        '16:27: hosts.mysql-1.interfaces.public: "eth 0" is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -, not starting with "-")',
        '16:36: hosts.mysql-1.interfaces.privat: unknown key "privat" (did you mean "private"?)',
        '17:3: hosts.mysql-1: duplicate host name "mysql-1" (first defined at line 13)',
        '19:3: hosts.web: host "web" has no private address (private or private6), so bastion "tunnel-1" cannot reach it',
        '21:31: hosts.web.vars.dns[1]: "$(reboot)" is not a valid value (an address, CIDR, port, port range, interface name or word of A-Z a-z 0-9 _ . : / -, at most 64 characters)',
        '23:5: intents[0]: unknown host, group or external "mysqll" (did you mean "mysql"?)',
        '24:5: intents[1]: unknown expectation "permit" (expected allow, deny, reject, drop)',
      ].map((line) => `bad/${name}.yaml:${line}`),
    );
  });
});

/** mulberry32: a tiny seeded PRNG so failures reproduce. */
function makeRandom(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HOSTILE = [' ', ';', '$(', ')', '`', '"', "'", '\n', '\r', '\t', '\0', ' -j ACCEPT', '\\', '#', '|', '&', '\u202e', '\u0085', '\u2028', '\u2029', '\ufeff', 'ｅｔｈ０', 'é'];
const BENIGN = ['eth0', 'a', '1', '.', '-', ':', '/', '192.0.2.1', 'mysql'];

function makeHostile(random: () => number): string {
  const pick = (list: string[]) => list[Math.floor(random() * list.length)]!;
  if (random() < 0.05) return pick(['a', ...HOSTILE]).repeat(5000).slice(0, 5000);
  const parts = [pick(HOSTILE)];
  for (let n = Math.floor(random() * 6); n > 0; n--) parts.splice(Math.floor(random() * (parts.length + 1)), 0, pick(random() < 0.5 ? HOSTILE : BENIGN));
  return parts.join('');
}

/** A YAML double-quoted scalar that decodes to exactly `s` (every non-ASCII char escaped). */
const yamlQuote = (s: string) => JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** Where a hostile value is placed: the lines appended to mysql-1 (or the hosts map) and the path of its problem. */
const PLACES: { field: string; lines: (q: string) => string[]; path: RegExp }[] = [
  { field: 'host name', lines: (q) => [`  ? ${q}`, '  : { private: 192.0.2.99, roles: [mysql] }'], path: /^hosts[.[]/ },
  { field: 'address', lines: (q) => [`    private6: ${q}`], path: /^hosts\.mysql-1\.private6$/ },
  { field: 'interface', lines: (q) => [`    interfaces: { private: ${q} }`], path: /^hosts\.mysql-1\.interfaces\.private$/ },
  { field: 'group', lines: (q) => [`    groups: [db, ${q}]`], path: /^hosts\.mysql-1\.groups\[1\]$/ },
  { field: 'var value', lines: (q) => [`    vars: { dns: [192.0.2.53, ${q}] }`], path: /^hosts\.mysql-1\.vars\.dns\[1\]$/ },
  { field: 'var name', lines: (q) => ['    vars:', `      ? ${q}`, '      : x'], path: /^hosts\.mysql-1\.vars[.[]/ },
];

describe('hostile values', () => {
  const base = readFileSync(path.join(FIXTURES, 'good/minimal.yaml'), 'utf8');
  const random = makeRandom(0x5eed);
  const values = Array.from({ length: 300 }, () => makeHostile(random));

  it.each(PLACES)('are rejected at their exact field: $field', ({ lines, path: fieldPath }) => {
    const baseLines = base.trimEnd().split('\n');
    for (const v of values) {
      const q = yamlQuote(v);
      const added = lines(q);
      const text = [...baseLines, ...added, ''].join('\n');
      const line = baseLines.length + added.findIndex((l) => l.includes(q)) + 1;
      const col = added.find((l) => l.includes(q))!.indexOf(q) + 1;
      let problems: InputError['problems'] | undefined;
      try {
        parseInventory(text, 'h.yaml', path.join(FIXTURES, 'good/h.yaml'), isTemplateOnDisk);
      } catch (e) {
        if (!(e instanceof InputError)) throw e;
        problems = e.problems;
        // Messages stay one printable line whatever the input.
        expect(e.message.split('\n').every((l) => /^[\x20-\x7e]+$/.test(l)), e.message).toBe(true);
      }
      expect(problems, JSON.stringify(v)).toHaveLength(1);
      expect(problems![0], JSON.stringify(v)).toMatchObject({ line, col, path: expect.stringMatching(fieldPath) });
    }
  });
});

describe('loadInventory: structural edge cases', () => {
  const base = readFileSync(path.join(FIXTURES, 'good/minimal.yaml'), 'utf8');
  const problems = (text: string) => problemsOf(() => parseInventory(text, 'x.yaml', path.join(FIXTURES, 'good/x.yaml'), isTemplateOnDisk));

  it('reports a duplicate key in any map', () => {
    expect(problems(base.replace('  base: isolated\n', '  base: isolated\n  base: isolated\n'))).toEqual([
      'x.yaml:4:3: defaults.base: duplicate key "base" (first defined at line 3)',
    ]);
  });

  it('refuses YAML aliases', () => {
    expect(problems(`${base}    vars: { a: &x eth0, b: *x }\n`)).toEqual([
      'x.yaml:15:28: hosts.mysql-1.vars.b: expected a string, got an alias (aliases are not supported)',
    ]);
  });

  it('refuses a host that is the bastion of two networks, or sits on another network', () => {
    const two = base.replace('    bastion: tunnel-1\n', '    bastion: tunnel-1\n  dc2:\n    bastion: tunnel-1\n');
    expect(problems(two)).toEqual([
      'x.yaml:8:14: networks.dc2.bastion: "tunnel-1" is already the bastion of networks.lan',
      'x.yaml:14:3: hosts.mysql-1.network: no "network" given and there are 2 networks (lan, dc2)',
    ]);
    const moved = base.replace('    bastion: tunnel-1\n', '    bastion: tunnel-1\n  dc2:\n    bastion: mysql-1\n').replace('    roles: [bastion]\n', '    roles: [bastion]\n    network: dc2\n');
    expect(problems(`${moved}    public: 198.51.100.1\n`)).toEqual([
      'x.yaml:14:14: hosts.tunnel-1.network: host "tunnel-1" is the bastion of network "lan" so it must be on it',
    ]);
  });

  it('refuses an empty operator list', () => {
    expect(problems(`${base}operators: []\n`)).toEqual(['x.yaml:15:12: operators: operators must not be empty (nobody could reach the bastions)']);
  });
});
