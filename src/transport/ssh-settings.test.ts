import { homedir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultSshConfig, type SshConfigReader, type SshConfigValues, type SshConfigView } from './ssh-config.js';
import { createSshSettings, describeEffectiveSsh, effectiveSsh, endpointOf, parseProxyJump, type SshFleetInput, type SshHostInput } from './ssh-settings.js';
import { TransportError } from './types.js';

const CFG = '/home/op/.ssh/config';

const bastion: SshHostInput = {
  name: 'tunnel-1',
  address: '203.0.113.10',
  addressLabel: 'public address',
  addresses: [
    { label: 'public address', address: '203.0.113.10' },
    { label: 'private address', address: '192.0.2.10' },
  ],
  inventory: {},
};
const target: SshHostInput = {
  name: 'mysql-1',
  address: '192.0.2.14',
  addressLabel: 'private address',
  addresses: [
    { label: 'public address', address: '203.0.113.14' },
    { label: 'private address', address: '192.0.2.14' },
    { label: 'public IPv6 address', address: '2001:db8::14' },
  ],
  bastion: 'tunnel-1',
  inventory: {},
};

/** What `ssh -G alias` would say with `set` in a config, each set keyword written at CFG:line (in order from 10). */
function view(alias: string, set: Partial<SshConfigValues> = {}, origins: Record<string, string[]> = {}): SshConfigView {
  const base: SshConfigValues = { ...defaultSshConfig(alias), user: 'op', identityFiles: ['id_rsa', 'id_ed25519'].map((f) => join(homedir(), '.ssh', f)) };
  const keyword: Record<string, string> = {
    hostname: 'hostname',
    user: 'user',
    port: 'port',
    identityFiles: 'identityfile',
    identitiesOnly: 'identitiesonly',
    identityAgent: 'identityagent',
    knownHostsFiles: 'userknownhostsfile',
    strictHostKeyChecking: 'stricthostkeychecking',
    connectTimeoutMs: 'connecttimeout',
    proxyJump: 'proxyjump',
    proxyCommand: 'proxycommand',
  };
  const map = new Map<string, string[]>(Object.entries(origins));
  Object.keys(set).forEach((k, i) => {
    const kw = keyword[k];
    if (kw && !map.has(kw)) map.set(kw, [`${CFG}:${10 + i}`]);
  });
  return { alias, values: { ...base, ...set }, origins: map };
}

const fleet: SshFleetInput = { agentSocket: '/run/agent.sock' };
const bastionEffective = effectiveSsh(bastion, view('tunnel-1'), fleet);
const throughBastion = (v: SshConfigView, f: SshFleetInput = fleet) =>
  effectiveSsh(target, v, f, { bastion: { host: bastion, view: view('tunnel-1'), effective: bastionEffective } });

