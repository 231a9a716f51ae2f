// The intents with real packets on the real fleet: for every pair an intent
// covers, a NEW connection (or datagram, or echo request) from the source to the
// destination's address and port, and what the destination's kernel did with it.
// Where nothing listens on a probed port, a short-lived listener is started on the
// destination first, so that allowed, rejected and dropped can be told apart.
// Never prints: the command formats the result.
import pLimit from 'p-limit';
import type { Expect, ExternalSpec, HostSpec, IntentSpec } from '../model/inventory.js';
import type { Transport, HostSession } from '../transport/types.js';
import { verifyIntents, type IntentPair } from '../analyze/intents.js';
import { parseFleet } from '../plan/checks.js';
import { listenOn, probeFrom, type ListenSpec, type ListenState, type Listeners, type LiveProto, type LiveVerdict, type ProbeAnswer, type ProbeSpec } from '../host/live-probes.js';
import type { Fleet } from './fleet.js';

export type { LiveVerdict } from '../host/live-probes.js';

/** What a pair's packets met: an intent's words, or why it cannot be told. */
export type LiveObserved = 'allow' | 'reject' | 'drop' | 'unknown' | 'not-probed';

export interface LiveRow {
  intent: string;
  from: string;
  to: string;
  proto: LiveProto;
  port?: number;
  toAddr?: string;
  expected: Expect;
  observed: LiveObserved;
  /** What the probe saw (open, refused, timeout…) and where it came from, or why there is no answer. */
  seen: string;
  /** false: the packets contradict the intent; undefined: not probed. */
  ok?: boolean;
  ms?: number;
}

export interface LiveIntent {
  intent: string;
  pairs: number;
  held: number;
  failed: number;
  unknown: number;
  notProbed: number;
  /** The slowest of its probes (they run at the same time). */
  ms: number;
}

export interface LiveReport {
  rows: LiveRow[];
  intents: LiveIntent[];
  /** Per host that probed: the tool it used (perl, socat, bash). */
  tools: Record<string, string>;
  /** Listeners fleetfw started (and removed), and ports where a service of the host answered. */
  listeners: { started: number; existing: number };
  /** Hosts fleetfw could not use (unreachable, a verb refused): their pairs are unknown. */
  hostErrors: Array<{ host: string; error: string }>;
  ms: number;
}

/** A probe from an external's side: the intent, the pair's destination and the model's outcome for it. */
export interface ExternalProbe {
  ext: ExternalSpec;
  to: HostSpec;
  toAddr: string;
  intent: IntentSpec;
  /** What the rendered rules decide for the pair (the external's address, every packet of the class). */
  modelOutcome: IntentPair['outcome'];
  /** The rule that decides it (`mysql-1 rules.v4 line 12: …`). */
  modelDecidedBy: string;
  timeoutMs: number;
}

/** How the ends outside the fleet are probed; an absent hook leaves those pairs not probed, with its reason. */
export interface ExternalProbes {
  /** A NEW connection from an external's side to a host's address; `via`: who really sent it. */
  probe?(q: ExternalProbe): Promise<{ verdict: LiveVerdict; via?: string } | { skip: string }>;
  /** Something answering on an external's address (for intents from hosts to it). */
  listen?(ext: ExternalSpec, proto: 'tcp' | 'udp', port: number): Promise<{ ok: true } | { skip: string }>;
  /** Why pairs to externals are not probed when `listen` is absent. */
  why?: string;
}

export interface LiveOptions {
  parallel: number;
  /** Per probe; a dropped packet costs this long. */
  timeoutMs: number;
  externals?: ExternalProbes;
  /** Only the pairs this keeps (a --limit). */
  pairs?: (from: string, to: string) => boolean;
  onProgress?: (done: number, total: number) => void;
}

interface Task {
  row: LiveRow;
  pair: IntentPair;
  intent: IntentSpec;
  src?: HostSpec;
  dst?: HostSpec;
  srcExt?: ExternalSpec;
  dstExt?: ExternalSpec;
  /** The listener (or its absence) the probe counts on. */
  listen?: ListenSpec & { host: string };
}

