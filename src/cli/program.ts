// fleetfw command line: commander wiring and the one place errors are printed.
// main.ts runs it as a process; tests run it in-process (runCli).
import { Command, CommanderError, Option } from 'commander';
import { ExitCode, FleetError, InputError, InternalError, UsageError, type ExitCodeValue } from '../errors.js';
import { cmdExplain, cmdPlanOffline, cmdRender, cmdVerify, PLAN_FORMATS, REPORT_FORMATS } from './core-commands.js';
import { cmdApply, cmdHistory, cmdPlanLive, cmdRollback, cmdStatus, DEFAULT_PARALLEL } from './live-commands.js';
import { cmdApplyPlan, savePlanFile } from './review-commands.js';
import { addLabCommands } from './lab-commands.js';
import { cmdDiscover, cmdLogs, cmdShow } from './operate-commands.js';
import { cmdDemo } from './demo.js';
import { cmdVerifyLive } from './verify-live.js';
import { timeoutOf } from './live-report.js';
import { PLAN_OFFLINE, resolveInventory, type ExampleUse, type WithoutInventory } from './context.js';
import { chalkFor, err, packageVersion } from './io.js';
import type { StreamedPlan } from '../plan/streamed-plan.js';
import { MARKDOWN_LIMIT } from '../plan/report.js';
import type { Inventory } from '../model/inventory.js';
import type { RenderedHost } from '../render/render.js';

const EXIT_CODES_HELP = `
Exit codes:
  0  success, or no change
  2  plan: there are changes to apply; status: some hosts drifted from the render
  3  invalid input (inventory or templates): every problem is listed as file:line:col
  4  a safety check failed (lockout, undefined jump, violated intent): nothing was sent;
     plan, status: a check of the rules the hosts run (or will run) fails
  5  some hosts failed or were unreachable (the others still ran)
  6  apply, rollback: some hosts were rolled back
  7  apply, rollback: some hosts could not be reached after their window (state unknown)
  8  apply PLAN: the inventory or templates changed since the plan was saved: nothing was applied
  64 usage error
  130 interrupted`;

const INVENTORY_DEFAULT: Record<ExampleUse, string> = {
  never: 'never the embedded example: this command reads or changes real hosts',
  'in-project': "else the embedded example inventories/s1.yaml, inside fleetfw's own folder only",
  always: 'else the embedded example inventories/s1.yaml',
};

/**
 * --inventory, --limit, --no-color. `example`: what the command does when no
 * inventory is named, found in FLEETFW_INVENTORY or ./fleetfw.yaml (context.ts).
 */
function inventoryOption(cmd: Command, example: ExampleUse): Command {
  const withoutInventory: WithoutInventory = { command: cmd.name(), example };
  return cmd
    .option('-i, --inventory <file>', `inventory YAML file (default: $FLEETFW_INVENTORY, else ./fleetfw.yaml; ${INVENTORY_DEFAULT[example]})`)
    .option('--limit <patterns>', "only these hosts: names and groups, comma-separated, with globs ('web*'), exclusions ('all,!db', '!mysql-2') and intersections ('wordpress,&perimeter')")
    .option('--no-color', 'no colour (also: NO_COLOR or FORCE_COLOR=0, or output that is not a terminal; FORCE_COLOR=1 forces it)')
    .setOptionValue('withoutInventory', withoutInventory);
}

function sshOptions(cmd: Command): Command {
  return cmd
    .option('--known-hosts <file>', 'OpenSSH known_hosts file for every host (default: inventory settings.known_hosts, else each host\'s UserKnownHostsFile; env FLEETFW_KNOWN_HOSTS)')
    .option('--accept-new-host-keys', 'trust and record host keys never seen before, for every host (default: each host\'s StrictHostKeyChecking; a CHANGED key is always refused)')
    .option('--ssh-config <file>', 'OpenSSH client config read per host with ssh -G (default ~/.ssh/config; env FLEETFW_SSH_CONFIG)')
    .option('--identity <file>', 'private key file for every host (default: inventory, else each host\'s IdentityFile list, and ssh-agent; env FLEETFW_IDENTITY)')
    .option('--verbose', 'print each host\'s SSH settings and where each came from (flag, inventory, ssh config file:line, default)')
    .option('--parallel <n>', 'hosts worked on at once', String(DEFAULT_PARALLEL));
}

function auditOption(cmd: Command): Command {
  return cmd.option('--audit-log <file>', 'local audit log, JSON lines (default: $XDG_STATE_HOME/fleetfw/audit.jsonl or ~/.local/state/fleetfw/audit.jsonl)');
}

function formatOption(cmd: Command, choices: readonly string[] = REPORT_FORMATS, description = 'output format'): Command {
  return cmd.addOption(new Option('--format <format>', description).choices(choices).default('text'));
}

