import { describe, expect, it } from 'vitest';
import { LabError } from '../errors.js';
import { chooseOperator, planAddressing } from './addressing.js';
import type { LabHostSpec, LabSpec } from './spec.js';

const OP = '@operator';
const host = (name: string, a: Partial<LabHostSpec>): LabHostSpec => ({ name, interfaces: { public: 'eth0', private: 'eth1' }, sshPort: 22, user: 'root', ...a });

const s1: LabSpec = {
  hosts: [host('tunnel-1', { public: '203.0.113.10', private: '192.0.2.10', bastion: true }), host('mysql-1', { public: '203.0.113.14', private: '192.0.2.14' })],
  externals: [
    { name: 'internet', address: '203.0.113.200', side: 'public' },
    { name: 'intruder', address: '192.0.2.250', side: 'private' },
  ],
};

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LabError);
    expect((e as LabError).exitCode).toBe(64);
    return (e as Error).message;
  }
  throw new Error('expected a refusal');
}

describe('chooseOperator', () => {
  it('keeps 203.0.113.250 for S1-like fleets and operators 0.0.0.0/0', () => {
    expect(chooseOperator(s1, ['0.0.0.0/0'])).toEqual({ address: '203.0.113.250' });
  });

  it('sits on the hosts’ public range when the operators allow anything', () => {
    const spec: LabSpec = { hosts: [host('edge', { public: '198.51.100.10', private: '192.0.2.10' })], externals: [] };
    expect(chooseOperator(spec, ['0.0.0.0/0'])).toEqual({ address: '198.51.100.250' });
  });

  it('takes an exact operator address first, and a v6 one inside 2001:db8::/32', () => {
    expect(chooseOperator(s1, ['0.0.0.0/0', '198.51.100.7/32', '2001:db8:ff::9/128'])).toEqual({ address: '198.51.100.7', address6: '2001:db8:ff::9' });
    expect(chooseOperator(s1, ['203.0.113.0/24', '2001:db8:1::/64'])).toEqual({ address: '203.0.113.250', address6: '2001:db8:1::250' });
  });

  it('picks a free address inside a small operators subnet, never its network or broadcast address', () => {
    expect(chooseOperator(s1, ['203.0.113.8/30'])).toEqual({ address: '203.0.113.9' });
    expect(chooseOperator(s1, ['203.0.113.248/29'])).toEqual({ address: '203.0.113.250' });
    const busy: LabSpec = { ...s1, externals: [{ name: 'internet', address: '203.0.113.250', side: 'public' }] };
    expect(chooseOperator(busy, ['203.0.113.0/24'])).toEqual({ address: '203.0.113.254' });
  });

  it('refuses operators outside the documentation ranges, with a hint', () => {
    expect(refusal(() => chooseOperator(s1, ['10.0.0.0/8']))).toMatch(/^operators \(10\.0\.0\.0\/8\): the lab needs a free address .* e\.g\. 203\.0\.113\.250\/32$/);
    expect(refusal(() => chooseOperator(s1, ['203.0.113.10/32']))).toMatch(/free address/);
  });
});

describe('planAddressing', () => {
  it('gives each side its documentation /24 when it has the range to itself', () => {
    const a = planAddressing(s1, { address: '203.0.113.250' }, OP);
    expect(a.subnets).toEqual({ public: ['203.0.113.0/24'], private: ['192.0.2.0/24'] });
    expect(a.interfaces['tunnel-1']).toEqual([
      { name: 'eth0', addresses: ['203.0.113.10/24'], routes: [] },
      { name: 'eth1', addresses: ['192.0.2.10/24'], routes: [] },
    ]);
    expect(a.interfaces[OP]).toEqual([{ name: 'eth0', addresses: ['203.0.113.250/24'], routes: [] }]);
  });

  it('joins a side spread over two ranges with on-link routes (hosts on 198.51.100.0/24, operator on 203.0.113.0/24)', () => {
    const spec: LabSpec = {
      hosts: [host('edge_gw', { public: '198.51.100.10', private: '192.0.2.10', public6: '2001:db8::10' }), host('db', { private: '192.0.2.11' })],
      externals: [{ name: 'internet', address: '198.51.100.200', address6: '2001:db8::200', side: 'public' }],
    };
    const a = planAddressing(spec, { address: '203.0.113.77' }, OP);
    expect(a.subnets).toEqual({ public: ['203.0.113.0/24', '198.51.100.0/24', '2001:db8::/64'], private: ['192.0.2.0/24'] });
    expect(a.interfaces['edge_gw']).toEqual([
      { name: 'eth0', addresses: ['198.51.100.10/24', '2001:db8::10/64'], routes: ['203.0.113.0/24'] },
      { name: 'eth1', addresses: ['192.0.2.10/24'], routes: [] },
    ]);
    expect(a.interfaces[OP]).toEqual([{ name: 'eth0', addresses: ['203.0.113.77/24'], routes: ['198.51.100.0/24'] }]);
    expect(a.interfaces['db']).toEqual([{ name: 'eth1', addresses: ['192.0.2.11/24'], routes: [] }]);
  });

  it('cuts a range both sides use at the widest prefix that keeps them apart', () => {
    const spec: LabSpec = {
      hosts: [host('a', { public: '192.0.2.10', private: '192.0.2.130', public6: '2001:db8::10', private6: '2001:db8::8000:10' })],
      externals: [],
    };
    const a = planAddressing(spec, { address: '203.0.113.250' }, OP);
    expect(a.subnets).toEqual({ public: ['203.0.113.0/24', '192.0.2.0/25', '2001:db8::/97'], private: ['192.0.2.128/25', '2001:db8::8000:0/97'] });
    expect(a.interfaces['a']).toEqual([
      { name: 'eth0', addresses: ['192.0.2.10/25', '2001:db8::10/97'], routes: ['203.0.113.0/24'] },
      { name: 'eth1', addresses: ['192.0.2.130/25', '2001:db8::8000:10/97'], routes: [] },
    ]);
  });

  it('refuses sides that interleave, addresses outside the documentation ranges, duplicates and broadcast addresses, all at once', () => {
    const spec: LabSpec = {
      hosts: [
        host('a', { public: '192.0.2.10', private: '192.0.2.20' }),
        host('b', { public: '192.0.2.30', private: '8.8.8.8', public6: '2001:db9::1' }),
        host('c', { public: '203.0.113.200' }),
      ],
      externals: [{ name: 'internet', address: '203.0.113.200', side: 'public' }],
    };
    const text = refusal(() => planAddressing(spec, { address: '203.0.113.255' }, OP));
    expect(text.split('\n')).toEqual([
      'the lab cannot place these addresses:',
      'host b: 8.8.8.8 is not in a documentation range (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24); the lab runs on those only',
      'host b: 2001:db9::1 is not in a documentation range (2001:db8::/32); the lab runs on those only',
      'external internet: address 203.0.113.200 is also host c\'s',
      '192.0.2.0/24: the public side (192.0.2.10, 192.0.2.30) and the private side (192.0.2.20) share no subnet that keeps them apart; give each side its own documentation range, or its own part of one (e.g. public in 192.0.2.0/25, private in 192.0.2.128/25)',
      'operator: 203.0.113.255 is the broadcast address of the lab subnet 203.0.113.0/24',
    ]);
  });
});
