// The host script as each command sends it (shaken for its verbs, shake.ts), run:
// sh parses it, shellcheck finds it clean (but for variables only the verbs left out
// read), a verb it was not sent for is refused with exit 64, and a transaction runs
// on the real tools through one-shot scripts and a kept one (root, a throwaway
// network namespace).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEPT_VERBS } from '../apply/transaction.js';
import type { HostSession, HostStream } from '../transport/types.js';
import { assembleHostScriptFile } from './assemble.js';
import { parseFacts } from './facts.js';
import { parseOutcome } from './outcome.js';
import { HostServer, hostScriptFor, runHost } from './run.js';
import { scriptVerbs, shakeScript } from './shake.js';

const full = assembleHostScriptFile(fileURLToPath(new URL('./fleetfw-host.sh', import.meta.url)));
const verbs = [...scriptVerbs(full).keys()];
const sets: string[][] = [...verbs.map((v) => [v]), ['serve', ...KEPT_VERBS]];

describe('the shaken host script, as sh and shellcheck read it', () => {
  for (const set of sets) {
    it(`for ${set.join(' + ')}`, () => {
      const sent = hostScriptFor(set);
      const parsed = spawnSync('sh', ['-n', '-c', sent], { encoding: 'utf8' });
      expect(parsed.status, parsed.stderr).toBe(0);
      // Findings about what the left-out verbs did (SC2034: a variable only they read;
      // SC2119/SC2120: a function only they pass arguments to) are no faults here.
      const r = spawnSync('shellcheck', ['-s', 'sh', '-e', 'SC2034,SC2119,SC2120', '-'], { input: shakeScript(full, set), encoding: 'utf8' });
      expect(r.error, 'shellcheck must be installed (scripts/install-debian-deps.sh)').toBeUndefined();
      expect(r.stdout + r.stderr).toBe('');
      expect(r.status).toBe(0);
      // A verb not sent: refused, with the usage code and a message that says so.
      const other = verbs.find((v) => !set.includes(v) && v !== 'ping');
      if (other) {
        const refused = spawnSync('sh', ['-c', sent, 'fleetfw-host', other], { encoding: 'utf8', env: { ...process.env, FLEETFW_STATE: '/nonexistent' } });
        expect(refused.status).toBe(64);
        expect(refused.stderr).toBe(`fleetfw-host: verb ${other} is not in the script fleetfw sent for ${[...set].sort().join(' ')}\n`);
      }
      const ping = spawnSync('sh', ['-c', sent, 'fleetfw-host', 'ping'], { encoding: 'utf8' });
      expect([ping.status, ping.stdout]).toEqual([0, 'pong\n']);
    });
  }
});

describe('a transaction through shaken scripts (root, throwaway network namespace)', () => {
  const ns = `fleetfw-shake-${process.pid}`;
  let dir = '';
  let env: Record<string, string> = {};
  beforeAll(() => {
    expect(process.getuid?.(), 'must run as root').toBe(0);
    dir = mkdtempSync(join(tmpdir(), 'fleetfw-shake-'));
    env = { ...(process.env as Record<string, string>), FLEETFW_STATE: join(dir, 'state'), FLEETFW_PERSIST_DIR: join(dir, 'persist'), FLEETFW_RUN_DIR: join(dir, 'run'), TMPDIR: dir };
    expect(spawnSync('ip', ['netns', 'add', ns]).status).toBe(0);
    spawnSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
  });
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', ns]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const rules = (port: number) => `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport ${port} -j ACCEPT\nCOMMIT\n`;
  const candidate = (port: number) => `${rules(port)}# fleetfw-split v6\n${rules(port)}`;
  /** One verb as a one-shot command sends it: the script shaken for that verb alone. */
  const run = (verb: string, args: string[] = [], stdin = '') => {
    const r = spawnSync('ip', ['netns', 'exec', ns, 'sh', '-c', hostScriptFor([verb]), 'fleetfw-host', verb, ...args], { input: stdin, encoding: 'utf8', env, timeout: 60_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it('facts, prepare, outcome, confirm, history, generation, abort and the read-only verbs, each sent alone', () => {
    const before = run('facts');
    expect(before.code, before.stderr).toBe(0);
    const facts = parseFacts(before.stdout);
    const tx1 = '20261121T000001-aaaaaa';
    const loaded = run('prepare', [tx1, '60', facts.liveHash, 'tester', 'planhash'], candidate(9100));
    expect(loaded.code, loaded.stderr).toBe(0);
    expect(parseOutcome(run('outcome', [tx1]).stdout)).toMatchObject({ state: 'pending', watchdog: true });
    const confirmed = run('confirm', [tx1, '5', 'apply']);
    expect(confirmed.code, confirmed.stderr).toBe(0);
    const gen = /generation=(\d+)/.exec(confirmed.stdout)?.[1];
    expect(gen).toBeDefined();
    expect(run('history').stdout).toContain(`txid=${tx1}`);
    expect(run('generation', [gen!]).stdout).toContain('--dport 9100');
    const after = parseFacts(run('facts').stdout);
    expect(after.generation).toBe(Number(gen));
    const tx2 = '20261121T000002-bbbbbb';
    expect(run('prepare', [tx2, '60', after.liveHash, 'tester', 'planhash'], candidate(9200)).code).toBe(0);
    const aborted = run('abort', [tx2, 'test-done']);
    expect([aborted.code, aborted.stdout], aborted.stderr).toEqual([0, 'reverted\n']);
    expect(parseFacts(run('facts').stdout).liveHash).toBe(after.liveHash);
    expect(parseOutcome(run('outcome', [tx2]).stdout)).toMatchObject({ state: 'reverted', reason: 'test-done' });
    expect(run('show', ['filter', 'exact']).stdout).toContain('--- v4');
    expect(run('listeners').code).toBe(0);
    expect(run('kernel-log', ['5']).code).toBe(0);
    expect(run('probe').stdout).toMatch(/^tool=\S+\n--- probes\n--- end\n$/);
  });

  it('a kept script sent for an apply runs facts, prepare and confirm, and refuses other verbs before sending them', async () => {
    const session: HostSession = {
      host: 'local',
      exec: () => Promise.reject(new Error('not used')),
      connectTcp: async () => false,
      answerOnLoopback: async () => undefined,
      close: async () => undefined,
      spawn: async (command) => {
        const child = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', command], { env });
        const stream = Duplex.from({ readable: child.stdout, writable: child.stdin }) as unknown as HostStream;
        Object.assign(stream, { stderr: child.stderr, close: () => child.kill() });
        child.on('exit', (code) => stream.emit('exit', code));
        child.on('close', () => stream.emit('close'));
        return stream;
      },
    };
    const server = await HostServer.start(session, false, KEPT_VERBS);
    const facts = await runHost(server, 'facts', [], { sudo: false });
    expect(facts.code, facts.stderr).toBe(0);
    const tx = '20261121T000003-cccccc';
    const loaded = await runHost(server, 'prepare', [tx, '60', parseFacts(facts.stdout).liveHash, 'tester', 'planhash'], { sudo: false, stdin: candidate(9300) });
    expect(loaded.code, loaded.stderr).toBe(0);
    await expect(runHost(server, 'abort', [tx, 'x'], { sudo: false })).rejects.toThrow(/started without verb abort/);
    const confirmed = await runHost(server, 'confirm', [tx, '5', 'apply'], { sudo: false });
    expect(confirmed.code, confirmed.stderr).toBe(0);
    expect(confirmed.stdout).toMatch(/^confirmed generation=\d+\n$/);
    expect(await server.alive()).toBe(true);
    await server.finish();
  });
});
