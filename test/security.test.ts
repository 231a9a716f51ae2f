// Issue 4: hostile input and secrets. Injection attempts through the inventory
// and templates are rejected at validation with exact messages (exit 3,
// nothing sent); a seeded fuzz shows no input can change the structure of a
// rendered rule set; an apply with a passphrase-protected key (through
// ssh-agent) leaves neither key nor passphrase in any output, log or host file.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.js';
import { isTemplateOnDisk, parseInventory } from '../src/inventory/load.js';
import { OPERATOR, type Lab } from '../src/lab/lab.js';
import { loadTemplates } from '../src/render/load-templates.js';
import { renderFleet } from '../src/render/render.js';
import { recordResult } from './results.js';
import { type CliResult, fleetfw, historyLog, inventoryPath, ROOT, scratchFleet, startInventoryLab, writeTemplate } from './support.js';

const S1 = inventoryPath('s1');
const S1_TEXT = readFileSync(S1, 'utf8');
const HOSTS = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];
let lab: Lab;

beforeAll(async () => {
  lab = await startInventoryLab(S1);
});

afterAll(async () => {
  await lab?.stop();
});

/** [name, text in s1.yaml, replacement, expected problem lines after "F:"] — F is the inventory path. */
const INVENTORY_CASES: Array<[string, string, string, string[]]> = [
  ['host name with ;', '  mysql-2:\n', '  "mysql-2;reboot":\n', [
    '39:3: hosts["mysql-2;reboot"]: "mysql-2;reboot" is not a valid host name (1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit, no "..")',
    '59:5: intents[14]: unknown host, group or external "mysql-2" (did you mean "mysql-1"?)',
  ]],
  ['host name with U+202E', '  mysql-2:\n', '  "mysql\u202e2":\n', [
    '39:3: hosts["mysql\\u202e2"]: "mysql\\u202e2" is not a valid host name (1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit, no "..")',
    '59:5: intents[14]: unknown host, group or external "mysql-2" (did you mean "mysql-1"?)',
  ]],
  ['host name with a newline', '  mysql-2:\n', '  "mysql-2\\n-A INPUT -j ACCEPT":\n', [
    '39:3: hosts["mysql-2\\n-A INPUT -j ACCEPT"]: "mysql-2\\n-A INPUT -j ACCEPT" is not a valid host name (1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit, no "..")',
    '59:5: intents[14]: unknown host, group or external "mysql-2" (did you mean "mysql-1"?)',
  ]],
  ['address with ;', 'private: 192.0.2.14\n', 'private: "192.0.2.14; reboot"\n', ['37:14: hosts.mysql-1.private: "192.0.2.14; reboot" is not an IPv4 address']],
  ['address with $()', 'private: 192.0.2.14\n', 'private: "$(reboot)"\n', ['37:14: hosts.mysql-1.private: "$(reboot)" is not an IPv4 address']],
  ['address with fullwidth digits', 'private: 192.0.2.14\n', 'private: "１９２.０.２.１４"\n', [
    '37:14: hosts.mysql-1.private: "\\uff11\\uff19\\uff12.\\uff10.\\uff12.\\uff11\\uff14" is not an IPv4 address',
  ]],
  ['interface with backticks', 'private: eth1 }', 'private: "eth1`reboot`" }', [
    '12:40: defaults.interfaces.private: "eth1`reboot`" is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -, not starting with "-")',
  ]],
  ['interface with a newline and a rule', 'private: eth1 }', 'private: "eth1\\n-A INPUT -j ACCEPT" }', [
    '12:40: defaults.interfaces.private: "eth1\\n-A INPUT -j ACCEPT" is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -, not starting with "-")',
  ]],
  ['interface with a rule option', 'private: eth1 }', 'private: "eth1 -j ACCEPT" }', [
    '12:40: defaults.interfaces.private: "eth1 -j ACCEPT" is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -, not starting with "-")',
  ]],
  ['interface that is an option', 'private: eth1 }', 'private: "--help" }', [
    '12:40: defaults.interfaces.private: "--help" is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -, not starting with "-")',
  ]],
  ['interface with NUL', 'private: eth1 }', 'private: "eth\\0" }', [
    '12:40: defaults.interfaces.private: "eth\\u0000" is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -, not starting with "-")',
  ]],
  ['interface in fullwidth letters', 'private: eth1 }', 'private: "ｅｔｈ1" }', [
    '12:40: defaults.interfaces.private: "\\uff45\\uff54\\uff481" is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -, not starting with "-")',
  ]],
  ['interface of 5000 characters', 'private: eth1 }', `private: "${'e'.repeat(5000)}" }`, [
    `12:40: defaults.interfaces.private: "${'e'.repeat(48)}..." (5000 characters) is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -, not starting with "-")`,
  ]],
  ['ssh user with ;', 'ssh: { user: root }', 'ssh: { user: "root;id" }', [
    '13:16: defaults.ssh.user: "root;id" is not a valid user name (1-32 of A-Z a-z 0-9 _ . -, not starting with a digit, "." or "-")',
  ]],
  ['operators with a rule option', 'operators: [0.0.0.0/0]', 'operators: ["0.0.0.0/0 -j ACCEPT"]', [
    '6:13: operators[0]: "0.0.0.0/0 -j ACCEPT" has an invalid prefix length (expected 0-32)',
  ]],
  ['var with U+2028 and a rule', 'roles: [backend, mysql]\n    ssh:', 'roles: [backend, mysql]\n    vars: { port: "3306\u2028-A INPUT -j ACCEPT" }\n    ssh:', [
    '43:19: hosts.mysql-2.vars.port: "3306\\u2028-A INPUT -j ACCEPT" is not a valid value (an address, CIDR, port, port range, interface name or word of A-Z a-z 0-9 _ . : / -, at most 64 characters)',
  ]],
  ['var with $() and backticks', 'roles: [backend, mysql]\n    ssh:', 'roles: [backend, mysql]\n    vars: { port: "$(id)`id`" }\n    ssh:', [
    '43:19: hosts.mysql-2.vars.port: "$(id)`id`" is not a valid value (an address, CIDR, port, port range, interface name or word of A-Z a-z 0-9 _ . : / -, at most 64 characters)',
  ]],
  ['var that is a rule option', 'roles: [backend, mysql]\n    ssh:', 'roles: [backend, mysql]\n    vars: { port: "-j" }\n    ssh:', [
    '43:19: hosts.mysql-2.vars.port: "-j" is not a valid value (an address, CIDR, port, port range, interface name or word of A-Z a-z 0-9 _ . : / -, at most 64 characters)',
  ]],
];

