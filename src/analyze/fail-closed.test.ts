// Every match and target the model does not decide exactly makes the verdicts it
// can influence "cannot be shown": an error for the management path and for
// intents, naming the rule and why. The same match on a rule that decides
// nothing (LOG), or a target no SSH packet reaches, changes nothing.
import { describe, expect, it } from 'vitest';
import type { RuleSet } from '../model/ruleset.js';
import { buildFilter, buildIntent, buildInventory, buildTables, findTableRule, v4Only } from './fixtures/fleet.js';
import { formatRule } from './format.js';
import { verifyIntents } from './intents.js';
import { checkManagementPath, type LockoutResult } from './lockout.js';
import { parseRuleSet } from './parse.js';

const inv = buildInventory();
const mysql = inv.hosts.find((h) => h.name === 'mysql-1')!;
const ESTABLISHED = '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT';
const SSH = '-A INPUT -p tcp --dport 22';
const OPEN = buildFilter({}, []);

const failure = (r: LockoutResult) => {
  if (r.ok) throw new Error('expected the path to be cut');
  return r;
};

interface Case {
  /** The rule under test, on mysql-1's SSH path. */
  rule: string;
  /** Why it cannot be evaluated, as the messages say it. */
  why: string;
  /** The same thing where it decides nothing: a LOG, or a rule no SSH packet reaches. */
  harmless: string;
  /** Where mysql-1 meets it. */
  where?: string;
  /** The table it is in (filter unless said). */
  table?: 'mangle';
  /** The chain's policy (the rule itself accepts; nothing else does). */
  chain?: 'OUTPUT';
}

// A deciding rule (ACCEPT) carrying the match; the harmless twin logs instead.
const match = (module: string, why = module): Case => ({ rule: `${SSH} ${module} -j ACCEPT`, why, harmless: `${SSH} ${module} -j LOG` });
// A target on the SSH path before the accept; the harmless twin matches UDP only.
const target = (t: string, why: string): Case => ({ rule: `${SSH} -j ${t}`, why, harmless: `-A INPUT -p udp --dport 22 -j ${t}` });

const CASES: Array<[string, Case]> = [
  ['-m time', match('-m time --timestart 09:00 --timestop 17:00')],
  ['-m recent', match('-m recent --name ssh --rcheck --seconds 60')],
  ['-m string', match('-m string --string SSH- --algo bm')],
  ['-m u32', match('-m u32 --u32 "6&0xFF=0x6"', '-m u32 --u32 6&0xFF=0x6')],
  ['-m bpf', match('-m bpf --bytecode "4,48 0 0 9,21 0 1 6,6 0 0 1,6 0 0 0"')],
  ['-m statistic', match('-m statistic --mode random --probability 0.5')],
  ['-m connlimit', match('-m connlimit --connlimit-upto 4')],
  ['-m hashlimit', match('-m hashlimit --hashlimit-upto 10/min --hashlimit-name ssh')],
  ['-m quota', match('-m quota --quota 1000000')],
  ['-m mark', match('-m mark --mark 0x1')],
  ['-m limit', match('-m limit --limit 10/min --limit-burst 20', '-m limit --limit 10/min')],
  ['an unknown module', match('-m frobnicate --frob 1')],
  ['-m physdev', match('-m physdev --physdev-in eth1')],
  ['--tcp-option', match('--tcp-option 2', '--tcp-option 2')],
  ['-m set without its contents', match('-m set --match-set admins src', '--match-set admins src (contents of set admins not known)')],
  ['-m addrtype --limit-iface-in', match('-m addrtype --dst-type LOCAL --limit-iface-in')],
  ['-m conntrack with --ctorigdst', match('-m conntrack --ctstate NEW --ctorigdst 192.0.2.11')],
  // The reply leaves through OUTPUT: which socket sent it is not known.
  [
    '-m owner',
    {
      rule: '-A OUTPUT -m owner --uid-owner 0 -j ACCEPT',
      why: '-m owner --uid-owner 0',
      harmless: '-A OUTPUT -m owner --uid-owner 0 -j LOG',
      where: 'mysql-1 filter OUTPUT (ESTABLISHED reply, leaving)',
      chain: 'OUTPUT',
    },
  ],
  ['-j NFQUEUE', target('NFQUEUE --queue-num 0', '-j NFQUEUE (a userspace program decides the verdict)')],
  ['-j SET', target('SET --add-set ssh-seen src', '-j SET (it changes an ipset while packets pass)')],
  [
    '-j TTL',
    {
      rule: '-A PREROUTING -p tcp --dport 22 -j TTL --ttl-set 64',
      why: '-j TTL (a changed TTL can end the packet on its way)',
      harmless: '-A PREROUTING -p udp --dport 22 -j TTL --ttl-set 64',
      where: 'mysql-1 mangle PREROUTING (NEW, arriving)',
      table: 'mangle',
    },
  ],
  ['an unknown target', target('FROBNICATE', '-j FROBNICATE (not a chain of this table, nor a target fleetfw models)')],
];

