// Issue 3 end to end: S1 applied through tunnel-1 in the lab, flows checked
// with real connections, plan in sync afterwards, rollback, a lockout trap
// reverted by the host itself, SIGKILL inside the window, a changed host key.
import { execFileSync } from 'node:child_process';
import { appendFileSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInventory } from '../src/inventory/load.js';
import type { Lab } from '../src/lab/lab.js';
import { TRAP_NO_SSH } from '../src/cli/demo.js';
import { failedRows, probeIntents } from './matrix.js';
import { fleetfw, inventoryPath, liveRules, normalizeDump, persistedRules, scratchFleet, startInventoryLab, waitFor, writeTemplate } from './support.js';

const S1 = inventoryPath('s1');
let lab: Lab;

beforeAll(async () => {
  lab = await startInventoryLab(S1);
});

afterAll(async () => {
  await lab?.stop();
});

async function historyLog(host: string): Promise<string> {
  return (await lab.exec(host, ['sh', '-c', 'cat /var/lib/fleetfw/history.log 2>/dev/null || true'])).stdout;
}

describe('S1 through tunnel-1', () => {
  it('plans every host as changing before the first apply (exit 2)', async () => {
    const r = await fleetfw(lab, ['plan', '--inventory', S1]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('Plan: 6 to change, 0 in sync.');
  });

  it('applies: bastion first and alone, then the others; every host confirmed and persisted', async () => {
    const r = await fleetfw(lab, ['apply', '--inventory', S1, '--yes', '--window', '20']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const h of ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2']) {
      expect(r.stdout).toMatch(new RegExp(`^${h}\\s+confirmed\\s`, 'm'));
    }
    // Order: the bastion is persisted before any other host starts its transaction.
    const events = r.stderr.split('\n').filter((l) => /\] \S+: /.test(l));
    const bastionDone = events.findIndex((l) => l.includes('tunnel-1: persisted'));
    const firstOther = events.findIndex((l) => /\] (haproxy|wordpress|mysql)\S*: connecting/.test(l));
    expect(bastionDone).toBeGreaterThanOrEqual(0);
    expect(firstOther).toBeGreaterThan(bastionDone);
    console.log(`apply S1 (6 hosts, window 20 s): ${r.ms} ms`);
  });

  it('the confirmation ended every guard: no process of their groups (their sleeps) outlives it', async () => {
    for (const h of ['tunnel-1', 'haproxy-www', 'mysql-2']) {
      const wd = (await lab.exec(h, ['sh', '-c', 'cat /var/lib/fleetfw/txns/*/watchdog'])).stdout.trim();
      // Two watchdogs (no systemd in the lab), each able to revert alone.
      expect(wd).toMatch(/^pid:\d+ pid:\d+$/);
      for (const group of wd.split(' ').map((w) => w.slice(4))) {
        // Zombies awaiting their reaper do not count: they hold no sleep.
        const left = (await lab.exec(h, ['ps', '-o', 'pid=,stat=,args=', '-g', group])).stdout.split('\n').filter((l) => l.trim() && !/\sZ/.test(l));
        expect(left, `${h}: watchdog group ${group}`).toEqual([]);
      }
    }
  });

  it('every intent of S1 holds with real packets', async () => {
    const rows = await probeIntents(lab, loadInventory(S1));
    expect(failedRows(rows)).toEqual([]);
    expect(rows.length).toBeGreaterThan(40);
  });

  it('plans no change right after the apply (exit 0)', async () => {
    const r = await fleetfw(lab, ['plan', '--inventory', S1]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('Plan: 0 to change, 6 in sync.');
    console.log(`plan S1 (6 hosts): ${r.ms} ms`);
  });

  it('persisted rules.v4/rules.v6 equal the live rules, mode 0640; state directory 0700', async () => {
    for (const h of ['tunnel-1', 'mysql-1', 'mysql-2']) {
      const live = await liveRules(lab, h);
      const saved = await persistedRules(lab, h);
      expect(normalizeDump(saved.v4)).toBe(live.v4);
      expect(normalizeDump(saved.v6)).toBe(live.v6);
      expect(saved.mode).toBe('640');
      expect((await lab.exec(h, ['stat', '-c', '%a', '/var/lib/fleetfw'])).stdout.trim()).toBe('700');
    }
  });

  it('works on the non-root host through sudo -n (mysql-2 logs in as deploy)', async () => {
    const r = await fleetfw(lab, ['history', 'mysql-2', '--inventory', S1]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('mysql-2: current generation 1');
    expect(r.stdout).toMatch(/\* +1 .* apply +by /);
  });

  it('status reports every host in sync with generation 1', async () => {
    const r = await fleetfw(lab, ['status', '--inventory', S1, '--format', 'json']);
    expect(r.code, r.stderr).toBe(0);
    const status = JSON.parse(r.stdout) as { hosts: Array<{ host: string; state: string; generation: number; leftover: unknown }> };
    expect(status.hosts.map((h) => [h.host, h.state, h.generation, h.leftover])).toEqual(
      ['haproxy-www', 'mysql-1', 'mysql-2', 'tunnel-1', 'wordpress-1', 'wordpress-2'].map((h) => [h, 'in sync', 1, null]),
    );
  });
});

describe('rollback', () => {
  it('restores the previous generation through the safety window and persists it', async () => {
    const fleet = scratchFleet('s1');
    try {
      // Generation 2 on wordpress-1: port 8080 open to the bastion too.
      const role = readFileSync(join(fleet.templates, 'roles/wordpress.v4'), 'utf8');
      writeTemplate(fleet.templates, 'roles/wordpress.v4', role.replace('COMMIT', '-A INPUT -i {{ self.if.private }} -p tcp -s {{ bastion.private }} --dport 8080 -j ACCEPT\nCOMMIT'));
      await lab.listen('wordpress-1', 'tcp', 8080);
      expect(await lab.probe('tunnel-1', '192.0.2.12', 'tcp', 8080)).toBe('timeout');
      const applied = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--limit', 'wordpress-1', '--yes', '--window', '15']);
      expect(applied.code, applied.stdout + applied.stderr).toBe(0);
      expect(await lab.probe('tunnel-1', '192.0.2.12', 'tcp', 8080)).toBe('open');

      const rolled = await fleetfw(lab, ['rollback', 'wordpress-1', '--inventory', S1, '--window', '15', '--yes']);
      expect(rolled.code, rolled.stdout + rolled.stderr).toBe(0);
      expect(rolled.stdout).toContain('rolling wordpress-1 back from generation 2 to 1');
      expect(await lab.probe('tunnel-1', '192.0.2.12', 'tcp', 8080)).toBe('timeout');
      // verify --live leaves no listener: one of the test's own answers on port 80.
      await lab.listen('wordpress-1', 'tcp', 80);
      expect(await lab.probe('haproxy-www', '192.0.2.12', 'tcp', 80)).toBe('open');

      const history = await fleetfw(lab, ['history', 'wordpress-1', '--inventory', S1]);
      expect(history.stdout).toContain('wordpress-1: current generation 3');
      expect(history.stdout).toMatch(/\* +3 .* rollback/);
      const plan = await fleetfw(lab, ['plan', '--inventory', S1, '--limit', 'wordpress-1']);
      expect(plan.code, plan.stdout).toBe(0);
      const live = await liveRules(lab, 'wordpress-1');
      const saved = await persistedRules(lab, 'wordpress-1');
      expect(normalizeDump(saved.v4)).toBe(live.v4);
    } finally {
      fleet.cleanup();
    }
  });
});

describe('lockout trap 1: INPUT DROP with no SSH rule', () => {
  it('is refused before anything is sent, naming the host, the path and what cuts it', async () => {
    const fleet = scratchFleet('s1');
    try {
      writeTemplate(fleet.templates, 'bases/isolated.v4', TRAP_NO_SSH);
      const logBefore = await historyLog('mysql-1');
      const r = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--limit', 'mysql-1', '--yes']);
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(/error: mysql-1: .*policy DROP of chain INPUT.*\(path: tunnel-1 \(192\.0\.2\.10\) -> mysql-1 eth1 192\.0\.2\.14:22\/tcp NEW/);
      expect(r.stderr).toContain('nothing was sent to any host');
      expect(await historyLog('mysql-1')).toBe(logBefore);
    } finally {
      fleet.cleanup();
    }
  });

  it('with the checks overridden, the host reverts by itself, stays reachable, persisted files untouched', async () => {
    const fleet = scratchFleet('s1');
    try {
      writeTemplate(fleet.templates, 'bases/isolated.v4', TRAP_NO_SSH);
      const live = await liveRules(lab, 'mysql-1');
      const saved = await persistedRules(lab, 'mysql-1');
      const r = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--limit', 'mysql-1', '--yes', '--window', '6', '--unsafe-skip-checks']);
      expect(r.code, r.stdout + r.stderr).toBe(6);
      expect(r.stdout).toMatch(/^mysql-1\s+rolled-back\s/m);
      const revert = /reverted ([\d.]+)s after load/.exec(r.stdout);
      expect(revert).not.toBeNull();
      console.log(`lockout trap 1: load to verified revert ${revert![1]} s (window 6 s)`);
      expect(await liveRules(lab, 'mysql-1')).toEqual(live);
      expect(await persistedRules(lab, 'mysql-1')).toEqual(saved);
      const plan = await fleetfw(lab, ['plan', '--inventory', S1, '--limit', 'mysql-1']);
      expect(plan.code, plan.stdout + plan.stderr).toBe(0);
      expect(await historyLog('mysql-1')).toMatch(/reverted no confirmation within 6s/);
    } finally {
      fleet.cleanup();
    }
  });
});

describe('fleetfw killed with SIGKILL inside the window', () => {
  it('leaves the host to revert by itself; status then shows no leftover', async () => {
    const fleet = scratchFleet('s1');
    try {
      const role = readFileSync(join(fleet.templates, 'roles/mysql.v4'), 'utf8');
      writeTemplate(fleet.templates, 'roles/mysql.v4', `${role}*filter\n-A INPUT -i eth1 -p tcp --dport 9999 -j ACCEPT\nCOMMIT\n`);
      const live = await liveRules(lab, 'mysql-1');
      const saved = await persistedRules(lab, 'mysql-1');
      let killedAt = 0;
      const r = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--limit', 'mysql-1', '--yes', '--window', '6'], {
        onStderr: (chunk, child) => {
          if (!killedAt && chunk.includes('mysql-1: loaded')) {
            killedAt = Date.now();
            child.kill('SIGKILL');
          }
        },
      });
      expect(killedAt, r.stderr).toBeGreaterThan(0);
      expect(r.code).toBe(128);
      // Right after the kill the new rules run (unconfirmed) ...
      expect((await liveRules(lab, 'mysql-1')).v4).toContain('--dport 9999');
      // ... and the host puts the old ones back at the end of the window.
      await waitFor(async () => (await liveRules(lab, 'mysql-1')).v4 === live.v4, 15_000, 'mysql-1 to revert');
      expect(await persistedRules(lab, 'mysql-1')).toEqual(saved);
      const status = await fleetfw(lab, ['status', '--inventory', S1, '--limit', 'mysql-1', '--format', 'json']);
      const host = (JSON.parse(status.stdout) as { hosts: Array<{ state: string; leftover: unknown }> }).hosts[0]!;
      expect(host).toMatchObject({ state: 'in sync', leftover: null });
    } finally {
      fleet.cleanup();
    }
  });
});

