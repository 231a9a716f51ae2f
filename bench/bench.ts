// fleetfw's benchmark (issue 5). Two modes:
//   npm run bench -- --hosts N [--parallel P] [--repeat R] [--machine-home] [--json FILE] [--ipset-threshold T]
//       brings up an N-host S1-like lab (tunnel-1 + N-1 targets) and measures, at the same
//       concurrency: the floor (bench/floor.ts), the safe-apply floor (bench/safe-floor.ts),
//       `fleetfw plan` and `fleetfw apply --yes` (wall time of the real CLI, run from the
//       operator namespace), render + analysis in-process, and the CLI's peak RSS (GNU
//       time). The lab is always torn down. Each runs R times (default 3), interleaved,
//       hosts reset in between, and reports its median: on a shared 2-core machine one
//       run of any of them varies by 10 %. Every lab host gets an empty /root, so its
//       login shell reads no rc files, as on a server; --machine-home keeps this
//       machine's /root and its rc files instead (see PERFORMANCE.md).
//   npm run bench -- --render 1000,10000 [--json FILE] [--ipset-threshold T]
//       render + analysis of generated fleets without SSH: in a tsx process, phase by
//       phase, then as a user runs it, the built CLI's `fleetfw verify` under GNU time.
//   npm run bench -- --rules 100,1000
//       rules per host of those fleets with one rule per group member (ipsets off) and with ipsets.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadInventory } from '../src/inventory/load.js';
import { loadTemplates } from '../src/render/load-templates.js';
import { renderFleet } from '../src/render/render.js';
import { formatIpSets } from '../src/render/ipsets.js';
import { checkFleet, parseFleet } from '../src/plan/checks.js';
import { verifyIntents } from '../src/analyze/intents.js';
import { labSpecFromInventory, OPERATOR, startLab, type Lab } from '../src/lab/lab.js';
import { labEnv } from '../src/cli/lab-commands.js';
import { DEFAULT_PARALLEL } from '../src/cli/live-commands.js';
import pLimit from 'p-limit';
import { fleetRoles, LAB_MAX_HOSTS, writeFleet } from './fleet.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/main.js');
const TSX = join(ROOT, 'node_modules/.bin/tsx');
const FLOOR = join(ROOT, 'bench/floor.ts');
const SAFE_FLOOR = join(ROOT, 'bench/safe-floor.ts');
/** The safe floor's revert window: it is always disarmed long before. */
const SAFE_FLOOR_WINDOW = 120;
const GNU_TIME = '/usr/bin/time';

const { values: args } = parseArgs({
  options: {
    hosts: { type: 'string' },
    parallel: { type: 'string' },
    json: { type: 'string' },
    render: { type: 'string' },
    'render-one': { type: 'string' },
    'ipset-threshold': { type: 'string' },
    rules: { type: 'string' },
    repeat: { type: 'string' },
    'clean-home': { type: 'boolean' },
    'machine-home': { type: 'boolean' },
  },
});
const threshold = args['ipset-threshold'] === undefined ? undefined : Number(args['ipset-threshold']);

interface RenderFigures {
  hosts: number;
  load_s: number;
  render_s: number;
  analysis_s: number;
  total_s: number;
  peak_rss_mb: number;
  /** `fleetfw verify` (the built CLI: load, render, every check, intents, JSON out): wall time and peak RSS. */
  verify_s: number;
  verify_peak_rss_mb: number;
  rules_per_host_max: number;
  rules_per_host_mean: number;
  set_entries_per_host_max: number;
}

const seconds = (t0: number) => (performance.now() - t0) / 1000;
const countRules = (text: string) => text.split('\n').filter((l) => l.startsWith('-A ')).length;

