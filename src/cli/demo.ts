// `fleetfw demo` (npm run demo): the whole story on a real (namespaced) S1
// fleet in about a minute: plan, apply through tunnel-1, prove the matrix with
// real packets, then lockout trap 1 refused statically and, forced through,
// reverted by the host itself. The lab goes away at the end, on failure and on
// Ctrl-C (the lab's own exit handlers), and so does the scratch copy.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode, FleetError, type ExitCodeValue } from '../errors.js';
import { loadInventory } from '../inventory/load.js';
import { assertLabPrerequisites, labSpecFromInventory, startLab, type Lab } from '../lab/lab.js';
import { EMBEDDED_INVENTORY } from './context.js';
import { runInLab } from './lab-commands.js';
import { chalkFor, out } from './io.js';

const SECTIONS = 7;
const SHOWN_INVENTORY = 'inventories/s1.yaml';

/** Lockout trap 1: the base takes over the management path and then has no SSH rule at all. */
export const TRAP_NO_SSH = `# Lockout trap 1: INPUT DROP, no SSH rule, and fleetfw told not to add its own.
%management off
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
%roles
COMMIT
`;

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

function captureInLab(lab: Lab, args: string[]): Promise<Captured> {
  const child = runInLab(lab, args, { stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr })));
}

class DemoFailed extends FleetError {
  constructor(step: string, detail: string) {
    super(`demo: ${step}: ${detail}`, ExitCode.internal);
  }
}

