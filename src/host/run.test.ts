// The facts parser on answers as the host script prints them.
import { describe, expect, it } from 'vitest';
import { parseFacts, persistedLoadProblem } from './facts.js';

describe('facts', () => {
  const sample = [
    'fleetfw-facts 1',
    'backend=nft',
    'systemd=no',
    'restore=yes',
    'persistent=yes',
    'ipset=yes',
    'generation=4',
    'txn=20261121T101010-aabbcc state=pending watchdog=no started=2026-11-21T10:10:10Z user=ops@laptop',
    'live_hash=11',
    'persisted_same=no',
    'boot_id=b1',
    '--- v4',
    '*filter',
    ':INPUT DROP [0:0]',
    'COMMIT',
    '--- v6',
    '--- canonical',
    '*filter',
    'COMMIT',
    '--- canonical-v6',
    '*filter',
    'COMMIT',
    '--- end',
    '',
  ].join('\n');

  it('parses the key=value header, the dumps and the canonical candidate', () => {
    const f = parseFacts(sample);
    expect(f.backend).toBe('nft');
    expect(f.generation).toBe(4);
    expect(f.txn).toEqual({ id: '20261121T101010-aabbcc', state: 'pending', watchdogAlive: false, started: '2026-11-21T10:10:10Z', user: 'ops@laptop' });
    expect(f.live.v4).toBe('*filter\n:INPUT DROP [0:0]\nCOMMIT\n');
    expect(f.canonical).toEqual({ v4: '*filter\nCOMMIT\n', v6: '*filter\nCOMMIT\n' });
    expect(f.persistedSame).toBe(false);
  });

  it('hashes the dumps itself where the host printed no hash, and refuses rules past ASCII without one', () => {
    const own = sample.replace('live_hash=11\n', '');
    expect(parseFacts(own).liveHash).toMatch(/^[0-9a-f]{64}$/);
    expect(() => parseFacts(own.replace(':INPUT DROP [0:0]', '-A INPUT -m comment --comment "caf\u00e9" -j ACCEPT'))).toThrow(/past ASCII without their hash/);
    expect(parseFacts(sample.replace(':INPUT DROP [0:0]', '-A INPUT -m comment --comment "caf\u00e9" -j ACCEPT')).liveHash).toBe('11');
  });

  it('parses whether the persisted files load at boot, the last transaction and unpersisted rules', () => {
    const more = [
      'fleetfw-facts 1',
      'generation=5',
      'txn=none',
      'last_txn=20261121T101010-aabbcc state=confirmed-unpersisted generation=5 reason=cannot write the new files in /etc/iptables/.fleetfw-tmp: awk: write failure (No space left on device)',
      'unpersisted=20261121T101010-aabbcc generation=5 reason=cannot write the new files: disk full',
      '--- v4',
      '--- v6',
      '--- meta',
      'live_hash=11',
      'persisted_same=no',
      'persisted_v4=fails',
      'persisted_v6=loads',
      'persisted_sets=missing',
      'persisted_error=rules.v4: iptables-restore: COMMIT expected at line 4',
      '--- end',
      '',
    ].join('\n');
    const f = parseFacts(more);
    expect(f.persistedLoads).toEqual({ v4: false, v6: true, error: 'rules.v4: iptables-restore: COMMIT expected at line 4' });
    expect(persistedLoadProblem('mysql-1', f)).toBe(
      'mysql-1: persisted rules.v4 would not load at boot (rules.v4: iptables-restore: COMMIT expected at line 4): the host would come up without its firewall',
    );
    expect(f.lastTxn).toEqual({
      id: '20261121T101010-aabbcc',
      state: 'confirmed-unpersisted',
      generation: 5,
      reason: 'cannot write the new files in /etc/iptables/.fleetfw-tmp: awk: write failure (No space left on device)',
    });
    expect(f.unpersisted).toEqual({ id: '20261121T101010-aabbcc', generation: 5, reason: 'cannot write the new files: disk full' });
    // All loading (or absent): no problem; an older host script: nothing known.
    const fine = parseFacts(more.replace('persisted_v4=fails', 'persisted_v4=loads').replace(/persisted_error=.*\n/, ''));
    expect(fine.persistedLoads).toEqual({ v4: true, v6: true });
    expect(persistedLoadProblem('mysql-1', fine)).toBeUndefined();
    expect(parseFacts(sample).persistedLoads).toBeUndefined();
    expect(parseFacts(sample).lastTxn).toBeUndefined();
    expect(parseFacts(more.replace(/^last_txn=.*$/m, 'last_txn=t1 state=reverted reason=no confirmation within 6s')).lastTxn).toEqual({ id: 't1', state: 'reverted', reason: 'no confirmation within 6s' });
  });

  it('refuses an answer that is not from the script', () => {
    expect(() => parseFacts('Welcome to Ubuntu\n')).toThrow(/unexpected answer/);
  });
});
