// A revert that survives any single failure, in the S1 lab: a rule set that cuts the
// management path (forced with --unsafe-skip-checks, a short window), then SIGKILL of
// each process of the revert mechanism in turn, in the host's namespace, while the
// window runs. The host must be back on its old rules by the deadline plus a margin
// derived from the window, and its record must say why.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import type { Lab } from '../src/lab/lab.js';
import { TRAP_NO_SSH } from '../src/cli/demo.js';
import { guardsOf, hostProcesses } from './host-processes.js';
import { recordResult } from './results.js';
import { fleetfw, inventoryPath, liveRules, persistedRules, scratchFleet, setHostBase, startInventoryLab, waitFor, writeTemplate } from './support.js';

const S1 = inventoryPath('s1');
const HOST = 'mysql-1';
const STATE = '/var/lib/fleetfw';
const WINDOW = 6;
// What a busy machine (both CPUs loaded) may add to the deadline: the guard's wake-up,
// the restore, this test's polls. Without a working guard the host never reverts.
const MARGIN_MS = WINDOW * 1000;
let lab: Lab;
let inventory: string;
let cleanup: () => void = () => undefined;

beforeAll(async () => {
  lab = await startInventoryLab(S1, { applied: true });
  const fleet = scratchFleet('s1');
  cleanup = fleet.cleanup;
  writeTemplate(fleet.templates, 'bases/trap.v4', TRAP_NO_SSH);
  setHostBase(fleet.inventory, HOST, 'trap');
  inventory = fleet.inventory;
});

afterAll(async () => {
  if (lab) await lab.exec(HOST, ['rm', '-rf', `${STATE}/faults`]).catch(() => undefined);
  cleanup();
  await lab?.stop();
});

/**
 * Applies the trap and waits until the host holds it with both guards asleep; fleetfw
 * itself is then killed (nothing it does matters to the host's revert, and it would wait
 * for answers the trap drops). Returns the transaction and when the guards were seen.
 */
async function loadTrap(): Promise<{ txid: string; seen: number }> {
  let child: ChildProcess | undefined;
  const run = fleetfw(lab, ['apply', '--inventory', inventory, '--limit', HOST, '--yes', '--window', String(WINDOW), '--unsafe-skip-checks'], { onSpawn: (c) => (child = c) });
  let txid = '';
  await waitFor(
    async () => {
      txid = (await lab.exec(HOST, ['sh', '-c', `cat ${STATE}/txn/id 2>/dev/null || true`])).stdout.trim();
      const guards = txid ? guardsOf(lab, HOST, txid) : [];
      return guards.length === 2 && guards.every((g) => g.sleep !== undefined);
    },
    60_000,
    `${HOST}: the trap loaded, both guards armed`,
  );
  const seen = Date.now();
  child?.kill('SIGKILL');
  await run;
  return { txid, seen };
}

async function reverted(old: { v4: string; v6: string }, what: string, within: number): Promise<number> {
  await waitFor(async () => (await liveRules(lab, HOST)).v4 === old.v4, within, what);
  return Date.now();
}

describe('SIGKILL of each process of the revert mechanism in turn: the host still reverts by the deadline', () => {
  const victims = [
    { name: 'the first watchdog', pick: (g: ReturnType<typeof guardsOf>) => g[0]!.pid },
    { name: "the first watchdog's sleep", pick: (g: ReturnType<typeof guardsOf>) => g[0]!.sleep! },
    { name: 'the second watchdog', pick: (g: ReturnType<typeof guardsOf>) => g[1]!.pid },
    { name: "the second watchdog's sleep", pick: (g: ReturnType<typeof guardsOf>) => g[1]!.sleep! },
  ];
  for (const { name, pick } of victims) {
    it(`${name} killed`, async () => {
      const old = await liveRules(lab, HOST);
      const saved = await persistedRules(lab, HOST);
      let revertMs: number | undefined;
      try {
        const { txid, seen } = await loadTrap();
        expect((await liveRules(lab, HOST)).v4, 'the trap runs').not.toBe(old.v4);
        process.kill(pick(guardsOf(lab, HOST, txid)), 'SIGKILL');
        // The deadline is at most WINDOW after the guards were seen (they are armed before the load).
        const at = await reverted(old, `${HOST} to revert by the deadline`, WINDOW * 1000 + MARGIN_MS);
        revertMs = at - seen;
        console.log(`${name} killed: back on the old rules ${revertMs} ms after the guards were seen (window ${WINDOW} s)`);
        expect(await persistedRules(lab, HOST)).toEqual(saved);
        const record = (await lab.exec(HOST, ['cat', `${STATE}/txns/${txid}/outcome`])).stdout.trim();
        expect(record).toBe(`reverted: no confirmation within ${WINDOW}s`);
        await waitFor(async () => hostProcesses(lab, HOST).every((p) => !p.cmd.includes(`revert.sh ${txid}`)), 15_000, 'every guard to end');
        recordResult('fault', `SIGKILL of ${name}`, { ok: true, stranded: false, revertMs });
      } catch (e) {
        const stranded = (await liveRules(lab, HOST).catch(() => undefined))?.v4 !== old.v4;
        recordResult('fault', `SIGKILL of ${name}`, { ok: false, stranded, revertMs, detail: (e as Error).message.split('\n')[0] });
        throw e;
      }
    });
  }

  it('the guard that won the race killed half-way through its revert: the other one finishes it', async () => {
    const old = await liveRules(lab, HOST);
    try {
      await lab.exec(HOST, ['sh', '-c', `mkdir -p ${STATE}/faults && touch ${STATE}/faults/pause-revert`]);
      const { txid, seen } = await loadTrap();
      await waitFor(async () => (await lab.exec(HOST, ['test', '-e', `${STATE}/faults/at-revert`])).code === 0, WINDOW * 1000 + MARGIN_MS, 'a guard to take the revert');
      const runner = Number((await lab.exec(HOST, ['cat', `${STATE}/txn/reverter`])).stdout.split(' ')[0]);
      expect(guardsOf(lab, HOST, txid).map((g) => g.pid)).toContain(runner);
      process.kill(runner, 'SIGKILL');
      const at = await reverted(old, 'the other guard to finish the revert', MARGIN_MS);
      console.log(`revert runner killed: back on the old rules ${at - seen} ms after the guards were seen (window ${WINDOW} s)`);
      expect((await lab.exec(HOST, ['cat', `${STATE}/txns/${txid}/outcome`])).stdout.trim()).toBe(`reverted: no confirmation within ${WINDOW}s`);
      recordResult('fault', 'SIGKILL of the revert runner half-way', { ok: true, stranded: false, revertMs: at - seen });
    } catch (e) {
      const stranded = (await liveRules(lab, HOST).catch(() => undefined))?.v4 !== old.v4;
      recordResult('fault', 'SIGKILL of the revert runner half-way', { ok: false, stranded, detail: (e as Error).message.split('\n')[0] });
      throw e;
    } finally {
      await lab.exec(HOST, ['rm', '-rf', `${STATE}/faults`]);
    }
  });
});