describe('health probes', () => {
  it('a probe that fails refuses the confirmation: the host reverts at once, not at the end of the window', async () => {
    const fleet = scratchFleet('s1');
    try {
      const inv = readFileSync(fleet.inventory, 'utf8');
      writeFileSync(fleet.inventory, inv.replace('intents:', 'health:\n  wordpress:\n    - { port: 80, from: haproxy-www }\nintents:'));
      await lab.listen('wordpress-2', 'tcp', 80).catch(() => undefined);
      const passing = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--limit', 'wordpress-2', '--yes', '--force', '--window', '30']);
      expect(passing.code, passing.stdout + passing.stderr).toBe(0);
      // Now a role change that keeps SSH but closes HTTP from the load balancer.
      const role = readFileSync(join(fleet.templates, 'roles/wordpress.v4'), 'utf8');
      writeTemplate(fleet.templates, 'roles/wordpress.v4', role.replace('--dport 80 -j ACCEPT', '--dport 81 -j ACCEPT'));
      const live = await liveRules(lab, 'wordpress-2');
      const failing = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--limit', 'wordpress-2', '--yes', '--window', '30', '--unsafe-skip-checks']);
      expect(failing.code, failing.stdout + failing.stderr).toBe(6);
      expect(failing.stdout).toMatch(/wordpress-2\s+rolled-back .*health probe failed: haproxy-www cannot connect to wordpress-2 192\.0\.2\.13:80/);
      expect(failing.ms).toBeLessThan(30_000);
      expect(await liveRules(lab, 'wordpress-2')).toEqual(live);
    } finally {
      fleet.cleanup();
    }
  });
});

