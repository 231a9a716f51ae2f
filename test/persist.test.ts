// Host transactions that never lose a host, in the S1 lab through the CLI: the persist
// dir (a small tmpfs in the host's private mount namespace) full at the persist and at
// the recovery of an interrupted confirm. Whatever happens, the persisted files are the
// old ones or complete new ones that pass `iptables-restore -t`, and the host's own
// record says why a persist failed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab } from '../src/lab/lab.js';
import { hostScript } from '../src/host/run.js';
import { parseOutcome, type TxnOutcome } from '../src/host/outcome.js';
import { parseFacts } from '../src/host/facts.js';
import { guardsOf, hostProcesses } from './host-processes.js';
import { recordResult } from './results.js';
import { fleetfw, inventoryPath, liveRules, normalizeDump, scratchFleet, startInventoryLab, waitFor, writeTemplate } from './support.js';

const S1 = inventoryPath('s1');
const HOST = 'mysql-1';
const STATE = '/var/lib/fleetfw';
const P = '/etc/iptables';
const WINDOW = 6;
let lab: Lab;
const fleets: Array<{ cleanup: () => void }> = [];

beforeAll(async () => {
  lab = await startInventoryLab(S1, { applied: true });
});

afterAll(async () => {
  if (lab) await lab.exec(HOST, ['sh', '-c', `umount ${P} 2>/dev/null; rm -rf ${STATE}/faults`]).catch(() => undefined);
  for (const f of fleets) f.cleanup();
  await lab?.stop();
});

/** S1 with `rules` more rules for the mysql role (a rules.v4 that no longer fits in 4 KB). */
function fleetWith(port: number, rules = 120): string {
  const fleet = scratchFleet('s1');
  fleets.push(fleet);
  const file = 'roles/mysql.v4';
  const extra = Array.from({ length: rules }, (_, i) => `-A INPUT -i {{ self.if.private }} -s 10.77.${i >> 8}.${i & 255}/32 -p tcp --dport ${port} -j ACCEPT`);
  writeTemplate(fleet.templates, file, `${readFileSync(join(fleet.templates, file), 'utf8')}*filter\n${extra.join('\n')}\nCOMMIT\n`);
  return fleet.inventory;
}

const sh = (script: string) => lab.exec(HOST, ['sh', '-c', script]);
const apply = (inventory: string) => fleetfw(lab, ['apply', '--inventory', inventory, '--limit', HOST, '--yes', '--window', String(WINDOW)]);

/** The host's own record of a transaction (the `outcome` verb, run there as fleetfw runs it). */
async function outcome(txid: string): Promise<TxnOutcome> {
  const r = await lab.exec(HOST, ['sh', '-c', hostScript(), 'fleetfw-host', 'outcome', txid]);
  expect(r.code, r.stderr).toBe(0);
  return parseOutcome(r.stdout);
}
const lastTxn = async () => (await sh(`cat ${STATE}/last_txn`)).stdout.trim();

/** The persisted files, byte for byte, and whether they load as a boot loads them. */
async function persisted(): Promise<{ text: string; loads: boolean; temp: string }> {
  const text = (await sh(`cat ${P}/rules.v4; echo @@; cat ${P}/rules.v6; echo @@; cat ${P}/ipsets 2>/dev/null || true`)).stdout;
  const loads = (await sh(`unshare -n sh -c 'iptables-restore -t <${P}/rules.v4 && ip6tables-restore -t <${P}/rules.v6'`)).code === 0;
  const temp = (await sh(`ls -A ${P}/.fleetfw-tmp 2>/dev/null || true`)).stdout.trim();
  return { text, loads, temp };
}

/** A small tmpfs over the host's persist dir (its files copied in), filled but for `leave` bytes. */
async function fill(leave: number): Promise<void> {
  const r = await sh(
    [
      'set -e',
      // The lab bind-mounts the host's /etc/iptables from the lab dir: only our own tmpfs
      // (marked by its size) may ever be filled, never the disk under it.
      `if ! grep -q " ${P} tmpfs [^ ]*size=256k" /proc/self/mounts; then`,
      `  keep=$(mktemp -d) && cp -a ${P}/. "$keep/"`,
      `  mount -t tmpfs -o size=256k,mode=0755 tmpfs ${P}`,
      `  cp -a "$keep/." ${P}/ && rm -rf "$keep"`,
      'fi',
      `[ "$(stat -f -c %T ${P})" = tmpfs ] && [ "$(stat -f -c '%b' ${P})" -le 64 ]`,
      `rm -f ${P}/fill`,
      // At most 512 KB whatever happens; the tmpfs is full long before.
      `dd if=/dev/zero of=${P}/fill bs=4096 count=128 2>/dev/null && exit 9 || [ -s ${P}/fill ]`,
      `[ ${leave} -eq 0 ] || truncate -s -${leave} ${P}/fill`,
    ].join('\n'),
  );
  expect(r.code, r.stderr).toBe(0);
}
const unfill = async () => expect((await sh(`rm -f ${P}/fill`)).code).toBe(0);

