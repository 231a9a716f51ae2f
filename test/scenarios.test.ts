// Issue 4: the scenarios of SCENARIOS.md (S1-S4), each in its own lab, applied
// with the real CLI and proven with real packets after the apply, after a
// simulated reboot of every host, and after a rollback and a re-apply; plus
// what each scenario adds: S1's seventh host, S2's REJECT told apart from a
// DROP, S3's closed IPv6, S4's Docker chains left exactly as Docker made them.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInventory } from '../src/inventory/load.js';
import { labSpecFromInventory, startLab, type Lab } from '../src/lab/lab.js';
import type { Inventory } from '../src/model/inventory.js';
import type { Plan } from '../src/plan/plan.js';
import { failedRows, probeIntents, type ProbeRow } from './matrix.js';
import { recordResult } from './results.js';
import { fleetfw, inventoryPath, persistedRules, requireLabPrerequisites, scratchFleet, writeTemplate, type CliResult } from './support.js';

const WINDOW = '15';

/** One lab per scenario, built from `labInventory`, torn down even when a test fails. */
function useLab(labInventory: () => string): () => Lab {
  let lab: Lab | undefined;
  beforeAll(async () => {
    requireLabPrerequisites();
    lab = await startLab(labSpecFromInventory(loadInventory(labInventory())));
  });
  afterAll(async () => {
    await lab?.stop();
  });
  return () => {
    if (!lab) throw new Error('the lab did not start');
    return lab;
  };
}

const hostNames = (inv: Inventory): string[] => inv.hosts.map((h) => h.name);
const bastionOf = (inv: Inventory) => inv.hosts.find((h) => h.name === inv.networks[0]?.bastion)!;

const outcomeLine = (host: string, outcome: 'confirmed' | 'unchanged') => new RegExp(`^${host}\\s+${outcome}\\s`, 'm');

function expectOutcome(r: CliResult, hosts: string[], outcome: 'confirmed' | 'unchanged'): void {
  for (const h of hosts) expect(r.stdout, r.stdout + r.stderr).toMatch(outcomeLine(h, outcome));
}

/** Apply the whole inventory; every host must be confirmed (a real load, `force` included). */
async function applyConfirmed(lab: Lab, label: string, file: string, extra: string[] = []): Promise<CliResult> {
  const hosts = hostNames(loadInventory(file));
  const r = await fleetfw(lab, ['apply', '--inventory', file, '--yes', '--window', WINDOW, ...extra]);
  const ok = r.code === 0 && hosts.every((h) => outcomeLine(h, 'confirmed').test(r.stdout));
  console.log(`${label}: ${hosts.length} hosts confirmed in ${r.ms} ms (window ${WINDOW} s)`);
  recordResult('scenario', label, { ok, detail: `${hosts.length} hosts confirmed in ${(r.ms / 1000).toFixed(1)} s` });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  expectOutcome(r, hosts, 'confirmed');
  return r;
}

/** Every intent of the inventory, probed with real packets, must hold. */
async function expectMatrix(lab: Lab, label: string, inv: Inventory): Promise<ProbeRow[]> {
  const t0 = Date.now();
  // Well above the default: most probes of a matrix are denied ones idly waiting out their timeout.
  const rows = await probeIntents(lab, inv);
  const failed = failedRows(rows);
  console.log(`${label}: ${rows.length} probes, ${failed.length} failed, ${Date.now() - t0} ms`);
  recordResult('probe', label, { ok: failed.length === 0, detail: `${rows.length} probes, ${failed.length} failed` });
  expect(failed).toEqual([]);
  expect(rows.length).toBeGreaterThanOrEqual(inv.intents.length);
  return rows;
}