describe('host keys', () => {
  function knownHostsWithout(name: string, address: string): string {
    // ssh-keygen -R drops every entry for the host, hashed ones too; then pin another key under its names.
    const file = join(lab.dir, `known_hosts.changed-${name}`);
    copyFileSync(lab.knownHostsFile, file);
    for (const n of [name, address]) execFileSync('ssh-keygen', ['-f', file, '-R', n], { stdio: 'ignore' });
    const other = readFileSync(`${lab.identityFile}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
    appendFileSync(file, `${name},${address} ${other}\n`);
    return file;
  }

  it('a changed target key is refused loudly; the other hosts still plan', async () => {
    const file = knownHostsWithout('mysql-1', '192.0.2.14');
    const r = await fleetfw(lab, ['plan', '--inventory', S1, '--known-hosts', file]);
    expect(r.code).toBe(5);
    expect(r.stdout).toMatch(/! mysql-1: unreachable: .*CHANGED/);
    expect(r.stdout).toContain('= tunnel-1: in sync');
  });

  it('a changed bastion key is refused before anything is sent to any host', async () => {
    const file = knownHostsWithout('tunnel-1', '203.0.113.10');
    const r = await fleetfw(lab, ['plan', '--inventory', S1, '--known-hosts', file]);
    expect(r.code).toBe(5);
    expect(r.stdout).toMatch(/! tunnel-1: unreachable: .*CHANGED/);
    expect(r.stdout).toContain('Plan: 0 to change, 0 in sync, 6 unreachable.');
  });
});

describe('confirmation over a new connection', () => {
  const sshdLog = (host: string) => readFileSync(join(lab.dir, host, 'sshd.log'), 'utf8');
  /** SSH connections and commands (login shells) sshd logged for host since `from` (a log length). */
  const logSince = (host: string, from: number) => {
    const text = sshdLog(host).slice(from);
    return { connections: (text.match(/Accepted publickey/g) ?? []).length, commands: (text.match(/Starting session: command/g) ?? []).length };
  };
  /** A change on mysql-1 that keeps S1's flows: one more port from the bastion. */
  const withExtraPort = (fleet: ReturnType<typeof scratchFleet>, port: number) => {
    const role = readFileSync(join(fleet.templates, 'roles/mysql.v4'), 'utf8');
    writeTemplate(fleet.templates, 'roles/mysql.v4', `${role}*filter\n-A INPUT -i eth1 -p tcp -s {{ bastion.private }} --dport ${port} -j ACCEPT\nCOMMIT\n`);
  };
  /** Apply an inventory to mysql-1 alone, expect it confirmed, and say what its sshd logged meanwhile. */
  const applyToMysql1 = async (inventory: string) => {
    const from = sshdLog('mysql-1').length;
    const r = await fleetfw(lab, ['apply', '--inventory', inventory, '--limit', 'mysql-1', '--yes', '--window', '20']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^mysql-1\s+confirmed\s/m);
    return logSince('mysql-1', from);
  };

  it('two connections per host, one command: the kept script confirms once the host read a token back through the new connection', async () => {
    const fleet = scratchFleet('s1');
    try {
      withExtraPort(fleet, 9101);
      expect(await applyToMysql1(fleet.inventory)).toEqual({ connections: 2, commands: 1 });
      expect((await persistedRules(lab, 'mysql-1')).v4).toContain('--dport 9101');
    } finally {
      fleet.cleanup();
    }
  });

  it('where sshd refuses remote forwarding, the new connection confirms with a command instead', async () => {
    const fleet = scratchFleet('s1');
    const config = join(lab.dir, 'mysql-1', 'sshd_config');
    const original = readFileSync(config, 'utf8');
    const reload = async () => {
      const pid = readFileSync(join(lab.dir, 'mysql-1', 'sshd.pid'), 'utf8').trim();
      const marker = sshdLog('mysql-1').length;
      process.kill(Number(pid), 'SIGHUP');
      await waitFor(async () => /Server listening/.test(sshdLog('mysql-1').slice(marker)), 10_000, 'mysql-1 sshd to reload');
    };
    try {
      // sshd takes a keyword's first value: replace it. `local` keeps -L, refuses -R.
      writeFileSync(config, original.replace('AllowTcpForwarding yes', 'AllowTcpForwarding local'));
      await reload();
      withExtraPort(fleet, 9102);
      expect(await applyToMysql1(fleet.inventory)).toEqual({ connections: 2, commands: 2 });
    } finally {
      writeFileSync(config, original);
      await reload();
      fleet.cleanup();
    }
  });

  it('rules that drop loopback traffic still confirm: the token cannot come back, so a command over the new connection does', async () => {
    const fleet = scratchFleet('s1');
    try {
      withExtraPort(fleet, 9103);
      const base = readFileSync(join(fleet.templates, 'bases/isolated.v4'), 'utf8');
      writeTemplate(fleet.templates, 'bases/isolated.v4', base.replace('-A INPUT -i lo -j ACCEPT\n', ''));
      expect(await applyToMysql1(fleet.inventory)).toEqual({ connections: 2, commands: 2 });
      expect((await liveRules(lab, 'mysql-1')).v4).not.toContain('-i lo');
    } finally {
      fleet.cleanup();
      await applyToMysql1(S1);
    }
  });
});
