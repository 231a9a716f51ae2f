// Issue 4: faults injected into real applies on the S1 lab. Whatever happens,
// every host must end on its old rules or on confirmed new ones (persisted
// files equal to what runs), and `fleetfw status` must tell the truth.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab } from '../src/lab/lab.js';
import { recordResult } from './results.js';
import { fleetfw, historyLog, inventoryPath, liveRules, normalizeDump, persistedRules, scratchFleet, startInventoryLab, waitFor, writeTemplate } from './support.js';

const S1 = inventoryPath('s1');
const STATE = '/var/lib/fleetfw';
const WINDOW = 6;
let lab: Lab;
const fleets: Array<{ cleanup: () => void }> = [];

beforeAll(async () => {
  lab = await startInventoryLab(S1, { applied: true });
});

afterAll(async () => {
  for (const f of fleets) f.cleanup();
  await lab?.stop();
});

/** S1 plus one extra rule in a role: every apply of it is a real change for that role's hosts. */
function fleetWithPort(role: string, port: number): string {
  const fleet = scratchFleet('s1');
  fleets.push(fleet);
  const file = `roles/${role}.v4`;
  const text = readFileSync(join(fleet.templates, file), 'utf8');
  writeTemplate(fleet.templates, file, `${text}*filter\n-A INPUT -i {{ self.if.private }} -p tcp --dport ${port} -j ACCEPT\nCOMMIT\n`);
  return fleet.inventory;
}

interface Status {
  host: string;
  state: string;
  generation: number | null;
  persisted: string | null;
  leftover: { id: string; state: string; watchdogAlive: boolean } | null;
}

async function status(hosts: string[]): Promise<Status[]> {
  const r = await fleetfw(lab, ['status', '--inventory', S1, '--limit', hosts.join(','), '--format', 'json']);
  return (JSON.parse(r.stdout) as { hosts: Status[] }).hosts;
}

const sh = (host: string, script: string) => lab.exec(host, ['sh', '-c', script]);
const exists = async (host: string, path: string) => (await lab.exec(host, ['test', '-e', path])).code === 0;

/**
 * The invariant after any fault: no transaction left, live rules are the old
 * ones or confirmed new ones, persisted files equal to them. Returns which.
 */
async function settled(host: string, old: { v4: string; v6: string }): Promise<'old' | 'new'> {
  await waitFor(async () => !(await exists(host, `${STATE}/txn`)), 30_000, `${host}: no transaction left`).catch(async (e: Error) => {
    const left = await sh(host, `cd ${STATE}/txn && for f in *; do echo "$f: $(head -c 200 "$f" | tr '\\n' ' ')"; done; tail -n 5 ${STATE}/history.log`);
    throw new Error(`${e.message}; left: ${left.stdout}`);
  });
  const live = await liveRules(lab, host);
  const saved = await persistedRules(lab, host);
  expect(normalizeDump(saved.v4), `${host}: persisted rules.v4 = live`).toBe(live.v4);
  expect(normalizeDump(saved.v6), `${host}: persisted rules.v6 = live`).toBe(live.v6);
  if (live.v4 === old.v4 && live.v6 === old.v6) return 'old';
  // New rules: only acceptable when confirmed, i.e. recorded as the current generation.
  const gen = (await sh(host, `cat ${STATE}/current`)).stdout.trim();
  const meta = (await sh(host, `cat ${STATE}/generations/$(printf %06d ${gen})/meta`)).stdout;
  const hash = /^hash=(\S+)$/m.exec(meta)?.[1];
  const liveHash = (await sh(host, `{ iptables-save | sed -e '/^#/d' -e 's/\\[[0-9]*:[0-9]*\\]$/[0:0]/'; echo ---; ip6tables-save | sed -e '/^#/d' -e 's/\\[[0-9]*:[0-9]*\\]$/[0:0]/'; } | sha256sum | cut -d' ' -f1`)).stdout.trim();
  expect(hash, `${host}: new rules are the confirmed generation ${gen}`).toBe(liveHash);
  return 'new';
}