/** mysql-1's rules with `rule` on the SSH path; the SSH accept follows it unless the rule is itself the accept. */
function rulesWith(c: Case, rule: string): RuleSet {
  const accepts = / -j ACCEPT$/.test(rule);
  if (c.table === 'mangle') return buildTables({ mangle: [rule], filter: [':INPUT DROP [0:0]', ESTABLISHED, `${SSH} -j ACCEPT`] });
  if (c.chain === 'OUTPUT') return buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, [ESTABLISHED, `${SSH} -j ACCEPT`, rule, ...(accepts ? [] : ['-A OUTPUT -p tcp --sport 22 -j ACCEPT'])]);
  return buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, rule, ...(accepts ? [] : [`${SSH} -j ACCEPT`])]);
}

/** The counterexample: the first connection of the class, stopped at the rule under test. */
function packetOf(c: Case): string {
  const packet = c.chain === 'OUTPUT' ? '192.0.2.11:22 -> 192.0.2.10:32768/tcp SYN,ACK (ESTABLISHED)' : '192.0.2.10:32768 -> 192.0.2.11:22/tcp SYN (NEW)';
  return `${packet}, as for every packet of source ports 32768-60999`;
}

/** The rule under test in the rule set rulesWith built. */
function ruleOf(rs: RuleSet, c: Case) {
  if (c.table === 'mangle') return findTableRule(rs, 'mangle', 'PREROUTING', 1);
  return c.chain === 'OUTPUT' ? findTableRule(rs, 'filter', 'OUTPUT', 1) : findTableRule(rs, 'filter', 'INPUT', 2);
}

describe('fail closed: the management path', () => {
  it.each(CASES)('%s on the SSH path cannot be shown to pass, naming the rule', (_name, c) => {
    const rs = rulesWith(c, c.rule);
    const rule = ruleOf(rs, c);
    const described = `rules.v4 line ${rule.origin?.line}: ${formatRule(rule)}${c.table ? ` (${c.table} table)` : ''}`;
    const r = failure(checkManagementPath(inv, mysql, v4Only(rs)));
    expect(r.cutBy).toBe(`${described} (cannot evaluate: ${c.why})`);
    expect(r.leg).toBe(c.chain === 'OUTPUT' ? 'server-reply-out' : 'server-in');
    expect(r.packet).toBe(packetOf(c));
    expect(r.message).toMatch(
      new RegExp(`^SSH from bastion tunnel-1 to mysql-1 cannot be shown to pass at ${escape(c.where ?? 'mysql-1 filter INPUT (NEW, arriving)')}: ${escape(r.cutBy)} \\(packet `),
    );
  });

  it.each(CASES)('%s where it decides nothing leaves the path proven', (_name, c) => {
    expect(checkManagementPath(inv, mysql, v4Only(rulesWith(c, c.harmless)))).toEqual({ ok: true });
  });
});

