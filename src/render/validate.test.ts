import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Origin } from '../model/ruleset.js';
import { loadInventory } from '../inventory/load.js';
import { parseFleet } from '../plan/checks.js';
import { loadTemplates } from './load-templates.js';
import { renderFleet } from './render.js';
import { mergeFound, newValidationCache, validateRendered, type Piece } from './validate.js';

const INVENTORIES = join(dirname(fileURLToPath(import.meta.url)), '../../inventories');

/** A one-rule filter table whose rule line came from `t.v4` line 7, written as `pieces`. */
function validateRule(pieces: Piece[] | undefined, text = pieces?.map((p) => p.text).join(' ') ?? '', origin: Origin | null = { file: 't.v4', line: 7 }) {
  const rendered = { text: `*filter\n${text}\nCOMMIT\n`, origins: [undefined, origin ?? undefined, undefined] };
  const { found } = validateRendered('web-1', 4, rendered, newValidationCache(), (line) => (line === 2 ? pieces : undefined));
  return mergeFound(found).map((p) => `${p.file}:${p.line}:${p.col}: ${p.message}`);
}

/** The pieces of a template line written from column `indent + 1`, one space apart unless told. */
function literal(line: string, indent = 0): Piece[] {
  return [...line.matchAll(/\S+/g)].map((m) => ({ text: m[0], col: indent + (m.index ?? 0) + 1 }));
}

describe('validateRendered: the template column of a rendered problem', () => {
  it('maps a column of the template text itself to the same character in the template, indentation and spacing as written', () => {
    const pieces = literal('-A INPUT -p tcp    --dprot 80 -j ACCEPT', 4);
    expect(validateRule(pieces)).toEqual(['t.v4:7:24: unknown option --dprot (did you mean --dport?) (rendered web-1/rules.v4 line 2)']);
  });

  it('points at the reference when the problem is in the value it gave, and says so', () => {
    const pieces: Piece[] = [...literal('-A INPUT -s'), { text: '192.0.2.300', col: 30, from: '{{ vars.src }}' }, ...literal('-j ACCEPT', 60)];
    expect(validateRule(pieces)).toEqual(['t.v4:7:30: not an IPv4 address: 192.0.2.300 (rendered web-1/rules.v4 line 2, in the value of {{ vars.src }})']);
  });

  it('without pieces (a render it did not make): column 1 of the template line', () => {
    expect(validateRule(undefined, '-A INPUT -j ACCEPTT')).toEqual([
      't.v4:7:1: -j ACCEPTT: no target or chain "ACCEPTT" in *filter (did you mean ACCEPT?) (rendered web-1/rules.v4 line 2)',
    ]);
  });

  it('a line no template wrote is reported at the rendered file, and judged as a live rule is', () => {
    expect(validateRule(undefined, '-A INPUT -p tcp --dprot 22 -j ACCEPT', null)).toEqual(['web-1/rules.v4:2:17: unknown option --dprot (did you mean --dport?) (rendered web-1/rules.v4 line 2)']);
    // A saved plan's live chains (no template line): an unknown module or target stays the analysis' business.
    expect(validateRule(undefined, '-A INPUT -m geoip --src-cc XX -j TARPIT', null)).toEqual([]);
  });
});

describe('validateRendered: what only a template gets wrong', () => {
  const check = (rule: string) => validateRule(literal(rule)).map((m) => m.replace(/^t\.v4:7:\d+: /, '').replace(/ \(rendered .*\)$/, ''));

  it('a jump to a chain the table does not declare, with the chains it does', () => {
    const rendered = { text: '*filter\n:TCP - [0:0]\n:UDP - [0:0]\n-A INPUT -j TPC\n-A INPUT -j WEB\nCOMMIT\n', origins: [undefined, undefined, undefined, { file: 't.v4', line: 3 }, { file: 't.v4', line: 4 }] };
    const { found } = validateRendered('web-1', 4, rendered, newValidationCache());
    expect(mergeFound(found).map((p) => p.message.replace(/ \(rendered .*\)$/, ''))).toEqual([
      '-j TPC: no target or chain "TPC" in *filter (did you mean TCP?)',
      '-j WEB: jump to chain WEB, which is not declared in *filter (declared: TCP, UDP; declare it with :WEB - [0:0])',
    ]);
  });

  it('match modules iptables does not have, and options a fully known module does not take', () => {
    expect(check('-A INPUT -p tcp -m tpc --dport 22 -j ACCEPT')).toEqual(['unknown match "-m tpc" (did you mean -m tcp?): iptables has no such match extension']);
    expect(check('-A INPUT -m comment --coment x -j ACCEPT')).toEqual(['unknown option --coment after -m comment (did you mean --comment?)']);
    // conntrack is known only in part: an option we do not model is not a mistake.
    expect(check('-A INPUT -m conntrack --ctdir ORIGINAL -j ACCEPT')).toEqual([]);
    expect(check('-A INPUT -m recent --rcheck --seconds 60 -j DROP')).toEqual([]);
  });

  it('states by name, in any case; SNAT and DNAT only for --ctstate', () => {
    expect(check('-A INPUT -m conntrack --ctstate established,DNAT -j ACCEPT')).toEqual([]);
    expect(check('-A INPUT -m state --state NEW,DNAT -j ACCEPT')).toEqual(['unknown state "DNAT" in --state NEW,DNAT (INVALID, NEW, RELATED, ESTABLISHED, UNTRACKED)']);
  });

  it('hints only what is close: a short word needs one edit', () => {
    expect(check('-A INPUT -j WEB')[0]).not.toMatch(/did you mean/);
    expect(check('-A INPUT -j DORP')).toEqual(['-j DORP: no target or chain "DORP" in *filter (did you mean DROP?)']);
    expect(check('-A INPUT --log-prefix x -j LOG')[0]).toMatch(/an option of -j LOG: write it after the target/);
  });
});

describe('mergeFound', () => {
  it('reports a mistake shared by many hosts once, with how many more', () => {
    const problem = (host: string) => ({ file: 't.v4', line: 2, col: 5, path: `hosts.${host}`, message: `host ${host} has no var "x"` });
    const found = ['web-1', 'web-2', 'web-3'].map((h) => ({ problem: problem(h), same: problem(h).message.replace(h, '\0') }));
    expect(mergeFound(found)).toEqual([{ ...problem('web-1'), message: 'host web-1 has no var "x" (the same on 2 other hosts)' }]);
  });
});

describe('one validation for render, verify, plan and apply', () => {
  it('parseFleet takes the rule sets renderFleet validated instead of parsing them again', () => {
    const inv = loadInventory(join(INVENTORIES, 's1.yaml'));
    const rendered = renderFleet(inv, loadTemplates(inv));
    const first = parseFleet(rendered);
    const second = parseFleet(rendered);
    expect(second.get('mysql-1')!.v4).toBe(first.get('mysql-1')!.v4);
    // A render it did not make (a copy) is parsed and checked the same way.
    const copy = rendered.map((r) => ({ ...r, v4: { ...r.v4 }, v6: { ...r.v6 } }));
    expect(parseFleet(copy).get('mysql-1')!.v4).toEqual(first.get('mysql-1')!.v4);
  });
});