async function expectPlanInSync(lab: Lab, file: string): Promise<void> {
  const r = await fleetfw(lab, ['plan', '--inventory', file]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
}

/** Power-cycle every host (flush, then netfilter-persistent start); the rules come back from /etc/iptables alone. */
async function rebootAll(lab: Lab, label: string, file: string): Promise<void> {
  const hosts = hostNames(loadInventory(file));
  const t0 = Date.now();
  let ok = false;
  try {
    await Promise.all(hosts.map((h) => lab.reboot(h)));
    ok = true;
  } finally {
    recordResult('scenario', label, { ok, detail: `${hosts.length} hosts rebooted` });
  }
  console.log(`${label}: ${hosts.length} hosts rebooted in ${Date.now() - t0} ms`);
  await expectPlanInSync(lab, file);
}

/** The generation an apply or rollback summary reports for host (`mysql-1  confirmed  0.7s  generation 2`). */
function generationIn(r: CliResult, host: string): number {
  const m = new RegExp(`^${host}\\s+confirmed\\s.*generation (\\d+)`, 'm').exec(r.stdout);
  expect(m, r.stdout).not.toBeNull();
  return Number(m![1]);
}

const VARIANT_PORT = 9090;

/**
 * A variant (port 9090 open to the bastion, replies allowed out for bases
 * that drop OUTPUT) applied to one host as generation N+1, then `rollback`
 * to N's rules as generation N+2: the port must open, then close again.
 */
async function applyVariantAndRollBack(lab: Lab, scenario: string, host: string): Promise<void> {
  const file = inventoryPath(scenario);
  const inv = loadInventory(file);
  const target = inv.hosts.find((h) => h.name === host)!;
  const bastion = bastionOf(inv);
  const fleet = scratchFleet(scenario);
  try {
    const role = `roles/${target.roles[target.roles.length - 1]}.v4`;
    const text = readFileSync(join(fleet.templates, role), 'utf8');
    const lines = [
      `-A INPUT -i {{ self.if.private }} -p tcp -s {{ bastion.private }} --dport ${VARIANT_PORT} -j ACCEPT`,
      `-A OUTPUT -o {{ self.if.private }} -p tcp -d {{ bastion.private }} --sport ${VARIANT_PORT} -j ACCEPT`,
    ].join('\n');
    writeTemplate(fleet.templates, role, /COMMIT\s*$/.test(text) ? text.replace(/COMMIT\s*$/, `${lines}\nCOMMIT\n`) : `${text}*filter\n${lines}\nCOMMIT\n`);
    await lab.listen(host, 'tcp', VARIANT_PORT);
    const probe = () => lab.probe(bastion.name, target.private!, 'tcp', VARIANT_PORT);
    // Closed: 'timeout' under a DROP policy, 'refused' under S2's REJECT.
    const closed = await probe();
    expect(closed).not.toBe('open');

    const applied = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--limit', host, '--yes', '--window', WINDOW]);
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    expect(await probe()).toBe('open');
    const gen = generationIn(applied, host) - 1;

    const rolled = await fleetfw(lab, ['rollback', host, '--inventory', file, '--window', WINDOW, '--yes']);
    console.log(`${scenario.toUpperCase()} rollback of ${host}: ${rolled.ms} ms`);
    recordResult('scenario', `${scenario.toUpperCase()} rollback of ${host}`, { ok: rolled.code === 0, detail: `${(rolled.ms / 1000).toFixed(1)} s` });
    expect(rolled.code, rolled.stdout + rolled.stderr).toBe(0);
    expect(rolled.stdout).toContain(`rolling ${host} back from generation ${gen + 1} to ${gen}`);
    expect(await probe()).toBe(closed);
    expect(generationIn(rolled, host)).toBe(gen + 2);
    // Generation N's rules are the real inventory's: nothing to change.
    await expectPlanInSync(lab, file);
  } finally {
    fleet.cleanup();
  }
}

/** The standard proof of a scenario: apply, matrix, reboot, matrix, rollback, matrix, re-apply, matrix. */
function proveScenario(scenario: string, lab: () => Lab, variantHost: string, hooks: { afterEachMatrix?: (rows: ProbeRow[]) => Promise<void> } = {}): void {
  const file = inventoryPath(scenario);
  const S = scenario.toUpperCase();
  const check = async (what: string): Promise<void> => {
    const rows = await expectMatrix(lab(), `${S} ${what}`, loadInventory(file));
    await hooks.afterEachMatrix?.(rows);
  };

  it('applies the whole inventory: every host confirmed', async () => {
    await applyConfirmed(lab(), `${S} apply`, file);
  });

  it('every intent holds with real packets after the apply', async () => {
    await check('after apply');
  });

  it('every host rebooted (rules from /etc/iptables only): plan in sync, every intent holds', async () => {
    await rebootAll(lab(), `${S} reboot`, file);
    await check('after reboot');
  });

  it(`a variant on ${variantHost} (generation N+1) rolled back (N+2 = N's rules): every intent holds`, async () => {
    await applyVariantAndRollBack(lab(), scenario, variantHost);
    await check('after rollback');
  });

  it('re-applied with --force (a real reload of every host): plan in sync, every intent holds', async () => {
    await applyConfirmed(lab(), `${S} re-apply --force`, file, ['--force']);
    await expectPlanInSync(lab(), file);
    await check('after re-apply');
  });
}

// --- S1 ----------------------------------------------------------------------------

const WORDPRESS_3 = '  wordpress-3:\n    public: 203.0.113.16\n    private: 192.0.2.16\n    roles: [backend, wordpress]\n';
// The group intents already cover wordpress-3 for the load balancer, the bastion, the intruder and the internet.
const WORDPRESS_3_INTENTS = '  - wordpress-3 -> mysql:3306 allow\n  - wordpress-1 -> wordpress-3:24007 allow\n  - wordpress-3 -> wordpress-2:24007 allow\n';

/** A scratch copy of S1 with wordpress-3 added, made when first needed. */
function sevenHostFleet(): ReturnType<typeof scratchFleet> {
  const fleet = scratchFleet('s1');
  const text = readFileSync(fleet.inventory, 'utf8');
  writeFileSync(fleet.inventory, `${text.replace('  mysql-1:\n', `${WORDPRESS_3}  mysql-1:\n`).trimEnd()}\n${WORDPRESS_3_INTENTS}`);
  return fleet;
}

describe('S1: isolate servers inside a shared private network', () => {
  let seven: ReturnType<typeof scratchFleet> | undefined;
  const sevenHosts = (): string => (seven ??= sevenHostFleet()).inventory;
  afterAll(() => seven?.cleanup());
  // The lab already has wordpress-3 (unconfigured) so that it can join the fleet later.
  const lab = useLab(sevenHosts);

  proveScenario('s1', lab, 'mysql-1');

  it('a seventh host in the wordpress group: the plan changes exactly the hosts whose rules name its groups', async () => {
    const inv7 = loadInventory(sevenHosts());
    expect(hostNames(inv7)).toContain('wordpress-3');
    const r = await fleetfw(lab(), ['plan', '--inventory', sevenHosts(), '--format', 'json']);
    expect(r.code, r.stderr).toBe(2);
    const plan = JSON.parse(r.stdout) as Plan;
    const byStatus = (s: string) => plan.hosts.filter((h) => h.status === s).map((h) => h.host);
    expect(byStatus('changes')).toEqual(['haproxy-www', 'mysql-1', 'mysql-2', 'wordpress-1', 'wordpress-2', 'wordpress-3']);
    expect(byStatus('in-sync')).toEqual(['tunnel-1']);
    // wordpress-3 is new: never applied, no generation yet.
    const gens = Object.fromEntries(plan.hosts.map((h) => [h.host, h.generation]));
    expect(gens['wordpress-3']).toBe(0);
    expect(Object.entries(gens).filter(([h]) => h !== 'wordpress-3').every(([, g]) => (g ?? 0) >= 1)).toBe(true);
  });

  it('applies the seven-host inventory (tunnel-1 unchanged): the seven-host matrix holds', async () => {
    const r = await fleetfw(lab(), ['apply', '--inventory', sevenHosts(), '--yes', '--window', WINDOW]);
    console.log(`S1 seventh host: apply ${r.ms} ms`);
    recordResult('scenario', 'S1 apply with a seventh host', { ok: r.code === 0, detail: `6 hosts confirmed, 1 unchanged in ${(r.ms / 1000).toFixed(1)} s` });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expectOutcome(r, ['haproxy-www', 'mysql-1', 'mysql-2', 'wordpress-1', 'wordpress-2', 'wordpress-3'], 'confirmed');
    expectOutcome(r, ['tunnel-1'], 'unchanged');
    const rows = await expectMatrix(lab(), 'S1 seven hosts', loadInventory(sevenHosts()));
    expect(rows.filter((x) => x.from === 'wordpress-3' || x.to === 'wordpress-3').length).toBeGreaterThanOrEqual(10);
  });
});

// --- S2 ----------------------------------------------------------------------------

describe('S2: security-first base with per-protocol chains', () => {
  const lab = useLab(() => inventoryPath('s2'));
  const inv = loadInventory(inventoryPath('s2'));
  const db = inv.hosts.find((h) => h.name === 'db')!;
  const tunnel = bastionOf(inv);

  // The matrix's REJECT row must have seen a reset, every time: 'deny' alone would also take a timeout.
  proveScenario('s2', lab, 'db', {
    afterEachMatrix: async (rows) => {
      expect(rows.filter((r) => r.intent === 'internet -> db:3306 reject').map((r) => r.observed)).toEqual(['reject (refused)']);
    },
  });

  it('REJECT answers at once with a reset, where a DROP (tunnel-1) is silence to the same probe', async () => {
    const t0 = Date.now();
    expect(await lab().probe('internet', db.public!, 'tcp', 3306)).toBe('refused');
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await lab().probe('internet', tunnel.public!, 'tcp', 3306)).toBe('timeout');
  });
});

