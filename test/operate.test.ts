// Issue 6 end to end: show (live counters), logs (drops logged by %log-drops,
// read back from the kernel log), discover and the live plan's listener
// warnings, on S1 in the lab.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInventory } from '../src/inventory/load.js';
import { labSpecFromInventory, startLab, type Lab } from '../src/lab/lab.js';
import { fleetfw, inventoryPath, requireLabPrerequisites, scratchFleet, withKernelLogAllNetns } from './support.js';

let lab: Lab;
let fleet: ReturnType<typeof scratchFleet>;

beforeAll(async () => {
  requireLabPrerequisites();
  lab = await startLab(labSpecFromInventory(loadInventory(inventoryPath('s1'))));
  // S1 with seed 000's drop logging at the end of INPUT of the isolated base.
  fleet = scratchFleet('s1');
  const base = join(fleet.templates, 'bases/isolated.v4');
  writeFileSync(base, readFileSync(base, 'utf8').replace('%roles\nCOMMIT', '%roles\n%log-drops INPUT\nCOMMIT'));
  const r = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--yes', '--window', '20']);
  expect(r.code, r.stdout + r.stderr).toBe(0);
});

afterAll(async () => {
  await lab?.stop();
  fleet?.cleanup();
});

describe('fleetfw show', () => {
  it('prints the live rules with counters and line numbers, IPv4 and IPv6', async () => {
    const r = await fleetfw(lab, ['show', 'mysql-1', '--inventory', fleet.inventory]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('mysql-1: filter table, IPv4 (iptables -vnL --line-numbers)');
    expect(r.stdout).toMatch(/^Chain INPUT \(policy DROP \d+ packets, \d+ bytes\)$/m);
    expect(r.stdout).toMatch(/^num +pkts +bytes +target/m);
    expect(r.stdout).toMatch(/^1 +\d+ +\d+ ACCEPT .*192\.0\.2\.10 .*tcp dpt:22$/m);
    expect(r.stdout).toMatch(/^Chain LOG-DROPS \(1 references\)$/m);
    expect(r.stdout).toContain('mysql-1: filter table, IPv6 (ip6tables -vnL --line-numbers)');
  });

  it('--json gives exact counters that move with traffic', async () => {
    const count = async () => {
      const r = await fleetfw(lab, ['show', 'mysql-1', '--inventory', fleet.inventory, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout) as { table: string; v4: Array<{ name: string; policy?: { target: string }; rules: Array<{ num: number; pkts: number; target: string; extra: string }> }> };
      expect(j.table).toBe('filter');
      const input = j.v4.find((c) => c.name === 'INPUT')!;
      expect(input.policy?.target).toBe('DROP');
      return input.rules.find((x) => x.target === 'LOG-DROPS')!.pkts;
    };
    const before = await count();
    expect(await lab.probe('intruder', '192.0.2.14', 'tcp', 4871)).toBe('timeout');
    expect(await count()).toBeGreaterThan(before);
  });
});

describe('fleetfw logs', () => {
  it('reads a dropped probe back from the kernel log (nf_log_all_netns set for this test only)', async () => {
    await withKernelLogAllNetns(async () => {
      const port = 4000 + Math.floor(Math.random() * 900);
      expect(await lab.probe('intruder', '192.0.2.14', 'tcp', port)).toBe('timeout');
      const r = await fleetfw(lab, ['logs', 'mysql-1', '--inventory', fleet.inventory, '--since', '5m', '--lines', '5000', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout) as { source: string; packets: Array<{ prefix: string; in: string; src: string; dst: string; proto: string; dpt?: number; time: string }> };
      expect(['dmesg', 'journalctl']).toContain(j.source);
      // The kernel log is shared by every namespace of this machine: find ours by its port.
      const mine = j.packets.filter((p) => p.dpt === port && p.src === '192.0.2.250');
      expect(mine.length, r.stdout.slice(-2000)).toBeGreaterThan(0);
      expect(mine[0]).toMatchObject({ prefix: 'fleetfw DROP:', in: 'eth1', dst: '192.0.2.14', proto: 'TCP' });
      expect(Date.now() - Date.parse(mine[0]!.time)).toBeLessThan(120_000);

      const text = await fleetfw(lab, ['logs', 'mysql-1', '--inventory', fleet.inventory, '--since', '5m', '--lines', '5000', '--prefix', 'fleetfw DROP:']);
      expect(text.stdout).toMatch(/^TIME +PREFIX +IN +OUT +SRC +DST +PROTO +SPT +DPT$/m);
      expect(text.stdout).toMatch(new RegExp(`fleetfw DROP: +eth1 +- +192\\.0\\.2\\.250 +192\\.0\\.2\\.14 +TCP +\\d+ +${port}$`, 'm'));
    });
  });

  it('refuses a bad --since', async () => {
    const r = await fleetfw(lab, ['logs', 'mysql-1', '--inventory', fleet.inventory, '--since', 'yesterday']);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain('--since must be a duration');
  });
});

describe('fleetfw discover and the live plan', () => {
  it('reports listeners the rules block, and the plan warns about them without another round trip', async () => {
    await lab.listen('haproxy-www', 'tcp', 8080);
    await lab.listen('wordpress-1', 'tcp', 80);
    const r = await fleetfw(lab, ['discover', '--inventory', fleet.inventory, '--json']);
    expect(r.code, r.stderr).toBe(0);
    type Row = { listener: { port: number; proto: string; process?: string }; status: string; summary: string };
    const hosts = (JSON.parse(r.stdout) as { hosts: Array<{ host: string; listeners: Row[] }> }).hosts;
    const find = (h: string, port: number) => hosts.find((x) => x.host === h)!.listeners.find((l) => l.listener.port === port);
    expect(find('haproxy-www', 8080)).toMatchObject({ status: 'blocked', listener: { process: 'socat' } });
    expect(find('wordpress-1', 80)).toMatchObject({ status: 'ok' });
    expect(find('wordpress-1', 80)!.summary).toMatch(/private peers/);
    for (const h of hosts) expect(find(h.host, 22), h.host).toMatchObject({ status: 'management' });

    const text = await fleetfw(lab, ['discover', '--inventory', fleet.inventory, '--limit', 'haproxy-www']);
    expect(text.stdout).toMatch(/^ +\*:8080\/tcp +socat +BLOCKED +listening but the rules let nobody in/m);

    const plan = await fleetfw(lab, ['plan', '--inventory', fleet.inventory]);
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    expect(plan.stdout).toContain('Plan: 0 to change, 6 in sync.');
    // The plan reads listeners without process names (ss -p is costly); discover names them.
    expect(plan.stdout).toContain('    warning: a service listens on *:8080/tcp: would be blocked: listening but the rules let nobody in');
    expect(plan.stdout).not.toMatch(/warning: .*:80\/tcp/);
  });
});
