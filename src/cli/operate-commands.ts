// Commands for operating a fleet: show (live rules with counters), logs
// (recent logged drops from the kernel log), discover (listening services
// against the rendered rules).
import pLimit from 'p-limit';
import { ExitCode, FleetError, UsageError, type ExitCodeValue } from '../errors.js';
import type { HostSpec, Inventory } from '../model/inventory.js';
import type { HostSession, Transport } from '../transport/types.js';
import * as client from '../host/client.js';
import { parseRuleListing } from '../host/rule-listing.js';
import { parseKernelLog, type LoggedPacket } from '../host/kernel-log.js';
import { parseSsListeners } from '../host/listeners.js';
import { assessListeners, formatSocket, type ListenerAssessment } from '../analyze/exposure.js';
import { parseFleet } from '../plan/checks.js';
import { chalkFor, out } from './io.js';
import { loadFleet, openTransport, selectHosts } from './context.js';
import { parallelOf, type LiveOptions } from './apply-run.js';

const TABLES = ['filter', 'nat', 'mangle', 'raw', 'security'];

function hostNamed(inv: Inventory, name: string): HostSpec {
  const h = inv.hosts.find((x) => x.name === name);
  if (!h) throw new UsageError(`no host named "${name}" in the inventory`);
  return h;
}

/** One host verb over a connection of its own. */
async function onHost<T>(transport: Transport, host: HostSpec, fn: (s: HostSession) => Promise<T>): Promise<T> {
  const s = await transport.open(host.name);
  try {
    return await fn(s);
  } finally {
    await s.close().catch(() => undefined);
  }
}

export async function cmdShow(hostName: string, opts: LiveOptions & { table?: string; json?: boolean }): Promise<ExitCodeValue> {
  const table = opts.table ?? 'filter';
  if (!TABLES.includes(table)) throw new UsageError(`--table must be one of ${TABLES.join(', ')}`);
  const { inv } = loadFleet(opts);
  const host = hostNamed(inv, hostName);
  const transport = await openTransport(inv, opts);
  try {
    // JSON wants exact counters; people want iptables' own 12K / 3M.
    const { v4, v6 } = await onHost(transport, host, (s) => client.show(s, host.ssh.sudo, table, Boolean(opts.json)));
    if (opts.json) {
      out(JSON.stringify({ host: hostName, table, v4: parseRuleListing(v4), v6: parseRuleListing(v6) }, null, 2));
      return ExitCode.ok;
    }
    const c = chalkFor(process.stdout, opts.color);
    out(c.bold(`${hostName}: ${table} table, IPv4 (iptables -vnL --line-numbers)`));
    out(v4 || '(no IPv4 rules)');
    out('');
    out(c.bold(`${hostName}: ${table} table, IPv6 (ip6tables -vnL --line-numbers)`));
    out(v6 || '(ip6tables not available)');
    return ExitCode.ok;
  } finally {
    await transport.close();
  }
}

/** `90s`, `15m`, `2h`, `1d`, or plain seconds. */
export function parseSince(value: string | undefined): number {
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(value ?? '1h');
  const secs = m ? Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's'] : Number.NaN;
  if (!Number.isInteger(secs) || secs < 1 || secs > 30 * 86400) throw new UsageError('--since must be a duration like 90s, 15m, 2h or 1d (at most 30d)');
  return secs;
}

function parseLines(value: string | undefined): number {
  const n = Number(value ?? 50);
  if (!Number.isInteger(n) || n < 1 || n > 5000) throw new UsageError('--lines must be an integer from 1 to 5000');
  return n;
}

