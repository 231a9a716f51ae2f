// The lab itself, end to end: real namespaces, real sshd, real netfilter.
// Needs root; fails (never skips) when root or a tool is missing.
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertLabPrerequisites,
  attachLab,
  destroyAllLabs,
  OPERATOR,
  startLab,
  withLab,
  type Lab,
  type LabSpec,
} from '../src/lab/lab.js';
import { listNamespaces } from '../src/lab/netns.js';

const spec: LabSpec = {
  hosts: [
    { name: 'tunnel-1', public: '203.0.113.10', private: '192.0.2.10', public6: '2001:db8::10', interfaces: { public: 'eth0', private: 'eth1' }, sshPort: 22, user: 'root', bastion: true },
    { name: 'web-1', public: '203.0.113.11', private: '192.0.2.11', interfaces: { public: 'eth0', private: 'eth1' }, sshPort: 22, user: 'root' },
    { name: 'db-1', private: '192.0.2.12', interfaces: { public: 'eth0', private: 'ens4' }, sshPort: 22, user: 'deploy' },
  ],
  externals: [
    { name: 'internet', address: '203.0.113.200', address6: '2001:db8::200', side: 'public' },
    { name: 'intruder', address: '192.0.2.250', side: 'private' },
  ],
};

/** Live (non-zombie) processes whose command line mentions the lab dir: its sshds, anchors, listeners. */
function processesOf(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dir)) found.push(`${pid}: ${cmd}`);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