/** Runs fn, records the fault's figure (with whether a host was left stuck), rethrows. */
async function fault(name: string, hosts: string[], fn: () => Promise<string>): Promise<void> {
  const before = new Map<string, { v4: string; v6: string }>();
  for (const h of hosts) before.set(h, await liveRules(lab, h));
  try {
    const detail = await fn();
    recordResult('fault', name, { ok: true, stranded: false, detail });
  } catch (e) {
    let stranded = false;
    for (const h of hosts) {
      try {
        await settled(h, before.get(h)!);
        if ((await fleetfw(lab, ['plan', '--inventory', S1, '--limit', h])).code >= 3) stranded = true;
      } catch {
        stranded = true;
      }
    }
    recordResult('fault', name, { ok: false, stranded, detail: (e as Error).message.split('\n')[0] });
    throw e;
  }
}

describe('fleetfw killed with SIGKILL at each step of the host transaction', () => {
  // Steps before the confirm rename end on the old rules (the host reverts by
  // itself); from the rename on, the confirmation holds and the persist completes.
  const steps = [
    { step: 'upload', expect: 'old' },
    { step: 'backup', expect: 'old' },
    { step: 'arm', expect: 'old' },
    { step: 'load', expect: 'old' },
    { step: 'confirm', expect: 'new' },
    { step: 'persist', expect: 'new' },
  ] as const;
  steps.forEach(({ step, expect: outcome }, i) => {
    it(`killed at "${step}": the host ends on its ${outcome} rules, persisted files match, status tells the truth`, async () => {
      const host = 'mysql-1';
      // Paused before its rename, a confirm holds only if it resumes inside the window:
      // one long enough for the kill and the status read below on a busy machine.
      const window = step === 'confirm' ? 30 : WINDOW;
      await fault(`SIGKILL after ${step}`, [host], async () => {
        const old = await liveRules(lab, host);
        const savedOld = await persistedRules(lab, host);
        const inventory = fleetWithPort('mysql', 9100 + i);
        await sh(host, `mkdir -p ${STATE}/faults && rm -f ${STATE}/faults/* && touch ${STATE}/faults/pause-${step}`);
        let child: ChildProcess | undefined;
        const run = fleetfw(lab, ['apply', '--inventory', inventory, '--limit', host, '--yes', '--window', String(window)], { onSpawn: (c) => (child = c) });
        await waitFor(() => exists(host, `${STATE}/faults/at-${step}`), 30_000, `${host} to reach ${step}`);
        child!.kill('SIGKILL');
        const r = await run;
        expect(r.code).toBe(128);
        // While the host sits in the transaction, status must report it as a leftover.
        const during = (await status([host]))[0]!;
        expect(during.leftover, JSON.stringify(during)).not.toBeNull();
        await sh(host, `rm -f ${STATE}/faults/pause-${step}`);
        // Past the window: settled by the host alone.
        await new Promise((res) => setTimeout(res, (window + 1) * 1000));
        const ended = await settled(host, old);
        expect(ended).toBe(outcome);
        if (ended === 'old') expect(await persistedRules(lab, host)).toEqual(savedOld);
        const after = (await status([host]))[0]!;
        expect(after).toMatchObject({ leftover: null, persisted: 'matches live' });
        await sh(host, `rm -rf ${STATE}/faults`);
        return `ended on ${ended} rules`;
      });
    });
  });
});

