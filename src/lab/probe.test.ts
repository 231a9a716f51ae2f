import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildEchoRequest, buildProbeCommand, classifyError, classifyIcmp } from './probe.js';
import { hashKnownHostName, knownHostName, renderClientConfig } from './sshd.js';

describe('probe classification', () => {
  it('maps socat errors to verdicts', () => {
    expect(classifyError('E connect(6, AF=2 203.0.113.2:81, 16): Connection refused')).toBe('refused');
    expect(classifyError('E connecting to AF=2 203.0.113.2:82: Connection timed out')).toBe('timeout');
    expect(classifyError('E connect(6, AF=2 203.0.113.2:83, 16): No route to host')).toBe('unreachable');
    expect(classifyError('E read(5, 0x5, 8192): Connection refused')).toBe('refused');
    expect(classifyError('E sendto(…): Operation not permitted')).toBe('timeout');
    expect(classifyError('something else')).toBeUndefined();
  });

  it('finds the echo reply among unrelated ICMPv6 (neighbour discovery first)', () => {
    const req = buildEchoRequest(true);
    const nd = Buffer.from([136, 0, 0, 0, 0x60, 0, 0, 0, ...new Array(16).fill(0)]);
    const reply = Buffer.from(req);
    reply[0] = 129;
    expect(classifyIcmp(nd, true)).toBeUndefined();
    expect(classifyIcmp(Buffer.concat([nd, reply]), true)).toBe('open');
  });

  it('reads ICMP errors that quote our request', () => {
    const req4 = buildEchoRequest(false);
    const quoted4 = (code: number) => Buffer.concat([Buffer.from([3, code, 0, 0, 0, 0, 0, 0]), Buffer.alloc(20, 0x45), req4]);
    expect(classifyIcmp(quoted4(3), false)).toBe('refused');
    expect(classifyIcmp(quoted4(13), false)).toBe('refused');
    expect(classifyIcmp(quoted4(1), false)).toBe('unreachable');
    const req6 = buildEchoRequest(true);
    const quoted6 = (code: number) => Buffer.concat([Buffer.from([1, code, 0, 0, 0, 0, 0, 0]), Buffer.alloc(40, 0x60), req6]);
    expect(classifyIcmp(quoted6(4), true)).toBe('refused');
    expect(classifyIcmp(quoted6(3), true)).toBe('unreachable');
    // Our own request looped back is not an answer.
    expect(classifyIcmp(req4, false)).toBeUndefined();
  });

  it('computes a valid ICMPv4 checksum', () => {
    const b = buildEchoRequest(false);
    let sum = 0;
    for (let i = 0; i < b.length; i += 2) sum += ((b[i] ?? 0) << 8) + (b[i + 1] ?? 0);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    expect(sum).toBe(0xffff);
  });

  it('builds socat argv without a shell, brackets for IPv6', () => {
    expect(buildProbeCommand('2001:db8::10', 'tcp', 22, 1500).argv).toEqual(['socat', '-u', 'OPEN:/dev/null', 'TCP6:[2001:db8::10]:22,connect-timeout=1.500']);
    expect(buildProbeCommand('192.0.2.1', 'icmp', undefined, 1000).argv).toEqual(['socat', '-T1.000', '-t1.000', 'IP4-DATAGRAM:192.0.2.1:1', '-']);
  });
});

describe('ssh material', () => {
  it('hashes known_hosts names the way OpenSSH does', () => {
    const salt = Buffer.alloc(20, 7);
    const h = hashKnownHostName('[web-1]:2222', salt);
    const [, one, s, mac] = h.split('|');
    expect(one).toBe('1');
    expect(Buffer.from(s as string, 'base64')).toEqual(salt);
    expect(mac).toBe(createHmac('sha1', salt).update('[web-1]:2222').digest('base64'));
    expect(knownHostName('web-1', 22)).toBe('web-1');
    expect(knownHostName('2001:db8::1', 2222)).toBe('[2001:db8::1]:2222');
  });

  it('puts per-host blocks before Host *', () => {
    const text = renderClientConfig([{ name: 'db-1', hostName: '192.0.2.12', user: 'deploy', port: 22 }], '/l/id', '/l/kh');
    expect(text.indexOf('Host db-1')).toBeLessThan(text.indexOf('Host *'));
    expect(text).toMatch(/Host db-1\n {2}HostName 192\.0\.2\.12\n {2}User deploy\n {2}Port 22\n {2}IdentityFile \/l\/id/);
  });
});
