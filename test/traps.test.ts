// Issue 4: the six lockout traps of SCENARIOS.md, each on a target (mysql-1)
// and on the bastion (tunnel-1) of the S1 lab. Without --unsafe-skip-checks
// 1 to 5 are refused before anything is sent; with it, the host must put its
// previous rules back by itself, stay reachable and keep its persisted files.
// Trap 6 is what no static check sees: it must pass validation and
// `iptables-restore -t`, and fail on the real load (the kernel refuses it).
//
// Every trap is a `%management off` base given to the one host under test
// (the rest of the fleet keeps its S1 base, so a trap on mysql-1 is judged
// against the real tunnel-1 rules). Apart from the trap, each base is a sound
// rule set (loopback, ESTABLISHED, a working SSH rule): one fault at a time.
//
// Which traps apply where:
// - 2 on the bastion is mirrored: its management path IS the public interface,
//   so "SSH only on the public interface" is correct there; the trap is SSH
//   only on the private one.
// - 3 on the bastion: SSH only from an address that is not an operator's.
// - 5 is bastion-only: a target is supposed to close its public SSH (S1 does).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab } from '../src/lab/lab.js';
import { recordResult } from './results.js';
import { fleetfw, historyLog, inventoryPath, liveRules, persistedRules, revertMsOf, scratchFleet, setHostBase, startInventoryLab, waitFor, writeTemplate } from './support.js';

const S1 = inventoryPath('s1');
const WINDOW = 5;
let lab: Lab;

beforeAll(async () => {
  // Every host on S1 first: the traps must fall back to real previous rules.
  lab = await startInventoryLab(S1, { applied: true });
});

afterAll(async () => {
  await lab?.stop();
});

type Role = 'target' | 'bastion';
const HOST: Record<Role, string> = { target: 'mysql-1', bastion: 'tunnel-1' };
// The path the lockout check must name, per role.
const PATH: Record<Role, string> = {
  target: 'tunnel-1 (192.0.2.10) -> mysql-1 eth1 192.0.2.14:22/tcp NEW',
  bastion: 'operators 0.0.0.0/0 -> tunnel-1 eth0 203.0.113.10:22/tcp NEW',
};
// A working SSH rule for each role (used where the trap is elsewhere).
const GOOD_SSH: Record<Role, string> = {
  target: '-A INPUT -i eth1 -s 192.0.2.10 -p tcp --dport 22 -j ACCEPT',
  bastion: '-A INPUT -i eth0 -p tcp --dport 22 -j ACCEPT',
};