/** Load, render, then everything apply checks before sending anything (lockout, lint, intents). */
function renderAndAnalyse(file: string): Omit<RenderFigures, 'hosts' | 'peak_rss_mb' | 'verify_s' | 'verify_peak_rss_mb'> {
  const t0 = performance.now();
  const inv = loadInventory(file);
  const templates = loadTemplates(inv);
  const load_s = seconds(t0);
  const t1 = performance.now();
  const rendered = renderFleet(inv, templates);
  const render_s = seconds(t1);
  const t2 = performance.now();
  const parsed = parseFleet(rendered);
  const findings = checkFleet(inv, parsed).filter((f) => f.severity === 'error');
  const failed = verifyIntents(inv, parsed).filter((r) => !r.ok);
  const analysis_s = seconds(t2);
  if (findings.length > 0 || failed.length > 0) {
    throw new Error(`the generated fleet fails its checks: ${JSON.stringify([...findings, ...failed.map((f) => f.intent.text)]).slice(0, 500)}`);
  }
  const rules = rendered.map((r) => countRules(r.v4.text) + countRules(r.v6.text));
  const setEntries = rendered.map((r) => (r.ipsets ?? []).reduce((n, s) => n + s.members.length, 0));
  return {
    load_s,
    render_s,
    analysis_s,
    total_s: load_s + render_s + analysis_s,
    rules_per_host_max: Math.max(...rules),
    rules_per_host_mean: Math.round((rules.reduce((a, b) => a + b, 0) / rules.length) * 10) / 10,
    set_entries_per_host_max: Math.max(...setEntries),
  };
}

function run(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string; wall_s: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr, wall_s: seconds(t0) }));
  });
}

/** In this process (tsx, from src/): where the time goes. */
function renderOne(file: string): Omit<RenderFigures, 'hosts' | 'verify_s' | 'verify_peak_rss_mb'> {
  return { ...renderAndAnalyse(file), peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) };
}

/** What a user runs: the built CLI's `verify` on the same inventory, under GNU time. */
async function verifyCli(file: string): Promise<{ verify_s: number; verify_peak_rss_mb: number }> {
  const r = await run([GNU_TIME, '-f', 'fleetfw-time %e %M', process.execPath, CLI, 'verify', '--inventory', file, '--format', 'json']);
  const m = /fleetfw-time ([\d.]+) (\d+)/.exec(r.stderr);
  if (r.code !== 0 || !m) throw new Error(`fleetfw verify failed (exit ${r.code}):\n${r.stderr.slice(-2000)}`);
  return { verify_s: Number(m[1]), verify_peak_rss_mb: Math.round(Number(m[2]) / 1024) };
}

/** Render only (no analysis: with one rule per member it grows as N³ at large N). */
function ruleCounts(n: number, ipsetThreshold?: number): { max: number; mean: number; total: number; setEntries: number } {
  const file = writeFleet(n, { ipsetThreshold });
  try {
    const inv = loadInventory(file);
    const rendered = renderFleet(inv, loadTemplates(inv));
    const rules = rendered.map((r) => countRules(r.v4.text) + countRules(r.v6.text));
    const total = rules.reduce((a, b) => a + b, 0);
    const setEntries = rendered.reduce((n, r) => n + (r.ipsets ?? []).reduce((m, s) => m + s.members.length, 0), 0);
    return { max: Math.max(...rules), mean: Math.round((total / rules.length) * 10) / 10, total, setEntries };
  } finally {
    rmSync(dirname(file), { recursive: true, force: true });
  }
}

function rulesMode(sizes: number[]): void {
  const rows = sizes.map((n) => ({ hosts: n, per_member: ruleCounts(n, 1_000_000), ipsets: ruleCounts(n) }));
  table(
    ['hosts', 'rules/host max (per member)', 'mean', 'total', 'rules/host max (ipsets)', 'mean', 'total', 'set entries (fleet)'],
    rows.map((r) => [r.hosts, r.per_member.max, r.per_member.mean, r.per_member.total, r.ipsets.max, r.ipsets.mean, r.ipsets.total, r.ipsets.setEntries]),
  );
  writeJson({ mode: 'rules', results: rows });
}

