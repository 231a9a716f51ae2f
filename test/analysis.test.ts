// The analysis follows the kernel's path through every table (raw, mangle, nat,
// filter, security) and checks the rules the hosts will really run (the render
// merged with their live preserved chains). End to end on one S1 lab, with the
// real CLI:
// - a rule in raw, mangle, nat or security that cuts SSH from the bastion, while
//   filter still allows it, is refused before anything is sent, naming the rule
//   and its template line; forced through, the host reverts by itself;
// - a rule the kernel loads but fleetfw cannot decide on the path is refused;
// - a hand-made preserved chain that accepts everything is a failed intent in
//   plan, status and apply, and a real packet shows the intent is false.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab } from '../src/lab/lab.js';
import { fleetfw, historyLog, inventoryPath, liveRules, persistedRules, scratchFleet, setHostBase, startInventoryLab, type CliResult } from './support.js';

const S1 = inventoryPath('s1');
const TARGET = 'mysql-1';
const TARGET_PRIVATE = '192.0.2.14';
const BASTION_PRIVATE = '192.0.2.10';
// The shortest window fleetfw allows: each forced trap costs seconds, not a minute.
const WINDOW = '5';
// A probe that should answer is given time: on a loaded machine "open" must not turn into "timeout".
const OPEN_WITHIN = { timeoutMs: 5000 };

let lab: Lab;
let fleet: ReturnType<typeof scratchFleet>;
let role = '';
let inventory = '';

beforeAll(async () => {
  fleet = scratchFleet('s1');
  role = readFileSync(join(fleet.templates, 'roles/mysql.v4'), 'utf8').trimEnd();
  inventory = readFileSync(fleet.inventory, 'utf8');
  // Every host on S1 first: a forced trap must fall back to real previous rules.
  lab = await startInventoryLab(S1, { applied: true });
});

afterAll(async () => {
  await lab?.stop();
  fleet?.cleanup();
});

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** The mysql role with one table fragment appended; returns the template line of the fragment's first rule. */
function setRole(fragment: string): number {
  writeFileSync(join(fleet.templates, 'roles/mysql.v4'), `${role}\n${fragment}`);
  return role.split('\n').length + 2;
}

function resetFleet(): void {
  writeFileSync(join(fleet.templates, 'roles/mysql.v4'), `${role}\n`);
  writeFileSync(fleet.inventory, inventory);
}

/** The lockout error for the target's management path, as the pre-flight prints it. */
function lockoutLine(r: CliResult): string {
  const m = new RegExp(`^error: ${TARGET}: SSH from bastion tunnel-1 to ${TARGET} .*$`, 'm').exec(r.stderr);
  expect(m, r.stdout + r.stderr).not.toBeNull();
  return m![0];
}

/**
 * A dump without the tables that hold nothing (no rule, no user chain, every
 * policy ACCEPT): a revert may leave behind, empty, a table the trap added, and
 * an empty table filters nothing.
 */
function withoutEmptyTables(dump: string): string {
  const out: string[] = [];
  let table: string[] = [];
  for (const line of dump.split('\n')) {
    if (line.startsWith('*')) table = [line];
    else if (line === 'COMMIT' && table.length > 0) {
      if (!table.slice(1).every((l) => /^:\S+ ACCEPT /.test(l))) out.push(...table, line);
      table = [];
    } else if (table.length > 0) table.push(line);
    else if (line !== '') out.push(line);
  }
  return out.join('\n');
}

async function runningRules(host: string): Promise<{ v4: string; v6: string }> {
  const r = await liveRules(lab, host);
  return { v4: withoutEmptyTables(r.v4), v6: withoutEmptyTables(r.v6) };
}

/** What a sent rule set would change on a host: its live and persisted rules, its audit trail. */
async function snapshot(host: string) {
  return { live: await liveRules(lab, host), persisted: await persistedRules(lab, host), log: await historyLog(lab, host) };
}

// mysql-2 shares the role: --limit keeps each trap on the one host under test.
const applyTarget = (extra: string[] = []) => fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--limit', TARGET, '--yes', '--window', WINDOW, '--no-color', ...extra]);