/** [name, rule appended to roles/mysql.v4, expected problem lines]; mysql-2 has vars { y: eth0, z: "3306" }. */
const TEMPLATE_CASES: Array<[string, string, string[]]> = [
  ['reference after a non-slot option', '-A INPUT -m comment --comment {{ vars.z }} -j ACCEPT', [
    'T:4:31: hosts.mysql-1: {{ vars.z }} follows "--comment"; references may only fill -s, -d, -i, -o, --sport, --dport or multiport ports',
  ]],
  ['reference as a target', '-A INPUT -p tcp --dport 22 -j {{ vars.y }}', [
    'T:4:31: hosts.mysql-1: {{ vars.y }} follows "-j"; references may only fill -s, -d, -i, -o, --sport, --dport or multiport ports',
  ]],
  ['interface value in an address slot', '-A INPUT -s {{ vars.y }} -j ACCEPT', [
    'T:4:13: hosts.mysql-1: {{ vars.y }}: host mysql-1 has no var "y"',
    'T:4:13: hosts.mysql-2: {{ vars.y }} gives "eth0" (an interface name) but -s takes an address or a CIDR',
  ]],
  ['interface in a port slot', '-A INPUT -p tcp --dport {{ self.if.private }} -j ACCEPT', [
    'T:4:25: hosts.mysql-1: {{ self.if.private }} gives "eth1" (an interface name) but --dport takes a port or a port range',
  ]],
  ['reference with ;', '-A INPUT -s {{ vars.z;reboot }} -j ACCEPT', [
    'T:4:13: hosts.mysql-1: "{{ vars.z;reboot }}" is not a reference: write it as a whole word, e.g. {{ self.private }}',
  ]],
  ['reference with $()', '-A INPUT -s {{ host.$(reboot).private }} -j ACCEPT', [
    'T:4:13: hosts.mysql-1: "{{ host.$(reboot).private }}" is not a reference: write it as a whole word, e.g. {{ self.private }}',
  ]],
  ['reference with U+202E', '-A INPUT -s {{ host.mysql\u202e-1.private }} -j ACCEPT', [
    'T:4:13: hosts.mysql-1: "{{ host.mysql\\u202e-1.private }}" is not a reference: write it as a whole word, e.g. {{ self.private }}',
  ]],
  ['reference in fullwidth letters', '-A INPUT -s {{ ｈost.mysql-1.private }} -j ACCEPT', [
    'T:4:13: hosts.mysql-1: "{{ \\uff48ost.mysql-1.private }}" is not a reference: write it as a whole word, e.g. {{ self.private }}',
  ]],
];

