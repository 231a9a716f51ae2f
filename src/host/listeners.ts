// Parse the listening sockets of a host into Listener values: what `ss -ltnup`
// prints (the host script's `listeners` verb, and the facts where ss is used) and
// what sockets.awk prints from /proc/net (the facts).
import ipaddr from 'ipaddr.js';
import { FleetError } from '../errors.js';
import type { Listener } from '../model/listener.js';

/** Lines of `ss -ltnup`; header, blank and unparseable lines are skipped. */
export function parseSsListeners(text: string): Listener[] {
  const out: Listener[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const proto = f[0];
    if ((proto !== 'tcp' && proto !== 'udp') || f.length < 5) continue;
    const local = splitEndpoint(f[4]!);
    if (!local) continue;
    const l: Listener = { proto, address: local.address, port: local.port };
    if (local.device) l.device = local.device;
    const users = /users:\(\("([^"]+)",pid=(\d+)/.exec(line);
    if (users) {
      l.process = users[1]!;
      l.pid = Number(users[2]);
    }
    out.push(l);
  }
  return dedupeListeners(out);
}

const PROC_HEADER = /^byteorder=(little|big)$/;
/** `tcp 0100007F:0016`: file name, then the local address as host-order 32-bit words in hex, then the port. */
const PROC_LINE = /^(tcp|udp)(6?) ([0-9A-Fa-f]+):([0-9A-Fa-f]{4})$/;

/**
 * The listening sockets as the facts read them from /proc/net: a first line
 * `byteorder=little` (the host's /sys/kernel/cpu_byteorder), then what proc_sockets (sockets.awk)
 * prints, `NAME LOCAL` per socket: `tcp 0100007F:0016`, `udp6 000...000:0035`.
 * Addresses come out as ss prints them (but for the deprecated IPv4-compatible
 * form, `::c000:20b` where ss writes `::192.0.2.11`): `127.0.0.1`, `0.0.0.0`, `::1`,
 * `2001:db8::5` (RFC 5952), `::ffff:192.0.2.1`, and an IPv6 wildcard as `*` (dual
 * stack) or `::` (IPv6 only), told apart as below. /proc shows neither the process
 * nor a device binding (ss: `0.0.0.0%eth1`): `device` is never set, so a socket
 * bound to one interface is assessed on every side of the host (more warnings,
 * never fewer). Throws if the first line is not that header or a line is not a socket.
 */
export function parseProcSockets(text: string): Listener[] {
  const [first = '', ...lines] = text.split('\n');
  const head = PROC_HEADER.exec(first);
  if (!head) throw new FleetError(`sockets from /proc/net: the first line must be "byteorder=little|big", not ${JSON.stringify(first.slice(0, 80))}`);
  const little = head[1] === 'little';
  const out: Listener[] = [];
  /** `tcp 22`: an IPv4 wildcard socket is listed on that protocol and port. */
  const v4Wild = new Set<string>();
  for (const line of lines) {
    if (line.trim() === '') continue;
    const m = PROC_LINE.exec(line);
    const v6 = m?.[2] === '6';
    if (!m || m[3]!.length !== (v6 ? 32 : 8)) throw new FleetError(`sockets from /proc/net: not a socket: ${JSON.stringify(line.slice(0, 80))}`);
    const proto = m[1] as Listener['proto'];
    const port = parseInt(m[4]!, 16);
    const bytes = hostOrderBytes(m[3]!, little);
    const address = v6 ? formatIPv6(bytes) : bytes.join('.');
    if (address === '0.0.0.0') v4Wild.add(`${proto} ${port}`);
    out.push({ proto, address, port });
  }
  // /proc cannot tell a dual-stack IPv6 wildcard (ss: `*`) from an IPv6-only one
  // (`[::]`): it is taken to take IPv4 too, so that a plan warns about more
  // services, never fewer. Beside an IPv4 wildcard on the same protocol and port it
  // is left IPv6 only: that one takes every IPv4 connection to the port anyway.
  for (const l of out) {
    if (l.address === '::' && !v4Wild.has(`${l.proto} ${l.port}`)) l.address = '*';
  }
  return dedupeListeners(out);
}

/** Bytes of `hex` (32-bit words, each printed as a host-order integer) in memory order. */
function hostOrderBytes(hex: string, little: boolean): number[] {
  const bytes: number[] = [];
  for (let w = 0; w < hex.length; w += 8) {
    const word = [0, 2, 4, 6].map((i) => parseInt(hex.slice(w + i, w + i + 2), 16));
    bytes.push(...(little ? word.reverse() : word));
  }
  return bytes;
}

/** RFC 5952 (`2001:db8::5`), an IPv4-mapped address as ss prints it (`::ffff:192.0.2.1`). */
function formatIPv6(bytes: number[]): string {
  const a = ipaddr.fromByteArray(bytes) as ipaddr.IPv6;
  return a.isIPv4MappedAddress() ? `::ffff:${a.toIPv4Address().toString()}` : a.toRFC5952String();
}

/** Dual-stack daemons show up once per family and per fork: keep one of each. */
function dedupeListeners(listeners: Listener[]): Listener[] {
  const seen = new Set<string>();
  return listeners.filter((l) => {
    const key = `${l.proto} ${l.address} ${l.device ?? ''} ${l.port}`;
    return seen.has(key) ? false : (seen.add(key), true);
  });
}

/** `0.0.0.0:22`, `*:80`, `[::]:22`, `127.0.0.53%lo:53`, `[fe80::1]%eth0:546` */
function splitEndpoint(s: string): { address: string; port: number; device?: string } | undefined {
  const colon = s.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const port = Number(s.slice(colon + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  let host = s.slice(0, colon);
  let device: string | undefined;
  const pct = host.lastIndexOf('%');
  if (pct > 0 && !host.slice(pct).includes(']')) {
    device = host.slice(pct + 1);
    host = host.slice(0, pct);
  }
  const address = host.replace(/^\[(.*)\]$/, '$1');
  return device ? { address, port, device } : { address, port };
}