// --- S3 ----------------------------------------------------------------------------

describe('S3: strict perimeter, IPv6 closed', () => {
  const lab = useLab(() => inventoryPath('s3'));
  const inv = loadInventory(inventoryPath('s3'));
  const perimeter = inv.hosts.find((h) => h.name === 'perimeter')!;
  const v6Probes = async (): Promise<string[]> =>
    Promise.all([
      lab().probe('internet', perimeter.public6!, 'tcp', 80, { family: 6 }),
      lab().probe('internet', perimeter.public6!, 'icmp', undefined, { family: 6 }),
    ]);

  it('before the apply, IPv6 probes do reach the host (so a later "timeout" means the firewall)', async () => {
    await lab().listen('perimeter', 'tcp', 80);
    expect(await v6Probes()).toEqual(['open', 'open']);
  });

  proveScenario('s3', lab, 'perimeter', {
    // Nothing answers over IPv6, not even neighbour discovery: a timeout, or 'unreachable' once internet gave up resolving.
    afterEachMatrix: async () => {
      for (const r of await v6Probes()) expect(['timeout', 'unreachable']).toContain(r);
    },
  });

  it('rules.v6 is persisted with every ip6tables policy DROP', async () => {
    const saved = await persistedRules(lab(), 'perimeter');
    for (const chain of ['INPUT', 'FORWARD', 'OUTPUT']) expect(saved.v6).toMatch(new RegExp(`^:${chain} DROP `, 'm'));
  });
});