/** Refused with exit 4, and the host has seen nothing: live rules, persisted files and audit trail as before. */
async function expectRefused(r: CliResult, before: Awaited<ReturnType<typeof snapshot>>): Promise<void> {
  expect(r.code, r.stdout + r.stderr).toBe(4);
  expect(r.stderr).toContain('nothing was sent to any host');
  expect(await snapshot(TARGET)).toEqual(before);
}

/** Forced through: the host reverts by itself, is reachable again and runs (and keeps persisted) its previous rules. */
async function expectRevertedByItself(before: Awaited<ReturnType<typeof snapshot>>): Promise<void> {
  const forced = await applyTarget(['--unsafe-skip-checks']);
  console.log(`forced: exit ${forced.code} in ${forced.ms} ms (window ${WINDOW} s)`);
  expect(forced.code, forced.stdout + forced.stderr).toBe(6);
  expect(forced.stdout).toMatch(new RegExp(`^${TARGET}\\s+rolled-back\\s.*reverted [\\d.]+s after load`, 'm'));
  // The trap really was loaded: the host's own trail says it reverted.
  expect((await historyLog(lab, TARGET)).slice(before.log.length)).toMatch(/reverted/);
  expect(await lab.probe('tunnel-1', TARGET_PRIVATE, 'tcp', 22, OPEN_WITHIN)).toBe('open');
  expect(await runningRules(TARGET)).toEqual({ v4: withoutEmptyTables(before.live.v4), v6: withoutEmptyTables(before.live.v6) });
  expect(await persistedRules(lab, TARGET)).toEqual(before.persisted);
  // Through fleetfw too: reachable, in sync with S1, persisted files matching the live rules.
  const status = await fleetfw(lab, ['status', '--inventory', S1, '--limit', TARGET, '--no-color']);
  expect(status.code, status.stdout + status.stderr).toBe(0);
  expect(status.stdout).toMatch(new RegExp(`^${TARGET}\\s+in sync\\s.*persisted matches live`, 'm'));
}

interface TableCut {
  table: 'raw' | 'mangle' | 'nat' | 'security';
  /** The rule as the template says it. */
  template: string;
  /** The same rule as iptables-save prints it, as the refusal names it. */
  saved: string;
  /** Where the connection dies, for the tables that drop it there. */
  droppedAt?: string;
}

const CUTS: TableCut[] = [
  {
    table: 'raw',
    template: '-A PREROUTING -s {{ bastion.private }} -p tcp --dport 22 -j DROP',
    saved: `-A PREROUTING -s ${BASTION_PRIVATE}/32 -p tcp -m tcp --dport 22 -j DROP`,
    droppedAt: `${TARGET} raw PREROUTING (NEW, arriving)`,
  },
  {
    table: 'mangle',
    template: '-A INPUT -s {{ bastion.private }} -p tcp --dport 22 -j DROP',
    saved: `-A INPUT -s ${BASTION_PRIVATE}/32 -p tcp -m tcp --dport 22 -j DROP`,
    droppedAt: `${TARGET} mangle INPUT (NEW, arriving)`,
  },
  {
    // Nothing listens on 2222 and filter does not let 2222 in: SSH is really cut.
    // Whatever the verdict's wording, the rule to fix is the REDIRECT.
    table: 'nat',
    template: '-A PREROUTING -p tcp --dport 22 -j REDIRECT --to-ports 2222',
    saved: '-A PREROUTING -p tcp -m tcp --dport 22 -j REDIRECT --to-ports 2222',
  },
  {
    table: 'security',
    template: '-A INPUT -s {{ bastion.private }} -p tcp --dport 22 -j DROP',
    saved: `-A INPUT -s ${BASTION_PRIVATE}/32 -p tcp -m tcp --dport 22 -j DROP`,
    droppedAt: `${TARGET} security INPUT (NEW, arriving)`,
  },
];