async function renderMode(sizes: number[]): Promise<void> {
  const rows: RenderFigures[] = [];
  for (const n of sizes) {
    const file = writeFleet(n, { ipsetThreshold: threshold });
    try {
      // Each in its own process: peak RSS is then this size's alone.
      const r = await run([TSX, fileURLToPath(import.meta.url), '--render-one', file]);
      if (r.code !== 0) throw new Error(`render of ${n} hosts failed:\n${r.stderr}`);
      const inProcess = JSON.parse(r.stdout.trim().split('\n').pop()!) as ReturnType<typeof renderOne>;
      rows.push({ hosts: n, ...inProcess, ...(await verifyCli(file)) });
    } finally {
      rmSync(dirname(file), { recursive: true, force: true });
    }
  }
  const head = ['hosts', 'load s', 'render s', 'analysis s', 'total s', 'peak RSS MB', 'fleetfw verify s', 'its peak RSS MB', 'rules/host max', 'mean', 'set entries/host max'];
  table(head, rows.map((r) => [r.hosts, r.load_s.toFixed(2), r.render_s.toFixed(2), r.analysis_s.toFixed(2), r.total_s.toFixed(2), r.peak_rss_mb, r.verify_s.toFixed(2), r.verify_peak_rss_mb, r.rules_per_host_max, r.rules_per_host_mean, r.set_entries_per_host_max]));
  writeJson({ mode: 'render', ipset_threshold: threshold ?? null, load: loadavg(), results: rows });
}

interface CliRun {
  code: number;
  wall_s: number;
  peak_rss_mb: number;
  /** CPU of the fleetfw process itself (user + system). */
  cpu_s: number;
  /** CPU of every lab host meanwhile: sshd (handshakes, forwarding) and what it ran (the host script). */
  host_cpu_s: number;
  stdout: string;
  stderr: string;
}

/** The built CLI from the operator namespace, as `fleetfw lab run` does, under GNU time for the peak RSS. */
async function cli(lab: Lab, argv: string[]): Promise<CliRun> {
  const rssFile = join(lab.dir, `rss-${Date.now()}`);
  const cpu0 = hostCpu(lab);
  const r = await run(
    ['ip', 'netns', 'exec', lab.netnsOf(OPERATOR), GNU_TIME, '-o', rssFile, '-f', '%M %U %S', process.execPath, CLI, ...argv],
    { ...process.env, ...labEnv(lab), NO_COLOR: '1' },
  );
  const [kb, user, sys] = readFileSync(rssFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  return { ...r, peak_rss_mb: Math.round(kb! / 1024), cpu_s: round(user! + sys!), host_cpu_s: round(hostCpu(lab) - cpu0) };
}

/**
 * CPU seconds used so far on the lab hosts: each connection's sshd and the
 * commands it runs are reaped by the listening sshd, so their time lands in its
 * cutime + cstime (/proc/PID/stat fields 16 and 17, in clock ticks of 1/100 s).
 * The revert watchdogs leave their session on purpose (setsid): init reaps them,
 * so init's share is counted too (lab hosts share the machine's PID namespace;
 * on a quiet machine nothing else is orphaned meanwhile).
 */
function hostCpu(lab: Lab): number {
  const state = JSON.parse(readFileSync(join(lab.dir, 'state.json'), 'utf8')) as { nodes: Record<string, { sshdPid?: number }> };
  let ticks = childTicks(1);
  for (const n of Object.values(state.nodes)) if (n.sshdPid) ticks += childTicks(n.sshdPid);
  return ticks / 100;
}

function childTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[13]) + Number(fields[14]); // fields 16, 17 counted from 1, after pid and comm
}