// --- S4 ----------------------------------------------------------------------------

/** What dockerd (iptables backend) creates for docker0 and one container publishing 8000 -> 172.17.0.2:80. */
const DOCKER_RULES = `*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8000 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
`;

/**
 * Docker's lines of the live v4 rules (declarations, rules, jumps), each keyed
 * by table and chain; sorted by key but in rule order within a chain, since
 * only the order inside a chain means anything.
 */
async function dockerLines(lab: Lab): Promise<string[]> {
  const dump = (await lab.exec('docker-host', ['iptables-save'])).stdout;
  let table = '';
  const keyed: Array<[string, string]> = [];
  for (const line of dump.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    else if (/DOCKER|docker0|172\.17\./.test(line)) {
      const chain = line.startsWith(':') ? ':' : (line.split(' ')[1] ?? '');
      keyed.push([`${table} ${chain}`, `${table} ${line.replace(/ \[\d+:\d+\]$/, '')}`]);
    }
  }
  return keyed.sort((a, b) => a[0].localeCompare(b[0])).map(([, l]) => l);
}

describe('S4: default-deny host running Docker', () => {
  const lab = useLab(() => inventoryPath('s4'));
  const file = inventoryPath('s4');
  let docker: string[] = [];
  const expectDockerUnchanged = async (): Promise<void> => {
    expect(await dockerLines(lab())).toEqual(docker);
  };

  it("carries Docker's chains, rules and jumps before the apply", async () => {
    const r = await lab().exec('docker-host', ['iptables-restore', '--noflush'], { input: DOCKER_RULES });
    expect(r.code, r.stderr).toBe(0);
    docker = await dockerLines(lab());
    // filter: 4 declarations + 12 rules; nat: 1 declaration + 6 rules.
    expect(docker).toHaveLength(23);
  });

  it("plans Docker's chains and jumps as preserved (foreign), not as drift", async () => {
    const r = await fleetfw(lab(), ['plan', '--inventory', file, '--limit', 'docker-host', '--format', 'json']);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    const host = (JSON.parse(r.stdout) as Plan).hosts[0]!;
    expect(host.status).toBe('changes');
    expect([...host.preserved].sort()).toEqual([
      'filter/DOCKER (1 rules) (v4)',
      'filter/DOCKER-ISOLATION-STAGE-1 (2 rules) (v4)',
      'filter/DOCKER-ISOLATION-STAGE-2 (2 rules) (v4)',
      'filter/DOCKER-USER (1 rules) (v4)',
      'filter: 6 rules in built-in chains (FORWARD) (v4)',
      'nat/DOCKER (2 rules) (v4)',
      'nat: 4 rules in built-in chains (PREROUTING, OUTPUT, POSTROUTING) (v4)',
    ]);
    // nat holds only Docker's parts: the load names it (every live table is fleetfw's), with them as they are.
    expect(host.desired!.v4).toContain('-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER');
    const changed = host.diffs.flatMap((d) => d.patch.split('\n')).filter((l) => /^[+-](?![+-]{2} )/.test(l));
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.filter((l) => /DOCKER|docker0|172\.17\./.test(l))).toEqual([]);
  });

  proveScenario('s4', lab, 'docker-host', { afterEachMatrix: expectDockerUnchanged });

  it("after all that, the plan is in sync and still names Docker's chains as preserved", async () => {
    const r = await fleetfw(lab(), ['plan', '--inventory', file, '--no-color']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('preserved (foreign): filter/DOCKER-USER (1 rules) (v4)');
    expect(r.stdout).toContain('preserved (foreign): nat/DOCKER (2 rules) (v4)');
    await expectDockerUnchanged();
    // And they are in the persisted file a real reboot loads.
    const saved = await persistedRules(lab(), 'docker-host');
    for (const l of ['-A FORWARD -j DOCKER-USER', '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER']) expect(saved.v4).toContain(l);
  });
});