describe('lab', () => {
  let lab: Lab;
  const rootNetns = readlinkSync('/proc/self/ns/net');

  beforeAll(async () => {
    assertLabPrerequisites();
    const t0 = Date.now();
    lab = await startLab(spec);
    console.log(`lab ${lab.prefix}: 3 hosts up in ${Date.now() - t0} ms`);
  });

  afterAll(async () => {
    await lab?.stop();
  });

  it('keeps every namespace and address out of the machine’s own network namespace', () => {
    expect(readlinkSync('/proc/self/ns/net')).toBe(rootNetns);
    expect(listNamespaces(`${lab.prefix}-`).length).toBe(1 + 3 + 2 + 1);
    expect(lab.netnsOf('db-1')).toMatch(new RegExp(`^${lab.prefix}-`));
    expect(lab.netnsOf(OPERATOR)).not.toBe(lab.netnsOf('internet'));
    expect(() => lab.netnsOf('nope')).toThrow(/no host/);
    // S1's addressing, derived: the legacy operator place and one subnet per side and family.
    expect(lab.operator).toEqual({ address: '203.0.113.250' });
    expect(lab.subnets).toEqual({ public: ['203.0.113.0/24', '2001:db8::/64'], private: ['192.0.2.0/24'] });
    expect(lab.hostDir('db-1')).toBe(`${lab.dir}/db-1`);
  });

  it('lets the operator reach the bastion’s sshd', async () => {
    expect(await lab.probe(OPERATOR, '203.0.113.10', 'tcp', 22)).toBe('open');
  });

  it('logs in through the bastion as the non-root user and sudoes', async () => {
    const r = await lab.exec(OPERATOR, [
      'ssh', '-F', lab.sshConfigFile, '-o', `UserKnownHostsFile=${lab.knownHostsFile}`, '-o', 'StrictHostKeyChecking=yes',
      '-J', 'tunnel-1', 'db-1', 'sudo', '-n', 'id', '-u',
    ], { timeoutMs: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('0');
    expect(r.code).toBe(0);
    const who = await lab.exec(OPERATOR, ['ssh', '-F', lab.sshConfigFile, '-J', 'tunnel-1', 'db-1', 'id', '-un'], { timeoutMs: 20_000 });
    expect(who.stdout.trim()).toBe('deploy');
    // web-1 is reached by its private address, whose known_hosts entry is hashed.
    const web = await lab.exec(OPERATOR, ['ssh', '-F', lab.sshConfigFile, '-J', 'tunnel-1', 'web-1', 'hostname'], { timeoutMs: 20_000 });
    expect(web.stdout.trim()).toBe('web-1');
  });

  it('writes known_hosts in both plain and hashed form, and an agent holding the key', async () => {
    const kh = readFileSync(lab.knownHostsFile, 'utf8');
    expect(kh).toMatch(/^tunnel-1,203\.0\.113\.10 ssh-ed25519 /m);
    expect(kh).toMatch(/^\|1\|[A-Za-z0-9+/=]+\|[A-Za-z0-9+/=]+ ssh-ed25519 /m);
    expect(lab.agentSocket).toBeDefined();
    const r = await lab.exec(OPERATOR, ['ssh-add', '-l'], { env: { SSH_AUTH_SOCK: lab.agentSocket as string } });
    expect(r.stdout).toContain('ED25519');
  });

  it('gives every host its own hostname, /etc/iptables and /var/lib/fleetfw', async () => {
    for (const h of ['tunnel-1', 'web-1', 'db-1']) {
      expect((await lab.exec(h, ['hostname'])).stdout.trim()).toBe(h);
    }
    expect((await lab.exec('tunnel-1', ['sh', '-c', 'echo mine > /etc/iptables/marker && echo s > /var/lib/fleetfw/marker'])).code).toBe(0);
    expect((await lab.exec('tunnel-1', ['cat', '/etc/iptables/marker'])).stdout).toBe('mine\n');
    expect((await lab.exec('web-1', ['test', '-e', '/etc/iptables/marker'])).code).toBe(1);
    expect((await lab.exec('web-1', ['test', '-e', '/var/lib/fleetfw/marker'])).code).toBe(1);
    expect(existsSync('/etc/iptables/marker')).toBe(false);
    expect(existsSync('/var/lib/fleetfw/marker')).toBe(false);
    const ifaces = (await lab.exec('db-1', ['ip', '-br', 'addr'])).stdout;
    expect(ifaces).toMatch(/^ens4\S*\s+UP\s+192\.0\.2\.12\/24/m);
    expect(ifaces).toMatch(/^eth0\S*\s+UP/m);
  });

  it('tells open, refused and timeout apart (tcp, udp, icmp)', async () => {
    await lab.listen('web-1', 'tcp', 8080);
    await lab.listen('web-1', 'udp', 5353);
    expect(await lab.probe('internet', '203.0.113.11', 'tcp', 8080)).toBe('open');
    expect(await lab.probe('intruder', '192.0.2.11', 'tcp', 8080)).toBe('open');
    expect(await lab.probe('internet', '203.0.113.11', 'udp', 5353)).toBe('open');
    expect(await lab.probe('internet', '203.0.113.11', 'icmp')).toBe('open');
    expect(await lab.probe('internet', 'tunnel-1', 'tcp', 22, { family: 6 })).toBe('open');
    expect(await lab.probe('internet', '203.0.113.11', 'udp', 5354)).toBe('refused');
    // db-1 has no public side, so the internet has no route to the lan.
    expect(await lab.probe('internet', '192.0.2.12', 'tcp', 22)).toBe('unreachable');

    const ipt = (args: string[]) => lab.exec('web-1', ['iptables', ...args]);
    expect((await ipt(['-I', 'INPUT', '-p', 'tcp', '--dport', '8080', '-j', 'REJECT', '--reject-with', 'tcp-reset'])).code).toBe(0);
    expect(await lab.probe('internet', '203.0.113.11', 'tcp', 8080)).toBe('refused');
    expect((await ipt(['-I', 'INPUT', '-p', 'icmp', '-j', 'REJECT'])).code).toBe(0);
    expect(await lab.probe('internet', '203.0.113.11', 'icmp')).toBe('refused');

    expect((await ipt(['-F', 'INPUT'])).code).toBe(0);
    expect((await ipt(['-A', 'INPUT', '-p', 'tcp', '--dport', '8080', '-j', 'DROP'])).code).toBe(0);
    expect((await ipt(['-A', 'INPUT', '-p', 'udp', '--dport', '5353', '-j', 'DROP'])).code).toBe(0);
    expect((await ipt(['-A', 'INPUT', '-p', 'icmp', '-j', 'DROP'])).code).toBe(0);
    const t0 = Date.now();
    const dropped = await Promise.all([
      lab.probe('internet', '203.0.113.11', 'tcp', 8080, { timeoutMs: 800 }),
      lab.probe('internet', '203.0.113.11', 'udp', 5353, { timeoutMs: 800 }),
      lab.probe('internet', '203.0.113.11', 'icmp', undefined, { timeoutMs: 800 }),
    ]);
    expect(dropped).toEqual(['timeout', 'timeout', 'timeout']);
    expect(Date.now() - t0).toBeLessThan(3000);
    // The rules are web-1's alone.
    expect(await lab.probe('internet', '203.0.113.10', 'icmp')).toBe('open');
    expect((await ipt(['-F', 'INPUT'])).code).toBe(0);
  });

  it('reboots a host back to what its rules.v4 / rules.v6 say', async () => {
    const v4 = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', '-A INPUT -p tcp --dport 8081 -j REJECT --reject-with tcp-reset', 'COMMIT', ''].join('\n');
    const v6 = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]', 'COMMIT', ''].join('\n');
    expect((await lab.exec('web-1', ['sh', '-c', 'cat > /etc/iptables/rules.v4'], { input: v4 })).code).toBe(0);
    expect((await lab.exec('web-1', ['sh', '-c', 'cat > /etc/iptables/rules.v6'], { input: v6 })).code).toBe(0);
    // Live-only state that a reboot must wipe: a rule, a user chain, a nat table,
    // tables left empty (a boot makes only the tables the files name), a policy.
    const live = [
      'iptables -N SCRATCH',
      'iptables -A INPUT -p tcp --dport 8082 -j DROP',
      'iptables -t nat -A POSTROUTING -j ACCEPT',
      'iptables -t raw -A PREROUTING -j ACCEPT && iptables -t raw -F',
      'ip6tables -t mangle -P OUTPUT DROP',
      'ip6tables -t nat -A OUTPUT -j ACCEPT && ip6tables -t nat -F',
    ];
    for (const cmd of live) expect((await lab.exec('web-1', ['sh', '-c', cmd])).code, cmd).toBe(0);

    await lab.reboot('web-1');

    const saved = (await lab.exec('web-1', ['iptables-save'])).stdout;
    const saved6 = (await lab.exec('web-1', ['ip6tables-save'])).stdout;
    expect(saved).toMatch(/-A INPUT -p tcp -m tcp --dport 8081 -j REJECT --reject-with tcp-reset/);
    expect(saved).not.toMatch(/8082|SCRATCH/);
    expect(saved6).toMatch(/:FORWARD DROP/);
    const tables = (dump: string) => dump.split('\n').filter((l) => l.startsWith('*'));
    expect(tables(saved)).toEqual(['*filter']);
    expect(tables(saved6)).toEqual(['*filter']);
    await lab.listen('web-1', 'tcp', 8081);
    expect(await lab.probe('internet', '203.0.113.11', 'tcp', 8081)).toBe('refused');
    // Other hosts keep their (empty, fresh-install) rules files.
    expect((await lab.exec('tunnel-1', ['cat', '/etc/iptables/rules.v4'])).stdout).toBe('');
  });

  it('restarts sshd and can be re-attached from another handle', async () => {
    await lab.restartSshd('db-1');
    const again = await attachLab(lab.dir);
    expect(again.netnsOf('db-1')).toBe(lab.netnsOf('db-1'));
    const r = await again.exec(OPERATOR, ['ssh', '-F', again.sshConfigFile, '-J', 'tunnel-1', 'db-1', 'hostname'], { timeoutMs: 20_000 });
    expect(r.stdout.trim()).toBe('db-1');
  });

  it('leaves no namespace, sshd or directory behind after stop()', async () => {
    const { dir, prefix } = lab;
    expect(processesOf(dir).length).toBeGreaterThan(0);
    const t0 = Date.now();
    await lab.stop();
    console.log(`lab ${prefix}: stopped in ${Date.now() - t0} ms`);
    expect(listNamespaces(`${prefix}-`)).toEqual([]);
    expect(processesOf(dir)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    await lab.stop(); // idempotent
    await expect(lab.exec('web-1', ['true'])).rejects.toThrow(/gone/);
  });
});

describe('lab teardown on failure', () => {
  const small: LabSpec = {
    hosts: [{ name: 'solo', public: '203.0.113.20', private: '192.0.2.20', interfaces: { public: 'eth0', private: 'eth1' }, sshPort: 2222, user: 'ops' }],
    externals: [],
  };

  beforeAll(() => assertLabPrerequisites());

  it('withLab tears the lab down when an assertion inside fails', async () => {
    let seen: { dir: string; prefix: string } | undefined;
    await expect(
      withLab(small, async (lab) => {
        seen = { dir: lab.dir, prefix: lab.prefix };
        expect(await lab.probe(OPERATOR, '203.0.113.20', 'tcp', 2222)).toBe('open');
        expect('this assertion').toBe('failing');
      }),
    ).rejects.toThrow(/failing/);
    expect(seen).toBeDefined();
    expect(listNamespaces(`${seen!.prefix}-`)).toEqual([]);
    expect(processesOf(seen!.dir)).toEqual([]);
    expect(existsSync(seen!.dir)).toBe(false);
  });

  it('destroyAllLabs removes leftovers of a given prefix', async () => {
    // A prefix of our own: other labs (other test files) may be running right now.
    const prefix = `ffwz${randomBytes(2).toString('hex')}`;
    const lab = await startLab(small, { prefix });
    const removed = await destroyAllLabs(prefix);
    expect(removed.sort()).toEqual([`${prefix}-h-solo`, `${prefix}-op`, `${prefix}-sw`]);
    expect(listNamespaces(`${prefix}-`)).toEqual([]);
    expect(existsSync(lab.dir)).toBe(false);
    await lab.stop();
  });

  it('refuses a spec that would leave the documentation ranges', async () => {
    const bad: LabSpec = { hosts: [{ ...small.hosts[0]!, public: '8.8.8.8' }], externals: [] };
    await expect(startLab(bad)).rejects.toThrow(/host solo: 8\.8\.8\.8 is not in a documentation range/);
  });
});