describe('effectiveSsh: flag > inventory > ssh config > defaults, each with its source', () => {
  it('takes the ssh config where fleetfw and the inventory are silent, naming file:line', () => {
    const e = throughBastion(
      view('mysql-1', {
        user: 'deploy',
        port: 2222,
        identityFiles: ['/k/enc', '/k/good'],
        identitiesOnly: true,
        identityAgent: 'none',
        knownHostsFiles: ['/kh/db'],
        strictHostKeyChecking: 'accept-new',
        connectTimeoutMs: 2000,
      }),
    );
    expect(e.problems).toEqual([]);
    expect(e.user).toEqual({ value: 'deploy', source: `ssh config ${CFG}:10` });
    expect(e.port).toEqual({ value: 2222, source: `ssh config ${CFG}:11` });
    expect(e.identityFiles).toEqual({ value: ['/k/enc', '/k/good'], source: `ssh config ${CFG}:12` });
    expect(e.identitiesOnly.value).toBe(true);
    expect(e.agent).toEqual({ value: null, source: `ssh config ${CFG}:14` });
    expect(e.knownHostsFiles.value).toEqual(['/kh/db']);
    expect(e.hostKeys).toEqual({ value: 'accept-new', source: `StrictHostKeyChecking accept-new, ssh config ${CFG}:16` });
    expect(e.connectTimeoutMs).toEqual({ value: 2000, source: `ssh config ${CFG}:17` });
    expect(endpointOf(e)).toMatchObject({
      address: '192.0.2.14',
      bastion: 'tunnel-1',
      user: 'deploy',
      port: 2222,
      identityFiles: ['/k/enc', '/k/good'],
      identitiesOnly: true,
      agentSocket: null,
      noAgentReason: `IdentityAgent none, ssh config ${CFG}:14`,
      knownHostsFiles: ['/kh/db'],
      acceptNewHostKeys: true,
      readyTimeoutMs: 2000,
    });
  });

  it('puts the inventory over the ssh config, and flags over both', () => {
    const host = { ...target, inventory: { user: 'root', port: 22, identityFile: '~/.ssh/fleet' } };
    const v = view('mysql-1', { user: 'deploy', port: 2222, identityFiles: ['/k/cfg'], knownHostsFiles: ['/kh/cfg'], strictHostKeyChecking: 'yes' });
    const inv = effectiveSsh(host, v, { ...fleet, inventoryKnownHosts: '~/kh-inventory' });
    expect(inv.user).toEqual({ value: 'root', source: 'inventory ssh.user' });
    expect(inv.port).toEqual({ value: 22, source: 'inventory ssh.port' });
    expect(inv.identityFiles).toEqual({ value: [join(homedir(), '.ssh/fleet')], source: 'inventory ssh.identity' });
    expect(inv.knownHostsFiles).toEqual({ value: [join(homedir(), 'kh-inventory')], source: 'inventory settings.known_hosts' });
    expect(inv.hostKeys.value).toBe('known-only');
    const flags = effectiveSsh(host, v, {
      ...fleet,
      inventoryKnownHosts: '~/kh-inventory',
      identity: { value: '/k/flag', source: '--identity' },
      knownHosts: { value: '/kh/env', source: 'FLEETFW_KNOWN_HOSTS' },
      acceptNewHostKeys: true,
    });
    expect(flags.identityFiles).toEqual({ value: ['/k/flag'], source: '--identity' });
    expect(flags.knownHostsFiles).toEqual({ value: ['/kh/env'], source: 'FLEETFW_KNOWN_HOSTS' });
    expect(flags.hostKeys).toEqual({ value: 'accept-new', source: '--accept-new-host-keys' });
  });

  it('says "ssh default" for what the config does not set, "ssh config" where only ssh -G knows', () => {
    const e = throughBastion(view('mysql-1'));
    expect(e.port.source).toBe('ssh default');
    expect(e.connectTimeoutMs).toEqual({ value: 15_000, source: 'fleetfw default' });
    expect(e.agent).toEqual({ value: '/run/agent.sock', source: 'SSH_AUTH_SOCK' });
    expect(e.hostKeys).toEqual({ value: 'known-only', source: 'StrictHostKeyChecking ask, ssh default: fleetfw never asks, so as yes' });
    // ssh's default identity list: only the files that exist (none in a test's home, most likely).
    expect(e.identityFiles.source).toBe('ssh default, those that exist');
    const { origins: _, ...unscanned } = view('mysql-1', { user: 'm' });
    expect(throughBastion(unscanned).user).toEqual({ value: 'm', source: 'ssh config' });
  });

  it('maps StrictHostKeyChecking no onto accept-new and says where it was asked', () => {
    const e = throughBastion(view('mysql-1', { strictHostKeyChecking: 'no' }));
    expect(e.hostKeys.value).toBe('accept-new');
    expect(e.hostKeys.source).toMatch(/^StrictHostKeyChecking no, ssh config .*:10: as accept-new, a changed key is still refused$/);
    expect(e.weakerHostKeysAsked).toBe(`ssh config ${CFG}:10`);
  });
});

