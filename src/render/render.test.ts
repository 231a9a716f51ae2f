import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.js';
import type { HostSpec, Inventory } from '../model/inventory.js';
import { loadInventory } from '../inventory/load.js';
import { loadTemplates } from './load-templates.js';
import { renderFleet, type RenderedHost, type TemplateSet } from './render.js';
import { parseTemplate } from './template.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const INVENTORIES = join(ROOT, 'inventories');
const examples = readdirSync(INVENTORIES).filter((f) => f.endsWith('.yaml') && f !== 'bad.yaml');

function renderExample(file: string): RenderedHost[] {
  const inv = loadInventory(join(INVENTORIES, file), { displayPath: `inventories/${file}` });
  return renderFleet(inv, loadTemplates(inv));
}

describe('golden files: every example host, both families', () => {
  // The golden files double as the snapshot `fleetfw plan --offline` compares with.
  for (const file of examples) {
    it(`${file} renders exactly its committed ${file.replace('.yaml', '.rendered')}/`, () => {
      const dir = join(INVENTORIES, file.replace('.yaml', '.rendered'));
      for (const host of renderExample(file)) {
        for (const key of ['v4', 'v6'] as const) {
          const golden = join(dir, host.host, `rules.${key}`);
          if (process.env.UPDATE_GOLDEN === '1') {
            mkdirSync(dirname(golden), { recursive: true });
            writeFileSync(golden, host[key].text);
          }
          expect(existsSync(golden), `${golden} exists`).toBe(true);
          expect(host[key].text).toBe(readFileSync(golden, 'utf8'));
        }
      }
    });
  }

  it('is deterministic: two renders are byte-identical', () => {
    expect(renderExample('s1.yaml')).toEqual(renderExample('s1.yaml'));
  });
});

describe('composition', () => {
  const s1 = renderExample('s1.yaml');
  const byName = (n: string) => s1.find((h) => h.host === n)!;

  it('puts the management path first in INPUT, from the bastion on the private side', () => {
    const lines = byName('mysql-1').v4.text.split('\n');
    const firstRule = lines.find((l) => l.startsWith('-A INPUT'));
    expect(firstRule).toBe('-A INPUT -s 192.0.2.10/32 -i eth1 -p tcp -m tcp --dport 22 -j ACCEPT');
  });

  it('opens the bastion to the operators on its public side and lets it reach the private side', () => {
    const text = byName('tunnel-1').v4.text;
    expect(text).toContain('-A INPUT -i eth0 -p tcp -m tcp --dport 22 -j ACCEPT');
    expect(text).toContain('-A OUTPUT -o eth1 -p tcp -m tcp --dport 22 -j ACCEPT');
  });

  it('expands a group reference into one rule per member, peers without self', () => {
    const text = byName('wordpress-1').v4.text;
    const whitelist = text.split('\n').filter((l) => l.startsWith('-A INPUT -i eth1 -p tcp -s ') && !l.includes('--dport'));
    expect(whitelist).toEqual([
      '-A INPUT -i eth1 -p tcp -s 192.0.2.14 -j ACCEPT',
      '-A INPUT -i eth1 -p tcp -s 192.0.2.15 -j ACCEPT',
      '-A INPUT -i eth1 -p tcp -s 192.0.2.13 -j ACCEPT',
    ]);
  });

  it('closes IPv6 when the base has no v6 template, and says so', () => {
    const h = byName('haproxy-www');
    expect(h.v6.closedByDefault).toBe(true);
    expect(h.v6.text).toContain(':INPUT DROP [0:0]');
    expect(h.v6.text).toContain(':OUTPUT DROP [0:0]');
    expect(h.notes).toContain('IPv6 closed by default: no template bases/public-edge.v6');
  });

  it('records where each output line came from', () => {
    const h = byName('haproxy-www');
    const i = h.v4.text.split('\n').findIndex((l) => l.includes('--dport 80 -m conntrack'));
    expect(h.v4.origins[i]).toEqual({ file: 'templates/roles/haproxy.v4', line: 3 });
  });
});

