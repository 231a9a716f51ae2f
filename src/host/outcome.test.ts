import { describe, expect, it } from 'vitest';
import { parseOutcome } from './outcome.js';
import { HostExit } from './run.js';

describe('parseOutcome (the `outcome TXID` verb)', () => {
  it('reads every key the host prints', () => {
    const o = parseOutcome('txn=20261121T101010-aabbcc\nstate=confirmed\nwatchdog=no\ngeneration=7\nlive_hash=ab12\n');
    expect(o).toEqual({ txn: '20261121T101010-aabbcc', state: 'confirmed', watchdog: false, generation: 7, liveHash: 'ab12' });
  });

  it('keeps a reason whole: spaces, colons and equal signs included', () => {
    const reason = 'generation 4 not persisted: cannot write the new files in /etc/iptables/.fleetfw-tmp: awk: write failure (No space left on device) a=b';
    const o = parseOutcome(`txn=x\nstate=confirmed-unpersisted\nwatchdog=no\nreason=${reason}\ngeneration=4\nlive_hash=ff\n`);
    expect(o).toMatchObject({ state: 'confirmed-unpersisted', reason, generation: 4 });
  });

  it('knows each state the host reports; anything else (or nothing) is none', () => {
    for (const state of ['preparing', 'pending', 'reverting', 'confirmed', 'confirmed-unpersisted', 'reverted', 'revert-failed', 'none'] as const) {
      expect(parseOutcome(`txn=t\nstate=${state}\nwatchdog=yes\nlive_hash=1\n`)).toMatchObject({ state, watchdog: true });
    }
    expect(parseOutcome('txn=t\nstate=exploded\nwatchdog=no\n').state).toBe('none');
    expect(parseOutcome('').state).toBe('none');
  });

  it('ignores a generation that is not a number', () => {
    expect(parseOutcome('txn=t\nstate=confirmed\ngeneration=?\n').generation).toBeUndefined();
  });
});

describe('host exit codes', () => {
  it('tells a failed persist (79) from rules that changed inside the window (71)', () => {
    expect(HostExit.persist).toBe(79);
    expect(HostExit.changed).toBe(71);
    expect(new Set(Object.values(HostExit)).size).toBe(Object.values(HostExit).length);
  });
});