async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    const v = await fn();
    recordResult('fault', `persist: ${name}`, { ok: true, stranded: false });
    return v;
  } catch (e) {
    recordResult('fault', `persist: ${name}`, { ok: false, stranded: false, detail: (e as Error).message.split('\n')[0] });
    throw e;
  }
}

describe('the persist dir full: persisted files stay the old ones or complete new ones that load', () => {
  it('full at the persist: confirmed-unpersisted with the cause, old files kept; the next apply persists first (or refuses while still full)', async () => {
    await step('persist dir full at the confirm', async () => {
      const old = await persisted();
      expect(old.loads).toBe(true);
      await fill(4096);
      const r = await apply(fleetWith(9810));
      const txid = await lastTxn();
      // The rules are confirmed and run; their persist failed, and the host says why.
      expect(r.code, r.stdout + r.stderr).not.toBe(0);
      expect(r.stdout).toMatch(/not persisted/);
      expect((await liveRules(lab, HOST)).v4).toContain('--dport 9810');
      const o = await outcome(txid);
      expect(o.state, JSON.stringify(o)).toBe('confirmed-unpersisted');
      expect(o.reason).toMatch(/cannot write the new files in \/etc\/iptables\/\.fleetfw-tmp: .*No space left on device/);
      const now = await persisted();
      expect(now.text, 'the old files, byte for byte').toBe(old.text);
      expect(now.loads).toBe(true);
      expect(now.temp, 'no partial file left').toBe('');
      // status says so, from the host's own record, and fails.
      const st = await fleetfw(lab, ['status', '--inventory', S1, '--limit', HOST, '--no-color']);
      expect(st.code, st.stdout + st.stderr).toBe(5);
      expect(st.stdout).toContain(`error: transaction ${txid}`);
      expect(st.stdout).toMatch(/was confirmed but not persisted: .*No space left on device/);

      // Still full: the next apply tries that persist first, fails, and changes nothing.
      const refused = await apply(fleetWith(9811));
      expect(refused.code).toBe(5);
      expect(refused.stdout).toMatch(new RegExp(`^${HOST}\\s+failed\\s.*the rules confirmed by transaction ${txid} \\(generation \\d+\\) are not persisted, and persisting them failed again: .*No space left on device`, 'm'));
      expect((await liveRules(lab, HOST)).v4).not.toContain('--dport 9811');
      expect((await persisted()).text).toBe(old.text);

      // Room again: the persist goes through first, then the new transaction.
      await unfill();
      const ok = await apply(fleetWith(9812));
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      expect(await outcome(txid)).toMatchObject({ state: 'confirmed' });
      const done = await persisted();
      expect(done.loads).toBe(true);
      expect(normalizeDump(done.text.split('@@\n')[0]!)).toBe((await liveRules(lab, HOST)).v4);
      expect(done.text).toContain('--dport 9812');
    });
  });

  it('a confirm killed before its persist, recovered by the next apply on a full disk: no file cut short; persisted once there is room', async () => {
    await step('confirm interrupted, recovery on a full disk', async () => {
      await unfill();
      const old = await persisted();
      await sh(`mkdir -p ${STATE}/faults && rm -f ${STATE}/faults/* && touch ${STATE}/faults/pause-confirmed`);
      const run = apply(fleetWith(9820));
      await waitFor(async () => (await sh(`test -e ${STATE}/faults/at-confirmed`)).code === 0, 60_000, `${HOST}: the confirm to pass its rename`);
      // The confirm's shell dies where it waits (the parent of its pause's sleep): confirmed, not persisted.
      let confirmShell: number | undefined;
      await waitFor(
        async () => {
          const procs = hostProcesses(lab, HOST);
          const parent = (p: { ppid: number }) => procs.find((q) => q.pid === p.ppid)?.cmd ?? '';
          // The host script (kept: `... fleetfw-host serve`, or one-shot: `... fleetfw-host confirm TXID ...`), not a guard.
          confirmShell = procs.find((p) => p.cmd.startsWith('sleep') && / fleetfw-host (serve|confirm .*)$/.test(parent(p)))?.ppid;
          return confirmShell !== undefined;
        },
        10_000,
        'the paused confirm',
      ).catch((e: Error) => {
        throw new Error(`${e.message}: ${JSON.stringify(hostProcesses(lab, HOST).map((p) => ({ ...p, cmd: p.cmd.slice(0, 60) + ' ... ' + p.cmd.slice(-60) })))}`);
      });
      process.kill(confirmShell!, 'SIGKILL');
      await sh(`rm -rf ${STATE}/faults`);
      const r = await run;
      expect(r.code, r.stdout + r.stderr).not.toBe(0);
      const txid = (await sh(`cat ${STATE}/txn/id`)).stdout.trim();
      expect(await outcome(txid)).toMatchObject({ state: 'confirmed-unpersisted' });
      expect((await persisted()).text).toBe(old.text);
      // Its guards end at their deadline: the rename took their marker away.
      await waitFor(async () => guardsOf(lab, HOST, txid).length === 0, (WINDOW + 30) * 1000, 'the guards to end');

      await fill(4096);
      const recovered = await apply(fleetWith(9821));
      expect(recovered.code).toBe(5);
      expect(recovered.stdout).toMatch(new RegExp(`^${HOST}\\s+failed\\s.*transaction ${txid} was confirmed \\(generation \\d+\\) but its persist had not finished, and persisting now failed: .*No space left on device`, 'm'));
      const now = await persisted();
      expect(now.text, 'the old files, never a cut one').toBe(old.text);
      expect(now.loads).toBe(true);
      expect(now.temp).toBe('');
      expect(await outcome(txid)).toMatchObject({ state: 'confirmed-unpersisted' });
      expect((await liveRules(lab, HOST)).v4).toContain('--dport 9820');

      await unfill();
      const later = await apply(fleetWith(9822));
      expect(later.code, later.stdout + later.stderr).toBe(0);
      expect(await outcome(txid)).toMatchObject({ state: 'confirmed' });
      const done = await persisted();
      expect(done.loads).toBe(true);
      expect(done.text).toContain('--dport 9822');
      expect(normalizeDump(done.text.split('@@\n')[0]!)).toBe((await liveRules(lab, HOST)).v4);
      // facts reports the files loading, the last transaction and nothing unpersisted.
      const facts = parseFacts((await lab.exec(HOST, ['sh', '-c', hostScript(), 'fleetfw-host', 'facts'])).stdout);
      expect(facts.persistedLoads).toMatchObject({ v4: true, v6: true });
      expect(facts.unpersisted).toBeUndefined();
      expect(facts.lastTxn).toMatchObject({ state: 'confirmed' });
    });
  });
});