async function floor(lab: Lab, bastion: string, targets: string[], parallel: number): Promise<{ seconds: number; host_cpu_s: number }> {
  const cpu0 = hostCpu(lab);
  const r = await run(['ip', 'netns', 'exec', lab.netnsOf(OPERATOR), TSX, FLOOR, bastion, lab.identityFile, String(parallel), ...targets]);
  if (r.code !== 0) throw new Error(`floor failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim()) as { seconds: number; ok: number; failed: number };
  if (out.failed > 0) throw new Error(`floor: ${out.failed} targets failed:\n${r.stderr}`);
  return { seconds: out.seconds, host_cpu_s: round(hostCpu(lab) - cpu0) };
}

/** The safe-apply floor on every target, with the rules fleetfw renders for it (written under `rulesDir`). */
async function safeFloor(lab: Lab, bastion: string, targets: Array<{ name: string; addr: string }>, rulesDir: string, parallel: number): Promise<{ seconds: number; host_cpu_s: number }> {
  const cpu0 = hostCpu(lab);
  const r = await run([
    'ip', 'netns', 'exec', lab.netnsOf(OPERATOR), TSX, SAFE_FLOOR, bastion, lab.identityFile, String(parallel), String(SAFE_FLOOR_WINDOW), rulesDir,
    ...targets.map((t) => `${t.name}=${t.addr}`),
  ]);
  if (r.code !== 0) throw new Error(`safe floor failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim()) as { seconds: number; ok: number; failed: number };
  if (out.failed > 0) throw new Error(`safe floor: ${out.failed} targets failed:\n${r.stderr}`);
  return { seconds: out.seconds, host_cpu_s: round(hostCpu(lab) - cpu0) };
}

/** Each host's rules as fleetfw sends them, as files the safe floor reads. */
function writeRules(file: string, dir: string): void {
  const inv = loadInventory(file);
  for (const r of renderFleet(inv, loadTemplates(inv))) {
    mkdirSync(join(dir, r.host), { recursive: true });
    writeFileSync(join(dir, r.host, 'rules.v4'), r.v4.text);
    writeFileSync(join(dir, r.host, 'rules.v6'), r.v6.text);
    writeFileSync(join(dir, r.host, 'ipsets'), formatIpSets(r.ipsets ?? []));
  }
}

const median = <T>(xs: T[], key: (x: T) => number): T => [...xs].sort((a, b) => key(a) - key(b))[Math.floor(xs.length / 2)]!;

// Back to a host as the lab made it: no rules (policies ACCEPT), no sets, no
// fleetfw state, empty persisted files. Not measured.
const RESET_HOST = [
  'for t in filter nat mangle raw security; do for c in iptables ip6tables; do $c -t $t -F; $c -t $t -X; done; done 2>/dev/null',
  'for c in iptables ip6tables; do for ch in INPUT FORWARD OUTPUT; do $c -P $ch ACCEPT; done; done',
  'ipset destroy 2>/dev/null',
  'rm -rf /var/lib/fleetfw/* /etc/iptables/rules.v4 /etc/iptables/rules.v6 /etc/iptables/ipsets /etc/iptables/.fleetfw-tmp',
  // As the lab starts a host (and as iptables-persistent saves no tables): every round starts alike.
  ': >/etc/iptables/rules.v4 && : >/etc/iptables/rules.v6',
].join('; ');

async function resetHosts(lab: Lab, hosts: string[]): Promise<void> {
  const limit = pLimit(8);
  await Promise.all(
    hosts.map((h) =>
      limit(async () => {
        const r = await lab.exec(h, ['sh', '-c', RESET_HOST]);
        if (r.code !== 0) throw new Error(`reset ${h}: ${r.stderr}`);
      }),
    ),
  );
}