function problemLines(r: CliResult): string[] {
  return r.stderr.split('\n').filter((l) => l.trim() !== '');
}

describe('injection through the inventory and templates', () => {
  it('every attempt is rejected at validation with its exact message (exit 3), nothing sent to any host', async () => {
    const logsBefore = await Promise.all(HOSTS.map((h) => historyLog(lab, h)));
    const failures: string[] = [];
    const check = async (name: string, prepare: (fleet: ReturnType<typeof scratchFleet>) => void, expected: (fleet: ReturnType<typeof scratchFleet>) => string[]) => {
      const fleet = scratchFleet('s1');
      try {
        prepare(fleet);
        const r = await fleetfw(lab, ['apply', '--inventory', fleet.inventory, '--yes', '--window', '5']);
        const want = expected(fleet);
        const got = problemLines(r);
        const ok = r.code === 3 && JSON.stringify(got) === JSON.stringify(want);
        recordResult('bad-input', name, { ok, ...(ok ? {} : { detail: `exit ${r.code}: ${got.join(' | ').slice(0, 300)}` }) });
        if (!ok) failures.push(`${name}: exit ${r.code}\n  got:  ${got.join('\n        ')}\n  want: ${want.join('\n        ')}`);
      } finally {
        fleet.cleanup();
      }
    };
    for (const [name, from, to, lines] of INVENTORY_CASES) {
      await check(
        `inventory: ${name}`,
        (f) => {
          expect(S1_TEXT, name).toContain(from);
          writeFileSync(f.inventory, S1_TEXT.replace(from, to));
        },
        (f) => [`fleetfw: invalid input (${lines.length} problem${lines.length > 1 ? 's' : ''}):`, ...lines.map((l) => `${f.inventory}:${l}`)],
      );
    }
    for (const [name, rule, lines] of TEMPLATE_CASES) {
      await check(
        `template: ${name}`,
        (f) => {
          writeFileSync(f.inventory, S1_TEXT.replace('roles: [backend, mysql]\n    ssh:', 'roles: [backend, mysql]\n    vars: { y: eth0, z: "3306" }\n    ssh:'));
          const role = readFileSync(join(f.templates, 'roles/mysql.v4'), 'utf8');
          writeTemplate(f.templates, 'roles/mysql.v4', `${role}*filter\n${rule}\nCOMMIT\n`);
        },
        () => [`fleetfw: invalid input (${lines.length} problem${lines.length > 1 ? 's' : ''}):`, ...lines.map((l) => l.replace(/^T:/, 'templates/roles/mysql.v4:'))],
      );
    }
    expect(failures).toEqual([]);
    // Validation runs before any connection: no host saw a transaction.
    expect(await Promise.all(HOSTS.map((h) => historyLog(lab, h)))).toEqual(logsBefore);
  });
});

// --- fuzz ---------------------------------------------------------------------

/** mulberry32: small, seeded, reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = [' ', ';', '$(', ')', '`', '"', "'", '\n', '\r', '\t', '\0', '-j ACCEPT', '-A INPUT', '--', '\\', '#', ',', '!', '*filter', 'COMMIT', '{{', '}}', '{{ self.private }}',
  '\u202e', '\u2028', '\u0085', '\u00a0', 'ｅｔｈ', '１', '192.0.2.1', '10.0.0.0/8', '::1', '/', ':', '-', '.', '0', '65536', 'eth0', 'a'.repeat(70),
  // Valid values too, so a good share of the inventories render and get their structure compared.
  '192.0.2.7', '198.51.100.0/24', '0.0.0.0/0', 'eth2', 'bond0.10', '8080', '1000:2000', '22'];

/**
 * Structure of a rendered rule set: every line with the values of typed slots
 * blanked out. Address matches go entirely: operators 0.0.0.0/0 renders no -s at
 * all, a narrower CIDR renders one, and that is a value, not a structure.
 */
function skeleton(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) =>
      l
        .replace(/ -[sd] \S+/g, '')
        .split(' ')
        .map((tok, i, all) => (/^(-i|-o|--sport|--dport|--sports|--dports)$/.test(all[i - 1] ?? '') ? '<v>' : tok))
        .join(' '),
    );
}

