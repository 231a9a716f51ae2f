// The floor: the least any tool can do per host through one bastion. One ssh2
// connection to the bastion, then per target a forwarded channel, an SSH
// handshake over it and one trivial command (`true`), P targets at a time.
// Deliberately independent of src/: it is what fleetfw is measured against.
//   tsx bench/floor.ts BASTION_ADDR KEY_FILE PARALLEL TARGET_ADDR...
// Prints {"seconds": S, "ok": N, "failed": N} (time from the first connect to the last exit).
import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';

const { Client } = ssh2;
type Client = InstanceType<typeof Client>;

const [bastionAddr, keyFile, parallelArg, ...targets] = process.argv.slice(2);
if (!bastionAddr || !keyFile || !parallelArg) throw new Error('usage: floor.ts BASTION_ADDR KEY_FILE PARALLEL TARGET_ADDR...');
const privateKey = readFileSync(keyFile);
const parallel = Number(parallelArg);

function connect(config: ssh2.ConnectConfig): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.once('ready', () => resolve(c)).once('error', reject);
    c.connect({ username: 'root', privateKey, readyTimeout: 30_000, ...config });
  });
}

function run(c: Client, command: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    c.exec(command, (err, ch) => {
      if (err) return reject(err);
      let code: number | null = null;
      ch.on('exit', (x: number | null) => (code = x)).on('close', () => resolve(code));
      ch.resume();
      ch.stderr.resume();
    });
  });
}

async function one(bastion: Client, addr: string): Promise<void> {
  const sock = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
    bastion.forwardOut('127.0.0.1', 0, addr, 22, (err, s) => (err ? reject(err) : resolve(s))),
  );
  const c = await connect({ sock });
  try {
    if ((await run(c, 'true')) !== 0) throw new Error(`${addr}: true failed`);
  } finally {
    c.end();
  }
}

const t0 = performance.now();
const bastion = await connect({ host: bastionAddr, port: 22 });
let ok = 0;
let failed = 0;
const queue = [...targets];
await Promise.all(
  Array.from({ length: Math.min(parallel, queue.length) }, async () => {
    for (let addr = queue.shift(); addr !== undefined; addr = queue.shift()) {
      try {
        await one(bastion, addr);
        ok++;
      } catch (err) {
        failed++;
        process.stderr.write(`floor: ${addr}: ${(err as Error).message}\n`);
      }
    }
  }),
);
const seconds = (performance.now() - t0) / 1000;
bastion.end();
process.stdout.write(`${JSON.stringify({ seconds, ok, failed })}\n`);