function base(lines: string[], output = 'ACCEPT'): string {
  return [
    '%management off',
    '*filter',
    ':INPUT DROP [0:0]',
    ':FORWARD DROP [0:0]',
    `:OUTPUT ${output} [0:0]`,
    '-A INPUT -i lo -j ACCEPT',
    '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    ...lines,
    '%roles',
    'COMMIT',
    '',
  ].join('\n');
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

interface Trap {
  n: number;
  title: string;
  role: Role;
  base: string;
  /** The refusal: an error line naming the host, the path (1-5) and what cuts it; none for 6. */
  refusal?: RegExp;
  /** The host's own reason in history.log once it has reverted. */
  hostReason: RegExp;
}

// The error names where the packet was stopped (table, chain, direction), the rule
// (its template line first when it has one), the counterexample packet and the path.
const lockout = (role: Role, leg: string, cutBy: string) =>
  new RegExp(`^error: ${HOST[role]}: SSH .* would be dropped at ${esc(leg)}: (\\S+:\\d+, )?${esc(cutBy)} \\(packet .*\\) \\(path: ${esc(PATH[role])}; tables: .*\\)$`, 'm');
const noConfirm = new RegExp(`reverted no confirmation within ${WINDOW}s`);

const TRAPS: Trap[] = [
  { n: 1, title: 'INPUT DROP, no SSH rule', role: 'target', base: base([]), refusal: lockout('target', 'mysql-1 filter INPUT (NEW, arriving)', 'policy DROP of chain INPUT'), hostReason: noConfirm },
  { n: 1, title: 'INPUT DROP, no SSH rule', role: 'bastion', base: base([]), refusal: lockout('bastion', 'tunnel-1 filter INPUT (NEW, arriving)', 'policy DROP of chain INPUT'), hostReason: noConfirm },
  {
    n: 2,
    title: 'SSH only on the public interface',
    role: 'target',
    base: base(['-A INPUT -i eth0 -p tcp --dport 22 -j ACCEPT']),
    refusal: lockout('target', 'mysql-1 filter INPUT (NEW, arriving)', 'policy DROP of chain INPUT'),
    hostReason: noConfirm,
  },
  {
    n: 2,
    title: 'SSH only on the private interface (bastion mirror)',
    role: 'bastion',
    base: base(['-A INPUT -i eth1 -p tcp --dport 22 -j ACCEPT']),
    refusal: lockout('bastion', 'tunnel-1 filter INPUT (NEW, arriving)', 'policy DROP of chain INPUT'),
    hostReason: noConfirm,
  },
  {
    n: 3,
    title: 'SSH only from a non-bastion address',
    role: 'target',
    base: base(['-A INPUT -i eth1 -s 192.0.2.99 -p tcp --dport 22 -j ACCEPT']),
    refusal: lockout('target', 'mysql-1 filter INPUT (NEW, arriving)', 'policy DROP of chain INPUT'),
    hostReason: noConfirm,
  },
  {
    n: 3,
    title: 'SSH only from a non-operator address',
    role: 'bastion',
    base: base(['-A INPUT -i eth0 -s 198.51.100.7 -p tcp --dport 22 -j ACCEPT']),
    refusal: lockout('bastion', 'tunnel-1 filter INPUT (NEW, arriving)', 'policy DROP of chain INPUT'),
    hostReason: noConfirm,
  },
  {
    n: 4,
    title: 'OUTPUT DROP, no ESTABLISHED or reply rule',
    role: 'target',
    base: base([GOOD_SSH.target, '-A OUTPUT -o lo -j ACCEPT'], 'DROP'),
    refusal: lockout('target', 'mysql-1 filter OUTPUT (ESTABLISHED reply, leaving)', 'policy DROP of chain OUTPUT'),
    hostReason: noConfirm,
  },
  {
    n: 4,
    title: 'OUTPUT DROP, no ESTABLISHED or reply rule',
    role: 'bastion',
    // Its own SSH out to the private side stays open: only the replies die.
    base: base([GOOD_SSH.bastion, '-A OUTPUT -o lo -j ACCEPT', '-A OUTPUT -o eth1 -p tcp --dport 22 -j ACCEPT'], 'DROP'),
    refusal: lockout('bastion', 'tunnel-1 filter OUTPUT (ESTABLISHED reply, leaving)', 'policy DROP of chain OUTPUT'),
    hostReason: noConfirm,
  },
  {
    n: 5,
    title: "the bastion's rule set closes its public SSH",
    role: 'bastion',
    base: base(['-A INPUT -i eth0 -p tcp --dport 22 -j DROP', '-A INPUT -p tcp --dport 22 -j ACCEPT']),
    refusal: lockout('bastion', 'tunnel-1 filter INPUT (NEW, arriving)', 'tunnel-1/rules.v4 line 9: -A INPUT -i eth0 -p tcp -m tcp --dport 22 -j DROP'),
    hostReason: noConfirm,
  },
  ...(['target', 'bastion'] as const).map(
    (role): Trap => ({
      n: 6,
      // A jump to an undeclared chain used to be this trap; it is now invalid input
      // (exit 3 at the template line, the broken-input corpus). -m owner matches only
      // where a packet has a local socket (OUTPUT, POSTROUTING): the kernel refuses it
      // in INPUT at load time, after `iptables-restore -t` and fleetfw's checks passed.
      title: 'passes iptables-restore -t, fails the real load (-m owner in INPUT)',
      role,
      base: base([GOOD_SSH[role], '-A INPUT -p tcp --dport 2222 -m owner --uid-owner 0 -j DROP']),
      hostReason: /reverted the load failed: [^]*RULE_APPEND failed \(Invalid argument\)/,
    }),
  ),
];

describe('lockout traps on the S1 lab', () => {
  for (const trap of TRAPS) {
    const host = HOST[trap.role];
    const name = `trap ${trap.n} on ${trap.role === 'target' ? 'a target' : 'the bastion'} (${host}): ${trap.title}`;
    it(`${name}: ${trap.refusal ? 'refused before anything is sent; forced, ' : 'applied, '}the host reverts by itself`, async () => {
      const fleet = scratchFleet('s1');
      const live = await liveRules(lab, host);
      const saved = await persistedRules(lab, host);
      let revertMs: number | undefined;
      let stranded = false;
      try {
        writeTemplate(fleet.templates, 'bases/trap.v4', trap.base);
        setHostBase(fleet.inventory, host, 'trap');
        const logBefore = await historyLog(lab, host);
        const args = ['apply', '--inventory', fleet.inventory, '--limit', host, '--yes', '--window', String(WINDOW)];

        if (trap.refusal) {
          const refused = await fleetfw(lab, args);
          expect(refused.code, refused.stdout + refused.stderr).toBe(4);
          expect(refused.stderr).toMatch(trap.refusal);
          expect(refused.stderr).toContain('nothing was sent to any host');
          expect(await historyLog(lab, host)).toBe(logBefore);
        }

        const forced = await fleetfw(lab, [...args, '--unsafe-skip-checks']);
        revertMs = revertMsOf(forced.stdout, host);
        console.log(`${name}: exit ${forced.code}, load to verified revert ${revertMs} ms (window ${WINDOW} s)`);
        expect(forced.code, forced.stdout + forced.stderr).toBe(6);
        expect(forced.stdout).toMatch(new RegExp(`^${host}\\s+rolled-back\\s`, 'm'));
        expect(revertMs).toBeDefined();
        // Back on the previous rules by itself, reachable, persisted files untouched.
        const after = await liveRules(lab, host);
        stranded = after.v4 !== live.v4 || after.v6 !== live.v6;
        expect(after).toEqual(live);
        expect(await persistedRules(lab, host)).toEqual(saved);
        const plan = await fleetfw(lab, ['plan', '--inventory', S1, '--limit', host]);
        stranded ||= plan.code !== 0;
        expect(plan.code, plan.stdout + plan.stderr).toBe(0);
        const log = await historyLog(lab, host);
        expect(log.slice(logBefore.length)).toMatch(trap.hostReason);
        recordResult('trap', name, { ok: true, stranded: false, revertMs });
      } catch (e) {
        // A failed expectation must still show in the figures, with whether the host is stuck.
        const now = await liveRules(lab, host).catch(() => undefined);
        stranded ||= now === undefined || now.v4 !== live.v4;
        if (stranded) await waitFor(async () => (await liveRules(lab, host)).v4 === live.v4, 20_000, `${host} to revert`).then(() => (stranded = false), () => undefined);
        recordResult('trap', name, { ok: false, stranded, revertMs, detail: (e as Error).message.split('\n')[0] });
        throw e;
      } finally {
        fleet.cleanup();
      }
    });
  }
});