export async function cmdDemo(opts: { color?: boolean }): Promise<ExitCodeValue> {
  if (process.getuid?.() !== 0) {
    throw new FleetError('the demo needs root: it builds network namespaces with real sshd and netfilter. Run it as root, e.g. sudo npm run demo', ExitCode.usage);
  }
  try {
    assertLabPrerequisites();
  } catch (e) {
    throw new FleetError(`${(e as Error).message} (Debian: scripts/install-debian-deps.sh)`, ExitCode.usage);
  }
  const c = chalkFor(process.stdout, opts.color);
  const t0 = Date.now();
  const secs = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
  let n = 0;
  const section = (title: string) => out(`\n${c.bold(`== ${++n}/${SECTIONS}  ${title}`)} ${c.dim(`(${secs()})`)}`);
  const say = (line: string) => out(`   ${line}`);
  const cmd = (args: string[]) => say(c.cyan(`$ fleetfw ${args.join(' ')}`));
  const show = (text: string, keep: (l: string) => boolean) =>
    text.split('\n').filter((l) => l.trim() !== '' && keep(l)).forEach((l) => say(`  ${l}`));
  const expectCode = (step: string, r: Captured, code: number) => {
    if (r.code !== code) throw new DemoFailed(step, `fleetfw exited ${r.code}, expected ${code}\n${r.stdout}${r.stderr}`);
  };

  const inv = loadInventory(EMBEDDED_INVENTORY, { displayPath: SHOWN_INVENTORY });
  const scratch = mkdtempSync(join(tmpdir(), 'fleetfw-demo-'));
  const dropScratch = () => rmSync(scratch, { recursive: true, force: true });
  process.once('exit', dropScratch);
  let lab: Lab | undefined;
  try {
    section('Lab: the S1 fleet of seed 000 in network namespaces');
    lab = await startLab(labSpecFromInventory(inv));
    say(`${inv.hosts.length} hosts, each with its own sshd and netfilter: ${inv.hosts.map((h) => h.name).join(', ')}`);
    say(`plus internet (203.0.113.200), intruder on the private lan (192.0.2.250) and the operator; namespaces ${lab.prefix}-*`);

    section('Plan: live rules against the rendered ones');
    const planArgs = ['plan', '-i', SHOWN_INVENTORY];
    cmd(planArgs);
    const plan = await captureInLab(lab, ['plan', '-i', EMBEDDED_INVENTORY]);
    expectCode('plan', plan, ExitCode.changes);
    show(plan.stdout, (l) => /^[~=!] |^Plan:/.test(l));
    say(c.dim('exit 2: changes to apply (fleetfw plan --format markdown makes a PR comment of it)'));

    section('Apply through tunnel-1: bastion first, then a canary, then the rest');
    cmd(['apply', '-i', SHOWN_INVENTORY, '--yes', '--window', '20']);
    const apply = await captureInLab(lab, ['apply', '-i', EMBEDDED_INVENTORY, '--yes', '--window', '20']);
    expectCode('apply', apply, ExitCode.ok);
    show(apply.stdout, (l) => /^\S+\s+(confirmed|unchanged|rolled-back|failed|unknown|skipped)\s|confirmed, \d+ unchanged/.test(l));

    section("Prove S1's intents with real packets: a NEW connection per pair, a listener where nothing listens");
    const liveArgs = ['verify', '--live', '-i', SHOWN_INVENTORY];
    cmd(liveArgs);
    const live = await captureInLab(lab, ['verify', '--live', '-i', EMBEDDED_INVENTORY]);
    expectCode('verify --live', live, ExitCode.ok);
    show(live.stdout, (l) => /^(ok|FAIL|\?\?\?\?|n\/a) |pairs held/.test(l));

    section('Lockout trap 1 (INPUT DROP, no SSH rule, %management off): refused before anything is sent');
    cpSync(join(inv.templatesDir), join(scratch, 'templates'), { recursive: true });
    cpSync(EMBEDDED_INVENTORY, join(scratch, 'inventories', 's1.yaml'));
    writeFileSync(join(scratch, 'templates', 'bases', 'isolated.v4'), TRAP_NO_SSH);
    const trapInv = join(scratch, 'inventories', 's1.yaml');
    say(c.dim('templates/bases/isolated.v4 replaced by:'));
    TRAP_NO_SSH.trimEnd().split('\n').forEach((l) => say(c.dim(`  ${l}`)));
    cmd(['apply', '-i', 'trap/s1.yaml', '--limit', 'mysql-1', '--yes']);
    const refused = await captureInLab(lab, ['apply', '-i', trapInv, '--limit', 'mysql-1', '--yes']);
    expectCode('trap refused', refused, ExitCode.checksFailed);
    show(refused.stderr, (l) => /^error: mysql-1|^fleetfw: /.test(l) && !/no --inventory/.test(l));

    section('The same trap forced through (--unsafe-skip-checks, 5 s window): the host reverts by itself');
    cmd(['apply', '-i', 'trap/s1.yaml', '--limit', 'mysql-1', '--yes', '--window', '5', '--unsafe-skip-checks']);
    const forced = await captureInLab(lab, ['apply', '-i', trapInv, '--limit', 'mysql-1', '--yes', '--window', '5', '--unsafe-skip-checks']);
    expectCode('trap forced', forced, ExitCode.rolledBack);
    show(forced.stderr, (l) => /\] mysql-1: (loaded|confirming|rolling-back|rolled-back|failed)/.test(l));
    show(forced.stdout, (l) => /^mysql-1\s+rolled-back/.test(l));
    const ssh = await lab.probe('tunnel-1', inv.hosts.find((h) => h.name === 'mysql-1')!.private!, 'tcp', 22);
    if (ssh !== 'open') throw new DemoFailed('after the revert', `tunnel-1 -> mysql-1:22 is ${ssh}, expected open`);
    say(`tunnel-1 -> mysql-1:22 after the revert: ${c.green(ssh)}`);
    const after = await captureInLab(lab, ['plan', '-i', EMBEDDED_INVENTORY, '--limit', 'mysql-1']);
    expectCode('plan after the revert', after, ExitCode.ok);
    show(after.stdout, (l) => /^= mysql-1|^Plan:/.test(l));

    section('Teardown');
  } finally {
    await lab?.stop();
    dropScratch();
    process.removeListener('exit', dropScratch);
  }
  say(`lab stopped, namespaces removed. Total ${secs()}.`);
  return ExitCode.ok;
}