describe('fuzz: generated inventories through the library', () => {
  it('no input changes the structure of a rendered rule set; rejections are one-line, escaped messages', () => {
    const fleet = scratchFleet('s1');
    try {
      // A role that puts vars into address and port slots, so the fuzz reaches them too.
      const role = readFileSync(join(fleet.templates, 'roles/mysql.v4'), 'utf8');
      writeTemplate(fleet.templates, 'roles/mysql.v4', `${role}*filter\n-A INPUT -i {{ self.if.private }} -p tcp -s {{ vars.trusted }} --dport {{ vars.port }} -j ACCEPT\nCOMMIT\n`);
      const baseText = S1_TEXT.replace("  ssh: { user: root }\n", '  ssh: { user: root }\n  vars: { trusted: 192.0.2.99, port: "3306" }\n');
      const render = (text: string) => {
        const inv = parseInventory(text, 'fuzz.yaml', fleet.inventory, isTemplateOnDisk);
        return renderFleet(inv, loadTemplates(inv));
      };
      const baseline = new Map(render(baseText).map((h) => [h.host, { v4: skeleton(h.v4.text), v6: skeleton(h.v6.text) }]));
      // Scalars that reach rules: an address, an interface, the vars, an operator CIDR.
      const slots = ['private: 192.0.2.14', 'public: 203.0.113.12', 'private: eth1 }', 'trusted: 192.0.2.99', 'port: "3306"', 'operators: [0.0.0.0/0]'];
      const rnd = prng(20261121);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      let rendered = 0;
      let rejected = 0;
      const bad: string[] = [];
      for (let i = 0; i < 400; i++) {
        const slot = pick(slots);
        const [key, rest] = [slot.slice(0, slot.indexOf(':')), slot.slice(slot.indexOf(':') + 2)];
        const listed = rest.startsWith('[');
        let value = rest.replace(/^\[|\]$|^"|"$| }$/g, '');
        for (let n = 1 + Math.floor(rnd() * 3); n > 0; n--) {
          const at = Math.floor(rnd() * (value.length + 1));
          const op = rnd();
          value = op < 0.6 ? value.slice(0, at) + pick(PIECES) + value.slice(at) : op < 0.8 ? pick(PIECES) : value.slice(0, at);
        }
        const yamlValue = JSON.stringify(value); // a JSON string is a YAML double-quoted scalar
        const text = baseText.replace(slot, `${key}: ${listed ? `[${yamlValue}]` : yamlValue}${rest.endsWith(' }') ? ' }' : ''}`);
        try {
          for (const h of render(text)) {
            const want = baseline.get(h.host)!;
            for (const fam of ['v4', 'v6'] as const) {
              const text2 = h[fam].text;
              if (/[^\x20-\x7e\n]/.test(text2)) bad.push(`#${i} ${JSON.stringify(value)}: ${h.host} ${fam} has a control or non-ASCII character`);
              if (JSON.stringify(skeleton(text2)) !== JSON.stringify(want[fam])) bad.push(`#${i} ${JSON.stringify(value)}: ${h.host} ${fam} changed structure`);
            }
          }
          rendered++;
        } catch (e) {
          if (!(e instanceof InputError)) {
            bad.push(`#${i} ${JSON.stringify(value)}: not an InputError: ${(e as Error).message}`);
            continue;
          }
          rejected++;
          for (const p of e.problems) {
            if (/[^\x20-\x7e]/.test(p.message)) bad.push(`#${i} ${JSON.stringify(value)}: message not escaped: ${JSON.stringify(p.message)}`);
          }
          recordResult('bad-input', `fuzz #${i} (${key})`, { ok: true });
        }
      }
      console.log(`fuzz: 400 inventories, ${rendered} rendered with an unchanged structure, ${rejected} rejected`);
      expect(bad).toEqual([]);
      expect(rejected).toBeGreaterThan(100);
      expect(rendered).toBeGreaterThan(10);
    } finally {
      fleet.cleanup();
    }
  });
});

// --- secrets ------------------------------------------------------------------

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