async function hostsMode(n: number, parallel: number, repeat: number, cleanHome: boolean): Promise<void> {
  // Past IPv4's documentation ranges, the hosts are reached over IPv6 (bench/fleet.ts).
  const file = writeFleet(n, { ipsetThreshold: threshold, ipv6: n > LAB_MAX_HOSTS });
  const inv = loadInventory(file);
  const core = renderAndAnalyse(file);
  const bastion = inv.hosts.find((h) => h.name === 'tunnel-1')!;
  const addressOf = (h: (typeof inv.hosts)[number]) => (h.private ?? h.private6)!;
  const targets = inv.hosts.filter((h) => h !== bastion).map(addressOf);
  const safeTargets = inv.hosts.filter((h) => h !== bastion).map((h) => ({ name: h.name, addr: addressOf(h) }));
  const rulesDir = join(dirname(file), 'safe-floor-rules');
  writeRules(file, rulesDir);
  const processStartMs = processStartCost();
  const memBefore = memUsedMb();
  const t0 = performance.now();
  const lab = await startLab(labSpecFromInventory(inv));
  const labStart = { seconds: (performance.now() - t0) / 1000, memory_mb: memUsedMb() - memBefore };
  console.log(`lab: ${n} hosts started in ${round(labStart.seconds)} s, ${Math.round(labStart.memory_mb)} MB more memory in use`);
  try {
    if (cleanHome) {
      // A server's root account as installed: no rc files for the login shell that runs every command.
      const empty = join(lab.dir, 'clean-home');
      mkdirSync(empty, { recursive: true });
      for (const h of inv.hosts) {
        const r = await lab.exec(h.name, ['mount', '--bind', empty, '/root']);
        if (r.code !== 0) throw new Error(`--clean-home: cannot mount over /root on ${h.name}: ${r.stderr}`);
      }
    }
    await floor(lab, bastion.public!, targets, parallel); // warm-up: every sshd's first fork loads its libraries
    // R rounds of floor, plan and apply, interleaved so that a drift in the
    // machine's speed (a shared 2-core machine drifts by 10 %) weighs on all
    // three alike; every round but the first starts from fresh hosts again.
    const common = ['--inventory', file, '--parallel', String(parallel), '--no-color'];
    const floors: Array<{ seconds: number; host_cpu_s: number }> = [];
    const safeFloors: Array<{ seconds: number; host_cpu_s: number }> = [];
    const plans: CliRun[] = [];
    const applies: CliRun[] = [];
    for (let i = 0; i < repeat; i++) {
      if (i > 0) await resetHosts(lab, inv.hosts.map((h) => h.name));
      floors.push(await floor(lab, bastion.public!, targets, parallel));
      const p = await cli(lab, ['plan', ...common, '--format', 'json']);
      if (p.code !== 2) throw new Error(`plan: exit ${p.code} (expected 2, changes):\n${p.stderr.slice(-2000)}`);
      const summary = (JSON.parse(p.stdout) as { summary: { changes: number } }).summary;
      if (summary.changes !== n) throw new Error(`plan: ${summary.changes} of ${n} hosts with changes`);
      plans.push(p);
      const a = await cli(lab, ['apply', ...common, '--yes', '--json']);
      if (a.code !== 0) throw new Error(`apply: exit ${a.code}:\n${a.stderr.slice(-2000)}${a.stdout.slice(-2000)}`);
      applies.push(a);
      // The same rules again, the least safe way: a load of what runs costs what a first load costs.
      safeFloors.push(await safeFloor(lab, bastion.public!, safeTargets, rulesDir, parallel));
    }
    const fl = median(floors, (f) => f.seconds);
    const floor_s = fl.seconds;
    const sf = median(safeFloors, (f) => f.seconds);
    const plan = median(plans, (p) => p.wall_s);
    const apply = median(applies, (a) => a.wall_s);
    const insync = await cli(lab, ['plan', ...common, '--format', 'json']);
    if (insync.code !== 0) throw new Error(`plan after apply: exit ${insync.code} (expected 0, in sync):\n${insync.stderr.slice(-2000)}`);
    const result = {
      mode: 'hosts',
      hosts: n,
      targets: n - 1,
      parallel,
      repeat,
      login_shell: cleanHome ? 'clean /root (no rc files)' : 'as on this machine',
      addressing: n > LAB_MAX_HOSTS ? 'targets over IPv6' : 'IPv4',
      process_start_ms: round(processStartMs),
      lab_start_s: round(labStart.seconds),
      lab_memory_mb: Math.round(labStart.memory_mb),
      floor_runs_s: floors.map((f) => round(f.seconds)),
      safe_floor_runs_s: safeFloors.map((f) => round(f.seconds)),
      plan_runs_s: plans.map((p) => round(p.wall_s)),
      apply_runs_s: applies.map((a) => round(a.wall_s)),
      roles: countBy(fleetRoles(n).map((h) => h.roles.at(-1)!)),
      floor_s: round(floor_s),
      safe_floor_s: round(sf.seconds),
      safe_floor_ratio: round(sf.seconds / floor_s),
      plan_s: round(plan.wall_s),
      apply_s: round(apply.wall_s),
      plan_insync_s: round(insync.wall_s),
      plan_ratio: round(plan.wall_s / floor_s),
      apply_ratio: round(apply.wall_s / floor_s),
      apply_vs_safe_floor: round(apply.wall_s / sf.seconds),
      render_analysis_s: round(core.total_s),
      peak_rss_mb: Math.max(plan.peak_rss_mb, apply.peak_rss_mb, insync.peak_rss_mb),
      // Where the time goes: CPU of fleetfw itself and of all lab hosts (sshd + host script), per run.
      cpu_s: { fleetfw_plan: plan.cpu_s, fleetfw_apply: apply.cpu_s, hosts_floor: fl.host_cpu_s, hosts_safe_floor: sf.host_cpu_s, hosts_plan: plan.host_cpu_s, hosts_apply: apply.host_cpu_s },
      rules_per_host_max: core.rules_per_host_max,
      load: loadavg(),
    };
    table(
      ['hosts', 'parallel', 'floor s', 'safe floor s', 'plan s', 'apply s', 'plan (in sync) s', 'plan/floor', 'apply/safe floor', 'apply/floor', 'render+analysis s', 'peak RSS MB'],
      [[n, parallel, result.floor_s, result.safe_floor_s, result.plan_s, result.apply_s, result.plan_insync_s, result.plan_ratio, result.apply_vs_safe_floor, result.apply_ratio, result.render_analysis_s, result.peak_rss_mb]],
    );
    writeJson(result);
  } finally {
    await lab.stop();
    rmSync(dirname(file), { recursive: true, force: true });
  }
}