const EXTERNAL_PROBES_AT_ONCE = 32;

const OUTSIDE = 'outside the fleet: fleetfw has no way to send or answer there';

/** What a probe saw, in an intent's words: `refused` is a reject only when something of ours (or the host's) listens there. */
export function observedOf(verdict: LiveVerdict, listener: ListenState | 'external' | undefined, proto: LiveProto): { observed: LiveObserved; note?: string } {
  if (verdict === 'open') return { observed: 'allow' };
  if (verdict === 'unreachable') return { observed: 'reject' };
  const answered = listener === 'started' || listener === 'existing' || listener === 'external' || proto === 'icmp';
  if (verdict === 'refused') {
    return answered ? { observed: 'reject' } : { observed: 'unknown', note: 'refused, but nothing fleetfw could start listens there: the host itself may have refused it' };
  }
  // No answer: dropped, unless the one listening is a service of the host's own that answers nothing of ours.
  if (proto === 'udp' && listener === 'existing') return { observed: 'unknown', note: 'no answer, from a service of the host that need not answer a probe: allowed and dropped look alike' };
  return { observed: 'drop' };
}

export function holds(expected: Expect, observed: LiveObserved): boolean | undefined {
  if (observed === 'not-probed') return undefined;
  if (observed === 'unknown') return false;
  if (expected === 'deny') return observed === 'reject' || observed === 'drop';
  return expected === observed;
}

function tasksOf(fleet: Fleet): Task[] {
  const { inv } = fleet;
  const hosts = new Map(inv.hosts.map((h) => [h.name, h]));
  const exts = new Map(inv.externals.map((e) => [e.name, e]));
  const results = verifyIntents(inv, parseFleet(fleet.rendered));
  return results.flatMap((r) =>
    r.pairs.map((pair): Task => {
      const i = r.intent;
      const row: LiveRow = { intent: i.text, from: pair.from, to: pair.to, proto: i.proto, expected: i.expect, observed: 'not-probed', seen: '' };
      if (i.port !== undefined) row.port = i.port;
      if (pair.toAddr) row.toAddr = pair.toAddr;
      const t: Task = { row, pair, intent: i };
      const src = hosts.get(pair.from);
      const dst = hosts.get(pair.to);
      if (src) t.src = src;
      else t.srcExt = exts.get(pair.from)!;
      if (dst) t.dst = dst;
      else t.dstExt = exts.get(pair.to)!;
      return t;
    }),
  );
}

