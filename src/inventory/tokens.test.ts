import { describe, expect, it } from 'vitest';
import {
  isGroupName,
  isHostName,
  isInterfaceName,
  isPort,
  isPortRange,
  isVarName,
  isVarToken,
  parseAddress,
  parseCidr,
  parseIPv4,
  parseIPv6,
  quote,
} from './tokens.js';

const value = <T>(c: { ok: true; value: T } | { ok: false; reason: string }): T | string => (c.ok ? c.value : `!${c.reason}`);

describe('addresses', () => {
  it('accepts strict dotted quads only', () => {
    expect(value(parseIPv4('192.0.2.1'))).toBe('192.0.2.1');
    for (const bad of ['192.0.2.01', '1.2.3', '0x7f.0.0.1', '256.0.0.1', ' 1.2.3.4', '1.2.3.4\n', '127.1']) {
      expect(parseIPv4(bad).ok, bad).toBe(false);
    }
    expect(value(parseIPv4('2001:db8::1'))).toBe('!"2001:db8::1" is an IPv6 address, expected IPv4');
  });

  it('canonicalizes IPv6 (RFC 5952) and refuses zone ids', () => {
    expect(value(parseIPv6('2001:DB8:0:0:0:0:0:10'))).toBe('2001:db8::10');
    expect(value(parseIPv6('::ffff:192.0.2.1'))).toBe('::ffff:c000:201');
    expect(parseIPv6('fe80::1%eth0').ok).toBe(false);
    expect(value(parseIPv6('1.2.3.4'))).toBe('!"1.2.3.4" is an IPv4 address, expected IPv6');
    expect(value(parseAddress('2001:db8::1'))).toEqual({ family: 6, address: '2001:db8::1' });
  });

  it('parses CIDRs canonically and refuses host bits', () => {
    expect(value(parseCidr('192.0.2.0/24'))).toEqual({ family: 4, address: '192.0.2.0', prefix: 24, cidr: '192.0.2.0/24' });
    expect(value(parseCidr('2001:DB8::/32'))).toMatchObject({ family: 6, cidr: '2001:db8::/32' });
    expect(value(parseCidr('192.0.2.5/24'))).toBe('!"192.0.2.5/24" has host bits set (did you mean 192.0.2.0/24?)');
    expect(value(parseCidr('192.0.2.0/33'))).toBe('!"192.0.2.0/33" has an invalid prefix length (expected 0-32)');
    expect(value(parseCidr('192.0.2.0/024'))).toMatch(/invalid prefix length/);
    expect(parseCidr('192.0.2.7').ok).toBe(false);
    expect(value(parseCidr('192.0.2.7', undefined, true))).toMatchObject({ cidr: '192.0.2.7/32' });
    expect(value(parseCidr('2001:db8::7', 6, true))).toMatchObject({ cidr: '2001:db8::7/128' });
    expect(parseCidr('2001:db8::/32', 4).ok).toBe(false);
  });
});

describe('names and ports', () => {
  it('checks host names', () => {
    expect(isHostName('mysql-1').ok).toBe(true);
    expect(isHostName('db.example_1').ok).toBe(true);
    for (const bad of ['-a', 'a..b', 'a b', '', 'a'.repeat(64), 'ｍysql']) expect(isHostName(bad).ok, bad).toBe(false);
  });

  it('checks interface names, refusing wildcards', () => {
    for (const good of ['eth0', 'ens4', 'br-lan', 'wg_0', 'eth0.100', '123456789012345']) expect(isInterfaceName(good).ok, good).toBe(true);
    for (const bad of ['-eth0', '.', '..', 'a'.repeat(16), 'eth 0', 'eth/0', 'eth:0', '']) expect(isInterfaceName(bad).ok, bad).toBe(false);
    expect(value(isInterfaceName('eth+'))).toBe('!"eth+": interface wildcards ("+") are not allowed');
  });

  it('checks group names (no dots: they appear in group.<g>.<field>)', () => {
    expect(isGroupName('web_front-1').ok).toBe(true);
    for (const bad of ['db.main', '_x', 'a'.repeat(29), 'all ']) expect(isGroupName(bad).ok, bad).toBe(false);
  });

  it('checks ports and ranges', () => {
    expect(value(isPort(22))).toBe(22);
    expect(value(isPort('443'))).toBe(443);
    expect(value(isPort(70000))).toBe('!port must be 1-65535, got 70000');
    expect(isPort(0).ok).toBe(false);
    expect(isPort(2.5).ok).toBe(false);
    expect(isPort('22a').ok).toBe(false);
    expect(value(isPortRange('8000:8100'))).toEqual([8000, 8100]);
    for (const bad of ['8100:8000', '0:10', '1:65536', '1-2', ':5']) expect(isPortRange(bad).ok, bad).toBe(false);
  });

  it('checks var names and tokens', () => {
    expect(isVarName('dns_servers').ok).toBe(true);
    expect(isVarName('9lives').ok).toBe(false);
    expect(value(isVarToken('2001:DB8::53'))).toBe('2001:db8::53');
    expect(value(isVarToken('10.0.0.0/8'))).toBe('10.0.0.0/8');
    for (const good of ['3306', '8000:8100', 'eth1', '_vlan', 'trusted-zone', 'a/b:c.d']) expect(isVarToken(good).ok, good).toBe(true);
    for (const bad of ['-j', 'a b', 'a;b', '$x', '`x`', "'x'", 'a\\b', '#x', 'a\nb', 'a\0b', 'é', 'a'.repeat(65), '']) {
      expect(isVarToken(bad).ok, bad).toBe(false);
    }
  });
});

describe('quote', () => {
  it('keeps messages on one printable-ASCII line', () => {
    expect(quote('a\n\u202e\u0085\u2028"')).toBe('"a\\n\\u202e\\u0085\\u2028\\""');
    expect(quote('x'.repeat(100))).toBe(`"${'x'.repeat(48)}..." (100 characters)`);
  });
});