describe('a persisted file that would not load at boot', () => {
  it('is an error in plan and status, naming the host and the file; an apply writes whole new ones', async () => {
    await step('persisted rules.v4 that would not load, reported', async () => {
      // Cut short in the middle of a rule, as a write on a full disk used to leave it.
      expect((await sh(`head -c $(( $(wc -c <${P}/rules.v4) / 2 )) ${P}/rules.v4 >${P}/cut && mv ${P}/cut ${P}/rules.v4`)).code).toBe(0);
      expect((await persisted()).loads).toBe(false);
      for (const cmd of ['status', 'plan']) {
        const r = await fleetfw(lab, [cmd, '--inventory', S1, '--limit', HOST, '--no-color']);
        expect(r.code, `${cmd}: ${r.stdout}${r.stderr}`).toBe(5);
        expect(r.stdout).toMatch(new RegExp(`error: ${HOST}: persisted rules\\.v4 would not load at boot`));
      }
      const fixed = await fleetfw(lab, ['apply', '--inventory', S1, '--limit', HOST, '--yes', '--force', '--window', String(WINDOW)]);
      expect(fixed.code, fixed.stdout + fixed.stderr).toBe(0);
      const after = await persisted();
      expect(after.loads).toBe(true);
      expect(normalizeDump(after.text.split('@@\n')[0]!)).toBe((await liveRules(lab, HOST)).v4);
      const st = await fleetfw(lab, ['status', '--inventory', S1, '--limit', HOST, '--no-color']);
      expect(st.code, st.stdout + st.stderr).toBe(0);
    });
  });
});
