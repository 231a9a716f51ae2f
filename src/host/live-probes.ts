// The host side of `verify --live` as typed calls: `probe` (NEW connections from a
// host, all in one command) and `listen` (short-lived listeners on a host, kept
// for as long as fleetfw holds the command's stdin open). live-probe.pl and the
// script's cmd_probe / cmd_listen are the other half.
import { isIP } from 'node:net';
import { FleetError } from '../errors.js';
import { classifyIcmp } from '../model/icmp-echo.js';
import type { HostSession, HostStream } from '../transport/types.js';
import { HostError } from './client.js';
import { hostCommand, hostMessage, runHost } from './run.js';
import { keyValues, parseSections } from './sections.js';

export type LiveProto = 'tcp' | 'udp' | 'icmp';

/** What a probe saw: connected (or answered), refused (RST, ICMP unreachable-port/admin), no route, or nothing. */
export type LiveVerdict = 'open' | 'refused' | 'unreachable' | 'timeout';

export interface ProbeSpec {
  id: number;
  proto: LiveProto;
  addr: string;
  /** tcp and udp only. */
  port?: number;
  timeoutMs: number;
}

/** `ms`: how long the probe took on the host, when it says. */
export type ProbeAnswer = ({ verdict: LiveVerdict } | { error: string }) & { ms?: number };

export interface ListenSpec {
  id: number;
  proto: 'tcp' | 'udp';
  addr: string;
  port: number;
}

/** started: ours; existing: a service of the host's answers there; busy: the port is bound on another address only. */
export type ListenState = 'started' | 'existing' | 'busy' | { error: string };

export interface Listeners {
  states: Map<number, ListenState>;
  /** End the listeners (stdin closed: the host removes them) and wait until the host says they are gone. */
  stop(): Promise<void>;
}

/** Every value sent is checked here as well as on the host: nothing else reaches it. */
function checkEndpoint(proto: LiveProto, addr: string, port: number | undefined): void {
  if (!isIP(addr)) throw new FleetError(`verify --live: ${JSON.stringify(addr)} is not an IP address`);
  if (proto === 'icmp') return;
  if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) throw new FleetError(`verify --live: bad port ${String(port)}`);
}

function probeLine(p: ProbeSpec): string {
  checkEndpoint(p.proto, p.addr, p.port);
  return `${p.id} ${p.proto} ${p.addr} ${p.proto === 'icmp' ? '-' : p.port} ${Math.round(p.timeoutMs)}`;
}

/** `ID MS VERDICT [DETAIL]` lines into answers; an ICMP answer (`icmp SEQ HEX`) is the packet, classified here. */
export function parseProbeAnswers(lines: readonly string[], probes: readonly ProbeSpec[]): Map<number, ProbeAnswer> {
  const byId = new Map(probes.map((p) => [p.id, p]));
  const out = new Map<number, ProbeAnswer>();
  for (const line of lines) {
    const [idText, msText, what, detail, icmpHex] = line.split(' ');
    const p = byId.get(Number(idText));
    if (!p || what === undefined) continue;
    const ms = /^\d+$/.test(msText ?? '') ? { ms: Number(msText) } : {};
    if (what === 'open' || what === 'refused' || what === 'unreachable' || what === 'timeout') out.set(p.id, { verdict: what, ...ms });
    else if (what === 'icmp') out.set(p.id, { verdict: classifyIcmp(Buffer.from(icmpHex ?? '', 'hex'), isIP(p.addr) === 6, p.id & 0xffff, Number(detail)) ?? 'timeout', ...ms });
    else out.set(p.id, { error: what === 'error' ? detail ?? 'unknown' : [what, detail].filter(Boolean).join(' '), ...ms });
  }
  for (const p of probes) if (!out.has(p.id)) out.set(p.id, { error: 'no answer from the host' });
  return out;
}

/** Run `probes` from the host, concurrently there; the tool it used (perl, socat, bash) and each answer. */
export async function probeFrom(on: HostSession, sudo: boolean, probes: readonly ProbeSpec[]): Promise<{ tool: string; answers: Map<number, ProbeAnswer> }> {
  const stdin = probes.map((p) => `${probeLine(p)}\n`).join('');
  const longest = Math.max(0, ...probes.map((p) => p.timeoutMs));
  const r = await runHost(on, 'probe', [], { sudo, stdin, timeoutMs: longest + 30_000 });
  if (r.code !== 0) throw new HostError(on.host, 'probe', r.code, hostMessage(r));
  const sections = parseSections(r.stdout, ['probes', 'end']);
  const tool = keyValues(sections[0]?.lines ?? []).get('tool') ?? 'unknown';
  return { tool, answers: parseProbeAnswers(sections.find((s) => s.name === 'probes')?.lines ?? [], probes) };
}

/** Read lines from a stream until `until` matches one; all lines read so far. */
function readUntil(stream: HostStream, until: (line: string) => boolean, timeoutMs: number, what: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const lines: string[] = [];
    let err = '';
    const done = (e?: Error) => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('close', onClose);
      stream.stderr.off('data', onErr);
      if (e) reject(e);
      else resolve(lines);
    };
    const onErr = (d: Buffer) => (err = (err + d.toString('utf8')).slice(-2000));
    const onData = (d: Buffer) => {
      buf += d.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        if (until(line)) return done();
      }
    };
    const onClose = () => done(new FleetError(`${what}: the host ended it${err.trim() ? `: ${hostMessage({ code: null, stdout: '', stderr: err })}` : ''}`));
    const timer = setTimeout(() => done(new FleetError(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
    stream.on('data', onData);
    stream.on('close', onClose);
    stream.stderr.on('data', onErr);
  });
}

/**
 * Start listeners on the host (only where nothing listens yet). They live until
 * {@link Listeners.stop}, the end of the session (fleetfw gone), or `maxSeconds`.
 */
export async function listenOn(on: HostSession, sudo: boolean, specs: readonly ListenSpec[], maxSeconds: number): Promise<Listeners> {
  for (const s of specs) checkEndpoint(s.proto, s.addr, s.port);
  const stream = await on.spawn(hostCommand('listen', [String(Math.ceil(maxSeconds))], sudo));
  stream.on('error', () => undefined);
  stream.stderr.on('data', () => undefined);
  stream.write(specs.map((s) => `${s.id} ${s.proto} ${s.addr} ${s.port}\n`).join('') + 'end\n');
  let lines: string[];
  try {
    lines = await readUntil(stream, (l) => l === 'ready', 30_000, `${on.host}: listen`);
  } catch (e) {
    stream.close();
    throw e;
  }
  const states = new Map<number, ListenState>();
  for (const l of lines) {
    const [id, what, ...rest] = l.split(' ');
    if (what === 'started' || what === 'existing' || what === 'busy') states.set(Number(id), what);
    else if (what === 'error') states.set(Number(id), { error: rest.join(' ') });
  }
  for (const s of specs) if (!states.has(s.id)) states.set(s.id, { error: 'not reported by the host' });
  const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
  return {
    states,
    stop: async () => {
      stream.end();
      // The host says `stopped` and exits; a channel that does not close is closed from here.
      const timer = setTimeout(() => stream.close(), 10_000);
      await closed;
      clearTimeout(timer);
    },
  };
}
