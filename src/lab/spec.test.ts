import { describe, expect, it } from 'vitest';
import type { Inventory } from '../model/inventory.js';
import { hostDirOf, labSpecFromInventory, namespaceNames, OPERATOR, safeName, validateLabSpec, type LabHostSpec, type LabSpec } from './spec.js';

const host = (name: string, a: Partial<LabHostSpec> = {}): LabHostSpec => ({ name, interfaces: { public: 'eth0', private: 'eth1' }, sshPort: 22, user: 'root', private: '192.0.2.10', ...a });

describe('labSpecFromInventory', () => {
  const pos = { file: 'inv.yaml', line: 1, col: 1 };
  const inv = (operators: string[]) =>
    ({
      file: '/x/inv.yaml',
      templatesDir: '/x/templates',
      operators,
      networks: [{ name: 'lan', bastion: 'tunnel-1', pos }],
      hosts: [
        { name: 'mysql-2', private: '192.0.2.15', interfaces: { public: 'eth0', private: 'ens4' }, roles: ['mysql'], groups: ['all', 'mysql'], base: 'isolated', network: 'lan', ssh: { user: 'deploy', port: 2200, sudo: true }, vars: {}, pos },
        { name: 'tunnel-1', public: '203.0.113.10', private: '192.0.2.10', public6: '2001:db8::10', interfaces: { public: 'eth0', private: 'eth1' }, roles: ['bastion'], groups: ['all', 'bastion'], base: 'isolated', network: 'lan', ssh: { sudo: false }, vars: {}, pos },
      ],
      externals: [{ name: 'internet', address: '203.0.113.200', side: 'public' }],
      intents: [],
      preserve: [],
      health: {},
      settings: { window: 60, generations: 5, installPersistent: true },
    }) satisfies Inventory;

  it('takes addresses, interfaces, ssh port/user, bastions and the operator from the inventory', () => {
    expect(labSpecFromInventory(inv(['203.0.113.0/24']))).toEqual({
      hosts: [
        { name: 'mysql-2', private: '192.0.2.15', interfaces: { public: 'eth0', private: 'ens4' }, sshPort: 2200, user: 'deploy', bastion: false },
        { name: 'tunnel-1', public: '203.0.113.10', private: '192.0.2.10', public6: '2001:db8::10', interfaces: { public: 'eth0', private: 'eth1' }, sshPort: 22, user: 'root', bastion: true },
      ],
      externals: [{ name: 'internet', address: '203.0.113.200', side: 'public' }],
      operator: { address: '203.0.113.250' },
    });
  });

  it('puts the operator where the operators say', () => {
    expect(labSpecFromInventory(inv(['198.51.100.0/28'])).operator).toEqual({ address: '198.51.100.14' });
    expect(() => labSpecFromInventory(inv(['10.1.0.0/16']))).toThrow(/operators \(10\.1\.0\.0\/16\): the lab needs a free address/);
  });
});

describe('validateLabSpec', () => {
  it('runs every name the inventory accepts: `_`, long names, a host called operator', () => {
    const long = `db_${'x'.repeat(60)}`;
    const spec: LabSpec = { hosts: [host('edge_gw', { private: '192.0.2.1' }), host(long, { private: '192.0.2.2' }), host('operator', { private: '192.0.2.3', user: 'Deploy.bot' })], externals: [] };
    expect(validateLabSpec(spec).subnets.private).toEqual(['192.0.2.0/24']);
  });

  it('names every problem at once (exit 64)', () => {
    const spec: LabSpec = {
      hosts: [host('-bad'), host('a', { private: '192.0.2.11', interfaces: { public: 'lo', private: 'eth1' }, sshPort: 0, user: '1x' }), host('a', { private: '192.0.2.12' })],
      externals: [],
    };
    expect(() => validateLabSpec(spec)).toThrow(
      expect.objectContaining({
        exitCode: 64,
        message: [
          'the lab cannot run this fleet:',
          'host -bad: "-bad" is not a valid host name (1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit, no "..")',
          'host a: interface "lo" is the loopback',
          'host a: bad ssh port 0',
          'host a: "1x" is not a valid user name (1-32 of A-Z a-z 0-9 _ . -, not starting with a digit, "." or "-")',
          'host a: name a used twice',
        ].join('\n'),
      }),
    );
  });
});

describe('names on the machine', () => {
  it('maps node names to safe, distinct namespace names, the same every time', () => {
    expect(safeName('mysql-1')).toBe('mysql-1');
    expect(safeName('edge_gw')).toMatch(/^edge-gw-[0-9a-f]{8}$/);
    expect(safeName('edge_gw')).toBe(safeName('edge_gw'));
    expect(safeName('edge.gw')).toBe('edge.gw');
    const long = 'a'.repeat(63);
    expect(safeName(long)).toMatch(/^a{24}-[0-9a-f]{8}$/);
    expect(safeName(long)).not.toBe(safeName('a'.repeat(62)));
    const spec: LabSpec = { hosts: [host('a_b'), host('a-b'), host('operator')], externals: [{ name: 'internet', address: '203.0.113.200', side: 'public' }] };
    const { nodes, switchNs } = namespaceNames('ffw1', spec);
    expect(nodes).toEqual({ a_b: `ffw1-h-${safeName('a_b')}`, 'a-b': 'ffw1-h-a-b', operator: 'ffw1-h-operator', internet: 'ffw1-x-internet', [OPERATOR]: 'ffw1-op' });
    expect(switchNs).toBe('ffw1-sw');
  });

  it('keeps hosts named like the lab’s own files out of their way', () => {
    expect(hostDirOf('/l', 'mysql-1')).toBe('/l/mysql-1');
    expect(hostDirOf('/l', 'state.json')).toBe('/l/_hosts/state.json');
    expect(hostDirOf('/l', 'known_hosts')).toBe('/l/_hosts/known_hosts');
  });
});
