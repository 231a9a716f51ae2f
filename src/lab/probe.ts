// One-shot reachability probes with socat, run inside the source namespace.
// socat starts in milliseconds and reports the kernel's verdict precisely:
// a RST / ICMP port-unreachable surfaces as ECONNREFUSED, silence as a timeout.
import { spawn } from 'node:child_process';
import { isIPv6 } from 'node:net';
import { LabError } from '../errors.js';

export type ProbeResult = 'open' | 'refused' | 'timeout' | 'unreachable';
export type ProbeProto = 'tcp' | 'udp' | 'icmp';

const ECHO_PAYLOAD = Buffer.from('fleetfw-probe');

/** argv (after the namespace-entering prefix) and stdin for one probe. */
export function buildProbeCommand(addr: string, proto: ProbeProto, port: number | undefined, timeoutMs: number): { argv: string[]; input: Buffer } {
  const secs = (timeoutMs / 1000).toFixed(3);
  const v6 = isIPv6(addr);
  const host = v6 ? `[${addr}]` : addr;
  switch (proto) {
    case 'tcp':
      // -u from /dev/null: exit as soon as the connection is made.
      return { argv: ['socat', '-u', 'OPEN:/dev/null', `TCP${v6 ? 6 : 4}:${host}:${port},connect-timeout=${secs}`], input: Buffer.alloc(0) };
    case 'udp':
      return { argv: ['socat', `-T${secs}`, `-t${secs}`, '-', `UDP${v6 ? 6 : 4}:${host}:${port}`], input: Buffer.from('fleetfw-probe\n') };
    case 'icmp':
      return {
        argv: ['socat', `-T${secs}`, `-t${secs}`, v6 ? `IP6-DATAGRAM:${host}:58` : `IP4-DATAGRAM:${host}:1`, '-'],
        input: buildEchoRequest(v6),
      };
  }
}

export function buildEchoRequest(v6: boolean): Buffer {
  const b = Buffer.concat([Buffer.from([v6 ? 128 : 8, 0, 0, 0, 0x66, 0x66, 0, 1]), ECHO_PAYLOAD]);
  // The kernel fills in the ICMPv6 checksum itself; ICMPv4 needs ours.
  if (!v6) b.writeUInt16BE(inetChecksum(b), 2);
  return b;
}

function inetChecksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += ((b[i] ?? 0) << 8) + (b[i + 1] ?? 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

/** Classifies socat's error text (strerror of the failing call). */
export function classifyError(stderr: string): ProbeResult | undefined {
  if (/Connection refused/i.test(stderr)) return 'refused';
  if (/No route to host|Network is unreachable|Host is unreachable/i.test(stderr)) return 'unreachable';
  // EPERM: the source's own OUTPUT chain dropped it, which is still a silent drop.
  if (/timed out|Operation not permitted/i.test(stderr)) return 'timeout';
  return undefined;
}

/**
 * Finds the answer to our echo request in raw-socket output. The socket also
 * sees unrelated ICMP (neighbour discovery, our own request on loopback) and
 * reads may merge datagrams, so we search for our identifier and payload: in an
 * echo reply it follows the reply header; in an error it is quoted after the
 * error header and the original IP header.
 */
export function classifyIcmp(data: Buffer, v6: boolean): ProbeResult | undefined {
  const marker = Buffer.concat([Buffer.from([0x66, 0x66, 0, 1]), ECHO_PAYLOAD]);
  const ipHeader = v6 ? 40 : 20;
  for (let p = data.indexOf(marker); p >= 0; p = data.indexOf(marker, p + 1)) {
    const type = data[p - 4];
    if (type === (v6 ? 129 : 0)) return 'open';
    if (type !== (v6 ? 128 : 8)) continue;
    const err = p - 4 - ipHeader - 8;
    if (err < 0) continue;
    const errType = data[err];
    const code = data[err + 1] ?? 0;
    // Host/net unreachable (v4 codes 0,1; v6 codes 0,3) means no path; the rest (port, admin-prohibited…) is a REJECT.
    if (!v6 && errType === 3) return code === 0 || code === 1 ? 'unreachable' : 'refused';
    if (v6 && errType === 1) return code === 0 || code === 3 ? 'unreachable' : 'refused';
  }
  return undefined;
}

/** Runs the probe given a prefix that enters the source namespace (e.g. nsenter -t PID -n). */
export function runProbe(prefix: string[], addr: string, proto: ProbeProto, port: number | undefined, timeoutMs: number): Promise<ProbeResult> {
  const { argv, input } = buildProbeCommand(addr, proto, port, timeoutMs);
  const full = [...prefix, ...argv];
  const v6 = isIPv6(addr);
  return new Promise((resolve, reject) => {
    const child = spawn(full[0] as string, full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = Buffer.alloc(0);
    let err = '';
    let verdict: ProbeResult | undefined;
    // Backstop in case socat's own timers do not fire.
    const guard = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 2000);
    child.stdout.on('data', (b: Buffer) => {
      out = Buffer.concat([out, b]);
      if (verdict) return;
      verdict = proto === 'icmp' ? classifyIcmp(out, v6) : proto === 'udp' ? 'open' : undefined;
      if (verdict) child.kill('SIGKILL');
    });
    child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
    child.on('error', (e) => {
      clearTimeout(guard);
      reject(new LabError(`cannot run ${full[0]}: ${e.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(guard);
      if (verdict) return resolve(verdict);
      const fromErr = classifyError(err);
      if (fromErr) return resolve(fromErr);
      if (code === 0) return resolve(proto === 'tcp' ? 'open' : 'timeout');
      if (code === null) return resolve('timeout');
      reject(new LabError(`probe ${proto} ${addr}${port ? `:${port}` : ''} failed (exit ${code}): ${err.trim()}`));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}