describe('effectiveSsh: HostName', () => {
  it('accepts the address fleetfw dials, or another inventory address of the same host', () => {
    expect(throughBastion(view('mysql-1', { hostname: '192.0.2.14' })).address).toEqual({
      value: '192.0.2.14',
      source: `inventory private address; HostName 192.0.2.14 (ssh config ${CFG}:10) is the same address`,
    });
    const pub = throughBastion(view('mysql-1', { hostname: '203.0.113.14' }));
    expect(pub.problems).toEqual([]);
    expect(pub.address.value).toBe('192.0.2.14');
    expect(pub.address.source).toContain('is its public address, the same host');
    expect(throughBastion(view('mysql-1', { hostname: '2001:DB8:0::14' })).problems).toEqual([]);
  });

  it('refuses an address that is not the host, naming the line and the inventory', () => {
    const e = throughBastion(view('mysql-1', { hostname: '192.0.2.99' }));
    expect(e.problems).toEqual([
      `ssh config ${CFG}:10 gives HostName 192.0.2.99, an address, which is not mysql-1 in the inventory (public 203.0.113.14, private 192.0.2.14, public IPv6 2001:db8::14): ` +
        `fleetfw connects to the inventory's private address 192.0.2.14 through bastion tunnel-1, and would not reach the machine ssh reaches; ` +
        'make HostName one of the inventory\'s addresses (or remove it), or fix the inventory',
    ]);
  });

  it('looks a name up: one of the host\'s addresses agrees, anything else is refused', () => {
    const v = view('mysql-1', { hostname: 'db1.example' });
    const ok = effectiveSsh(target, v, fleet, { lookup: { addresses: ['198.51.100.7', '203.0.113.14'] } });
    expect(ok.problems).toEqual([]);
    expect(ok.address.source).toContain('HostName db1.example (ssh config /home/op/.ssh/config:10) resolves to its public address 203.0.113.14, the same host');
    expect(effectiveSsh(target, v, fleet, { lookup: { addresses: ['198.51.100.7'] } }).problems[0]).toContain('a name that resolves to 198.51.100.7, which is not mysql-1');
    expect(effectiveSsh(target, v, fleet, { lookup: { error: 'ENOTFOUND' } }).problems[0]).toContain('a name that does not resolve here (ENOTFOUND)');
  });
});

describe('effectiveSsh: ProxyJump and ProxyCommand', () => {
  it('accepts a ProxyJump that names the bastion: its name, an address, the same user and port', () => {
    for (const jump of ['tunnel-1', 'op@tunnel-1', 'tunnel-1:22', 'ssh://op@203.0.113.10:22', '192.0.2.10']) {
      expect(throughBastion(view('mysql-1', { proxyJump: jump })).problems, jump).toEqual([]);
    }
    const lines = describeEffectiveSsh(throughBastion(view('mysql-1', { proxyJump: 'tunnel-1' })));
    expect(lines).toContain(`ssh mysql-1: proxy jump tunnel-1: the bastion tunnel-1, the path fleetfw takes (ssh config ${CFG}:10)`);
  });

  it('refuses any other jump, several jumps, another user or port, and any jump for a bastion', () => {
    const problem = (jump: string) => throughBastion(view('mysql-1', { proxyJump: jump })).problems[0] ?? '';
    expect(problem('jump-2')).toBe(
      `ssh config ${CFG}:10 says ProxyJump jump-2, but fleetfw reaches mysql-1 only through its bastion tunnel-1 (203.0.113.10), and jump-2 is not it: ` +
        "make it ProxyJump tunnel-1 (or remove it), or change mysql-1's bastion in the inventory",
    );
    expect(problem('tunnel-1,other')).toContain('that is 2 jumps');
    expect(problem('admin@tunnel-1')).toContain('logs in to the bastion tunnel-1 as admin, and fleetfw logs in to it as op (ssh default)');
    expect(problem('tunnel-1:2200')).toContain('on port 2200, and fleetfw uses port 22');
    const b = effectiveSsh(bastion, view('tunnel-1', { proxyJump: 'corp-jump' }), fleet);
    expect(b.problems[0]).toContain('fleetfw connects to the bastion tunnel-1 directly (203.0.113.10) and does not chain jump hosts');
  });

  it('refuses ProxyCommand', () => {
    const e = throughBastion(view('mysql-1', { proxyCommand: 'ssh -W %h:%p corp' }));
    expect(e.problems[0]).toContain('says ProxyCommand ssh -W %h:%p corp, but fleetfw runs no proxy command: it reaches mysql-1 through its bastion tunnel-1');
  });

  it('parses ProxyJump hops', () => {
    expect(parseProxyJump('a@[2001:db8::1]:2222,b')).toEqual([{ user: 'a', host: '2001:db8::1', port: 2222 }, { host: 'b' }]);
    expect(parseProxyJump('a b')).toBeUndefined();
  });
});