describe('a preserved chain that accepts everything (S1, wordpress-1)', () => {
  const HOST = 'wordpress-1';
  const PRIVATE = '192.0.2.12';
  const INTENT = `intent "intruder -> all:22 deny" fails for intruder -> ${HOST}: allow`;
  const ipt = (cmd: string) => lab.exec(HOST, ['sh', '-c', cmd]);
  const errorsOf = (r: CliResult) => r.stderr.split('\n').filter((l) => l.startsWith('error: '));

  /** The failed intent, naming the preserved chain's rule as the host's live rule. */
  function expectFailedIntent(r: CliResult): void {
    const line = errorsOf(r).find((l) => l.startsWith(`error: ${HOST}: ${INTENT} (`));
    expect(line, r.stdout + r.stderr).toBeDefined();
    expect(line).toContain('live rules (preserved)');
    expect(line).toContain('-A f2b-sshd -j ACCEPT');
    // Only the host with the chain is at fault.
    expect(errorsOf(r).filter((l) => !l.startsWith(`error: ${HOST}: `)), r.stderr).toEqual([]);
  }

  it('fails the intents in plan, status and apply (nothing sent); a real packet from the intruder gets in; clean again once removed', async () => {
    // Before: the deny holds for a real packet.
    expect(await lab.probe('intruder', PRIVATE, 'tcp', 22)).toBe('timeout');
    // Named like fail2ban's, so preserved (foreign) rather than drift.
    expect((await ipt('iptables -N f2b-sshd && iptables -A f2b-sshd -j ACCEPT && iptables -I INPUT 1 -j f2b-sshd')).code).toBe(0);
    try {
      const plan = await fleetfw(lab, ['plan', '--inventory', S1, '--no-color']);
      expect(plan.code, plan.stdout + plan.stderr).toBe(4);
      expect(plan.stdout).toContain('preserved (foreign): filter/f2b-sshd (1 rules) (v4)');
      expectFailedIntent(plan);

      const status = await fleetfw(lab, ['status', '--inventory', S1, '--no-color']);
      expect(status.code, status.stdout + status.stderr).toBe(4);
      expectFailedIntent(status);

      const before = await Promise.all(['tunnel-1', HOST].map(async (h) => ({ h, ...(await snapshot(h)) })));
      // Plain, and with --force (which would otherwise reload every host): refused before anything is sent.
      for (const extra of [[], ['--force']]) {
        const apply = await fleetfw(lab, ['apply', '--inventory', S1, '--yes', '--window', WINDOW, '--no-color', ...extra]);
        expect(apply.code, apply.stdout + apply.stderr).toBe(4);
        expect(apply.stderr).toContain('nothing was sent to any host');
        expectFailedIntent(apply);
      }
      expect(await Promise.all(['tunnel-1', HOST].map(async (h) => ({ h, ...(await snapshot(h)) })))).toEqual(before);

      // The intent really is false on the host: the intruder's SYN reaches sshd.
      expect(await lab.probe('intruder', PRIVATE, 'tcp', 22, OPEN_WITHIN)).toBe('open');
    } finally {
      expect((await ipt('iptables -D INPUT -j f2b-sshd && iptables -F f2b-sshd && iptables -X f2b-sshd')).code).toBe(0);
    }

    const plan = await fleetfw(lab, ['plan', '--inventory', S1, '--no-color']);
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    expect(errorsOf(plan)).toEqual([]);
    const status = await fleetfw(lab, ['status', '--inventory', S1, '--no-color']);
    expect(status.code, status.stdout + status.stderr).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^${HOST}\\s+in sync\\s.*persisted matches live`, 'm'));
    expect(await lab.probe('intruder', PRIVATE, 'tcp', 22)).toBe('timeout');
  });
});

describe(`a management path cut outside filter (S1, ${TARGET})`, () => {
  for (const cut of CUTS) {
    it(`${cut.table}: refused before anything is sent, naming the rule and its template line; forced, the host reverts by itself`, async () => {
      try {
        const line = setRole(`*${cut.table}\n${cut.template}\nCOMMIT\n`);
        const before = await snapshot(TARGET);

        const refused = await applyTarget();
        await expectRefused(refused, before);
        const lockout = lockoutLine(refused);
        expect(lockout).toContain(`templates/roles/mysql.v4:${line}, ${TARGET}/rules.v4 line `);
        expect(lockout).toContain(`: ${cut.saved} (${cut.table} table)`);
        if (cut.droppedAt) expect(lockout).toContain(`would be dropped at ${cut.droppedAt}: templates/roles/mysql.v4:${line}`);

        if (cut.table === 'raw') {
          // explain shows the same verdict for the one packet, and the path the kernel takes to it.
          const explain = await fleetfw(lab, ['explain', TARGET, '--from', 'tunnel-1', '--port', '22', '--inventory', fleet.inventory, '--no-color']);
          expect(explain.stdout, explain.stdout + explain.stderr).toMatch(/^path: raw PREROUTING$/m);
          expect(explain.stdout).toMatch(new RegExp(`^verdict: DROP, decided by templates/roles/mysql\\.v4:${line}, ${TARGET}/rules\\.v4 line \\d+: ${esc(cut.saved)} \\(raw table\\)$`, 'm'));
        }

        await expectRevertedByItself(before);
      } finally {
        resetFleet();
      }
    });
  }

  it('nat: a REDIRECT to a port filter lets in is refused as redirected, naming the REDIRECT and its template line', async () => {
    try {
      // Filter accepts the new port, so only the REDIRECT stands between the bastion and sshd.
      const line = setRole(`*nat\n${CUTS[2]!.template}\nCOMMIT\n*filter\n-A INPUT -s {{ bastion.private }} -p tcp --dport 2222 -j ACCEPT\nCOMMIT\n`);
      const before = await snapshot(TARGET);
      const refused = await applyTarget();
      await expectRefused(refused, before);
      expect(lockoutLine(refused)).toContain(`would be redirected: templates/roles/mysql.v4:${line}, ${TARGET}/rules.v4 line `);
      expect(lockoutLine(refused)).toContain(`: ${CUTS[2]!.saved} (nat table) rewrites dport 22 to 2222`);
    } finally {
      resetFleet();
    }
  });

  it('filter: a rule the kernel loads but fleetfw cannot decide, before the SSH accept, is refused as "cannot be shown", naming it and its template line', async () => {
    const RECENT = '-A INPUT -p tcp --dport 22 -m recent --name x --rcheck -j DROP';
    // A base that owns the management path, so the rule really sits before the SSH accept.
    const base = [
      '%management off',
      '*filter',
      ':INPUT DROP [0:0]',
      ':FORWARD DROP [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      '-A INPUT -i lo -j ACCEPT',
      '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      RECENT,
      '-A INPUT -i {{ self.if.private }} -s {{ bastion.private }} -p tcp --dport 22 -j ACCEPT',
      '%roles',
      'COMMIT',
      '',
    ];
    try {
      writeFileSync(join(fleet.templates, 'bases/undecidable.v4'), base.join('\n'));
      setHostBase(fleet.inventory, TARGET, 'undecidable');
      const line = base.indexOf(RECENT) + 1;

      // The kernel takes it: the rendered rules pass iptables-restore --test in the host's namespace.
      const out = join(fleet.dir, 'rendered');
      const render = await fleetfw(lab, ['render', '--inventory', fleet.inventory, '--out', out]);
      expect(render.code, render.stdout + render.stderr).toBe(0);
      const rendered = readFileSync(join(out, TARGET, 'rules.v4'), 'utf8');
      expect(rendered).toContain(RECENT);
      const test = await lab.exec(TARGET, ['iptables-restore', '--test'], { input: rendered });
      expect(test.code, test.stderr).toBe(0);

      const before = await snapshot(TARGET);
      const refused = await applyTarget();
      await expectRefused(refused, before);
      expect(lockoutLine(refused)).toMatch(
        new RegExp(
          `cannot be shown to pass at ${TARGET} filter INPUT \\(NEW, arriving\\): templates/bases/undecidable\\.v4:${line}, ${TARGET}/rules\\.v4 line \\d+: -A INPUT -p tcp -m tcp --dport 22 -m recent --name x --rcheck -j DROP`,
        ),
      );
    } finally {
      resetFleet();
    }
  });
});
