// runTransaction against a scripted host: what fleetfw reports when the
// host's answers are late or lost.
import { describe, expect, it, vi } from 'vitest';
import type { HostSpec } from '../model/inventory.js';
import { TransportError, type ExecResult, type HostSession, type Transport } from '../transport/ssh.js';
import { runTransaction, type Stage } from './transaction.js';

const host = { name: 'mysql-1', ssh: { sudo: false } } as unknown as HostSpec;
const facts = (liveHash: string): ExecResult => ({
  code: 0,
  stdout: `fleetfw-facts 1\nbackend=nft\nrestore=yes\ngeneration=1\ntxn=none\nlive_hash=${liveHash}\npersisted_same=yes\nboot_id=b\n--- v4\n--- v6\n--- end\n`,
  stderr: '',
});

/** The host's record of a transaction (the `outcome` verb). */
const record = (state: string, liveHash: string, extra = ''): ExecResult => ({ code: 0, stdout: `txn=x\nstate=${state}\nwatchdog=no\nlive_hash=${liveHash}\n${extra}`, stderr: '' });

/** Every exec answered by `answer(verb)`; the verb is the word after `fleetfw-host`. */
function scriptedTransport(answer: (verb: string) => Promise<ExecResult>): Transport {
  const session: HostSession = {
    host: host.name,
    // The verb follows the last "fleetfw-host" (the script's own comments mention it too).
    exec: (command) => answer(command.slice(command.lastIndexOf(' fleetfw-host ')).split(' ')[2] ?? ''),
    spawn: () => Promise.reject(new Error('not used: no session pool here')),
    connectTcp: async () => true,
    answerOnLoopback: async () => undefined,
    close: async () => undefined,
  };
  return { open: async () => session, close: async () => undefined };
}

describe('runTransaction', () => {
  it('a prepare sent but never answered is not "failed": the host may have loaded, so the revert is verified', async () => {
    const stages: Stage[] = [];
    const transport = scriptedTransport(async (verb) => {
      if (verb === 'prepare') throw new TransportError('mysql-1: command timed out after 120000 ms', 'mysql-1', 'target', 'timeout');
      if (verb === 'outcome') return record('reverted', 'old', 'reason=no confirmation within 0s\n');
      return facts('old');
    });
    const r = await runTransaction(
      { host, desired: { v4: '*filter\nCOMMIT\n', v6: '*filter\nCOMMIT\n' }, expectedLiveHash: 'old', source: 'apply' },
      { transport, window: 0, generations: 5, user: 'u', planHash: 'p', emit: (s) => stages.push(s) },
    );
    expect(r.outcome).toBe('rolled-back');
    expect(r.reason).toMatch(/^no answer to prepare \(mysql-1: command timed out/);
    expect(r.revertMs).toBeGreaterThanOrEqual(0);
    expect(stages).toEqual(['connecting', 'testing', 'rolling-back', 'rolled-back']);
  });

  it('a confirmation whose answer was lost is confirmed by the host\'s own record', async () => {
    const transport = scriptedTransport(async (verb) => {
      if (verb === 'prepare') return { code: 0, stdout: 'loaded txid=x\n', stderr: '' };
      if (verb === 'confirm') throw new TransportError('mysql-1: connection lost', 'mysql-1', 'target', 'timeout');
      if (verb === 'outcome') return record('confirmed', 'new', 'generation=4\n');
      return facts('old');
    });
    const r = await runTransaction(
      { host, desired: { v4: '', v6: '' }, expectedLiveHash: 'old', source: 'apply' },
      { transport, window: 0, generations: 5, user: 'u', planHash: 'p', emit: () => undefined },
    );
    expect(r).toMatchObject({ outcome: 'confirmed', generation: 4 });
  });

  it('a revert that left other rules than before is a failure naming why, not "unknown"', async () => {
    const transport = scriptedTransport(async (verb) => {
      if (verb === 'prepare') return { code: 0, stdout: 'loaded txid=x\n', stderr: '' };
      if (verb === 'confirm') return { code: 71, stdout: '', stderr: 'fleetfw-host: the live rules changed inside the window; reverted\n' };
      if (verb === 'outcome') return record('reverted', 'other', 'reason=rules changed inside the window\n');
      return facts('old');
    });
    const r = await runTransaction(
      { host, desired: { v4: '', v6: '' }, expectedLiveHash: 'old', source: 'apply' },
      { transport, window: 0, generations: 5, user: 'u', planHash: 'p', emit: () => undefined },
    );
    expect(r.outcome).toBe('failed');
    expect(r.reason).toMatch(/reverted, but the live rules differ/);
  });

  it('a host that cannot be reached after the window is unknown, with the last error', async () => {
    const transport = scriptedTransport(async (verb) => {
      if (verb === 'prepare') return { code: 0, stdout: 'loaded txid=x\n', stderr: '' };
      throw new TransportError('mysql-1: connect timed out', 'mysql-1', 'target', 'timeout');
    });
    // Its give-up time derives from the window: run the clock forward instead of waiting it out.
    vi.useFakeTimers();
    try {
      const pending = runTransaction(
        { host, desired: { v4: '', v6: '' }, expectedLiveHash: 'old', source: 'apply' },
        { transport, window: 0, generations: 5, user: 'u', planHash: 'p', emit: () => undefined },
      );
      await vi.advanceTimersByTimeAsync(60_000);
      const r = await pending;
      expect(r.outcome).toBe('unknown');
      expect(r.reason).toMatch(/could not read the host's record .*connect timed out/);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a channel that never opened sent nothing: that is a plain failure', async () => {
    const transport = scriptedTransport(async () => {
      throw new TransportError('mysql-1: cannot open an exec channel: refused', 'mysql-1', 'target', 'channel');
    });
    await expect(
      runTransaction(
        { host, desired: { v4: '', v6: '' }, expectedLiveHash: 'old', source: 'apply' },
        { transport, window: 0, generations: 5, user: 'u', planHash: 'p', emit: () => undefined },
      ),
    ).rejects.toThrow(/cannot open an exec channel/);
  });

  it('counts the revert from when the prepare was sent, so a late answer cannot shrink the figure', async () => {
    let sentAt = 0;
    const transport = scriptedTransport(async (verb) => {
      if (verb === 'prepare') {
        sentAt = Date.now();
        // A rule set that drops the replies: the answer only gets out after the host reverted.
        await new Promise((r) => setTimeout(r, 1500));
        return { code: 0, stdout: 'loaded txid=x hash=new\n', stderr: '' };
      }
      if (verb === 'confirm') return { code: 70, stdout: '', stderr: 'fleetfw-host: transaction x is not pending: reverted: no confirmation within 0s\n' };
      if (verb === 'outcome') return record('reverted', 'old', 'reason=no confirmation within 0s\n');
      return facts('old');
    });
    const t0 = Date.now();
    const r = await runTransaction(
      { host, desired: { v4: '', v6: '' }, expectedLiveHash: 'old', source: 'apply' },
      { transport, window: 0, generations: 5, user: 'u', planHash: 'p', emit: () => undefined },
    );
    expect(r.outcome).toBe('rolled-back');
    expect(sentAt).toBeGreaterThanOrEqual(t0);
    expect(r.revertMs).toBeGreaterThanOrEqual(1500);
  });
});