describe('createSshSettings', () => {
  function reader(views: Record<string, SshConfigView>): SshConfigReader & { reads: string[] } {
    const reads: string[] = [];
    return {
      reads,
      read: async (alias) => {
        reads.push(alias);
        return views[alias] ?? view(alias);
      },
      runs: () => reads.length,
    };
  }

  it('resolves a host (and its bastion) once, on first use, and prints each once', async () => {
    const r = reader({});
    const printed: string[] = [];
    const s = createSshSettings({ hosts: [bastion, target, { ...target, name: 'mysql-2', address: '192.0.2.15' }], fleet, reader: r, onResolved: (e) => printed.push(e.name) });
    await Promise.all([s.endpoint('mysql-1'), s.endpoint('mysql-1'), s.endpoint('tunnel-1')]);
    expect(printed.sort()).toEqual(['mysql-1', 'tunnel-1']);
    expect(new Set(r.reads)).toEqual(new Set(['mysql-1', 'tunnel-1']));
  });

  it('refuses a host with a config problem, and every host behind a refused bastion, as config errors', async () => {
    const s = createSshSettings({
      hosts: [bastion, target],
      fleet,
      reader: reader({ 'tunnel-1': view('tunnel-1', { proxyCommand: 'nc x 22' }) }),
    });
    const err = await s.endpoint('mysql-1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect(err).toMatchObject({ reason: 'config', host: 'mysql-1', hop: 'target' });
    expect((err as Error).message).toMatch(/^mysql-1: not contacted: its bastion tunnel-1 is refused: ssh config .* says ProxyCommand nc x 22/);
    await expect(s.endpoint('tunnel-1')).rejects.toMatchObject({ reason: 'config', hop: 'bastion' });
  });

  it('says StrictHostKeyChecking no once for the whole run', async () => {
    const notices: string[] = [];
    const hosts = [bastion, target, { ...target, name: 'mysql-2', address: '192.0.2.15' }];
    const s = createSshSettings({
      hosts,
      fleet,
      reader: reader(Object.fromEntries(hosts.map((h) => [h.name, view(h.name, { strictHostKeyChecking: 'no' })]))),
      onNotice: (m) => notices.push(m),
    });
    await Promise.all(hosts.map((h) => s.endpoint(h.name)));
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatch(/StrictHostKeyChecking no for .*never accepts a changed host key/);
  });

  it('looks up a HostName name, and refuses the host when it does not resolve', async () => {
    const asked: string[] = [];
    const s = createSshSettings({
      hosts: [bastion, target],
      fleet,
      reader: reader({ 'mysql-1': view('mysql-1', { hostname: 'db.invalid' }) }),
      lookup: async (name) => {
        asked.push(name);
        throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      },
    });
    await expect(s.endpoint('mysql-1')).rejects.toThrow(/HostName db\.invalid, a name that does not resolve here \(ENOTFOUND\)/);
    expect(asked).toEqual(['db.invalid']);
  });
});