/** Prove every intent with real packets. Sessions, listeners and probes are bounded by `parallel`. */
export async function verifyLive(fleet: Fleet, transport: Transport, opts: LiveOptions): Promise<LiveReport> {
  const t0 = Date.now();
  const tasks = tasksOf(fleet).filter((t) => opts.pairs?.(t.row.from, t.row.to) ?? true);
  const ext = opts.externals ?? {};
  const hostErrors = new Map<string, string>();
  const limit = pLimit(Math.max(1, opts.parallel));
  const tools: Record<string, string> = {};
  // Probes from externals are one connection each, mostly waiting out a drop's timeout: more at once.
  const limitExternal = pLimit(Math.max(EXTERNAL_PROBES_AT_ONCE, opts.parallel));

  // Pairs that cannot be probed at all, said before anything is sent.
  const ready = tasks.filter((t) => {
    if (!t.pair.toAddr || (t.srcExt === undefined && !t.pair.fromAddr)) t.row.seen = `not probed: ${t.pair.reason ?? 'no address'}`;
    else if (t.srcExt && t.dstExt) t.row.seen = `not probed: ${OUTSIDE}`;
    else if (t.srcExt && !ext.probe) t.row.seen = `not probed: ${OUTSIDE}`;
    else if (t.dstExt && !ext.listen) t.row.seen = `not probed: ${ext.why ?? OUTSIDE}`;
    else return true;
    return false;
  });

  // One listener per host, protocol, address and port, whatever the number of intents on it.
  const wanted = new Map<string, ListenSpec & { host: string }>();
  let nextId = 1;
  for (const t of ready) {
    if (t.intent.proto === 'icmp' || t.intent.port === undefined || !t.dst) continue;
    const key = `${t.dst.name} ${t.intent.proto} ${t.pair.toAddr} ${t.intent.port}`;
    let l = wanted.get(key);
    if (!l) wanted.set(key, (l = { id: nextId++, host: t.dst.name, proto: t.intent.proto, addr: t.pair.toAddr!, port: t.intent.port }));
    t.listen = l;
  }

  const sessions = new Map<string, Promise<HostSession | undefined>>();
  const sessionOf = (h: HostSpec) => {
    let s = sessions.get(h.name);
    if (!s) {
      s = limit(() => transport.open(h.name)).catch((e: unknown) => {
        hostErrors.set(h.name, (e as Error).message);
        return undefined;
      });
      sessions.set(h.name, s);
    }
    return s;
  };

  const listeners: Listeners[] = [];
  const states = new Map<number, ListenState>();
  const externalListened = new Map<string, Promise<{ ok: true } | { skip: string }>>();
  let done = 0;
  const progress = (k: number) => {
    done += k;
    opts.onProgress?.(done, ready.length);
  };
  // A probe of ours waits out its timeout, the listener must outlive every probe: a generous bound, for a dead fleetfw only.
  const maxSeconds = 120 + Math.ceil((ready.length * opts.timeoutMs) / 1000);

  try {
    // 1. Listeners: on every destination host (one command each), and on externals through the hook.
    const perDst = groupBy([...wanted.values()], (l) => l.host);
    const dstHosts = new Map(fleet.inv.hosts.map((h) => [h.name, h]));
    await Promise.all(
      [...perDst].map(async ([name, specs]) => {
        const s = await sessionOf(dstHosts.get(name)!);
        if (!s) return;
        try {
          const l = await listenOn(s, dstHosts.get(name)!.ssh.sudo, specs, maxSeconds);
          listeners.push(l);
          for (const [id, st] of l.states) states.set(id, st);
        } catch (e) {
          hostErrors.set(name, `listeners: ${(e as Error).message}`);
        }
      }),
    );
    await Promise.all(
      ready
        .filter((t) => t.dstExt && t.intent.proto !== 'icmp')
        .map(async (t) => {
          const key = `${t.dstExt!.name} ${t.intent.proto} ${t.intent.port}`;
          let p = externalListened.get(key);
          if (!p) externalListened.set(key, (p = ext.listen!(t.dstExt!, t.intent.proto as 'tcp' | 'udp', t.intent.port!)));
          const r = await p;
          if ('skip' in r) t.row.seen = `not probed: ${r.skip}`;
        }),
    );

    // 2. Probes: each source host sends all of its own in one command; externals through the hook.
    const fromHosts = groupBy(ready.filter((t) => t.src && t.row.seen === ''), (t) => t.src!);
    const fromExternals = ready.filter((t) => t.srcExt && t.row.seen === '');
    await Promise.all([
      ...[...fromHosts].map(async ([h, ts]) => {
        const s = await sessionOf(h);
        if (!s) return progress(ts.length);
        const specs: ProbeSpec[] = ts.map((t, i) => ({
          id: i + 1,
          proto: t.intent.proto,
          addr: t.pair.toAddr!,
          ...(t.intent.port === undefined ? {} : { port: t.intent.port }),
          timeoutMs: opts.timeoutMs,
        }));
        try {
          const { tool, answers } = await limit(() => probeFrom(s, h.ssh.sudo, specs));
          tools[h.name] = tool;
          ts.forEach((t, i) => settle(t, answers.get(i + 1)!, h.name));
        } catch (e) {
          hostErrors.set(h.name, `probe: ${(e as Error).message}`);
        }
        progress(ts.length);
      }),
      ...fromExternals.map((t) =>
        limitExternal(async () => {
          const started = Date.now();
          try {
            const r = await ext.probe!({ ext: t.srcExt!, to: t.dst!, toAddr: t.pair.toAddr!, intent: t.intent, modelOutcome: t.pair.outcome, modelDecidedBy: t.pair.decidedBy, timeoutMs: opts.timeoutMs });
            if ('skip' in r) t.row.seen = `not probed: ${r.skip}`;
            else settle(t, { verdict: r.verdict, ms: Date.now() - started }, r.via ?? t.srcExt!.name);
          } catch (e) {
            // One probe that could not be sent tells nothing of its pair, and nothing of the others.
            settle(t, { error: (e as Error).message }, t.srcExt!.name);
          }
          progress(1);
        }),
      ),
    ]);
  } finally {
    await Promise.all(listeners.map((l) => l.stop()));
    await Promise.all([...sessions.values()].map(async (s) => (await s)?.close()));
  }

  function settle(t: Task, a: ProbeAnswer, from: string): void {
    if (a.ms !== undefined) t.row.ms = a.ms;
    if ('error' in a) {
      t.row.observed = 'unknown';
      t.row.seen = `probe failed on ${from}: ${a.error}`;
      t.row.ok = false;
      return;
    }
    // A destination whose listeners never went up (unreachable, refused): only a connection made tells anything.
    const dstError = t.dst ? hostErrors.get(t.dst.name) : undefined;
    if (t.listen && a.verdict !== 'open' && (dstError !== undefined || !states.has(t.listen.id))) {
      t.row.observed = 'unknown';
      t.row.ok = false;
      t.row.seen = `${a.verdict}, but cannot tell: no listener on ${t.row.to}${dstError ? ` (${dstError})` : ''}`;
      return;
    }
    const listener = t.dstExt ? 'external' : t.listen ? states.get(t.listen.id) : undefined;
    const { observed, note } = observedOf(a.verdict, listener, t.intent.proto);
    t.row.observed = observed;
    t.row.seen = `${a.verdict}${from === t.row.from ? '' : ` (from ${from})`}${note ? `: ${note}` : ''}`;
    const ok = holds(t.row.expected, observed);
    if (ok !== undefined) t.row.ok = ok;
  }

  // Pairs whose host failed: unknown, with the host's error.
  for (const t of ready) {
    if (t.row.observed !== 'not-probed' || t.row.seen !== '') continue;
    const err = [t.src?.name, t.dst?.name].map((n) => (n ? hostErrors.get(n) : undefined)).find((e) => e !== undefined);
    t.row.observed = 'unknown';
    t.row.ok = false;
    t.row.seen = err ? `cannot tell: ${err}` : 'cannot tell: no answer';
  }
  const rows = tasks.map((t) => t.row);
  const count = (st: ListenState) => [...states.values()].filter((s) => s === st).length;
  return {
    rows,
    intents: summarise(rows),
    tools,
    listeners: { started: count('started'), existing: count('existing') },
    hostErrors: [...hostErrors].map(([host, error]) => ({ host, error })).sort((a, b) => a.host.localeCompare(b.host)),
    ms: Date.now() - t0,
  };
}

/** Items by key, keys in first-seen order. */
function groupBy<T, K>(items: readonly T[], key: (item: T) => K): Map<K, T[]> {
  const out = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}

function summarise(rows: readonly LiveRow[]): LiveIntent[] {
  return [...groupBy(rows, (r) => r.intent)].map(([intent, rs]) => ({
    intent,
    pairs: rs.length,
    held: rs.filter((r) => r.ok === true).length,
    failed: rs.filter((r) => r.ok === false && r.observed !== 'unknown').length,
    unknown: rs.filter((r) => r.observed === 'unknown').length,
    notProbed: rs.filter((r) => r.observed === 'not-probed').length,
    ms: Math.max(0, ...rs.map((r) => r.ms ?? 0)),
  }));
}