describe('errors name the template file and line', () => {
  const inv = loadInventory(join(INVENTORIES, 's1.yaml'));
  function renderWith(roleText: string, host = 'mysql-1'): unknown {
    const templates: TemplateSet = loadTemplates(inv);
    templates.set('roles/mysql.v4', parseTemplate(roleText, 'templates/roles/mysql.v4').template);
    try {
      renderFleet({ ...inv, hosts: inv.hosts.filter((h) => h.name !== 'mysql-2' || host === 'mysql-2') }, templates);
      return undefined;
    } catch (e) {
      return e;
    }
  }
  const cases: Array<[string, string]> = [
    ['-A INPUT -s {{ group.nosuch.private }} -j ACCEPT', 'templates/roles/mysql.v4:2:13: hosts.mysql-1: {{ group.nosuch.private }}: no group named "nosuch" in the inventory'],
    ['-A INPUT -s {{ self.nosuch }} -j ACCEPT', 'templates/roles/mysql.v4:2:13: hosts.mysql-1: unknown reference {{ self.nosuch }} (known: self.<field>, self.if.public|private, bastion.<field>, group.<group>.<field>, peers.<group>.<field>, host.<host>.<field>, vars.<name>, operators; fields: public, private, public6, private6)'],
    ['-A INPUT -j {{ self.private }}', 'templates/roles/mysql.v4:2:13: hosts.mysql-1: {{ self.private }} follows "-j"; references may only fill -s, -d, -i, -o, --sport, --dport or multiport ports'],
    ['-A INPUT -i {{ self.private }} -j ACCEPT', 'templates/roles/mysql.v4:2:13: hosts.mysql-1: {{ self.private }} gives "192.0.2.14" (an address) but -i takes an interface name'],
    ['-A INPUT -s {{ self.public6 }} -j ACCEPT', 'templates/roles/mysql.v4:2:13: hosts.mysql-1: {{ self.public6 }}: host mysql-1 has no public6 address'],
    ['-A INPUT -s x{{ self.private }} -j ACCEPT', 'templates/roles/mysql.v4:2:13: hosts.mysql-1: "x{{ self.private }}" is not a reference: write it as a whole word, e.g. {{ self.private }}'],
    // Odd Unicode in a template is escaped in the message, never printed raw.
    ['-A INPUT -s {{ host.mysql\u202e-1.private }} -j ACCEPT', 'templates/roles/mysql.v4:2:13: hosts.mysql-1: "{{ host.mysql\\u202e-1.private }}" is not a reference: write it as a whole word, e.g. {{ self.private }}'],
    ['-A INPUT -s {{ \uff48ost.mysql-1.private }} -j ACCEPT', 'templates/roles/mysql.v4:2:13: hosts.mysql-1: "{{ \\uff48ost.mysql-1.private }}" is not a reference: write it as a whole word, e.g. {{ self.private }}'],
    ['-A INPUT -s {{ vars.dns }} -j ACCEPT', 'templates/roles/mysql.v4:2:13: hosts.mysql-1: {{ vars.dns }}: host mysql-1 has no var "dns"'],
  ];
  for (const [line, message] of cases) {
    it(message.replace(/^.*?: hosts\.mysql-1: /, ''), () => {
      const e = renderWith(`*filter\n${line}\nCOMMIT\n`);
      expect(e).toBeInstanceOf(InputError);
      expect((e as InputError).message).toBe(message);
    });
  }

  it('reports template syntax problems with file and line', () => {
    const { problems } = parseTemplate('*filter\n-A INPUT -j ACCEPT\n%nope\n', 'templates/roles/x.v4');
    expect(problems.map((p) => `${p.file}:${p.line}:${p.col}: ${p.message}`)).toEqual([
      'templates/roles/x.v4:3:1: unknown directive "%nope" (known: %roles, %management off, %log-drops)',
      'templates/roles/x.v4:1:1: table *filter has no COMMIT',
    ]);
  });
});

describe('no inventory value can change the structure of a rendered rule (property)', () => {
  // A tiny seeded PRNG: the same hostile inputs on every run.
  let seed = 0x5eed;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const pieces = [' ', ';', '$(', ')', '`', '"', "'", '\n', '\r', '\0', '-j ACCEPT', '--', '\\', '#', '\u202e', '\u2028', '\u0085', 'ｅｔｈ', '192.0.2.1', '/', ':', '{{', '}}', 'a'.repeat(300)];
  const hostile = () => Array.from({ length: 1 + Math.floor(rand() * 4) }, () => pieces[Math.floor(rand() * pieces.length)]).join('');

  const inv = loadInventory(join(INVENTORIES, 's1.yaml'));
  const templates = loadTemplates(inv);
  const role = parseTemplate('*filter\n-A INPUT -i {{ vars.nic }} -s {{ vars.src }} -p tcp --dport {{ vars.port }} -j ACCEPT\nCOMMIT\n', 'templates/roles/mysql.v4').template;
  templates.set('roles/mysql.v4', role);
  const tokensOfTemplateLine = 12;

  it('either rejects the value or renders a rule with the template\'s own tokens', () => {
    let rejected = 0;
    let rendered = 0;
    for (let i = 0; i < 400; i++) {
      const vars = { nic: i % 3 === 0 ? hostile() : 'eth1', src: i % 3 === 1 ? hostile() : '192.0.2.10', port: i % 3 === 2 ? hostile() : '3306' };
      const hosts: HostSpec[] = inv.hosts.map((h) => (h.name === 'mysql-1' ? { ...h, vars } : h));
      const candidate: Inventory = { ...inv, hosts };
      try {
        const out = renderFleet(candidate, templates).find((h) => h.host === 'mysql-1')!;
        const line = out.v4.text.split('\n').find((l) => l.includes('--dport') && !l.includes('-m tcp'))!;
        expect(line.split(' ')).toHaveLength(tokensOfTemplateLine);
        expect(out.v4.text.split('\n').filter((l) => l.startsWith('-A ')).length).toBe(7);
        rendered++;
      } catch (e) {
        expect(e).toBeInstanceOf(InputError);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(300);
    expect(rendered + rejected).toBe(400);
  });
});