function when(p: LoggedPacket): string {
  return p.epoch === undefined ? '?' : new Date(p.epoch * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
}

export async function cmdLogs(hostName: string, opts: LiveOptions & { since?: string; lines?: string; prefix?: string; json?: boolean }): Promise<ExitCodeValue> {
  const since = parseSince(opts.since);
  const lines = parseLines(opts.lines);
  const { inv } = loadFleet(opts);
  const host = hostNamed(inv, hostName);
  const transport = await openTransport(inv, opts);
  try {
    const log = parseKernelLog(await onHost(transport, host, (s) => client.kernelLog(s, host.ssh.sudo, since)));
    if (log.unavailable) throw new FleetError(`${hostName}: cannot read the kernel log: ${log.unavailable}`, ExitCode.hostsFailed);
    const packets = log.packets
      .filter((p) => p.epoch === undefined || p.epoch >= log.now - since)
      .filter((p) => opts.prefix === undefined || p.prefix.startsWith(opts.prefix.trim()))
      .slice(-lines);
    if (opts.json) {
      out(JSON.stringify({ host: hostName, source: log.source, since, packets: packets.map((p) => ({ ...p, time: when(p) })) }, null, 2));
      return ExitCode.ok;
    }
    if (packets.length === 0) {
      out(`${hostName}: no logged packets in the last ${opts.since ?? '1h'} (read with ${log.source}). Logging is on where a base template has %log-drops.`);
      return ExitCode.ok;
    }
    const rows = packets.map((p) => [when(p), p.prefix, p.in || '-', p.out || '-', p.src, p.dst, p.proto, p.spt === undefined ? '-' : String(p.spt), p.dpt === undefined ? (p.type === undefined ? '-' : `type ${p.type}`) : String(p.dpt)]);
    out(formatTable(['TIME', 'PREFIX', 'IN', 'OUT', 'SRC', 'DST', 'PROTO', 'SPT', 'DPT'], rows).join('\n'));
    out(`\n${packets.length} logged packet${packets.length === 1 ? '' : 's'} on ${hostName} (last ${opts.since ?? '1h'}, read with ${log.source})`);
    return ExitCode.ok;
  } finally {
    await transport.close();
  }
}

/** Aligned columns; lines come back plain so the caller can colour whole rows. */
function formatTable(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]!))).join('  ');
  return [line(head), ...rows.map(line)];
}

interface HostDiscovery {
  host: string;
  error?: string;
  listeners: ListenerAssessment[];
}

export async function cmdDiscover(opts: LiveOptions & { json?: boolean }): Promise<ExitCodeValue> {
  const { inv, rendered } = loadFleet(opts);
  const hosts = selectHosts(inv, opts.limit);
  const parsed = parseFleet(rendered);
  const transport = await openTransport(inv, opts);
  let results: HostDiscovery[];
  try {
    const limit = pLimit(parallelOf(opts));
    results = await Promise.all(
      hosts.map((h) =>
        limit(async (): Promise<HostDiscovery> => {
          try {
            const ss = await onHost(transport, h, (s) => client.listeners(s, h.ssh.sudo));
            return { host: h.name, listeners: assessListeners(inv, h, parsed.get(h.name)!, parseSsListeners(ss)) };
          } catch (e) {
            return { host: h.name, error: (e as Error).message, listeners: [] };
          }
        }),
      ),
    );
  } finally {
    await transport.close();
  }
  const warned = results.flatMap((r) => r.listeners.filter((l) => l.status === 'blocked' || l.status === 'exposed'));
  if (opts.json) {
    out(JSON.stringify({ format: 'fleetfw-discover', version: 1, hosts: results }, null, 2));
  } else {
    const c = chalkFor(process.stdout, opts.color);
    for (const r of results) {
      out(c.bold(r.host));
      if (r.error) out(c.red(`  unreachable: ${r.error}`));
      const shown = r.listeners.filter((l) => l.status !== 'local');
      const bad = (a: ListenerAssessment) => a.status === 'blocked' || a.status === 'exposed';
      const rows = shown.map((a) => [`  ${formatSocket(a.listener)}`, a.listener.process ?? '?', bad(a) ? a.status.toUpperCase() : a.status, a.summary]);
      if (rows.length > 0) {
        const [head, ...lines] = formatTable(['  SOCKET', 'PROCESS', 'STATUS', 'WHO GETS IN (rendered rules, NEW connections)'], rows);
        out(c.dim(head!));
        lines.forEach((l, i) => out(bad(shown[i]!) ? c.yellow(l) : l));
      }
      const local = r.listeners.length - shown.length;
      if (local > 0) out(c.dim(`  (${local} loopback or non-inventory socket${local === 1 ? '' : 's'} not shown)`));
      out('');
    }
    out(`${warned.length} warning${warned.length === 1 ? '' : 's'}: ${warned.filter((w) => w.status === 'blocked').length} blocked, ${warned.filter((w) => w.status === 'exposed').length} exposed without an intent.`);
  }
  return results.some((r) => r.error) ? ExitCode.hostsFailed : ExitCode.ok;
}