describe('faults around the fleet', () => {
  it("the bastion's sshd restarted in the middle of a fleet apply: every host reported, none stranded", async () => {
    const hosts = ['wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];
    await fault('bastion sshd restarted mid-apply', hosts, async () => {
      const old = new Map<string, { v4: string; v6: string }>();
      for (const h of hosts) old.set(h, await liveRules(lab, h));
      const inventory = fleetWithPort('backend', 9200);
      let restart: Promise<void> | undefined;
      const r = await fleetfw(lab, ['apply', '--inventory', inventory, '--yes', '--window', String(WINDOW), '--parallel', '2'], {
        // Right after the canary: the other hosts' transactions run across the restart.
        onStderr: (chunk) => {
          if (!restart && /: persisted/.test(chunk)) restart = lab.restartSshd('tunnel-1');
        },
      });
      expect(restart, r.stderr).toBeDefined();
      await restart;
      for (const h of hosts) expect(r.stdout).toMatch(new RegExp(`^${h}\\s+(confirmed|rolled-back|failed)\\s`, 'm'));
      const ends: string[] = [];
      for (const h of hosts) ends.push(`${h}: ${await settled(h, old.get(h)!)}`);
      // And the bastion takes new connections again.
      const plan = await fleetfw(lab, ['plan', '--inventory', inventory]);
      expect(plan.code, plan.stdout + plan.stderr).toBeLessThan(3);
      return `exit ${r.code}; ${ends.join(', ')}`;
    });
  });

  it('a target that becomes unreachable mid-rollout is reported failed; --max-failures decides whether the rest go on', async () => {
    const host = 'mysql-2';
    const hosts = ['wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];
    await fault('target unreachable mid-rollout', hosts, async () => {
      // Every sshd process of that host goes (listener and the sessions fleetfw keeps from
      // the plan): its kept session dies, and new connections are refused.
      const cut = async () => {
        const pids = execFileSync('ip', ['netns', 'pids', lab.netnsOf(host)], { encoding: 'utf8' }).split('\n').filter(Boolean);
        for (const pid of pids) {
          let comm: string;
          try {
            comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
          } catch {
            continue; // already gone
          }
          if (comm === 'sshd') process.kill(Number(pid), 'SIGKILL');
        }
      };
      const mend = () => lab.restartSshd(host);
      // Serial rollout, hosts in name order: canary mysql-1, then mysql-2, wordpress-1, wordpress-2.
      const apply = async (port: number, maxFailures: number) => {
        let cutting: Promise<unknown> | undefined;
        const r = await fleetfw(lab, ['apply', '--inventory', fleetWithPort('backend', port), '--yes', '--window', String(WINDOW), '--parallel', '1', '--max-failures', String(maxFailures)], {
          onStderr: (chunk) => {
            if (!cutting && chunk.includes('mysql-1: connecting')) cutting = cut();
          },
        });
        await cutting;
        await mend();
        return r;
      };
      const strict = await apply(9300, 1);
      expect(strict.code, strict.stdout + strict.stderr).toBe(5);
      expect(strict.stdout).toMatch(/^mysql-1\s+confirmed\s/m);
      expect(strict.stdout).toMatch(/^mysql-2\s+failed\s.*mysql-2: /m);
      expect(strict.stdout).toMatch(/^wordpress-1\s+skipped\s.*failure budget reached/m);
      expect(strict.stdout).toMatch(/^wordpress-2\s+skipped\s.*failure budget reached/m);

      const lenient = await apply(9301, 2);
      expect(lenient.code, lenient.stdout + lenient.stderr).toBe(5);
      expect(lenient.stdout).toMatch(/^mysql-2\s+failed\s/m);
      for (const h of ['mysql-1', 'wordpress-1', 'wordpress-2']) expect(lenient.stdout).toMatch(new RegExp(`^${h}\\s+confirmed\\s`, 'm'));
      // The unreachable host never got anything: no transaction, rules as before.
      const m2 = (await status([host]))[0]!;
      expect(m2).toMatchObject({ leftover: null, persisted: 'matches live' });
      return `max-failures 1: later hosts skipped; max-failures 2: the others confirmed; failure reported in ${/^mysql-2\s+failed\s+([\d.]+s)/m.exec(lenient.stdout)?.[1]}`;
    });
  });

  it('a target whose state directory is full: apply fails cleanly (rules untouched, lock released, clear message)', async () => {
    const host = 'mysql-1';
    await fault('state directory full', [host], async () => {
      const inventory = fleetWithPort('mysql', 9400);
      const old = await liveRules(lab, host);
      const saved = await persistedRules(lab, host);
      let mounted = false;
      try {
        await lab.exec(host, ['mount', '-t', 'tmpfs', '-o', 'size=16k,mode=0700', 'tmpfs', STATE]);
        mounted = true;
        await sh(host, `dd if=/dev/zero of=${STATE}/fill bs=4096 count=16 2>/dev/null || true`);
        const r = await fleetfw(lab, ['apply', '--inventory', inventory, '--limit', host, '--yes', '--window', String(WINDOW)]);
        expect(r.code, r.stdout + r.stderr).toBe(5);
        expect(r.stdout).toMatch(/^mysql-1\s+failed\s.*only 0 KB free in \/var\/lib\/fleetfw \(fleetfw needs 1024 KB\): disk full\?/m);
        expect(await exists(host, `${STATE}/txn`), 'lock released').toBe(false);
        expect(await liveRules(lab, host)).toEqual(old);
        expect(await persistedRules(lab, host)).toEqual(saved);
        // Room again: the same apply goes through.
        await sh(host, `rm -f ${STATE}/fill`);
        await lab.exec(host, ['umount', STATE]);
        mounted = false;
      } finally {
        if (mounted) await lab.exec(host, ['umount', STATE]);
      }
      const again = await fleetfw(lab, ['apply', '--inventory', inventory, '--limit', host, '--yes', '--window', String(WINDOW)]);
      expect(again.code, again.stdout + again.stderr).toBe(0);
      expect(await settled(host, old)).toBe('new');
      return 'refused: only 0 KB free; applied once room was back';
    });
  });

  it('a target missing iptables-restore is refused clearly; nothing changes', async () => {
    const host = 'mysql-1';
    await fault('iptables-restore missing', [host], async () => {
      const inventory = fleetWithPort('mysql', 9500);
      const old = await liveRules(lab, host);
      const log = await historyLog(lab, host);
      // Only this host's mount namespace sees a /usr/sbin without the restore tools.
      const copy = join(lab.dir, `${host}-sbin`);
      await sh(host, `cp -a /usr/sbin ${copy} && rm -f ${copy}/iptables-restore ${copy}/ip6tables-restore && mount --bind ${copy} /usr/sbin`);
      try {
        const r = await fleetfw(lab, ['apply', '--inventory', inventory, '--limit', host, '--yes', '--window', String(WINDOW)]);
        expect(r.code, r.stdout + r.stderr).toBe(5);
        expect(r.stdout).toMatch(/^! mysql-1: error: iptables-restore \/ ip6tables-restore not found on the host$/m);
        expect(r.stdout).toContain('Nothing to apply on the reachable hosts.');
      } finally {
        await lab.exec(host, ['umount', '/usr/sbin']);
        await sh(host, `rm -rf ${copy}`);
      }
      expect(await liveRules(lab, host)).toEqual(old);
      expect(await historyLog(lab, host)).toBe(log);
      return 'refused at plan time';
    });
  });

  it('a host rebooted inside the window boots its persisted (old) rules, and the outcome says so', async () => {
    const host = 'mysql-1';
    await fault('host rebooted inside the window', [host], async () => {
      const inventory = fleetWithPort('mysql', 9600);
      const old = await liveRules(lab, host);
      const saved = await persistedRules(lab, host);
      await sh(host, `mkdir -p ${STATE}/faults && touch ${STATE}/faults/pause-load`);
      const run = fleetfw(lab, ['apply', '--inventory', inventory, '--limit', host, '--yes', '--window', '8']);
      await waitFor(() => exists(host, `${STATE}/faults/at-load`), 30_000, `${host} to load`);
      // A reboot between the load and the confirmation: processes (every guard) die,
      // the boot id changes, netfilter-persistent loads the persisted rules.
      const fakeBoot = join(lab.dir, `${host}-boot_id`);
      await sh(host, `for g in $(cat ${STATE}/txn/watchdog); do kill -9 "\${g#pid:}"; done && cat /proc/sys/kernel/random/uuid >${fakeBoot} && mount --bind ${fakeBoot} /proc/sys/kernel/random/boot_id`);
      try {
        await lab.reboot(host);
        await sh(host, `rm -rf ${STATE}/faults`);
        const r = await run;
        expect(r.code, r.stdout + r.stderr).toBe(6);
        expect(r.stdout).toMatch(/^mysql-1\s+rolled-back\s.*the host rebooted inside the window: it runs its persisted rules/m);
        expect(await liveRules(lab, host)).toEqual(old);
        expect(await persistedRules(lab, host)).toEqual(saved);
        expect(await settled(host, old)).toBe('old');
        expect(await historyLog(lab, host)).toMatch(/reverted-by-reboot/);
      } finally {
        await lab.exec(host, ['umount', '/proc/sys/kernel/random/boot_id']);
      }
      return 'rolled-back: booted its persisted rules';
    });
  });

  it('two applies to the same host at once: the second is refused by the host lock; the host ends on one rule set, confirmed and persisted', async () => {
    const host = 'mysql-2';
    await fault('two applies to the same host', [host], async () => {
      const a = fleetWithPort('mysql', 9700);
      const b = fleetWithPort('mysql', 9701);
      const args = (inv: string) => ['apply', '--inventory', inv, '--limit', host, '--yes', '--window', String(WINDOW)];
      // Deterministic overlap: the first has just taken the lock (nothing written in it yet) when the
      // second arrives; a lock that young must never be taken for a stale one.
      await sh(host, `mkdir -p ${STATE}/faults && touch ${STATE}/faults/pause-lock`);
      const first = fleetfw(lab, args(a));
      await waitFor(() => exists(host, `${STATE}/faults/at-lock`), 30_000, `${host}: first apply holds the lock`);
      const second = await fleetfw(lab, args(b));
      await sh(host, `rm -rf ${STATE}/faults`);
      const one = await first;
      expect(second.code, second.stdout + second.stderr).toBe(5);
      expect(second.stdout).toMatch(/^mysql-2\s+failed\s.*host is locked: locked by transaction/m);
      expect(one.code, one.stdout + one.stderr).toBe(0);
      expect((await liveRules(lab, host)).v4).toContain('--dport 9700');

      // Natural race: two new rule sets started together; at most one wins, the other is refused (lock or stale plan).
      const [x, y] = await Promise.all([fleetfw(lab, args(fleetWithPort('mysql', 9702))), fleetfw(lab, args(fleetWithPort('mysql', 9703)))]);
      const outcomes = [x, y].map((r) => /^mysql-2\s+(\S+)/m.exec(r.stdout)?.[1] ?? `exit ${r.code}`);
      const winners = outcomes.filter((o) => o === 'confirmed').length;
      expect(winners, `${outcomes.join(', ')}\n${x.stdout}\n${y.stdout}`).toBeLessThanOrEqual(1);
      for (const r of [x, y]) {
        if (!/^mysql-2\s+confirmed/m.test(r.stdout)) expect(r.stdout, r.stdout.split("\n").filter((l) => /^(mysql-2|\d+ confirmed|! )/.test(l)).join("\n")).toMatch(/^mysql-2\s+failed\s.*(host is locked|stale plan)/m);
      }
      expect(winners, outcomes.join(', ')).toBe(1);
      const live = (await liveRules(lab, host)).v4;
      expect(live.includes('--dport 9702') !== live.includes('--dport 9703'), live).toBe(true);
      expect(await settled(host, { v4: '', v6: '' })).toBe('new');
      return `race: ${outcomes.join(' / ')}`;
    });
  });
});
