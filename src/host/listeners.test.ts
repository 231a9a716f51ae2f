import { describe, expect, it } from 'vitest';
import { parseProcSockets, parseSsListeners } from './listeners.js';

const LE = 'byteorder=little';
const BE = 'byteorder=big';
const proc = (head: string, ...lines: string[]) => parseProcSockets([head, ...lines, ''].join('\n'));
/** The address of one IPv6 socket, its 8 groups given in order (a big-endian host prints them so). */
const v6 = (groups: string) => proc(BE, `tcp6 ${groups.replace(/:/g, '')}:0050`)[0]!.address;

describe('parseProcSockets (sockets.awk from /proc/net)', () => {
  it('reads a little-endian host: each 32-bit word byte-reversed, the port in network order', () => {
    // Real lines of /proc/net/{tcp,tcp6,udp,udp6} on x86_64.
    expect(
      proc(
        LE,
        'tcp 0100007F:0016',
        'tcp 0A0200C0:01BB',
        'tcp6 00000000000000000000000001000000:0CEA',
        'tcp6 B80D0120000000000000000010000000:1F90',
        'tcp6 0000000000000000FFFF00000A0200C0:2394',
        'tcp6 000080FE000000000000000001000000:0222',
        'udp 00000000:0035',
      ),
    ).toEqual([
      { proto: 'tcp', address: '127.0.0.1', port: 22 },
      { proto: 'tcp', address: '192.0.2.10', port: 443 },
      { proto: 'tcp', address: '::1', port: 3306 },
      { proto: 'tcp', address: '2001:db8::10', port: 8080 },
      { proto: 'tcp', address: '::ffff:192.0.2.10', port: 9108 },
      { proto: 'tcp', address: 'fe80::1', port: 546 },
      { proto: 'udp', address: '0.0.0.0', port: 53 },
    ]);
  });

  it('reads a big-endian host: the words as they are', () => {
    expect(
      proc(
        BE,
        'tcp 7F000001:0016',
        'udp C000020A:0035',
        'tcp6 00000000000000000000000000000001:0CEA',
        'udp6 20010DB8000000000000000000000010:1F90',
        'tcp6 00000000000000000000FFFFC000020A:2394',
      ),
    ).toEqual([
      { proto: 'tcp', address: '127.0.0.1', port: 22 },
      { proto: 'udp', address: '192.0.2.10', port: 53 },
      { proto: 'tcp', address: '::1', port: 3306 },
      { proto: 'udp', address: '2001:db8::10', port: 8080 },
      { proto: 'tcp', address: '::ffff:192.0.2.10', port: 9108 },
    ]);
  });

  it('writes IPv6 addresses in their RFC 5952 form', () => {
    expect(v6('0000:0000:0000:0000:0000:0000:0000:0001')).toBe('::1');
    expect(v6('fe80:0000:0000:0000:0000:0000:0000:0001')).toBe('fe80::1');
    expect(v6('2001:0db8:0000:0000:0000:0000:0000:0005')).toBe('2001:db8::5');
    expect(v6('2001:0DB8:0000:0000:0000:0000:0000:ABCD')).toBe('2001:db8::abcd');
    // The longest run of zero groups is the one cut, the first of equal runs.
    expect(v6('2001:0db8:0000:0001:0000:0000:0000:0001')).toBe('2001:db8:0:1::1');
    expect(v6('2001:0000:0000:0001:0000:0000:0000:0000')).toBe('2001:0:0:1::');
    expect(v6('2001:0db8:0000:0000:0001:0000:0000:0001')).toBe('2001:db8::1:0:0:1');
    // A single zero group is not cut.
    expect(v6('2001:0db8:0000:0001:0001:0001:0001:0001')).toBe('2001:db8:0:1:1:1:1:1');
    expect(v6('0000:0000:0000:0000:0000:ffff:c000:0201')).toBe('::ffff:192.0.2.1');
    // ss (glibc inet_ntop) writes the deprecated IPv4-compatible form as ::192.0.2.11.
    expect(v6('0000:0000:0000:0000:0000:0000:c000:020b')).toBe('::c000:20b');
  });

  describe('an IPv6 wildcard: * (dual stack) unless it is known to be IPv6 only', () => {
    it('is * alone on its protocol and port, or beside IPv4 sockets on single addresses only', () => {
      const wild = '00000000000000000000000000000000';
      expect(proc(LE, `tcp6 ${wild}:0050`, `udp6 ${wild}:0035`, 'tcp 00000000:0051', 'udp 00000000:0050', `tcp6 ${wild}:0016`, 'tcp 0100007F:0016')).toEqual([
        { proto: 'tcp', address: '*', port: 80 },
        { proto: 'udp', address: '*', port: 53 },
        { proto: 'tcp', address: '0.0.0.0', port: 81 },
        // The same port on another protocol says nothing about this one.
        { proto: 'udp', address: '0.0.0.0', port: 80 },
        // Unsure (SO_REUSEPORT lets a dual-stack wildcard share its port): taken to take IPv4 too.
        { proto: 'tcp', address: '*', port: 22 },
        { proto: 'tcp', address: '127.0.0.1', port: 22 },
      ]);
    });

    it('is :: beside an IPv4 wildcard of the same protocol and port', () => {
      const wild = '00000000000000000000000000000000';
      expect(proc(LE, 'tcp 00000000:0016', `tcp6 ${wild}:0016`, `udp6 ${wild}:0035`, 'udp 00000000:0035')).toEqual([
        { proto: 'tcp', address: '0.0.0.0', port: 22 },
        { proto: 'tcp', address: '::', port: 22 },
        { proto: 'udp', address: '::', port: 53 },
        { proto: 'udp', address: '0.0.0.0', port: 53 },
      ]);
    });

    it('leaves other IPv6 addresses as they are', () => {
      expect(proc(LE, 'tcp6 00000000000000000000000001000000:0050')).toEqual([{ proto: 'tcp', address: '::1', port: 80 }]);
    });
  });

  it('keeps one of each socket, as parseSsListeners does (forks, SO_REUSEPORT)', () => {
    const wild = '00000000000000000000000000000000';
    expect(proc(LE, 'tcp 00000000:0050', 'tcp 00000000:0050', `tcp6 ${wild}:01BB`, `tcp6 ${wild}:01BB`, 'udp 00000000:0050')).toEqual([
      { proto: 'tcp', address: '0.0.0.0', port: 80 },
      { proto: 'tcp', address: '*', port: 443 },
      { proto: 'udp', address: '0.0.0.0', port: 80 },
    ]);
    const ss = ['tcp LISTEN 0 128 *:443 *:*', 'tcp LISTEN 0 128 *:443 *:*', 'tcp LISTEN 0 128 0.0.0.0%eth1:22 0.0.0.0:*', 'tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:*'].join('\n');
    expect(parseSsListeners(ss)).toEqual([
      { proto: 'tcp', address: '*', port: 443 },
      { proto: 'tcp', address: '0.0.0.0', port: 22, device: 'eth1' },
      { proto: 'tcp', address: '0.0.0.0', port: 22 },
    ]);
  });

  it('reads a header alone, or with a trailing newline, as no socket', () => {
    expect(parseProcSockets(LE)).toEqual([]);
    expect(parseProcSockets(`${LE}\n`)).toEqual([]);
  });

  it('refuses text without the header line', () => {
    for (const text of ['', 'tcp 0100007F:0016\n', 'byteorder=middle\n', 'byteorder=little bindv6only=0\n', ' byteorder=little\n']) {
      expect(() => parseProcSockets(text), JSON.stringify(text)).toThrow(/the first line must be "byteorder=little\|big"/);
    }
  });

  it('refuses a line that is not a socket', () => {
    for (const line of ['tcp 0100007F', 'raw 0100007F:0016', 'tcp6 0100007F:0016', 'tcp 00000000000000000000000001000000:0016', 'tcp 0100007F:16', 'tcp 0100007F:0016 0A']) {
      expect(() => proc(LE, line), line).toThrow(`not a socket: ${JSON.stringify(line)}`);
    }
  });
});
