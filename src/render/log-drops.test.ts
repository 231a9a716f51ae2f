import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.js';
import { loadInventory } from '../inventory/load.js';
import { parseRuleSet } from '../analyze/parse.js';
import { evaluatePacket } from '../analyze/evaluate.js';
import { loadTemplates } from './load-templates.js';
import { renderFleet } from './render.js';
import { parseLogDrops, parseTemplate } from './template.js';

const INVENTORIES = join(dirname(fileURLToPath(import.meta.url)), '../../inventories');

describe('%log-drops CHAIN [RATE] ["PREFIX"]', () => {
  it('parses with seed 000 defaults and checks rate and prefix', () => {
    expect(parseLogDrops('%log-drops INPUT')).toEqual({ chain: 'INPUT', rate: '60/min', prefix: 'fleetfw DROP: ' });
    expect(parseLogDrops('%log-drops FORWARD 5/sec "fw: "')).toEqual({ chain: 'FORWARD', rate: '5/sec', prefix: 'fw: ' });
    expect(parseLogDrops('%log-drops')).toMatch(/^expected %log-drops CHAIN/);
    expect(parseLogDrops('%log-drops INPUT 60/fortnight')).toMatch(/^bad rate/);
    expect(parseLogDrops('%log-drops INPUT 60/min "a prefix much longer than the kernel keeps"')).toMatch(/^bad prefix/);
    expect(parseLogDrops('%log-drops INPUT 60/min "$(x)"')).toMatch(/^bad prefix/);
  });

  it('belongs in the filter table', () => {
    const { problems } = parseTemplate('*nat\n%log-drops INPUT\nCOMMIT\n', 'templates/bases/x.v4');
    expect(problems.map((p) => `${p.line}:${p.col}: ${p.message}`)).toEqual(['2:1: %log-drops must be inside the *filter table']);
  });

  const inv = loadInventory(join(INVENTORIES, 's1.yaml'));
  const renderWithBase = (base: string) => {
    const templates = loadTemplates(inv);
    templates.set('bases/isolated.v4', parseTemplate(base, 'templates/bases/isolated.v4').template);
    return renderFleet(inv, templates).find((h) => h.host === 'mysql-1')!;
  };
  const BASE = '*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n%roles\n%log-drops INPUT\nCOMMIT\n';

  it('renders the jump where the directive is, the chain once and the rate-limited LOG rule', () => {
    const r = renderWithBase(BASE);
    const lines = r.v4.text.split('\n');
    const rules = lines.filter((l) => l.startsWith('-A INPUT'));
    expect(rules[rules.length - 1]).toBe('-A INPUT -j LOG-DROPS');
    expect(lines.filter((l) => l === ':LOG-DROPS - [0:0]')).toHaveLength(1);
    expect(lines[lines.length - 3]).toBe('-A LOG-DROPS -m limit --limit 60/min -j LOG --log-prefix "fleetfw DROP: " --log-level 7');
    // Provenance points at the directive.
    const at = lines.indexOf('-A INPUT -j LOG-DROPS');
    expect(r.v4.origins[at]).toEqual({ file: 'templates/bases/isolated.v4', line: 7 });
  });

  it('logs and changes no verdict: a stray packet is still dropped by the policy', () => {
    const { ruleSet, problems } = parseRuleSet(renderWithBase(BASE).v4.text, { family: 4, file: 'mysql-1/rules.v4' });
    expect(problems).toEqual([]);
    const ev = evaluatePacket(ruleSet, { family: 4, hook: 'INPUT', in: 'eth1', src: '192.0.2.250', dst: '192.0.2.14', proto: 'tcp', sport: 40000, dport: 3306, state: 'NEW' });
    expect(ev.verdict).toBe('DROP');
    expect(ev.decidedBy).toEqual({ kind: 'policy', table: 'filter', chain: 'INPUT' });
    expect(ev.trace.some((s) => s.event === 'log' && s.chain === 'LOG-DROPS')).toBe(true);
  });

  it('refuses two directives of one table with different settings', () => {
    const e = (() => {
      try {
        renderWithBase(BASE.replace('%log-drops INPUT\n', '%log-drops INPUT\n%log-drops FORWARD 1/sec\n'));
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(InputError);
    expect((e as InputError).message).toContain('templates/bases/isolated.v4:8:1: hosts.mysql-1: %log-drops rate and prefix differ from templates/bases/isolated.v4:7');
  });

  it('is enabled in the S2 example (security-first base): rejects are logged first', () => {
    const s2 = loadInventory(join(INVENTORIES, 's2.yaml'));
    const db = renderFleet(s2, loadTemplates(s2)).find((h) => h.host === 'db')!.v4.text;
    expect(db).toContain('-A INPUT -j LOG-DROPS\n-A INPUT -p udp -j REJECT --reject-with icmp-port-unreachable');
    expect(db).toContain('-A LOG-DROPS -m limit --limit 60/min -j LOG --log-prefix "fleetfw REJECT: " --log-level 7');
  });
});
