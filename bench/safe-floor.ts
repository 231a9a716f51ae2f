// The safe-apply floor: the least a tool can do per host and still apply safely,
// through one bastion. Per target: one connection (a forwarded channel from the
// bastion, an SSH handshake) and one command that tests the new rules
// (`iptables-restore -t`, v4 and v6, the sets loaded first), dumps the old ones as
// the backup, arms a revert (a detached sleep, then the restore of the backup) and
// loads; then a NEW connection through the bastion as the proof that the host is
// still reachable, whose one command disarms the revert and persists the files
// (each written beside its final name, fsynced, renamed, the folder fsynced).
// Its state lives in /var/lib/fleetfw/safe-floor (private to each lab host).
// Deliberately independent of src/: it is what fleetfw's apply is measured against.
//   tsx bench/safe-floor.ts BASTION_ADDR KEY_FILE PARALLEL WINDOW RULES_DIR TARGET=ADDR...
// RULES_DIR/TARGET/ holds rules.v4, rules.v6 and ipsets (may be empty).
// Prints {"seconds": S, "ok": N, "failed": N}.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';

const { Client } = ssh2;
type Client = InstanceType<typeof Client>;

const [bastionAddr, keyFile, parallelArg, windowArg, rulesDir, ...targets] = process.argv.slice(2);
if (!bastionAddr || !keyFile || !parallelArg || !windowArg || !rulesDir) {
  throw new Error('usage: safe-floor.ts BASTION_ADDR KEY_FILE PARALLEL WINDOW RULES_DIR TARGET=ADDR...');
}
const privateKey = readFileSync(keyFile);
const parallel = Number(parallelArg);
const window = Number(windowArg);
const SPLIT_V6 = '# safe-floor v6';
const SPLIT_SETS = '# safe-floor sets';

// Test, back up, arm, load. The guard's pid is kept for the disarm.
const PREPARE = [
  'set -eu',
  'S=/var/lib/fleetfw/safe-floor',
  'mkdir -p "$S"',
  'cd "$S"',
  `awk '$0 == "${SPLIT_V6}" { f = "new.v6"; next } $0 == "${SPLIT_SETS}" { f = "new.sets"; next } { print > f }' f=new.v4`,
  ': >>new.sets',
  'ipset save >old.sets',
  '[ ! -s new.sets ] || ipset restore -exist <new.sets',
  'iptables-restore -t <new.v4',
  'ip6tables-restore -t <new.v6',
  'iptables-save >old.v4',
  'ip6tables-save >old.v6',
  `setsid sh -c 'sleep ${window}; iptables-restore <old.v4; ip6tables-restore <old.v6' </dev/null >/dev/null 2>&1 &`,
  'echo $! >guard',
  'iptables-restore <new.v4',
  'ip6tables-restore <new.v6',
].join('\n');

// Over the new connection: disarm, then persist each file beside its name, fsync, rename, fsync the folder.
const CONFIRM = [
  'set -eu',
  'cd /var/lib/fleetfw/safe-floor',
  'read -r guard <guard',
  'kill "$guard"',
  'P=/etc/iptables',
  'mkdir -p "$P"',
  'cp new.v4 "$P/.rules.v4.tmp"',
  'cp new.v6 "$P/.rules.v6.tmp"',
  'cp new.sets "$P/.ipsets.tmp"',
  'sync "$P/.rules.v4.tmp" "$P/.rules.v6.tmp" "$P/.ipsets.tmp"',
  'mv "$P/.rules.v4.tmp" "$P/rules.v4"',
  'mv "$P/.rules.v6.tmp" "$P/rules.v6"',
  'mv "$P/.ipsets.tmp" "$P/ipsets"',
  'sync "$P"',
].join('\n');

function connect(config: ssh2.ConnectConfig): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.once('ready', () => resolve(c)).once('error', reject);
    c.connect({ username: 'root', privateKey, readyTimeout: 30_000, ...config });
  });
}

function run(c: Client, command: string, stdin = ''): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    c.exec(command, (err, ch) => {
      if (err) return reject(err);
      let code: number | null = null;
      let stderr = '';
      ch.on('exit', (x: number | null) => (code = x)).on('close', () => resolve({ code, stderr }));
      ch.resume();
      ch.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      ch.end(stdin);
    });
  });
}

async function through(bastion: Client, addr: string): Promise<Client> {
  const sock = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
    bastion.forwardOut('127.0.0.1', 0, addr, 22, (err, s) => (err ? reject(err) : resolve(s))),
  );
  return connect({ sock });
}

function rulesOf(target: string): string {
  const dir = join(rulesDir!, target);
  const sets = existsSync(join(dir, 'ipsets')) ? readFileSync(join(dir, 'ipsets'), 'utf8') : '';
  return `${readFileSync(join(dir, 'rules.v4'), 'utf8')}${SPLIT_V6}\n${readFileSync(join(dir, 'rules.v6'), 'utf8')}${SPLIT_SETS}\n${sets}`;
}

async function one(bastion: Client, target: string, addr: string): Promise<void> {
  const first = await through(bastion, addr);
  try {
    const p = await run(first, `sh -c '${PREPARE.replace(/'/g, `'\\''`)}'`, rulesOf(target));
    if (p.code !== 0) throw new Error(`${target}: prepare exited ${p.code}: ${p.stderr.trim()}`);
    // The proof: a connection made after the load.
    const second = await through(bastion, addr);
    try {
      const c = await run(second, `sh -c '${CONFIRM.replace(/'/g, `'\\''`)}'`);
      if (c.code !== 0) throw new Error(`${target}: confirm exited ${c.code}: ${c.stderr.trim()}`);
    } finally {
      second.end();
    }
  } finally {
    first.end();
  }
}

const t0 = performance.now();
const bastion = await connect({ host: bastionAddr, port: 22 });
let ok = 0;
let failed = 0;
const queue = targets.map((t) => t.split('=') as [string, string]);
await Promise.all(
  Array.from({ length: Math.min(parallel, queue.length) }, async () => {
    for (let t = queue.shift(); t !== undefined; t = queue.shift()) {
      try {
        await one(bastion, t[0], t[1]);
        ok++;
      } catch (err) {
        failed++;
        process.stderr.write(`safe-floor: ${(err as Error).message}\n`);
      }
    }
  }),
);
const seconds = (performance.now() - t0) / 1000;
bastion.end();
process.stdout.write(`${JSON.stringify({ seconds, ok, failed })}\n`);
