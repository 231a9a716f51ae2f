// Parse the host script's `kernel-log` answer: netfilter LOG lines from the
// journal (`short-unix`), `dmesg --time-format iso` or plain `dmesg`.

export interface LoggedPacket {
  /** Seconds since the epoch; undefined when the line carries no usable time. */
  epoch?: number;
  /** The LOG rule's --log-prefix, trimmed (`fleetfw DROP:`). */
  prefix: string;
  in: string;
  out: string;
  src: string;
  dst: string;
  proto: string;
  spt?: number;
  dpt?: number;
  /** ICMP type, when PROTO=ICMP. */
  type?: number;
  line: string;
}

import { keyValues, parseSections } from './sections.js';

export interface KernelLog {
  source: 'journalctl' | 'dmesg' | 'none';
  /** Host clock (epoch seconds) when it answered. */
  now: number;
  packets: LoggedPacket[];
  unavailable?: string;
}

const JOURNAL = /^(\d+(?:\.\d+)?) \S+ kernel: (.*)$/;
const ISO = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:,(\d+))?([+-]\d\d:?\d\d|Z)? (.*)$/;
const RAW = /^\[\s*(\d+(?:\.\d+)?)\] (.*)$/;

export function parseKernelLog(stdout: string): KernelLog {
  const parts = parseSections(stdout, ['log', 'end']);
  const kv = keyValues(parts.find((p) => p.name === '')?.lines ?? []);
  const logLines = parts.find((p) => p.name === 'log')?.lines;
  const now = Number(kv.get('now') ?? 0);
  const uptime = Number(kv.get('uptime') ?? 0);
  const log: KernelLog = { source: (kv.get('source') ?? 'none') as KernelLog['source'], now, packets: [] };
  for (const line of logLines ?? []) {
    if (line.startsWith('unavailable')) {
      log.unavailable = line.replace(/^unavailable: ?/, '');
      continue;
    }
    let epoch: number | undefined;
    let msg: string;
    let m: RegExpExecArray | null;
    if ((m = JOURNAL.exec(line))) {
      epoch = Number(m[1]);
      msg = m[2]!;
    } else if ((m = ISO.exec(line))) {
      const zone = !m[3] || m[3] === 'Z' ? 'Z' : m[3].replace(/^([+-]\d\d)(\d\d)$/, '$1:$2');
      epoch = Date.parse(`${m[1]}${zone}`) / 1000 + Number(`0.${m[2] ?? '0'}`);
      msg = m[4]!;
    } else if ((m = RAW.exec(line))) {
      // Seconds since boot: place it against the host's uptime and clock.
      epoch = uptime > 0 ? now - (uptime - Number(m[1])) : undefined;
      msg = m[2]!;
    } else {
      continue;
    }
    const p = parseLogMessage(msg);
    if (p) log.packets.push({ ...p, ...(epoch !== undefined && Number.isFinite(epoch) ? { epoch } : {}), line });
  }
  return log;
}

/** `fleetfw DROP: IN=eth1 OUT= MAC=… SRC=… DST=… … PROTO=TCP SPT=… DPT=…` */
export function parseLogMessage(msg: string): Omit<LoggedPacket, 'line' | 'epoch'> | undefined {
  const start = msg.search(/(^| )IN=/);
  if (start < 0) return undefined;
  const fields = new Map<string, string>();
  for (const tok of msg.slice(start).trim().split(/\s+/)) {
    const eq = tok.indexOf('=');
    if (eq > 0 && !fields.has(tok.slice(0, eq))) fields.set(tok.slice(0, eq), tok.slice(eq + 1));
  }
  if (!fields.has('SRC') || !fields.has('DST')) return undefined;
  const num = (k: string) => (fields.has(k) && /^\d+$/.test(fields.get(k)!) ? Number(fields.get(k)) : undefined);
  const p: Omit<LoggedPacket, 'line' | 'epoch'> = {
    prefix: msg.slice(0, start).trim(),
    in: fields.get('IN') ?? '',
    out: fields.get('OUT') ?? '',
    src: fields.get('SRC')!,
    dst: fields.get('DST')!,
    proto: fields.get('PROTO') ?? '',
  };
  const spt = num('SPT');
  const dpt = num('DPT');
  const type = num('TYPE');
  if (spt !== undefined) p.spt = spt;
  if (dpt !== undefined) p.dpt = dpt;
  if (type !== undefined) p.type = type;
  return p;
}