describe('secrets', () => {
  it('an apply with a passphrase-protected key through ssh-agent leaves no key material or passphrase anywhere', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetfw-secret-'));
    const passphrase = `pp-${randomBytes(12).toString('hex')}`;
    const key = join(dir, 'id_enc');
    const sock = join(dir, 'agent.sock');
    const authorized = join(lab.dir, 'authorized_keys');
    const labKeys = readFileSync(authorized, 'utf8');
    let agentPid: number | undefined;
    const fleet = scratchFleet('s1');
    try {
      expect(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', 'fleetfw-secret-test', '-f', key]).status).toBe(0);
      const keyBody = readFileSync(key, 'utf8').split('\n').filter((l) => /^[A-Za-z0-9+/=]{20,}$/.test(l));
      expect(keyBody.length).toBeGreaterThan(2);
      // Only this key opens the hosts now: the apply below cannot have used another one.
      writeFileSync(authorized, readFileSync(`${key}.pub`, 'utf8'));
      const agent = spawnSync('ssh-agent', ['-a', sock], { encoding: 'utf8' });
      agentPid = Number(/SSH_AGENT_PID=(\d+)/.exec(agent.stdout)?.[1]);
      expect(agentPid).toBeGreaterThan(0);
      // ssh-add takes the passphrase from an askpass program: no terminal needed.
      const askpass = join(dir, 'askpass');
      writeFileSync(askpass, `#!/bin/sh\necho '${passphrase}'\n`, { mode: 0o700 });
      const add = spawnSync('ssh-add', [key], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SSH_AUTH_SOCK: sock, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0' } });
      expect(add.status, add.stderr).toBe(0);
      // The lab's client config without its IdentityFile lines: the agent is the only way in. And without
      // IdentitiesOnly, which (as in OpenSSH) would then allow no agent key but those of the default files.
      const sshConfig = join(dir, 'ssh_config');
      writeFileSync(sshConfig, readFileSync(lab.sshConfigFile, 'utf8').replace(/^\s*(IdentityFile|IdentitiesOnly) .*\n/gm, ''));
      const env: NodeJS.ProcessEnv = { ...process.env, FLEETFW_KNOWN_HOSTS: lab.knownHostsFile, FLEETFW_SSH_CONFIG: sshConfig, SSH_AUTH_SOCK: sock };
      delete env.FLEETFW_IDENTITY;
      const run = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
        new Promise<CliResult>((resolve) => {
          const t0 = Date.now();
          const child = spawn('ip', ['netns', 'exec', lab.netnsOf(OPERATOR), process.execPath, join(ROOT, 'dist/cli/main.js'), ...args], { env: { ...env, ...extra } });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (d) => (stdout += d));
          child.stderr.on('data', (d) => (stderr += d));
          child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr, ms: Date.now() - t0 }));
        });

      const role = readFileSync(join(fleet.templates, 'roles/backend.v4'), 'utf8');
      writeTemplate(fleet.templates, 'roles/backend.v4', `${role}*filter\n-A INPUT -i {{ self.if.private }} -p tcp --dport 9800 -j ACCEPT\nCOMMIT\n`);
      const outputs: CliResult[] = [];
      const applied = await run(['apply', '--inventory', fleet.inventory, '--yes', '--window', '10']);
      outputs.push(applied);
      expect(applied.code, applied.stdout + applied.stderr).toBe(0);
      outputs.push(await run(['status', '--inventory', fleet.inventory, '--format', 'json']));
      outputs.push(await run(['history', 'mysql-2', '--inventory', fleet.inventory]));
      // The encrypted file itself, with no agent: refused with advice, and no secret echoed.
      const noAgent = await run(['plan', '--inventory', fleet.inventory, '--limit', 'mysql-1', '--identity', key], { SSH_AUTH_SOCK: '' });
      outputs.push(noAgent);
      expect(noAgent.code).toBe(5);
      expect(noAgent.stdout).toContain(`! mysql-1: unreachable: mysql-1: identity file ${key}: it is encrypted and no passphrase is available (load it into ssh-agent with ssh-add)`);

      const secrets = [passphrase, ...keyBody];
      const leaks: string[] = [];
      const scan = (where: string, text: string) => {
        for (const s of secrets) if (text.includes(s)) leaks.push(`${where} contains ${s === passphrase ? 'the passphrase' : 'private key material'}`);
      };
      outputs.forEach((o, i) => scan(`output ${i}`, o.stdout + o.stderr));
      // Every host's state (history.log, generations' meta, retired transactions) and persisted rules.
      for (const h of HOSTS) {
        const r = await lab.exec(h, ['sh', '-c', 'find /var/lib/fleetfw /etc/iptables -type f -exec cat {} +']);
        scan(`${h}: /var/lib/fleetfw and /etc/iptables`, r.stdout);
        // Modes: state private to root, persisted rules 0640, nothing in the state readable by others.
        const modes = await lab.exec(h, ['sh', '-c', 'stat -c %a /var/lib/fleetfw /etc/iptables/rules.v4 /etc/iptables/rules.v6; find /var/lib/fleetfw -perm /o+rwx']);
        expect(modes.stdout.trim().split('\n'), h).toEqual(['700', '640', '640']);
      }
      // The lab's own logs (sshd per host, reboot logs).
      for (const f of filesUnder(lab.dir)) {
        if (statSync(f).size < 5_000_000) scan(f, readFileSync(f, 'latin1'));
      }
      expect(leaks).toEqual([]);
    } finally {
      writeFileSync(authorized, labKeys);
      if (agentPid) process.kill(agentPid, 'SIGTERM');
      fleet.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
