// Every table on a host is fleetfw's, end to end on a two-host lab: a *raw rule
// removed from a template leaves the host (live and persisted) through a plan
// that shows it; rollback restores every table of a generation; an empty table
// is the same as an absent one for plan, status, the revert check and a reboot.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab } from '../src/lab/lab.js';
import { fleetfw, persistedRules, scratchFleet, startInventoryLab, writeTemplate, type CliResult } from './support.js';

const HOST = 'db-1';
const WINDOW = '15';
const NOTRACK = '-A PREROUTING -s 192.0.2.250/32 -j NOTRACK';
const NAT_RULE = '-A POSTROUTING -d 192.0.2.250/32 -j ACCEPT';
const INVENTORY = `version: 1
templates: ../templates
operators: [0.0.0.0/0]
networks:
  lan:
    bastion: tunnel-1
defaults:
  base: isolated
  interfaces: { public: eth0, private: eth1 }
  ssh: { user: root }
externals:
  intruder: { address: 192.0.2.250, side: private }
hosts:
  tunnel-1:
    public: 203.0.113.10
    private: 192.0.2.10
    roles: [bastion]
  ${HOST}:
    public: 203.0.113.14
    private: 192.0.2.14
    roles: [mysql]
    ssh: { user: deploy, sudo: true }
intents:
  - tunnel-1 -> all:22 allow via private
  - intruder -> all:22 deny
`;

let lab: Lab;
let fleet: ReturnType<typeof scratchFleet>;
let role = '';

beforeAll(async () => {
  fleet = scratchFleet('s1');
  writeFileSync(fleet.inventory, INVENTORY);
  role = readFileSync(join(fleet.templates, 'roles/mysql.v4'), 'utf8');
  lab = await startInventoryLab(fleet.inventory, { applied: true });
});

afterAll(async () => {
  await lab?.stop();
  fleet?.cleanup();
});

/** The mysql role with these tables added (`*raw` with the NOTRACK rule, ...). */
function setRole(tables: string[]): void {
  writeTemplate(fleet.templates, 'roles/mysql.v4', `${role}${tables.join('')}`);
}
const RAW = `*raw\n${NOTRACK}\nCOMMIT\n`;
const NAT = `*nat\n${NAT_RULE}\nCOMMIT\n`;

const run = (args: string[]) => fleetfw(lab, [...args, '--inventory', fleet.inventory]);

/** The host's line of an apply or rollback summary (`db-1  confirmed  0.7s  generation 2`). */
function expectOutcome(r: CliResult, outcome: string, code: number): string {
  expect(r.code, r.stdout + r.stderr).toBe(code);
  const m = new RegExp(`^${HOST}\\s+${outcome}\\s.*$`, 'm').exec(r.stdout);
  expect(m, r.stdout + r.stderr).not.toBeNull();
  return m![0];
}

function generationOf(r: CliResult): number {
  const m = /generation (\d+)/.exec(expectOutcome(r, 'confirmed', 0));
  expect(m, r.stdout).not.toBeNull();
  return Number(m![1]);
}

/** Where the rule is: live (iptables-save) and in the persisted rules.v4 the host boots. */
async function where(rule: string): Promise<{ live: boolean; persisted: boolean }> {
  const live = (await lab.exec(HOST, ['iptables-save'])).stdout;
  const { v4 } = await persistedRules(lab, HOST);
  const has = (dump: string) => dump.split('\n').includes(rule);
  return { live: has(live), persisted: has(v4) };
}

interface StatusRow {
  host: string;
  state: string;
  generation: number | null;
  persisted: string | null;
}

async function status(): Promise<{ code: number; row: StatusRow }> {
  const r = await run(['status', '--limit', HOST, '--format', 'json']);
  const row = (JSON.parse(r.stdout) as { hosts: StatusRow[] }).hosts[0]!;
  return { code: r.code, row };
}

async function expectInSync(): Promise<void> {
  const plan = await run(['plan', '--limit', HOST]);
  expect(plan.code, plan.stdout + plan.stderr).toBe(0);
  expect(await status()).toMatchObject({ code: 0, row: { state: 'in sync', persisted: 'matches live' } });
}

