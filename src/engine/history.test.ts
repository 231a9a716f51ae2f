// A host's own record, as the `history` verb prints it.
import { HostError } from '../host/client.js';
import { describe, expect, it } from 'vitest';
import { buildInventory } from '../analyze/fixtures/fleet.js';
import { FAKE_EXIT, FakeTransport, hostFailure } from '../transport/fake.js';
import { parseHistory, readHistory } from './history.js';

// As cmd_history prints it: each kept generation's meta (glob order), then the tail of history.log.
const HISTORY = `--- generation
generation=11
txid=20250301T101500-3fa2c1
user=ops@laptop
when=2025-03-01T10:15:07Z
plan_hash=9c1e0b7a44d2f810
source=apply
hash=5d41402abc4b2a76b9719d911017c592
--- generation
generation=12
txid=20250302T080000-aa00bb
user=ci@runner
when=2025-03-02T08:00:09Z
plan_hash=rollback-to-11
source=rollback
hash=
--- log
2025-03-01T10:15:03Z 20250301T101500-3fa2c1 prepared user=ops@laptop plan=9c1e0b7a44d2f810 window=60
2025-03-01T10:15:07Z 20250301T101500-3fa2c1 confirmed generation=11
2025-03-01T11:00:02Z 20250301T110000-77e1d0 prepared user=ops@laptop plan=0b1c2d3e4f506172 window=60
2025-03-01T11:01:02Z 20250301T110000-77e1d0 reverted no confirmation within 60s
2025-03-02T08:00:09Z 20250302T080000-aa00bb confirmed generation=12
--- end
`;

describe('parseHistory', () => {
  it('reads each generation with its meta and the log lines', () => {
    const { generations, log } = parseHistory(HISTORY);
    expect(generations.map((g) => g.generation)).toEqual([11, 12]);
    expect(generations[0]!.meta).toEqual({
      generation: '11',
      txid: '20250301T101500-3fa2c1',
      user: 'ops@laptop',
      when: '2025-03-01T10:15:07Z',
      plan_hash: '9c1e0b7a44d2f810',
      source: 'apply',
      hash: '5d41402abc4b2a76b9719d911017c592',
    });
    expect(generations[1]!.meta).toMatchObject({ source: 'rollback', plan_hash: 'rollback-to-11', hash: '' });
    expect(log).toHaveLength(5);
    expect(log[3]).toBe('2025-03-01T11:01:02Z 20250301T110000-77e1d0 reverted no confirmation within 60s');
  });

  it('sorts generations by number, whatever the order printed (past 999999 the glob no longer sorts them)', () => {
    const [a, b] = HISTORY.split('--- generation\n').slice(1);
    const swapped = `--- generation\n${b!.replace(/--- log[\s\S]*/, '')}--- generation\n${a}--- log\n--- end\n`;
    expect(parseHistory(swapped).generations.map((g) => g.generation)).toEqual([11, 12]);
  });

  it("keeps a value holding '=' whole (the script accepts '=' in its USER argument)", () => {
    const { generations } = parseHistory('--- generation\ngeneration=3\nuser=ops=admin@ci\n--- log\n--- end\n');
    expect(generations).toEqual([{ generation: 3, meta: { generation: '3', user: 'ops=admin@ci' } }]);
  });

  it('a fresh host: no generation, no log', () => {
    expect(parseHistory('--- log\n--- end\n')).toEqual({ generations: [], log: [] });
  });
});

describe('readHistory', () => {
  const host = buildInventory().hosts.find((h) => h.name === 'web-1')!;

  it('asks the host once, over a connection it closes', async () => {
    const fake = new FakeTransport({ 'web-1': { script: (r) => (r.verb === 'history' ? { code: 0, stdout: HISTORY, stderr: '' } : undefined) } });
    const h = await readHistory(fake, host);
    expect(h.generations.map((g) => g.meta.txid)).toEqual(['20250301T101500-3fa2c1', '20250302T080000-aa00bb']);
    expect(fake.verbs('web-1')).toEqual(['history']);
    expect(fake.openConnections()).toEqual([]);
  });

  it("turns the host's refusal into an error naming the host, and still closes the connection", async () => {
    const fake = new FakeTransport({ 'web-1': { script: () => hostFailure(FAKE_EXIT.tool, 'cannot read /var/lib/fleetfw') } });
    const err = await readHistory(fake, host).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostError);
    expect(err).toMatchObject({ message: 'web-1: history: cannot read /var/lib/fleetfw', code: FAKE_EXIT.tool, exitCode: 5 });
    expect(fake.openConnections()).toEqual([]);
  });

  it("reads the simulated host's own generations after an apply", async () => {
    const fake = new FakeTransport();
    const s = fake.host('web-1').state;
    s.generations.set(1, { rules: s.live, meta: { generation: '1', txid: 't1', user: 'u', when: 'w', plan_hash: 'p', source: 'apply', hash: s.liveHash } });
    s.log.push('w t1 confirmed generation=1');
    expect(await readHistory(fake, host)).toEqual({ generations: [{ generation: 1, meta: { generation: '1', txid: 't1', user: 'u', when: 'w', plan_hash: 'p', source: 'apply', hash: s.liveHash } }], log: ['w t1 confirmed generation=1'] });
  });
});
