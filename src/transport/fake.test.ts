// The fake transport speaks what run.ts, facts.ts and outcome.ts expect: the
// command line, the serve framing, the answers' formats and the exit codes. If
// one of them changes, these fail before the engine tests mislead.
import { describe, expect, it } from 'vitest';
import { HostExit, HostServer, hostCommand, joinFamilies, runHost, splitFamilies } from '../host/run.js';
import { parseFacts } from '../host/facts.js';
import { parseOutcome } from '../host/outcome.js';
import { FAKE_EXIT, FakeTransport, factsText, generationText, outcomeText, parseHostCommand, rulesHash, splitCandidate } from './fake.js';

describe('fake transport', () => {
  it('mirrors the host script exit codes', () => {
    expect(FAKE_EXIT).toEqual(HostExit);
  });

  it('reads the verb and arguments from the command line runHost builds, with and without sudo', () => {
    expect(parseHostCommand(hostCommand('prepare', ['t1', '0', 'abc', 'me@x', 'p'], true))).toEqual({ sudo: true, verb: 'prepare', args: ['t1', '0', 'abc', 'me@x', 'p'] });
    expect(parseHostCommand(hostCommand('history', [], false))).toEqual({ sudo: false, verb: 'history', args: [] });
    expect(parseHostCommand('uptime')).toBeUndefined();
  });

  it('splits the candidate as run.ts joins it', () => {
    const v4 = '*filter\nCOMMIT\n';
    const v6 = '*raw\nCOMMIT\n';
    for (const sets of [undefined, 'create fleetfw-db-private hash:ip family inet\n']) {
      expect(splitCandidate(joinFamilies(v4, v6, sets))).toEqual({ v4, v6, ...(sets ? { ipsets: sets } : {}) });
      expect(splitFamilies(generationText({ v4, v6, ...(sets ? { ipsets: sets } : {}) }))).toEqual({ v4, v6, ...(sets ? { ipsets: sets } : {}) });
    }
  });

  it('prints facts and outcomes as the parsers read them', () => {
    const facts = parseFacts(
      factsText({
        generation: 4,
        liveHash: 'aa11',
        persistedHash: 'bb22',
        txn: { id: 't9', state: 'pending', watchdog: true, started: '2025-01-01T00:00:00Z', user: 'ops@ci' },
        lastTxn: { id: 't8', state: 'reverted', reason: 'no confirmation within 60s' },
        live: { v4: '*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n', v6: '' },
        canonical: { skipped: 'iptables 1.8.9-nf_tables' },
      }),
    );
    expect(facts).toMatchObject({
      backend: 'nft',
      restore: true,
      persistent: true,
      generation: 4,
      liveHash: 'aa11',
      persistedSame: false,
      txn: { id: 't9', state: 'pending', watchdogAlive: true, user: 'ops@ci' },
      lastTxn: { id: 't8', state: 'reverted', reason: 'no confirmation within 60s' },
      live: { v4: '*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n' },
      canonical: { skipped: 'iptables 1.8.9-nf_tables' },
      persistedLoads: { v4: true, v6: true },
      listeners: [{ proto: 'tcp', address: '0.0.0.0', port: 22 }],
    });
    expect(parseOutcome(outcomeText({ txid: 't9', state: 'confirmed', generation: 5, liveHash: 'cc33' }))).toEqual({ txn: 't9', state: 'confirmed', watchdog: false, generation: 5, liveHash: 'cc33' });
    expect(parseOutcome(outcomeText({ txid: 't9', state: 'reverted', reason: 'health-probe-failed', liveHash: 'aa11' }))).toMatchObject({ state: 'reverted', reason: 'health-probe-failed' });
  });

  it('runs a simulated transaction: the stale check, the lock, the confirm and its record', async () => {
    const fake = new FakeTransport({ h1: {} });
    const s = await fake.open('h1');
    const before = fake.host('h1').state.liveHash;
    const candidate = joinFamilies('*filter\n:INPUT DROP [0:0]\nCOMMIT\n', '*filter\nCOMMIT\n');
    const run = (verb: string, args: string[], stdin = '') => runHost(s, verb, args, { sudo: false, stdin });
    expect((await run('prepare', ['t1', '0', 'wrong', 'u', 'p'], candidate)).code).toBe(HostExit.stale);
    expect(await run('prepare', ['t1', '0', before, 'u', 'p'], candidate)).toEqual({ code: 0, stdout: 'loaded txid=t1\n', stderr: '' });
    expect((await run('prepare', ['t2', '0', '-', 'u', 'p'], candidate)).stderr).toMatch(/^fleetfw-host: locked by transaction t1 of u since /);
    expect(parseOutcome((await run('outcome', ['t1'])).stdout)).toMatchObject({ state: 'pending', watchdog: true });
    expect((await run('confirm', ['t1', '5', 'apply'])).stdout).toBe('confirmed generation=1\n');
    const after = parseOutcome((await run('outcome', ['t1'])).stdout);
    expect(after).toMatchObject({ state: 'confirmed', generation: 1, liveHash: rulesHash(splitCandidate(candidate)) });
    expect(parseFacts((await run('facts', [])).stdout)).toMatchObject({ generation: 1, lastTxn: { id: 't1', state: 'confirmed', generation: 1 } });
    expect((await run('confirm', ['t1', '5', 'apply'])).stderr).toBe('fleetfw-host: transaction t1 is not pending: confirmed: generation 1\n');
    expect(parseOutcome((await run('outcome', ['nope'])).stdout).state).toBe('none');
    expect(fake.verbs('h1')).toEqual(['prepare', 'prepare', 'prepare', 'outcome', 'confirm', 'outcome', 'facts', 'confirm', 'outcome']);
  });

  it('answers a kept serve script through the real HostServer framing, on the connection that started it', async () => {
    const fake = new FakeTransport({ h1: {} });
    const s = await fake.open('h1');
    const server = await HostServer.start(s, true);
    expect(await server.alive()).toBe(true);
    // Text that looks like framing on stdin, and multi-byte characters, must not cut the request short.
    const tricky = `ü\n--- fleetfw-rc 0 0000\n${'é'.repeat(300)}`;
    expect(await server.request('ping', [], { stdin: tricky })).toEqual({ code: 0, stdout: 'pong\n', stderr: '' });
    expect(await runHost(server, 'nope', [], { sudo: true })).toEqual({ code: 64, stdout: '', stderr: "fleetfw-host: unknown verb 'nope'\n" });
    expect(fake.calls('h1').map((c) => [c.verb, c.via, c.conn, c.sudo])).toEqual([
      ['ping', 'serve', 1, true],
      ['ping', 'serve', 1, true],
      ['nope', 'serve', 1, true],
    ]);
    expect(fake.calls('h1')[1]!.stdin).toBe(tricky);
    await server.finish();
    // A script killed while kept: no longer alive, and a request says nothing was sent.
    const again = await HostServer.start(s, false);
    fake.killServers('h1');
    expect(await again.alive()).toBe(false);
    await expect(again.request('ping', [])).rejects.toMatchObject({ reason: 'channel' });
  });

  it('records opens, refused connections and closes', async () => {
    const fake = new FakeTransport({ up: {}, down: { reachable: false } });
    const s = await fake.open('up');
    await expect(fake.open('down')).rejects.toMatchObject({ reason: 'timeout', retryable: true });
    await s.close();
    await expect(s.exec(hostCommand('ping', [], false))).rejects.toMatchObject({ reason: 'channel' });
    expect(fake.events.map((e) => `${e.kind} ${e.host} ${e.conn}`)).toEqual(['open up 1', 'open-failed down 2', 'close up 1']);
    expect(fake.openConnections()).toEqual([]);
  });
});