describe('every table on a host is fleetfw\'s', () => {
  const gens: Record<'withRaw' | 'withoutRaw', number> = { withRaw: 0, withoutRaw: 0 };

  it('a *raw rule added to a role template is applied, live and persisted', async () => {
    setRole([RAW]);
    const plan = await run(['plan', '--limit', HOST]);
    expect(plan.code, plan.stdout + plan.stderr).toBe(2);
    expect(plan.stdout).toMatch(new RegExp(`^\\s+\\+${escape(NOTRACK)}$`, 'm'));
    gens.withRaw = generationOf(await run(['apply', '--yes', '--window', WINDOW]));
    expect(await where(NOTRACK)).toEqual({ live: true, persisted: true });
    await expectInSync();
  });

  it('removed from the template: plan and status show the host changing; the reviewed apply removes it, live and persisted', async () => {
    setRole([]);
    expect(await status()).toMatchObject({ code: 2, row: { state: 'drift' } });
    const planFile = join(fleet.dir, 'plan.json');
    const plan = await run(['plan', '--limit', HOST, '--out', planFile, '--no-color']);
    expect(plan.code, plan.stdout + plan.stderr).toBe(2);
    expect(plan.stdout).toContain(`~ ${HOST}: +0 -5 (rules.v4)`);
    expect(plan.stdout).toMatch(new RegExp(`^\\s+-${escape(NOTRACK)}$`, 'm'));
    expect(plan.stdout).not.toContain('unmanaged');
    gens.withoutRaw = generationOf(await fleetfw(lab, ['apply', planFile, '--yes', '--window', WINDOW]));
    expect(await where(NOTRACK)).toEqual({ live: false, persisted: false });
    await expectInSync();
  });

  it('rollback restores every table of the generation: the rule comes back, then goes again (live and persisted)', async () => {
    const back = await run(['rollback', HOST, '--to', String(gens.withRaw), '--window', WINDOW, '--yes']);
    const rolledIn = generationOf(back);
    expect(back.stdout).toContain(`rolling ${HOST} back from generation ${gens.withoutRaw} to ${gens.withRaw}`);
    expect(await where(NOTRACK)).toEqual({ live: true, persisted: true });
    // The render has no *raw rule: the host drifts from it, and its files are what runs.
    expect(await status()).toMatchObject({ code: 2, row: { state: 'drift', generation: rolledIn, persisted: 'matches live' } });

    const again = await run(['rollback', HOST, '--to', String(gens.withoutRaw), '--window', WINDOW, '--yes']);
    generationOf(again);
    expect(await where(NOTRACK)).toEqual({ live: false, persisted: false });
    await expectInSync();
  });

  it('a revert that leaves an emptied table behind is reported rolled back (the host runs its old rules), not unknown', async () => {
    const before = (await lab.exec(HOST, ['iptables-save'])).stdout;
    expect(before).not.toContain('*nat');
    // A table the host never had, and a health probe that fails (refused: nothing listens, loopback
    // is accepted): the host reverts at once.
    setRole([NAT]);
    const inventory = readFileSync(fleet.inventory, 'utf8');
    writeFileSync(fleet.inventory, inventory.replace('intents:', `health:\n  mysql:\n    - { port: 3399, from: ${HOST} }\nintents:`));
    try {
      const r = await run(['apply', '--yes', '--window', WINDOW]);
      expectOutcome(r, 'rolled-back', 6);
      expect(r.stdout).toContain('health probe failed');
    } finally {
      writeFileSync(fleet.inventory, inventory);
      setRole([]);
    }
    const after = (await lab.exec(HOST, ['iptables-save'])).stdout;
    expect(after).not.toContain(NAT_RULE);
    expect(after).toMatch(/^\*nat$/m);
    await expectInSync();
  });

  it('a reboot brings back the tables rules.v4 names and no other; the plan stays in sync', async () => {
    await lab.reboot(HOST);
    const tables = (dump: string) => dump.split('\n').filter((l) => l.startsWith('*'));
    const { v4, v6 } = await persistedRules(lab, HOST);
    expect(tables((await lab.exec(HOST, ['iptables-save'])).stdout)).toEqual(tables(v4));
    expect(tables((await lab.exec(HOST, ['ip6tables-save'])).stdout)).toEqual(tables(v6));
    expect(await where(NOTRACK)).toEqual({ live: false, persisted: false });
    await expectInSync();
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