describe('fail closed: intents', () => {
  const verify = (rs: RuleSet, expect_: 'allow' | 'deny') =>
    verifyIntents(
      buildInventory({ intents: [buildIntent(`tunnel-1 -> mysql-1:22 ${expect_}`, { from: 'tunnel-1', to: 'mysql-1', port: 22, expect: expect_ })] }),
      new Map([
        ['mysql-1', { v4: rs, v6: OPEN }],
        ['tunnel-1', { v4: OPEN, v6: OPEN }],
      ]),
    )[0]!;

  it.each(CASES)('allow: %s makes the pair unknown, not ok', (_name, c) => {
    const rs = rulesWith(c, c.rule);
    const rule = ruleOf(rs, c);
    const r = verify(rs, 'allow');
    expect(r.ok).toBe(false);
    expect(r.pairs).toHaveLength(1);
    expect(r.pairs[0]).toMatchObject({
      from: 'tunnel-1',
      to: 'mysql-1',
      outcome: 'unknown',
      ok: false,
      decidedBy: `mysql-1 rules.v4 line ${rule.origin?.line}: ${formatRule(rule)}${c.table ? ` (${c.table} table)` : ''} (cannot evaluate: ${c.why})`,
      path: `mysql-1: ${c.table ? 'mangle PREROUTING' : c.chain === 'OUTPUT' ? 'filter OUTPUT' : 'filter INPUT'}`,
    });
    expect(r.pairs[0]?.counterexample).toBe(packetOf(c));
    // Where it decides nothing the intent holds.
    expect(verify(rulesWith(c, c.harmless), 'allow')).toMatchObject({ ok: true, pairs: [{ outcome: 'allow' }] });
  });

  it.each(CASES)('deny: %s on the rule that would deny makes the pair unknown, not ok', (_name, c) => {
    // The same rule, denying: nothing else stops the connection.
    const rule = c.rule.replace(/ -j ACCEPT$/, ' -j DROP');
    const rs = c.table === 'mangle' ? buildTables({ mangle: [rule] }) : buildFilter({}, [rule]);
    expect(verify(rs, 'deny')).toMatchObject({ ok: false, pairs: [{ outcome: 'unknown', ok: false }] });
    expect(verify(rs, 'deny').pairs[0]?.decidedBy).toContain(`(cannot evaluate: ${c.why})`);
  });
});

describe('fail closed: the template line is named', () => {
  it('a rule set parsed with its sources names the template file:line first', () => {
    const text = ['*filter', ':INPUT DROP [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]', ESTABLISHED, `${SSH} -m recent --name ssh --rcheck -j ACCEPT`, 'COMMIT', ''].join('\n');
    const sources = [undefined, undefined, undefined, undefined, { file: 'templates/bases/isolated.v4', line: 7 }, { file: 'templates/roles/mysql.v4', line: 3 }];
    const { ruleSet, problems } = parseRuleSet(text, { family: 4, file: 'rules.v4', sources });
    expect(problems).toEqual([]);
    const r = failure(checkManagementPath(inv, mysql, v4Only(ruleSet)));
    expect(r.cutBy).toBe(
      'templates/roles/mysql.v4:3, rules.v4 line 6: -A INPUT -p tcp -m tcp --dport 22 -m recent --name ssh --rcheck -j ACCEPT (cannot evaluate: -m recent --name ssh --rcheck)',
    );
    expect(r.message).toContain('cannot be shown to pass at mysql-1 filter INPUT (NEW, arriving): templates/roles/mysql.v4:3, rules.v4 line 6: ');
    const [intent] = verifyIntents(
      buildInventory({ intents: [buildIntent('tunnel-1 -> mysql-1:22 allow', { from: 'tunnel-1', to: 'mysql-1', port: 22, expect: 'allow' })] }),
      new Map([
        ['mysql-1', { v4: ruleSet, v6: OPEN }],
        ['tunnel-1', { v4: OPEN, v6: OPEN }],
      ]),
    );
    expect(intent?.pairs[0]?.decidedBy).toBe(`mysql-1 ${r.cutBy}`);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
