// The host script's transaction run for real (root) on a throwaway "host": a network
// namespace and a private mount namespace of its own, so that its netfilter, its
// processes and a small tmpfs over its persist dir touch nothing else. What must hold
// whatever fails: the revert happens by the deadline when any one of its processes is
// killed; persisted files are the old ones or complete new ones that load; a lock's
// age follows the boot id and the time since boot, never the time of day.
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { canonHash } from './canon.js';
import { parseFacts } from './facts.js';
import { parseOutcome } from './outcome.js';
import { HostExit, hostScript, joinFamilies } from './run.js';
import { parseSections } from './sections.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 50 ms until it holds; generous bounds, never a fixed sleep. */
async function waitFor(check: () => boolean, ms: number, what: string): Promise<number> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
  return Date.now();
}

class NsHost {
  readonly state: string;
  readonly persist: string;
  readonly env: Record<string, string>;
  private constructor(
    readonly dir: string,
    private readonly anchor: ChildProcess,
  ) {
    this.state = join(dir, 'state');
    this.persist = join(dir, 'persist');
    this.env = { FLEETFW_STATE: this.state, FLEETFW_PERSIST_DIR: this.persist, FLEETFW_RUN_DIR: join(dir, 'run'), TMPDIR: dir };
  }

  static async start(): Promise<NsHost> {
    expect(process.getuid?.(), 'must run as root').toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'fleetfw-txn-'));
    const anchor = spawn('unshare', ['-n', '-m', '--propagation', 'private', 'sleep', 'infinity'], { stdio: 'ignore' });
    const host = new NsHost(dir, anchor);
    await waitFor(() => host.netns() !== undefined && host.netns() !== readlinkSync('/proc/self/ns/net'), 10_000, 'the namespace anchor');
    const up = host.sh(`ip link set lo up && mkdir -p "${host.persist}" && iptables -A INPUT -p tcp --dport 22 -j ACCEPT`);
    expect(up.code, up.stderr).toBe(0);
    return host;
  }

  netns(): string | undefined {
    try {
      return readlinkSync(`/proc/${this.anchor.pid}/ns/net`);
    } catch {
      return undefined;
    }
  }

  private enter(argv: string[], input: string, env: Record<string, string> = {}): Run {
    const r: SpawnSyncReturns<string> = spawnSync('nsenter', ['-t', String(this.anchor.pid), '-n', '-m', '--', ...argv], {
      input,
      encoding: 'utf8',
      env: { ...process.env, ...this.env, ...env },
      timeout: 60_000,
    });
    return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
  }

  run(verb: string, args: string[] = [], opts: { stdin?: string; env?: Record<string, string> } = {}): Run {
    return this.enter(['sh', '-c', hostScript(), 'fleetfw-host', verb, ...args], opts.stdin ?? '', opts.env);
  }

  /** A verb left running (to be killed, or to pause at a fault point). */
  spawn(verb: string, args: string[]): ChildProcess {
    return spawn('nsenter', ['-t', String(this.anchor.pid), '-n', '-m', '--', 'sh', '-c', hostScript(), 'fleetfw-host', verb, ...args], {
      env: { ...process.env, ...this.env },
      stdio: 'ignore',
    });
  }

  sh(script: string): Run {
    return this.enter(['sh', '-c', script], '');
  }

  prepare(txid: string, window: number, port: number, opts: { env?: Record<string, string>; rules?: number } = {}): Run {
    return this.run('prepare', [txid, String(window), '-', 'tester', 'planhash'], { stdin: candidate(port, opts.rules), env: opts.env });
  }

  outcome(txid: string): ReturnType<typeof parseOutcome> {
    const r = this.run('outcome', [txid]);
    expect(r.code, r.stderr).toBe(0);
    return parseOutcome(r.stdout);
  }

  /** The host's record of txid, read from its state dir (no process): its outcome line once retired. */
  record(txid: string): string | undefined {
    const f = join(this.state, 'txns', txid, 'outcome');
    return existsSync(f) ? readFileSync(f, 'utf8').trim() : undefined;
  }

  live(): string {
    return this.sh('iptables-save | grep -e "^-A" || true').stdout;
  }

  /** Processes in this host's network namespace with their command lines (NULs as spaces). */
  processes(): Array<{ pid: number; ppid: number; cmd: string; oom: string }> {
    const ns = this.netns();
    const out: Array<{ pid: number; ppid: number; cmd: string; oom: string }> = [];
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      try {
        if (readlinkSync(`/proc/${p}/ns/net`) !== ns) continue;
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        out.push({ pid: Number(p), ppid, cmd: readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').trim(), oom: readFileSync(`/proc/${p}/oom_score_adj`, 'utf8').trim() });
      } catch {
        // gone meanwhile
      }
    }
    return out;
  }

  /** The guards of txid: each watchdog shell and its sleep. */
  guards(txid: string): Array<{ pid: number; sleep?: number; oom: string; sleepOom?: string }> {
    const all = this.processes();
    return all
      .filter((p) => p.cmd.includes(`revert.sh ${txid} guard`))
      .map((g) => {
        const s = all.find((p) => p.ppid === g.pid && p.cmd.startsWith('sleep'));
        return { pid: g.pid, oom: g.oom, ...(s ? { sleep: s.pid, sleepOom: s.oom } : {}) };
      });
  }

  stop(): void {
    const ns = this.netns();
    if (ns) {
      for (const p of readdirSync('/proc')) {
        if (!/^\d+$/.test(p) || Number(p) === this.anchor.pid) continue;
        try {
          if (readlinkSync(`/proc/${p}/ns/net`) === ns) process.kill(Number(p), 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
    }
    this.anchor.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A candidate: SSH and PORT open, plus `rules` more (to make the files bigger). */
function candidate(port: number, rules = 0): string {
  const extra = Array.from({ length: rules }, (_, i) => `-A INPUT -s 10.${(i >> 8) & 255}.${i & 255}.1/32 -p tcp -m tcp --dport ${port} -j ACCEPT`);
  const v4 = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT', `-A INPUT -p tcp -m tcp --dport ${port} -j ACCEPT`, ...extra, 'COMMIT', ''].join('\n');
  const v6 = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', 'COMMIT', ''].join('\n');
  return joinFamilies(v4, v6);
}

let host: NsHost | undefined;
afterEach(() => {
  host?.stop();
  host = undefined;
});

describe('a revert that survives the death of any one of its processes (SIGKILL)', () => {
  const WINDOW = 3;
  // The deadline plus what a busy machine may add (both CPUs loaded): a poll, a revert.
  const MARGIN_MS = 4_000 + WINDOW * 500;

  it('arms two guards, each in its own session, spared by the OOM killer (and so are their sleeps); the confirm ends both', async () => {
    host = await NsHost.start();
    const txid = '20261121T000001-a1a1a1';
    expect(host.prepare(txid, 30, 9101).code).toBe(0);
    const guards = host.guards(txid);
    expect(guards).toHaveLength(2);
    // Lowering oom_score_adj takes CAP_SYS_RESOURCE, which root has on a host; some
    // containers drop it (the guards then run unprotected, and say so on stderr).
    const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;
    const protectable = ((BigInt(`0x${capEff}`) >> 24n) & 1n) === 1n;
    if (!protectable) console.log('oom_score_adj: this machine drops CAP_SYS_RESOURCE; the guards run without the OOM killer\'s protection here');
    const own = readFileSync('/proc/self/oom_score_adj', 'utf8').trim();
    for (const g of guards) {
      expect(g).toMatchObject(protectable ? { oom: '-1000', sleepOom: '-1000' } : { oom: own, sleepOom: own });
      const stat = readFileSync(`/proc/${g.pid}/stat`, 'utf8').slice(readFileSync(`/proc/${g.pid}/stat`, 'utf8').lastIndexOf(')') + 2).split(' ');
      expect(Number(stat[2]), 'its own process group').toBe(g.pid);
      expect(Number(stat[3]), 'its own session').toBe(g.pid);
    }
    expect(host.outcome(txid)).toMatchObject({ state: 'pending', watchdog: true });
    const confirmed = host.run('confirm', [txid, '5', 'apply']);
    expect(confirmed.code, confirmed.stderr).toBe(0);
    await waitFor(() => host!.processes().every((p) => !p.cmd.includes('revert.sh')), 10_000, 'every guard to end');
    expect(host.outcome(txid)).toMatchObject({ state: 'confirmed', watchdog: false, generation: 1 });
  });

  const victims = [
    { name: 'the first watchdog', pick: (g: ReturnType<NsHost['guards']>) => g[0]!.pid },
    { name: "the first watchdog's sleep", pick: (g: ReturnType<NsHost['guards']>) => g[0]!.sleep! },
    { name: 'the second watchdog', pick: (g: ReturnType<NsHost['guards']>) => g[1]!.pid },
    { name: "the second watchdog's sleep", pick: (g: ReturnType<NsHost['guards']>) => g[1]!.sleep! },
  ];
  victims.forEach(({ name, pick }, i) => {
    it(`${name} killed: the host still reverts by the deadline, and not before it`, async () => {
      host = await NsHost.start();
      const before = host.live();
      const txid = `20261121T00001${i}-b2b2b${i}`;
      const t0 = Date.now();
      const p = host.prepare(txid, WINDOW, 9200 + i);
      expect(p.code, p.stderr).toBe(0);
      expect(host.live()).toContain(`--dport ${9200 + i}`);
      const guards = host.guards(txid);
      expect(guards.every((g) => g.sleep !== undefined), JSON.stringify(guards)).toBe(true);
      process.kill(pick(guards), 'SIGKILL');
      const t1 = await waitFor(() => host!.record(txid) !== undefined, WINDOW * 1000 + MARGIN_MS, `${txid} to revert`);
      expect(t1 - t0, 'a killed sleep must not make its guard revert early').toBeGreaterThanOrEqual(WINDOW * 1000);
      expect(host.record(txid)).toBe(`reverted: no confirmation within ${WINDOW}s`);
      expect(host.live()).toBe(before);
      await waitFor(() => host!.processes().every((p) => !p.cmd.includes('revert.sh')), 10_000, 'the other guard to end');
    });
  });

  it('the guard that won the race killed half-way through its revert: the other one finishes it', async () => {
    host = await NsHost.start();
    const before = host.live();
    const txid = '20261121T000020-c3c3c3';
    host.sh(`mkdir -p "${host.state}/faults" && touch "${host.state}/faults/pause-revert"`);
    expect(host.prepare(txid, 1, 9300).code).toBe(0);
    await waitFor(() => existsSync(join(host!.state, 'faults', 'at-revert')), 10_000 + MARGIN_MS, 'a guard to take the revert');
    const runner = Number(readFileSync(join(host.state, 'txn', 'reverter'), 'utf8').split(' ')[0]);
    expect(host.guards(txid).map((g) => g.pid)).toContain(runner);
    expect(host.outcome(txid)).toMatchObject({ state: 'reverting', watchdog: true, reason: 'no confirmation within 1s' });
    process.kill(runner, 'SIGKILL');
    await waitFor(() => host!.record(txid) !== undefined, 5_000 + MARGIN_MS, 'the other guard to finish the revert');
    expect(host.record(txid)).toBe('reverted: no confirmation within 1s');
    expect(host.live()).toBe(before);
    expect(host.outcome(txid)).toMatchObject({ state: 'reverted', watchdog: false });
  });

  it('an abort whose revert is killed half-way: the guards finish it at the deadline', async () => {
    host = await NsHost.start();
    const before = host.live();
    const txid = '20261121T000021-d4d4d4';
    const t0 = Date.now();
    expect(host.prepare(txid, WINDOW, 9400).code).toBe(0);
    host.sh(`mkdir -p "${host.state}/faults" && touch "${host.state}/faults/pause-revert"`);
    const abort = host.spawn('abort', [txid, 'health-probe-failed']);
    await waitFor(() => existsSync(join(host!.state, 'faults', 'at-revert')), 10_000, 'the abort to take the revert');
    const runner = Number(readFileSync(join(host.state, 'txn', 'reverter'), 'utf8').split(' ')[0]);
    expect(host.guards(txid).map((g) => g.pid)).not.toContain(runner);
    process.kill(runner, 'SIGKILL');
    await new Promise((r) => (abort.exitCode !== null ? r(null) : abort.once('exit', r)));
    await waitFor(() => host!.record(txid) !== undefined, WINDOW * 1000 + 5_000 + MARGIN_MS, 'a guard to finish the revert');
    expect(Date.now() - t0).toBeLessThan(WINDOW * 1000 + 5_000 + MARGIN_MS);
    expect(host.record(txid)).toBe('reverted: health-probe-failed');
    expect(host.live()).toBe(before);
  });
});

describe('a revert left half-way with nothing alive to finish it (two failures)', () => {
  for (const by of ['abort', 'the next prepare'] as const) {
    it(`is finished by ${by}, with its own reason`, async () => {
      host = await NsHost.start();
      const h = host;
      const before = h.live();
      const txid = by === 'abort' ? '20261121T000030-e1e1e1' : '20261121T000031-e2e2e2';
      expect(h.prepare(txid, 30, 9450).code).toBe(0);
      for (const g of h.guards(txid)) process.kill(g.pid, 'SIGKILL');
      h.sh(`mkdir -p "${h.state}/faults" && touch "${h.state}/faults/pause-revert"`);
      const abort = h.spawn('abort', [txid, 'health-probe-failed']);
      await waitFor(() => existsSync(join(h.state, 'faults', 'at-revert')), 10_000, 'the abort to take the revert');
      process.kill(Number(readFileSync(join(h.state, 'txn', 'reverter'), 'utf8').split(' ')[0]), 'SIGKILL');
      await new Promise((r) => (abort.exitCode !== null ? r(null) : abort.once('exit', r)));
      rmSync(join(h.state, 'faults'), { recursive: true, force: true });
      await waitFor(() => h.guards(txid).length === 0, 10_000, 'no guard left');
      expect(h.outcome(txid)).toMatchObject({ state: 'reverting', watchdog: false, reason: 'health-probe-failed' });
      if (by === 'abort') {
        const r = h.run('abort', [txid, 'no-guard-left']);
        expect(r.code, r.stderr).toBe(0);
      } else {
        const r = h.prepare('20261121T000032-e3e3e3', 30, 9451);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toContain('recovered: finished an interrupted revert');
        expect(h.run('abort', ['20261121T000032-e3e3e3', 'test-done']).code).toBe(0);
      }
      expect(h.record(txid)).toBe('reverted: health-probe-failed');
      expect(h.live()).toBe(before);
    });
  }
});

describe('persisted files are the old ones or complete new ones that load (a small full tmpfs over the persist dir)', () => {
  /** Mounts a tmpfs over the persist dir (its files copied in), then fills it but for `leave` bytes. */
  const fill = (h: NsHost, leave: number) => {
    const r = h.sh(
      [
        'set -e',
        `P="${h.persist}"`,
        // Only our own tmpfs (marked by its size) may ever be filled, never the disk under it.
        'if ! grep -q " $P tmpfs [^ ]*size=256k" /proc/self/mounts; then',
        '  mkdir -p "$TMPDIR/keep" && cp -a "$P/." "$TMPDIR/keep/"',
        '  mount -t tmpfs -o size=256k tmpfs "$P"',
        '  cp -a "$TMPDIR/keep/." "$P/" && rm -rf "$TMPDIR/keep"',
        'fi',
        '[ "$(stat -f -c %T "$P")" = tmpfs ] && [ "$(stat -f -c %b "$P")" -le 64 ]',
        'rm -f "$P/fill"',
        // Until the tmpfs is full (dd then fails; at most 512 KB whatever happens), then `leave` bytes given back.
        'dd if=/dev/zero of="$P/fill" bs=4096 count=128 2>/dev/null && exit 9 || [ -s "$P/fill" ]',
        `[ ${leave} -eq 0 ] || truncate -s -${leave} "$P/fill"`,
      ].join('\n'),
    );
    expect(r.code, r.stderr).toBe(0);
  };
  const unfill = (h: NsHost) => expect(h.sh(`rm -f "${h.persist}/fill"`).code).toBe(0);
  const files = (h: NsHost) => h.sh(`cd "${h.persist}" && for f in rules.v4 rules.v6; do echo "== $f"; cat "$f"; done; ls -A .fleetfw-tmp 2>/dev/null`).stdout;
  const loads = (h: NsHost) => h.sh(`iptables-restore -t <"${h.persist}/rules.v4" && ip6tables-restore -t <"${h.persist}/rules.v6"`).code === 0;

  it('a confirm whose persist fails: confirmed-unpersisted with the cause, old files kept; the next prepare persists first or refuses', async () => {
    host = await NsHost.start();
    const h = host;
    expect(h.prepare('20261121T000100-e5e5e5', 30, 9500).code).toBe(0);
    expect(h.run('confirm', ['20261121T000100-e5e5e5', '5', 'apply']).code).toBe(0);
    const old = files(h);
    expect(old).toContain('--dport 9500');

    // Room for less than the new rules.v4 (400 more rules, ~25 KB).
    fill(h, 4096);
    const txid = '20261121T000101-f6f6f6';
    expect(h.prepare(txid, 30, 9501, { rules: 400 }).code).toBe(0);
    const c = h.run('confirm', [txid, '5', 'apply']);
    expect(c.code, c.stderr).toBe(HostExit.persist);
    expect(c.stdout).toBe('confirmed generation=2 unpersisted\n');
    expect(c.stderr).toMatch(/confirmed \(generation 2\), but not persisted: cannot write the new files in .*\.fleetfw-tmp: .*No space left on device/);
    // The host runs the confirmed rules with its old, complete files; no partial file left.
    expect(h.live()).toContain('--dport 9501');
    expect(files(h)).toBe(old);
    expect(loads(h)).toBe(true);
    const o = h.outcome(txid);
    expect(o).toMatchObject({ state: 'confirmed-unpersisted', generation: 2, watchdog: false });
    expect(o.reason).toMatch(/No space left on device/);
    const f = parseFacts(h.run('facts').stdout);
    expect(f.unpersisted).toMatchObject({ id: txid, generation: 2 });
    expect(f.lastTxn).toMatchObject({ id: txid, state: 'confirmed-unpersisted', generation: 2 });
    expect(f.persistedLoads).toEqual({ v4: true, v6: true });
    expect(f.generation).toBe(2);

    // Still full: the next prepare tries the persist first, fails, changes nothing.
    const refused = h.prepare('20261121T000102-a7a7a7', 30, 9502);
    expect(refused.code).toBe(HostExit.persist);
    expect(refused.stderr).toMatch(new RegExp(`the rules confirmed by transaction ${txid} \\(generation 2\\) are not persisted, and persisting them failed again: .*No space left on device.*; nothing changed`));
    expect(h.live()).not.toContain('--dport 9502');
    expect(files(h)).toBe(old);
    expect(existsSync(join(h.state, 'txn')), 'lock released').toBe(false);

    // Room again: the persist goes through first, then the transaction.
    unfill(h);
    const again = h.prepare('20261121T000103-b8b8b8', 30, 9503);
    expect(again.code, again.stderr).toBe(0);
    expect(files(h)).toContain('--dport 9501');
    expect(h.outcome(txid)).toMatchObject({ state: 'confirmed', generation: 2 });
    expect(h.run('confirm', ['20261121T000103-b8b8b8', '5', 'apply']).code).toBe(0);
    expect(files(h)).toContain('--dport 9503');
    expect(loads(h)).toBe(true);
    const after = parseFacts(h.run('facts').stdout);
    expect(after.unpersisted).toBeUndefined();
    expect(after.persistedSame).toBe(true);
  });

  it('a confirm killed between its rename and its persist, recovered on a full disk: no file cut short; recovered once there is room', async () => {
    host = await NsHost.start();
    const h = host;
    expect(h.prepare('20261121T000200-c9c9c9', 30, 9600).code).toBe(0);
    expect(h.run('confirm', ['20261121T000200-c9c9c9', '5', 'apply']).code).toBe(0);
    const old = files(h);
    const txid = '20261121T000201-d0d0d0';
    h.sh(`mkdir -p "${h.state}/faults" && touch "${h.state}/faults/pause-confirmed"`);
    expect(h.prepare(txid, 6, 9601, { rules: 400 }).code).toBe(0);
    const confirm = h.spawn('confirm', [txid, '5', 'apply']);
    await waitFor(() => existsSync(join(h.state, 'faults', 'at-confirmed')), 20_000, 'the confirm to pass its rename');
    // The confirm's shell dies (nsenter execs it: same pid; its pause's sleep ends by itself).
    process.kill(confirm.pid!, 'SIGKILL');
    await new Promise((r) => (confirm.exitCode !== null ? r(null) : confirm.once('exit', r)));
    rmSync(join(h.state, 'faults'), { recursive: true, force: true });
    expect(h.outcome(txid)).toMatchObject({ state: 'confirmed-unpersisted' });
    // Its guards end at their deadline (the rename took the pending marker away).
    await waitFor(() => h.guards(txid).length === 0, 20_000, 'the guards to end');

    fill(h, 4096);
    const r = h.prepare('20261121T000202-e1e1e1', 30, 9602);
    expect(r.code, r.stderr).toBe(HostExit.persist);
    expect(r.stderr).toMatch(/was confirmed \(generation 2\) but its persist had not finished, and persisting now failed: .*No space left on device/);
    expect(files(h)).toBe(old);
    expect(loads(h)).toBe(true);
    expect(h.outcome(txid)).toMatchObject({ state: 'confirmed-unpersisted', generation: 2 });

    unfill(h);
    const ok = h.prepare('20261121T000203-f2f2f2', 30, 9603);
    expect(ok.code, ok.stderr).toBe(0);
    expect(files(h)).toContain('--dport 9601');
    expect(loads(h)).toBe(true);
    expect(h.outcome(txid)).toMatchObject({ state: 'confirmed', generation: 2 });
    expect(h.run('abort', ['20261121T000203-f2f2f2', 'test-done']).code).toBe(0);
  });

  it('new files that would not load at boot are not persisted: the old ones stay, and the cause is the loader\'s', async () => {
    host = await NsHost.start();
    const h = host;
    expect(h.prepare('20261121T000150-a0a0a0', 30, 9550).code).toBe(0);
    expect(h.run('confirm', ['20261121T000150-a0a0a0', '5', 'apply']).code).toBe(0);
    const old = files(h);
    // Rules that match a live set, on a host whose fleetfw runs without ipset on its PATH:
    // the dump has no set file, and at boot the rules would find no set.
    const bin = join(h.dir, 'bin');
    const mk = h.sh(`mkdir -p "${bin}" && for t in /usr/sbin/*tables*; do ln -s "$t" "${bin}/"; done && ipset create fleetfw-live hash:ip`);
    expect(mk.code, mk.stderr).toBe(0);
    const env = { PATH: `${bin}:/usr/bin:/bin` };
    const txid = '20261121T000151-a1a1a1';
    const withSet = candidate(9551).replace('-A INPUT -p tcp -m tcp --dport 9551 -j ACCEPT', '-A INPUT -p tcp -m set --match-set fleetfw-live src -m tcp --dport 9551 -j ACCEPT');
    const p = h.run('prepare', [txid, '30', '-', 'tester', 'planhash'], { stdin: withSet, env });
    expect(p.code, p.stderr).toBe(0);
    const c = h.run('confirm', [txid, '5', 'apply'], { env });
    expect(c.code, c.stderr).toBe(HostExit.persist);
    expect(c.stderr).toMatch(/not persisted: the new files would not load at boot: rules\.v4: .*fleetfw-live/);
    expect(files(h)).toBe(old);
    expect(loads(h)).toBe(true);
    expect(h.outcome(txid)).toMatchObject({ state: 'confirmed-unpersisted', reason: expect.stringMatching(/would not load at boot/) });
    // With ipset back, the next prepare persists them, sets first.
    const again = h.prepare('20261121T000152-a2a2a2', 30, 9552);
    expect(again.code, again.stderr).toBe(0);
    expect(h.sh(`grep -c fleetfw-live "${h.persist}/ipsets" "${h.persist}/rules.v4"`).stdout).toBe(`${h.persist}/ipsets:1\n${h.persist}/rules.v4:1\n`);
    expect(h.run('abort', ['20261121T000152-a2a2a2', 'test-done']).code).toBe(0);
  });

  it('facts reports a persisted file that would not load at boot, names it, and tests each content once', async () => {
    host = await NsHost.start();
    const h = host;
    // iptables-save cut short at 4096 bytes, as a write to a full disk leaves it (and exits 0).
    const cut = h.sh(
      `for i in $(seq 1 150); do iptables -A INPUT -s 10.0.$i.1 -j ACCEPT; done; iptables-save | head -c 4096 >"${h.persist}/rules.v4"; ip6tables-save >"${h.persist}/rules.v6"`,
    );
    expect(cut.code, cut.stderr).toBe(0);
    const f = parseFacts(h.run('facts').stdout);
    expect(f.persistedLoads).toMatchObject({ v4: false, v6: true });
    expect(f.persistedLoads?.error).toMatch(/^rules\.v4: iptables-restore.*line/);
    // A set file whose rules need sets that are not in it: tested as a boot loads them.
    writeFileSync(join(h.persist, 'rules.v4'), '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m set --match-set fleetfw-nope src -j ACCEPT\nCOMMIT\n');
    writeFileSync(join(h.persist, 'ipsets'), 'create fleetfw-other hash:ip family inet\n');
    const sets = parseFacts(h.run('facts').stdout);
    expect(sets.persistedLoads).toMatchObject({ v4: false, v6: true, sets: true });
    expect(sets.persistedLoads?.error).toMatch(/rules\.v4: .*fleetfw-nope/);
    // Fixed files are tested once, then known by their hashes.
    writeFileSync(join(h.persist, 'rules.v4'), '*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n');
    expect(parseFacts(h.run('facts').stdout).persistedLoads).toEqual({ v4: true, v6: true, sets: true });
    const cache = readFileSync(join(h.state, 'persisted.ok'), 'utf8');
    expect(cache).toMatch(/^[0-9a-f]{64} [0-9a-f]{64} [0-9a-f]{64} loads loads loads\n$/);
    // The cached answer stands for those bytes only: another content is tested again.
    writeFileSync(join(h.state, 'persisted.ok'), cache.replace('loads loads loads', 'loads fails loads'));
    expect(parseFacts(h.run('facts').stdout).persistedLoads).toMatchObject({ v6: false });
    writeFileSync(join(h.persist, 'rules.v6'), '*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n');
    expect(parseFacts(h.run('facts').stdout).persistedLoads).toEqual({ v4: true, v6: true, sets: true });
  });

  it('empty persisted files (what iptables-persistent saves with no table loaded) load without a boot test; a file with bytes is tested', async () => {
    host = await NsHost.start();
    const h = host;
    // Stand-ins that count the boot test's tools, then run the real ones.
    const bin = join(h.dir, 'bin');
    const calls = join(h.dir, 'boot.calls');
    const shim = (tool: string) => writeFileSync(join(bin, tool), `#!/bin/sh\necho ${tool} >>"${calls}"\nexec /usr/sbin/${tool} "$@"\n`, { mode: 0o755 });
    expect(h.sh(`mkdir "${bin}"`).code).toBe(0);
    writeFileSync(join(bin, 'unshare'), `#!/bin/sh\necho unshare >>"${calls}"\nexec /usr/bin/unshare "$@"\n`, { mode: 0o755 });
    shim('iptables-restore');
    shim('ip6tables-restore');
    const env = { PATH: `${bin}:${process.env.PATH}` };
    const count = () => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n').length : 0);
    const facts = () => {
      const r = h.run('facts', [], { env });
      expect(r.code, r.stderr).toBe(0);
      return parseFacts(r.stdout);
    };
    const cache = () => readFileSync(join(h.state, 'persisted.ok'), 'utf8');
    // Nothing persisted: nothing to load.
    expect(facts().persistedLoads).toEqual({});
    expect(cache()).toBe('- - - missing missing missing\n');
    writeFileSync(join(h.persist, 'rules.v4'), '');
    writeFileSync(join(h.persist, 'rules.v6'), '');
    writeFileSync(join(h.persist, 'ipsets'), '');
    expect(facts().persistedLoads).toEqual({ v4: true, v6: true, sets: true });
    const e = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
    expect(cache()).toBe(`${e} ${e} ${e} loads loads loads\n`);
    expect(count()).toBe(0);
    // Not every file empty: tested as a boot loads them (an empty rules.v6 loads as nothing there too).
    writeFileSync(join(h.persist, 'rules.v4'), '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m nosuchmatch -j ACCEPT\nCOMMIT\n');
    const bad = facts();
    expect(bad.persistedLoads).toMatchObject({ v4: false, v6: true, sets: true });
    expect(bad.persistedLoads?.error).toMatch(/^rules\.v4: /);
    expect(count()).toBe(3);
  });
});

describe("a lock's age: boot id and time since boot, never the time of day", () => {
  // The clocks the script reads, pointed at files (inert in production: sudo resets the environment).
  const clocks = (h: NsHost, uptime: number, boot = 'boot-a') => {
    writeFileSync(join(h.dir, 'uptime'), `${uptime.toFixed(2)} 0.00\n`);
    writeFileSync(join(h.dir, 'boot_id'), `${boot}\n`);
    return { FLEETFW_UPTIME_FILE: join(h.dir, 'uptime'), FLEETFW_BOOT_ID_FILE: join(h.dir, 'boot_id') };
  };
  /** A transaction left while being prepared: its lock taken at `uptime` on `boot`, its wall-clock traces set to `wall`. */
  const leftLock = (h: NsHost, uptime: number | undefined, boot: string, wall: string) => {
    const t = join(h.state, 'txn');
    const lines = [`mkdir -p "${t}"`, `echo left-1 >"${t}/id"`, `echo "${boot}" >"${t}/boot_id"`, `echo 946684800 >"${t}/started_epoch"`];
    if (uptime !== undefined) lines.push(`echo "${boot} ${Math.round(uptime * 100)}" >"${t}/lock"`);
    lines.push(`touch -d "${wall}" "${t}" "${t}"/*`);
    expect(h.sh(lines.join(' && ')).code).toBe(0);
  };

  it('a lock 60 s old by the time since boot is live, whatever the wall clock says; 200 s old, it is stale', async () => {
    host = await NsHost.start();
    const h = host;
    // By the wall clock this lock is from 2000 (a clock stepped forward would say the same).
    leftLock(h, 1000, 'boot-a', '2000-01-01');
    const young = h.prepare('20261121T000300-a1b2c3', 30, 9700, { env: clocks(h, 1060) });
    expect(young.code, young.stderr).toBe(HostExit.locked);
    expect(young.stderr).toContain('locked by transaction left-1');
    const stale = h.prepare('20261121T000301-a1b2c4', 30, 9701, { env: clocks(h, 1200) });
    expect(stale.code, stale.stderr).toBe(0);
    expect(stale.stderr).toContain('recovered: removed a transaction abandoned while preparing');
    expect(h.outcome('left-1')).toMatchObject({ state: 'reverted', reason: 'abandoned while preparing; nothing was loaded' });
    expect(h.run('abort', ['20261121T000301-a1b2c4', 'test-done']).code).toBe(0);
  });

  it('a lock taken "in the future" (the clock stepped back) is stale once 120 s of uptime have passed', async () => {
    host = await NsHost.start();
    const h = host;
    leftLock(h, 500, 'boot-a', '2099-01-01');
    expect(h.prepare('20261121T000310-b1b2c3', 30, 9710, { env: clocks(h, 600) }).code).toBe(HostExit.locked);
    const r = h.prepare('20261121T000311-b1b2c4', 30, 9711, { env: clocks(h, 621) });
    expect(r.code, r.stderr).toBe(0);
    expect(h.run('abort', ['20261121T000311-b1b2c4', 'test-done']).code).toBe(0);
  });

  it('a lock of an earlier boot is stale at once; an empty lock counts from when it was first seen', async () => {
    host = await NsHost.start();
    const h = host;
    leftLock(h, 99_999, 'boot-old', 'now');
    const r = h.prepare('20261121T000320-c1c2c3', 30, 9720, { env: clocks(h, 5) });
    expect(r.code, r.stderr).toBe(0);
    expect(h.run('abort', ['20261121T000320-c1c2c3', 'test-done']).code).toBe(0);
    // A prepare killed between its mkdir and its first write leaves a lock with nothing in it.
    leftLock(h, undefined, 'boot-a', '2000-01-01');
    expect(h.sh(`rm -f "${h.state}/txn/id" "${h.state}/txn/boot_id" "${h.state}/txn/started_epoch"`).code).toBe(0);
    expect(h.prepare('20261121T000321-c1c2c4', 30, 9721, { env: clocks(h, 300) }).code).toBe(HostExit.locked);
    expect(h.prepare('20261121T000322-c1c2c5', 30, 9722, { env: clocks(h, 400) }).code).toBe(HostExit.locked);
    const late = h.prepare('20261121T000323-c1c2c6', 30, 9723, { env: clocks(h, 421) });
    expect(late.code, late.stderr).toBe(0);
    expect(h.run('abort', ['20261121T000323-c1c2c6', 'test-done']).code).toBe(0);
  });
});

describe("a read's hash: fleetfw's of the printed dumps is the host's of its canonical text", () => {
  // The host hashes with sha256sum where it checks (prepare's stale check, outcome);
  // a read leaves the hashing to fleetfw (canon.ts) unless the text holds bytes
  // past ASCII. Both must give the same hash on every kind of dump.
  const hashes = (h: NsHost) => {
    const r = h.run('facts');
    expect(r.code, r.stderr).toBe(0);
    const facts = parseFacts(r.stdout);
    // What canon.ts makes of the dumps alone, whether or not the host printed its hash
    // (parseFacts refuses text past ASCII without the host's hash).
    const sec = new Map(parseSections(r.stdout, ['meta', 'v4', 'v6', 'ipsets', 'sockets', 'listeners', 'end']).map((x) => [x.name, x.lines] as const));
    const own = canonHash(sec.get('v4') ?? [], sec.get('v6') ?? [], sec.get('ipsets') ?? []);
    return { facts, own, printed: /^live_hash=/m.test(r.stdout), host: h.outcome('none').liveHash };
  };

  it('on an empty host, rules with counters and empty tables, sets past the in-awk sort, and non-ASCII comments', async () => {
    host = await NsHost.start();
    const h = host;
    const empty = hashes(h);
    expect(empty.printed).toBe(false);
    expect(empty.facts.liveHash).toBe(empty.host);
    // Counters, an empty nat table (left out of the text), a user chain, IPv6 rules,
    // fleetfw's sets (600 members: sorted by `sort`, not in awk) and another set.
    const setup = h.sh(
      [
        'iptables -t nat -L >/dev/null',
        'iptables -N FLEETFW-X && iptables -A INPUT -j FLEETFW-X && iptables -A FLEETFW-X -s 192.0.2.0/24 -j ACCEPT',
        'ping -c 1 -W 1 127.0.0.1 >/dev/null || true',
        'ip6tables -A INPUT -p tcp --dport 443 -j ACCEPT',
        'ipset create fleetfw-peers hash:ip && ipset create other hash:ip && ipset add other 198.51.100.1',
        'i=0; while [ $i -lt 600 ]; do echo "add fleetfw-peers 10.1.$((i / 250)).$((i % 250 + 1))"; i=$((i + 1)); done | ipset restore',
        'iptables -A INPUT -m set --match-set fleetfw-peers src -j ACCEPT',
      ].join(' && '),
    );
    expect(setup.code, setup.stderr).toBe(0);
    const rules = hashes(h);
    expect(rules.printed).toBe(false);
    expect(rules.facts.live.v4).toMatch(/\[\d+:\d+\]/);
    expect(rules.facts.liveHash).toBe(rules.host);
    expect(rules.facts.liveHash).not.toBe(empty.host);
    // With persisted files sha256sum runs anyway (their boot test's cache key): it hashes the live text too.
    writeFileSync(join(h.persist, 'rules.v4'), '*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n');
    const persisted = hashes(h);
    expect(persisted.printed).toBe(true);
    expect([persisted.facts.liveHash, persisted.own]).toEqual([rules.host, rules.host]);
    rmSync(join(h.persist, 'rules.v4'));
    // A comment past ASCII: the host hashes it itself and says so. fleetfw reads the
    // text decoded: right for UTF-8, wrong for a byte that is not.
    const utf = h.sh(`iptables -A INPUT -m comment --comment "caf\u00e9" -j ACCEPT`);
    expect(utf.code, utf.stderr).toBe(0);
    const comment = hashes(h);
    expect(comment.printed).toBe(true);
    expect([comment.facts.liveHash, comment.own]).toEqual([comment.host, comment.host]);
    const bad = h.sh(`iptables -A INPUT -m comment --comment "x$(printf '\\377')y" -j ACCEPT`);
    expect(bad.code, bad.stderr).toBe(0);
    const byte = hashes(h);
    expect(byte.printed).toBe(true);
    expect(byte.facts.liveHash).toBe(byte.host);
    expect(byte.own).not.toBe(byte.host);
    // A comment holding a newline and what looks like a section header: refused, never misread.
    const header = h.sh(`iptables -A INPUT -m comment --comment "$(printf 'x\\n--- listeners\\ny')" -j ACCEPT`);
    expect(header.code, header.stderr).toBe(0);
    const refused = h.run('facts');
    expect(refused.code).toBe(74);
    expect(refused.stderr).toMatch(/a line of the live IPv4 rules starts with "--- "/);
    const del = h.sh(`iptables -D INPUT -m comment --comment "$(printf 'x\\n--- listeners\\ny')" -j ACCEPT`);
    expect(del.code, del.stderr).toBe(0);
    // A prepare against the read's hash finds the rules unchanged (its stale check hashes on the host).
    const prep = h.run('prepare', ['t-hash', '30', byte.facts.liveHash, 'tester', 'planhash'], { stdin: candidate(8080) });
    expect(prep.code, prep.stderr).toBe(0);
    expect(h.run('abort', ['t-hash', 'test']).code).toBe(0);
  });
});

describe("a read's listening sockets: from /proc/net where the kernel gives its byte order, else from ss", () => {
  it('gives the same listeners either way', async () => {
    host = await NsHost.start();
    const h = host;
    const opened = h.sh(`setsid ${JSON.stringify(process.execPath)} -e 'require("node:net").createServer().listen(9123, "127.0.0.1"); require("node:net").createServer().listen(9124, "::"); setTimeout(() => {}, 600000)' >/dev/null 2>&1 </dev/null &`);
    expect(opened.code, opened.stderr).toBe(0);
    await waitFor(() => /:9124\b/.test(h.sh('ss -ltn').stdout), 10_000, 'the listeners');
    const proc = h.run('facts');
    expect(proc.stdout).toMatch(/^--- sockets\nbyteorder=(little|big)\n/m);
    expect(proc.stdout).not.toMatch(/^--- listeners$/m);
    const ss = h.run('facts', [], { env: { FLEETFW_BYTEORDER_FILE: join(h.dir, 'absent') } });
    expect(ss.stdout).toMatch(/^--- listeners\n/m);
    expect(ss.stdout).not.toMatch(/^--- sockets$/m);
    const expected = [
      { proto: 'tcp', address: '127.0.0.1', port: 9123 },
      { proto: 'tcp', address: '*', port: 9124 },
    ];
    expect(parseFacts(proc.stdout).listeners).toEqual(expected);
    expect(parseFacts(ss.stdout).listeners).toEqual(expected);
    // A host with 2,000 sockets or more (/proc/net would list every connection), or
    // whose socket counts cannot be read: ss.
    const net = join(h.dir, 'net');
    const busy = h.sh(`mkdir -p ${net} && cp /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 ${net}/ && printf 'sockets: used 1500\nTCP: inuse 3 orphan 0 tw 600 alloc 3 mem 0\n' >${net}/sockstat`);
    expect(busy.code, busy.stderr).toBe(0);
    const many = h.run('facts', [], { env: { FLEETFW_PROC_NET: net } });
    expect(many.stdout).toMatch(/^--- listeners\n/m);
    expect(parseFacts(many.stdout).listeners).toEqual(expected);
    writeFileSync(join(net, 'sockstat'), 'sockets: used 12\nTCP: inuse 3 orphan 0 tw 0 alloc 3 mem 0\n');
    const few = h.run('facts', [], { env: { FLEETFW_PROC_NET: net } });
    expect(few.stdout).toMatch(/^--- sockets\n/m);
    expect(parseFacts(few.stdout).listeners).toEqual(expected);
    writeFileSync(join(net, 'sockstat'), 'garbled\n');
    expect(h.run('facts', [], { env: { FLEETFW_PROC_NET: net } }).stdout).toMatch(/^--- listeners\n/m);
  });
});
