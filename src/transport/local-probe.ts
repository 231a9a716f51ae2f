// Probes from the operator's own machine (verify --live, for externals it stands
// in for): a NEW TCP connection or a UDP datagram, and what came back.
import { createSocket } from 'node:dgram';
import { isIPv6, Socket } from 'node:net';

export type LocalVerdict = 'open' | 'refused' | 'unreachable' | 'timeout';

function verdictOf(code: string | undefined): LocalVerdict | undefined {
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'unreachable';
  // Our own OUTPUT chain dropped it: a silent drop all the same.
  if (code === 'EPERM' || code === 'EACCES') return 'timeout';
  return undefined;
}

/** The address this machine sends from to reach `addr` (routing only: no packet leaves), or undefined without a route. */
export function localAddressFor(addr: string): Promise<string | undefined> {
  const sock = createSocket(isIPv6(addr) ? 'udp6' : 'udp4');
  return new Promise((resolve) => {
    sock.on('error', () => {
      sock.close();
      resolve(undefined);
    });
    sock.connect(9, addr, () => {
      const local = sock.address().address;
      sock.close();
      resolve(local === '0.0.0.0' || local === '::' ? undefined : local);
    });
  });
}

/** One probe from here; an error that is no verdict (EADDRNOTAVAIL…) is thrown. */
export function probeLocal(addr: string, proto: 'tcp' | 'udp', port: number, timeoutMs: number): Promise<LocalVerdict> {
  return proto === 'tcp' ? probeTcp(addr, port, timeoutMs) : probeUdp(addr, port, timeoutMs);
}

/** One answer per probe: the first of a verdict, an error or the timeout; then `close`. */
function settler(timeoutMs: number, close: () => void, resolve: (v: LocalVerdict) => void, reject: (e: Error) => void) {
  const timer = setTimeout(() => end('timeout'), timeoutMs);
  const end = (v: LocalVerdict | Error) => {
    clearTimeout(timer);
    close();
    if (v instanceof Error) reject(v);
    else resolve(v);
  };
  return { end, fail: (e: NodeJS.ErrnoException) => end(verdictOf(e.code) ?? e) };
}

function probeTcp(addr: string, port: number, timeoutMs: number): Promise<LocalVerdict> {
  return new Promise((resolve, reject) => {
    const s = new Socket();
    const { end, fail } = settler(timeoutMs, () => s.destroy(), resolve, reject);
    s.once('connect', () => end('open'));
    s.once('error', fail);
    s.connect({ host: addr, port });
  });
}

function probeUdp(addr: string, port: number, timeoutMs: number): Promise<LocalVerdict> {
  const s = createSocket(isIPv6(addr) ? 'udp6' : 'udp4');
  return new Promise((resolve, reject) => {
    const { end, fail } = settler(timeoutMs, () => s.close(), resolve, reject);
    // On a connected socket, an ICMP port unreachable comes back as ECONNREFUSED.
    s.once('error', fail);
    s.once('message', () => end('open'));
    s.connect(port, addr, () => s.send('fleetfw-probe\n'));
  });
}