const round = (x: number) => Math.round(x * 100) / 100;

/** What one process start costs here: 1,000 `/bin/true` from one shell, ms each. */
function processStartCost(): number {
  const t0 = performance.now();
  const r = spawnSync('sh', ['-c', 'i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done']);
  if (r.status !== 0) throw new Error('cannot time process starts');
  return (performance.now() - t0) / 1000;
}

/** Memory in use on the machine (MemTotal - MemAvailable), MB. */
function memUsedMb(): number {
  const info = readFileSync('/proc/meminfo', 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(info)?.[1] ?? NaN);
  return (kb('MemTotal') - kb('MemAvailable')) / 1024;
}
const countBy = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => ((m[x] = (m[x] ?? 0) + 1), m), {});
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

function table(head: string[], rows: Array<Array<string | number>>): void {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const width = head.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  for (const r of cells) console.log(r.map((c, i) => c.padStart(width[i]!)).join('  '));
  console.log(`load average: ${loadavg()}`);
}

function writeJson(data: unknown): void {
  if (!args.json) return;
  mkdirSync(dirname(args.json), { recursive: true });
  writeFileSync(args.json, `${JSON.stringify(data, null, 2)}\n`);
  console.log(`wrote ${args.json}`);
}

if (args['render-one']) {
  console.log(JSON.stringify(renderOne(args['render-one'])));
} else if (args.rules) {
  rulesMode(args.rules.split(',').map(Number));
} else if (args.render) {
  await renderMode(args.render.split(',').map(Number));
} else if (args.hosts) {
  const n = Number(args.hosts);
  const parallel = Number(args.parallel ?? DEFAULT_PARALLEL);
  const repeat = Number(args.repeat ?? 3);
  if (!Number.isInteger(n) || n < 4) throw new Error('--hosts must be an integer >= 4');
  if (!Number.isInteger(repeat) || repeat < 1) throw new Error('--repeat must be an integer >= 1');
  // A clean /root is the default (a server's root has no rc files); --clean-home is kept as the same.
  await hostsMode(n, parallel, repeat, !args['machine-home']);
} else {
  console.error('usage: npm run bench -- --hosts N [--parallel P] [--repeat R] [--machine-home] [--json FILE] | --render 1000,10000 [--json FILE] | --rules 100,1000');
  process.exit(64);
}
