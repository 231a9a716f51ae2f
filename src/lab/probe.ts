// One-shot reachability probes with socat, run inside the source namespace.
// socat starts in milliseconds and reports the kernel's verdict precisely:
// a RST / ICMP port-unreachable surfaces as ECONNREFUSED, silence as a timeout.
import { spawn } from 'node:child_process';
import { isIPv6 } from 'node:net';
import { LabError } from '../errors.js';
import { buildEchoRequest, classifyIcmp } from '../model/icmp-echo.js';

export { buildEchoRequest, classifyIcmp };

export type ProbeResult = 'open' | 'refused' | 'timeout' | 'unreachable';
export type ProbeProto = 'tcp' | 'udp' | 'icmp';


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

/** Classifies socat's error text (strerror of the failing call). */
export function classifyError(stderr: string): ProbeResult | undefined {
  if (/Connection refused/i.test(stderr)) return 'refused';
  if (/No route to host|Network is unreachable|Host is unreachable/i.test(stderr)) return 'unreachable';
  // EPERM: the source's own OUTPUT chain dropped it, which is still a silent drop.
  if (/timed out|Operation not permitted/i.test(stderr)) return 'timeout';
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