export function buildProgram(run: (p: Promise<ExitCodeValue> | ExitCodeValue) => void): Command {
  const program = new Command('fleetfw')
    .description('Put a host firewall on a whole fleet of Linux servers, safely, from one inventory file.')
    .version(packageVersion())
    .addHelpText('after', EXIT_CODES_HELP)
    .showHelpAfterError('(run with --help for usage)')
    // Usage errors end with exit 64 in every subcommand: they inherit this when created.
    .exitOverride();

  inventoryOption(program.command('render'), 'in-project')
    .description("render every host's rules.v4 and rules.v6 into a folder")
    .requiredOption('--out <dir>', 'output folder (DIR/<host>/rules.v4, rules.v6)')
    .action((o) => run(cmdRender(o)));

  formatOption(sshOptions(inventoryOption(program.command('plan'), 'never')), PLAN_FORMATS, 'output format (html: one self-contained page, who can reach whom before and after, the changes highlighted: redirect it to a file)')
    .description('dry run: show, per host, the live rules against the rendered ones (exit 2 when there are changes)')
    .option('--offline', "compare with a stored render instead of the live hosts (no SSH; without an inventory, the embedded example inside fleetfw's own folder)")
    .option('--against <dir>', 'with --offline: the stored render, a folder that must exist (default: <inventory>.rendered/ beside the inventory)')
    .option('--out <file>', 'also save the full plan (versioned JSON) for `fleetfw apply FILE`, which applies exactly it; a cut markdown plan names it')
    .option('--markdown-limit <chars>', 'with --format markdown: at most this many characters; a longer plan shows its most important hosts first, then "and N more hosts" (GitHub refuses comments over 65,536)', String(MARKDOWN_LIMIT))
    .option('--require-intents', 'fail (exit 4) when the change opens a flow that no intent mentions')
    .action((o) => {
      if (o.against !== undefined && !o.offline) throw new UsageError('--against is for --offline: a live plan compares with the hosts themselves');
      // The saved plan names the inventory as it was found (./fleetfw.yaml stays relative for `apply FILE`).
      const found = () => o.inventory ?? resolveInventory(o.offline ? { ...o, withoutInventory: PLAN_OFFLINE } : o).file;
      const sink = o.out ? (plan: StreamedPlan, inv: Inventory, rendered: RenderedHost[]) => savePlanFile(o.out, plan, inv, rendered, { ...o, inventory: found() }) : undefined;
      run(o.offline ? cmdPlanOffline(o, sink) : cmdPlanLive(o, sink));
    });

  formatOption(sshOptions(inventoryOption(program.command('verify'), 'in-project')))
    .description("check the inventory's intents (expected flows) and the safety checks against the rendered rules; --live: with real packets on the hosts")
    .option('--live', 'prove the intents on the real fleet: for every pair, a NEW connection from the source host to the destination, over SSH through the bastion, with a short-lived listener where nothing listens (exit 4: a pair contradicts its intent; 5: a pair could not be told)')
    .option('--timeout <ms>', 'with --live: how long a probe waits for an answer before it counts as dropped (default 1500)')
    // --live reads real hosts: like every such command, never from the embedded example.
    .action((o) => {
      if (o.timeout !== undefined && !o.live) throw new UsageError('--timeout is for --live');
      run(o.live ? cmdVerifyLive({ ...o, withoutInventory: { command: 'verify --live', example: 'never' } }) : cmdVerify(o));
    });

  inventoryOption(program.command('explain'), 'in-project')
    .description('evaluate one incoming packet against a host\'s rendered rules, through every table in the kernel\'s order, and print the trace')
    .argument('<host>', 'the receiving host')
    .requiredOption('--from <source>', 'a host, an external (internet, intruder), a group (one packet from each member), an address, or a CIDR (one packet from its first address stands for the range)')
    .option('--port <port>', 'destination port, 1-65535 (required with tcp and udp)')
    .option('--sport <port>', 'source port, 1-65535 (default 32768, the first port a Linux client picks)')
    .addOption(new Option('--proto <proto>', 'protocol').choices(['tcp', 'udp', 'icmp']).default('tcp'))
    .addOption(new Option('--via <side>', "which side of the host is addressed").choices(['public', 'private']))
    .addOption(new Option('--state <state>', 'conntrack state').choices(['NEW', 'ESTABLISHED', 'RELATED', 'INVALID']).default('NEW'))
    .option('--ipv6', 'an IPv6 packet')
    .addOption(new Option('--format <format>', 'output format (json: one object, or an array of them for a group)').choices(['text', 'json']).default('text'))
    .action((host, o) => run(cmdExplain(host, o)));

  auditOption(sshOptions(inventoryOption(program.command('apply'), 'never')))
    .argument('[plan]', 'a plan saved by `fleetfw plan --out`: apply exactly it; refused when the inventory, the templates or a host\'s live rules changed since')
    .description('apply the rendered rules: bastion first, then a canary, then the rest, each inside an auto-rollback window')
    .option('--window <seconds>', 'auto-rollback window (default: inventory settings.window, 60)')
    .option('-y, --yes', 'do not ask for confirmation (required when not on a terminal)')
    .option('--max-failures <n>', 'stop starting hosts after this many failures or rollbacks', '1')
    .option('--force', 'run the transaction even on hosts already in sync')
    .option('--unsafe-skip-checks', 'apply even when the pre-flight safety checks fail (the host-side revert still protects you)')
    .option('--no-install-persistent', 'do not install iptables-persistent where it is missing (inventory: settings.install_persistent)')
    .option('--json', 'stream events and the summary as JSON lines on stdout')
    .option('--verify-live', 'after a rollout that ended cleanly, prove the intents with real packets (as verify --live; exit 4 or 5 when it fails)')
    .option('--timeout <ms>', 'with --verify-live: how long a probe waits for an answer before it counts as dropped (default 1500)')
    .action((planFile, o) => {
      // Said before anything is sent: a mistake here must not surface after the fleet changed.
      if (o.timeout !== undefined && !o.verifyLive) throw new UsageError('--timeout is for --verify-live');
      if (o.verifyLive) timeoutOf(o.timeout);
      run(planFile ? cmdApplyPlan(planFile, o) : cmdApply(o));
    });

  auditOption(sshOptions(inventoryOption(program.command('rollback'), 'never')))
    .description('restore a previous generation of a host, through the same safety window')
    .argument('<host>', 'the host to roll back')
    .option('--to <generation>', 'generation number (default: the one before the current)')
    .option('--window <seconds>', 'auto-rollback window')
    .option('-y, --yes', 'do not ask for confirmation (required when not on a terminal)')
    .option('--unsafe-skip-checks', 'roll back even if the old generation fails the lockout check')
    .option('--json', 'JSON lines on stdout')
    .action((host, o) => run(cmdRollback(host, o)));

  auditOption(sshOptions(inventoryOption(program.command('history'), 'never')))
    .description("list a host's generations and recent transactions, with the local audit log's entries for it")
    .argument('<host>', 'the host')
    .option('--json', 'JSON output')
    .action((host, o) => run(cmdHistory(host, o)));

  formatOption(sshOptions(inventoryOption(program.command('status'), 'never')))
    .description('per host: in sync, drift or unreachable; generation; leftovers of interrupted transactions')
    .action((o) => run(cmdStatus(o)));

  sshOptions(inventoryOption(program.command('show'), 'never'))
    .description('live rules of a host with packet counters and line numbers (iptables -vnL --line-numbers, IPv4 and IPv6)')
    .argument('<host>', 'the host')
    .addOption(new Option('--table <table>', 'netfilter table').choices(['filter', 'nat', 'mangle', 'raw', 'security']).default('filter'))
    .option('--json', 'chains and rules with exact counters as JSON')
    .action((host, o) => run(cmdShow(host, o)));

  sshOptions(inventoryOption(program.command('logs'), 'never'))
    .description("recent packets logged by a template's %log-drops, from the host's kernel log (journalctl -k or dmesg)")
    .argument('<host>', 'the host')
    .option('--since <duration>', 'how far back: 90s, 15m, 2h, 1d', '1h')
    .option('--lines <n>', 'at most this many, the most recent', '50')
    .option('--prefix <text>', 'only lines whose log prefix starts with this (e.g. "fleetfw DROP:")')
    .option('--json', 'JSON output')
    .action((host, o) => run(cmdLogs(host, o)));

  sshOptions(inventoryOption(program.command('discover'), 'never'))
    .description('list listening services (ss -ltnup) per host and check them against the rendered rules: blocked or exposed')
    .option('--json', 'JSON output')
    .action((o) => run(cmdDiscover(o)));

  program
    .command('demo')
    .description('as root: S1 in a namespace lab, plan, apply, prove the matrix with real packets, a lockout trap reverted by the host; then tear down')
    .option('--no-color', 'no colour')
    .action((o) => run(cmdDemo(o)));

  addLabCommands(program, run);
  return program;
}

/** How an error reaches the user: invalid input and known failures as messages, anything else as a bug. */
export function report(e: unknown): ExitCodeValue {
  const c = chalkFor(process.stderr, undefined);
  if (e instanceof InputError) {
    err(c.red(`fleetfw: invalid input (${e.problems.length} problem${e.problems.length === 1 ? '' : 's'}):`));
    err(e.message);
    return e.exitCode;
  }
  // An InternalError is a broken invariant: a bug, said as one.
  if (e instanceof FleetError && !(e instanceof InternalError)) {
    err(c.red(`fleetfw: ${e.message}`));
    return e.exitCode;
  }
  err(c.red(`fleetfw: internal error: ${(e as Error)?.stack ?? String(e)}`));
  err('This is a bug in fleetfw; please report it with the command you ran.');
  return ExitCode.internal;
}

/** Run one command line (`argv` as in process.argv) to its exit code; errors are printed, never thrown. */
export async function runCli(argv: readonly string[]): Promise<ExitCodeValue> {
  let pending: Promise<ExitCodeValue> | undefined;
  const program = buildProgram((p) => {
    pending = Promise.resolve(p);
  });
  try {
    await program.parseAsync([...argv]);
    return pending ? await pending : ExitCode.ok;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    return report(e);
  }
}
