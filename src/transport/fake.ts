// FOR TESTS ONLY: fleetfw itself never imports this module.
//
// A Transport whose hosts are small simulations of fleetfw-host.sh: live rules
// and their hash, one transaction at a time, generations, each transaction's
// record and the history log. They answer the command line run.ts builds
// (`[sudo -n] sh -c '<script>' fleetfw-host VERB ARGS`) and the framing of the
// kept `serve` script, both re-implemented here from the script rather than
// shared with run.ts, so a drift on either side shows up in a test. A per-host
// script can answer any verb itself (or return undefined to let the simulation
// answer). Every connection, verb, TCP probe, loopback answer and close is
// recorded with one global sequence number, so tests can assert order, overlap
// and reuse. Nothing waits unless a script does: with a window of 0 (or a fake
// clock, see untilSettled) a whole rollout runs in milliseconds.
import { createHash } from 'node:crypto';
import { Duplex, PassThrough } from 'node:stream';
import { TransportError, type ExecOptions, type ExecResult, type HostSession, type HostStream, type OpenOptions, type Transport } from './types.js';

/** The script's exit codes (its E_* variables); a test checks they match run.ts's HostExit. */
export const FAKE_EXIT = { usage: 64, test: 65, load: 66, noTxn: 70, changed: 71, late: 72, arm: 73, tool: 74, locked: 75, stale: 76, space: 77, loopback: 78, persist: 79 } as const;

const SPLIT_LINE = '# fleetfw-split v6';
const SETS_SPLIT_LINE = '# fleetfw-split ipsets';

export interface FakeRules {
  v4: string;
  v6: string;
  ipsets?: string;
}

/** A finished transaction as the host keeps it (txns/TXID/outcome). */
export interface FakeTxnRecord {
  state: 'confirmed' | 'confirmed-unpersisted' | 'reverted' | 'revert-failed';
  reason?: string;
  generation?: number;
}

/** The transaction in txn/: loaded and armed until confirmed or reverted. */
export interface FakeTxn {
  id: string;
  state: 'pending' | 'reverting';
  /** A guard (watchdog or timer) is alive. */
  watchdog: boolean;
  started: string;
  user: string;
  planHash: string;
  window: number;
  /** When the guards revert it (Date.now() clock, so fake timers move it). */
  deadline: number;
  before: { rules: FakeRules; hash: string };
  /** Sequence number of the load: the confirm's new connection must be opened after it. */
  loadedSeq: number;
}

export interface FakeHostState {
  live: FakeRules;
  liveHash: string;
  persistedHash: string;
  /** Current generation (0: never confirmed). */
  generation: number;
  generations: Map<number, { rules: FakeRules; meta: Record<string, string> }>;
  txn?: FakeTxn;
  txns: Map<string, FakeTxnRecord>;
  lastTxn?: string;
  /** history.log lines, oldest first. */
  log: string[];
  persistent: boolean;
  restore: boolean;
  backend: 'nft' | 'legacy' | 'mixed' | 'none';
  /** As the canonical step compares it with fleetfw's verified version, e.g. `1.8.9-nf_tables`. */
  iptablesVersion: string;
  bootId: string;
  /** `ss -ltnu` lines of the listeners section (header included). */
  listeners: string[];
  /** The guards revert a transaction still pending at its deadline (checked at each verb; use a window > 0 and a fake clock). */
  revertsAtDeadline: boolean;
  /** What sshd answers on loopback ports opened for this host's connections: port → token, connection. */
  loopbackAnswers: Map<number, { token: string; conn: number }>;
}

/** One verb as the host receives it. */
export interface VerbRequest {
  host: string;
  verb: string;
  args: string[];
  stdin: string;
  sudo: boolean;
  /** A one-shot command, or a request to a kept `serve` script. */
  via: 'exec' | 'serve';
  /** The connection it arrived on. */
  conn: number;
  /** The simulated host: read it, change it. */
  state: FakeHostState;
  /** This call's sequence number. */
  seq: number;
  /** When a connection was opened (its sequence number; -1 if unknown). */
  openSeqOf: (conn: number) => number;
}

/** A host's own answer to a verb; undefined lets the simulation answer. May throw (a TransportError: a lost connection). */
export type HostScript = (req: VerbRequest) => ExecResult | undefined | Promise<ExecResult | undefined>;

export interface FakeHost {
  readonly name: string;
  state: FakeHostState;
  script?: HostScript;
  /** New connections succeed. */
  reachable: boolean;
  /** From this host (its sshd), can a TCP connection to address:port be made? */
  tcp: (address: string, port: number) => boolean;
  /** sshd forwards a loopback port for each connection (answerOnLoopback). */
  loopback: boolean;
  /** The kept `serve` script can be started (else spawn's channel is refused). */
  serve: boolean;
}

export interface FakeHostOptions extends Partial<Omit<FakeHost, 'name' | 'state'>> {
  state?: Partial<FakeHostState>;
}

interface Base {
  seq: number;
  /** Date.now() when it happened. */
  at: number;
  host: string;
  conn: number;
}
export type FakeEvent =
  | (Base & { kind: 'open' })
  | (Base & { kind: 'open-failed'; error: string })
  | (Base & { kind: 'close' })
  | (Base & { kind: 'spawn'; ok: boolean })
  | (Base & { kind: 'tcp'; address: string; port: number; ok: boolean })
  | (Base & { kind: 'loopback'; port?: number })
  | FakeCall;
type Unstamped<E> = E extends unknown ? Omit<E, 'seq' | 'at'> : never;
export interface FakeCall extends Base {
  kind: 'call';
  verb: string;
  args: string[];
  stdin: string;
  sudo: boolean;
  via: 'exec' | 'serve';
  /** Sequence number of the answer (undefined while running). */
  endSeq?: number;
  code?: number | null;
  /** The call threw instead of answering. */
  error?: string;
}

// ---- answers, in the exact formats src/host/facts.ts and outcome.ts parse ----

export const ok = (stdout: string): ExecResult => ({ code: 0, stdout, stderr: '' });

/** The script's `die CODE MESSAGE`. */
export const hostFailure = (code: number, message: string): ExecResult => ({ code, stdout: '', stderr: `fleetfw-host: ${message}\n` });

/** A host that never answers: the caller's timeout (or a lost connection) ends the wait. */
export const hang = (): Promise<never> => new Promise<never>(() => undefined);

/** The hash the fake hosts use for a rule set (the real one is over the canonical text). */
export function rulesHash(rules: FakeRules): string {
  return createHash('sha256').update(`${rules.v4}\0${rules.v6}\0${rules.ipsets ?? ''}`).digest('hex');
}

const withNewline = (t: string) => (t === '' || t.endsWith('\n') ? t : `${t}\n`);

export interface FactsFields {
  generation: number;
  liveHash: string;
  persistedHash?: string;
  backend?: FakeHostState['backend'];
  persistent?: boolean;
  restore?: boolean;
  ipset?: boolean;
  txn?: { id: string; state: string; watchdog: boolean; started: string; user: string };
  lastTxn?: { id: string; state: string; generation?: number; reason?: string };
  bootId?: string;
  live?: { v4: string; v6: string };
  listeners?: string[];
  canonical?: { v4: string; v6: string } | { skipped: string } | { unavailable: string } | { wanted: string };
}

/** What `facts [canonical VERSION]` prints: its first key=value lines, dumps, the rest of meta, listeners, canonical. */
export function factsText(f: FactsFields): string {
  const yn = (b: boolean | undefined, dflt: boolean) => ((b ?? dflt) ? 'yes' : 'no');
  const lines = [
    'fleetfw-facts 1',
    `backend=${f.backend ?? 'nft'}`,
    'systemd=yes',
    `restore=${yn(f.restore, true)}`,
    `persistent=${yn(f.persistent, true)}`,
    `ipset=${yn(f.ipset, false)}`,
    'ipset_persistent=no',
    `generation=${f.generation}`,
    f.txn ? `txn=${f.txn.id} state=${f.txn.state} watchdog=${f.txn.watchdog ? 'yes' : 'no'} started=${f.txn.started} user=${f.txn.user}` : 'txn=none',
  ];
  if (f.lastTxn) {
    const t = f.lastTxn;
    lines.push(`last_txn=${t.id} state=${t.state}${t.generation !== undefined ? ` generation=${t.generation}` : ''}${t.reason ? ` reason=${t.reason}` : ''}`);
  }
  lines.push(`boot_id=${f.bootId ?? 'b0071d00-0000-4000-8000-000000000001'}`);
  lines.push('--- v4', ...(f.live?.v4 ?? '').split('\n').filter((l) => l !== ''));
  lines.push('--- v6', ...(f.live?.v6 ?? '').split('\n').filter((l) => l !== ''));
  lines.push('--- meta', `live_hash=${f.liveHash}`, `persisted_same=${(f.persistedHash ?? f.liveHash) === f.liveHash ? 'yes' : 'no'}`, 'persisted_v4=loads', 'persisted_v6=loads', 'persisted_sets=missing');
  lines.push('--- listeners', ...(f.listeners ?? DEFAULT_LISTENERS));
  if (f.canonical) {
    lines.push('--- canonical');
    if ('skipped' in f.canonical) lines.push(`skipped: ${f.canonical.skipped}`);
    else if ('unavailable' in f.canonical) lines.push(`unavailable: ${f.canonical.unavailable}`);
    else if ('wanted' in f.canonical) lines.push(`wanted: ${f.canonical.wanted}`);
    else lines.push(...f.canonical.v4.split('\n').filter((l) => l !== ''), '--- canonical-v6', ...f.canonical.v6.split('\n').filter((l) => l !== ''));
  }
  lines.push('--- end');
  return `${lines.join('\n')}\n`;
}

/** `prepare`'s answer once loaded and armed. */
export const preparedText = (txid: string): string => `loaded txid=${txid}\n`;

/** `confirm`'s answer once confirmed and persisted. */
export const confirmedText = (generation: number): string => `confirmed generation=${generation}\n`;

/** `outcome TXID`: the host's record of one transaction. */
export function outcomeText(o: { txid: string; state: string; watchdog?: boolean; reason?: string; generation?: number; liveHash: string }): string {
  return [
    `txn=${o.txid}`,
    `state=${o.state}`,
    `watchdog=${o.watchdog ? 'yes' : 'no'}`,
    ...(o.reason ? [`reason=${o.reason.replace(/\n/g, ' ')}`] : []),
    ...(o.generation !== undefined ? [`generation=${o.generation}`] : []),
    `live_hash=${o.liveHash}`,
    '',
  ].join('\n');
}

/** `history`: each kept generation's meta file, then the tail of history.log. */
export function historyText(generations: Array<Record<string, string>>, log: string[]): string {
  const parts = generations.map((m) => `--- generation\n${Object.entries(m).map(([k, v]) => `${k}=${v}\n`).join('')}`);
  return `${parts.join('')}--- log\n${log.map((l) => `${l}\n`).join('')}--- end\n`;
}

/** `generation N`: the stored rules, families split as the script prints them. */
export function generationText(rules: FakeRules): string {
  return `${withNewline(rules.v4)}${SPLIT_LINE}\n${withNewline(rules.v6)}${rules.ipsets ? `${SETS_SPLIT_LINE}\n${rules.ipsets}` : ''}`;
}

const DEFAULT_LISTENERS = ['Netid State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process', 'tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*'];

/** Empty tables, all ACCEPT: what a fresh host runs. */
export const OPEN_V4 = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n';
export const OPEN_V6 = OPEN_V4;

export function newHostState(init: Partial<FakeHostState> = {}): FakeHostState {
  const live = init.live ?? { v4: OPEN_V4, v6: OPEN_V6 };
  const liveHash = init.liveHash ?? rulesHash(live);
  return {
    liveHash,
    persistedHash: liveHash,
    generation: 0,
    generations: new Map(),
    txns: new Map(),
    log: [],
    persistent: true,
    restore: true,
    backend: 'nft',
    iptablesVersion: '1.8.9-nf_tables',
    bootId: 'b0071d00-0000-4000-8000-000000000001',
    listeners: DEFAULT_LISTENERS,
    revertsAtDeadline: false,
    loopbackAnswers: new Map(),
    ...init,
    live,
  };
}

/** The candidate on stdin, as the script's split_stdin cuts it. */
export function splitCandidate(text: string): FakeRules {
  const at = text.indexOf(`\n${SPLIT_LINE}\n`);
  if (at < 0) return { v4: text, v6: '' };
  const v4 = text.slice(0, at + 1);
  const rest = text.slice(at + SPLIT_LINE.length + 2);
  const marker = `${SETS_SPLIT_LINE}\n`;
  const found = rest.indexOf(`\n${marker}`);
  const sets = rest.startsWith(marker) ? 0 : found < 0 ? -1 : found + 1;
  if (sets < 0) return { v4, v6: rest };
  return { v4, v6: rest.slice(0, sets), ipsets: rest.slice(sets + marker.length) };
}

const isoNow = () => new Date(Date.now()).toISOString().replace(/\.\d+Z$/, 'Z');

function finishTxn(s: FakeHostState, id: string, record: FakeTxnRecord): void {
  s.txns.set(id, record);
  s.lastTxn = id;
  s.txn = undefined;
}

/** The revert: the backup loaded again, recorded, retired (the script's run_revert). */
export function revertTxn(s: FakeHostState, reason: string): void {
  const t = s.txn;
  if (!t) return;
  s.live = t.before.rules;
  s.liveHash = t.before.hash;
  s.log.push(`${isoNow()} ${t.id} reverted ${reason}`);
  finishTxn(s, t.id, { state: 'reverted', reason });
}

/**
 * The simulated host script: what each verb prints and exits with, and what it
 * does to the host's state. Scripts fall back to it (return undefined).
 */
export function simulateHost(req: VerbRequest): ExecResult {
  const s = req.state;
  const a = req.args;
  switch (req.verb) {
    case 'ping':
      return ok('pong\n');
    case 'canonical': {
      // The host's iptables-save prints the candidate back.
      const c = splitCandidate(req.stdin);
      return ok(['--- canonical', ...c.v4.split('\n').filter((l) => l !== ''), '--- canonical-v6', ...c.v6.split('\n').filter((l) => l !== ''), '--- end', ''].join('\n'));
    }
    case 'facts': {
      let canonical: FactsFields['canonical'];
      if (a[0] === 'canonical') {
        // Skipped where fleetfw's own format is verified; otherwise the candidate is wanted (the canonical verb).
        canonical = a[1] === s.iptablesVersion ? { skipped: `iptables ${s.iptablesVersion}` } : { wanted: `iptables ${s.iptablesVersion}` };
      }
      const t = s.txn;
      const last = s.lastTxn ? s.txns.get(s.lastTxn) : undefined;
      return ok(
        factsText({
          generation: s.generation,
          liveHash: s.liveHash,
          persistedHash: s.persistedHash,
          backend: s.backend,
          persistent: s.persistent,
          restore: s.restore,
          bootId: s.bootId,
          live: s.live,
          listeners: s.listeners,
          ...(t ? { txn: { id: t.id, state: t.state, watchdog: t.watchdog, started: t.started, user: t.user } } : {}),
          ...(last && s.lastTxn ? { lastTxn: { id: s.lastTxn, ...last } } : {}),
          ...(canonical ? { canonical } : {}),
        }),
      );
    }
    case 'prepare': {
      if (a.length !== 5 && !(a.length === 6 && a[5] === 'read')) return hostFailure(FAKE_EXIT.usage, 'prepare TXID WINDOW EXPECTED_HASH USER PLAN_HASH [read]');
      const [txid, window, expected, user, planHash] = a as [string, string, string, string, string];
      if (s.txn) return hostFailure(FAKE_EXIT.locked, `locked by transaction ${s.txn.id} of ${s.txn.user} since ${s.txn.started}`);
      if (expected !== '-' && expected !== s.liveHash) {
        return hostFailure(FAKE_EXIT.stale, `live rules changed since they were read (expected ${expected}, found ${s.liveHash})`);
      }
      const started = isoNow();
      const candidate = splitCandidate(req.stdin);
      s.txn = {
        id: txid,
        state: 'pending',
        watchdog: true,
        started,
        user,
        planHash,
        window: Number(window),
        deadline: Date.now() + Number(window) * 1000,
        before: { rules: s.live, hash: s.liveHash },
        loadedSeq: req.seq,
      };
      s.live = candidate;
      s.liveHash = rulesHash(candidate);
      s.log.push(`${started} ${txid} prepared user=${user} plan=${planHash} window=${window}`);
      return ok(preparedText(txid));
    }
    case 'confirm': {
      if (a.length !== 3 && a.length !== 5) return hostFailure(FAKE_EXIT.usage, 'confirm TXID KEEP SOURCE [PORT TOKEN]');
      const [txid, keep, source] = a as [string, string, string];
      const t = s.txn;
      if (!t || t.id !== txid) {
        const rec = s.txns.get(txid);
        const outcome = rec ? `${rec.state}${rec.generation !== undefined ? `: generation ${rec.generation}` : ''}${rec.reason ? `: ${rec.reason}` : ''}` : 'unknown transaction';
        return hostFailure(FAKE_EXIT.noTxn, `transaction ${txid} is not pending: ${outcome}`);
      }
      if (a.length === 5) {
        // new_connection_answers: the token came back through a connection opened after the load.
        const answer = s.loopbackAnswers.get(Number(a[3]));
        if (!answer || answer.token !== a[4] || answer.conn === req.conn || req.openSeqOf(answer.conn) <= t.loadedSeq) {
          return hostFailure(FAKE_EXIT.loopback, `no answer through the new connection on loopback port ${a[3]}`);
        }
      }
      if (t.state !== 'pending') return hostFailure(FAKE_EXIT.late, 'too late: the revert won the race');
      const gen = s.generation + 1;
      const when = isoNow();
      s.generations.set(gen, { rules: s.live, meta: { generation: String(gen), txid, user: t.user, when, plan_hash: t.planHash, source, hash: s.liveHash } });
      const kept = [...s.generations.keys()].sort((x, y) => x - y);
      for (const g of kept.slice(0, Math.max(0, kept.length - Number(keep)))) s.generations.delete(g);
      s.generation = gen;
      s.persistedHash = s.liveHash;
      s.log.push(`${when} ${txid} confirmed generation=${gen}`);
      finishTxn(s, txid, { state: 'confirmed', generation: gen });
      return ok(confirmedText(gen));
    }
    case 'abort': {
      if (a.length !== 2) return hostFailure(FAKE_EXIT.usage, 'abort TXID REASON');
      const t = s.txn;
      if (!t || t.id !== a[0]) return hostFailure(FAKE_EXIT.noTxn, `transaction ${a[0]} is not pending`);
      revertTxn(s, a[1]!);
      return ok('reverted\n');
    }
    case 'outcome': {
      if (a.length !== 1) return hostFailure(FAKE_EXIT.usage, 'outcome TXID');
      const txid = a[0]!;
      const t = s.txn;
      if (t && t.id === txid) return ok(outcomeText({ txid, state: t.state, watchdog: t.watchdog, liveHash: s.liveHash }));
      const rec = s.txns.get(txid);
      if (rec) return ok(outcomeText({ txid, ...rec, watchdog: false, liveHash: s.liveHash }));
      return ok(outcomeText({ txid, state: 'none', liveHash: s.liveHash }));
    }
    case 'history':
      return ok(
        historyText(
          [...s.generations.entries()].sort(([x], [y]) => x - y).map(([, g]) => g.meta),
          s.log.slice(-200),
        ),
      );
    case 'generation': {
      const g = s.generations.get(Number(a[0]));
      return g ? ok(generationText(g.rules)) : hostFailure(FAKE_EXIT.noTxn, `no generation ${a[0]} on this host`);
    }
    case 'ensure-persistent':
      if (s.persistent) return ok('present\n');
      s.persistent = true;
      return ok('installed\n');
    default:
      return hostFailure(FAKE_EXIT.usage, `unknown verb '${req.verb}'`);
  }
}

const HOST_MARK = "' fleetfw-host ";

/** `[sudo -n ]sh -c '<script>' fleetfw-host VERB ARGS`: the verb and arguments (they never hold a quote or a space). */
export function parseHostCommand(command: string): { sudo: boolean; verb: string; args: string[] } | undefined {
  const sudo = command.startsWith('sudo -n ');
  const at = command.lastIndexOf(HOST_MARK);
  if (at < 0 || !command.slice(sudo ? 8 : 0).startsWith("sh -c '")) return undefined;
  const [verb = '', ...args] = command.slice(at + HOST_MARK.length).split(' ');
  return { sudo, verb, args };
}

/** Settle `p` while a fake clock runs: `advance` (vi.advanceTimersByTimeAsync) moves it in steps until p is done. */
export async function untilSettled<T>(p: Promise<T>, advance: (ms: number) => Promise<unknown>, stepMs = 250, maxMs = 3_600_000): Promise<T> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  for (let t = 0; !done && t < maxMs; t += stepMs) await advance(stepMs);
  return p;
}

export class FakeTransport implements Transport {
  readonly events: FakeEvent[] = [];
  private seq = 0;
  private lastConn = 0;
  private lastPort = 40000;
  private readonly hosts = new Map<string, FakeHost>();
  private readonly sessions = new Set<FakeSession>();

  constructor(hosts: Record<string, FakeHostOptions> = {}) {
    for (const [name, o] of Object.entries(hosts)) this.define(name, o);
  }

  /** Declare (or redeclare) a host. */
  define(name: string, o: FakeHostOptions = {}): FakeHost {
    const { state, ...rest } = o;
    const h: FakeHost = { name, state: newHostState(state), reachable: true, tcp: () => true, loopback: false, serve: true, ...rest };
    this.hosts.set(name, h);
    return h;
  }

  /** A host, declared with the defaults on first use. */
  host(name: string): FakeHost {
    return this.hosts.get(name) ?? this.define(name);
  }

  async open(host: string, _opts?: OpenOptions): Promise<HostSession> {
    await Promise.resolve();
    const h = this.host(host);
    const conn = ++this.lastConn;
    if (!h.reachable) {
      const message = `${host}: connect timed out`;
      this.record({ kind: 'open-failed', host, conn, error: message });
      throw new TransportError(message, host, 'target', 'timeout', true);
    }
    this.record({ kind: 'open', host, conn });
    const s = new FakeSession(this, h, conn);
    this.sessions.add(s);
    return s;
  }

  async close(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.close()));
  }

  // ---- what happened ----

  /** Every verb, in the order the hosts received them; of one host with `host`. */
  calls(host?: string): FakeCall[] {
    return this.events.filter((e): e is FakeCall => e.kind === 'call' && (host === undefined || e.host === host));
  }

  /** `verb` of each call to `host`, in order. */
  verbs(host: string): string[] {
    return this.calls(host).map((c) => c.verb);
  }

  /** Connections opened to `host` (or to any host), in order. */
  opens(host?: string): Array<Extract<FakeEvent, { kind: 'open' }>> {
    return this.events.filter((e): e is Extract<FakeEvent, { kind: 'open' }> => e.kind === 'open' && (host === undefined || e.host === host));
  }

  isClosed(conn: number): boolean {
    return this.events.some((e) => e.kind === 'close' && e.conn === conn);
  }

  /** Connections still open. */
  openConnections(): number[] {
    return this.opens()
      .map((e) => e.conn)
      .filter((c) => !this.isClosed(c));
  }

  /** The first and last sequence numbers of everything `host` saw (its connections, verbs, probes from it); undefined if untouched. */
  span(host: string): { first: number; last: number } | undefined {
    const mine = this.events.filter((e) => e.host === host);
    if (mine.length === 0) return undefined;
    return { first: Math.min(...mine.map((e) => e.seq)), last: Math.max(...mine.map((e) => (e.kind === 'call' ? (e.endSeq ?? e.seq) : e.seq))) };
  }

  /** Most of `hosts` touched at one instant (their spans overlapping). */
  maxOverlap(hosts: string[]): number {
    const spans = hosts.map((h) => this.span(h)).filter((s): s is { first: number; last: number } => s !== undefined);
    return Math.max(0, ...spans.map((s) => spans.filter((o) => o.first <= s.first && s.first <= o.last).length));
  }

  // ---- used by the sessions ----

  record(e: Unstamped<FakeEvent>): FakeEvent {
    const full = { ...e, seq: ++this.seq, at: Date.now() } as FakeEvent;
    this.events.push(full);
    return full;
  }

  /** The kept scripts on `host`'s open connections die (host rebooted, sshd killed): their channels close without an exit status. */
  killServers(host: string): void {
    for (const s of this.sessions) if (s.host === host) s.killServers();
  }

  nextSeq(): number {
    return ++this.seq;
  }

  nextPort(): number {
    return ++this.lastPort;
  }

  forget(s: FakeSession): void {
    this.sessions.delete(s);
  }

  /** A verb arrives: recorded, the guards' deadline checked, answered by the host's script or the simulation. */
  async answer(h: FakeHost, conn: number, via: 'exec' | 'serve', sudo: boolean, verb: string, args: string[], stdin: string): Promise<ExecResult> {
    const call = this.record({ kind: 'call', host: h.name, conn, verb, args, stdin, sudo, via }) as FakeCall;
    const s = h.state;
    if (s.revertsAtDeadline && s.txn?.state === 'pending' && Date.now() >= s.txn.deadline) revertTxn(s, `no confirmation within ${s.txn.window}s`);
    try {
      const openSeqOf = (c: number) => this.events.find((e) => e.kind === 'open' && e.conn === c)?.seq ?? -1;
      const req: VerbRequest = { host: h.name, verb, args, stdin, sudo, via, conn, state: s, seq: call.seq, openSeqOf };
      const r = (await h.script?.(req)) ?? simulateHost(req);
      call.endSeq = this.nextSeq();
      call.code = r.code;
      return r;
    } catch (err) {
      call.endSeq = this.nextSeq();
      call.error = (err as Error).message;
      throw err;
    }
  }
}

class FakeSession implements HostSession {
  private open = true;
  private readonly streams = new Set<FakeServeStream>();

  constructor(
    private readonly t: FakeTransport,
    private readonly h: FakeHost,
    readonly conn: number,
  ) {}

  get host(): string {
    return this.h.name;
  }

  private gone(what: string): TransportError {
    return new TransportError(`${this.host}: cannot open ${what} channel: the session is closed`, this.host, 'target', 'channel');
  }

  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    if (!this.open) throw this.gone('an exec');
    const parsed = parseHostCommand(command);
    if (!parsed) return { code: 127, stdout: '', stderr: 'sh: not a fleetfw-host command\n' };
    const stdin = typeof opts.stdin === 'string' ? opts.stdin : (opts.stdin?.toString('utf8') ?? '');
    const answer = this.t.answer(this.h, this.conn, 'exec', parsed.sudo, parsed.verb, parsed.args, stdin);
    if (opts.timeoutMs === undefined) return answer;
    // As the SSH transport does: a command that outlives its timeout is a TransportError 'timeout'.
    let timer: NodeJS.Timeout | undefined;
    const ms = opts.timeoutMs;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TransportError(`${this.host}: command timed out after ${ms} ms`, this.host, 'target', 'timeout')), ms);
    });
    try {
      return await Promise.race([answer, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async spawn(command: string): Promise<HostStream> {
    if (!this.open) throw this.gone('an exec');
    const parsed = parseHostCommand(command);
    const ok = this.h.serve && parsed?.verb === 'serve';
    this.t.record({ kind: 'spawn', host: this.host, conn: this.conn, ok });
    if (!ok) throw new TransportError(`${this.host}: cannot open an exec channel: refused`, this.host, 'target', 'channel');
    const stream = new FakeServeStream((verb, args, stdin) => this.t.answer(this.h, this.conn, 'serve', parsed!.sudo, verb, args, stdin));
    this.streams.add(stream);
    stream.once('close', () => this.streams.delete(stream));
    return stream;
  }

  async connectTcp(address: string, port: number, _timeoutMs: number): Promise<boolean> {
    if (!this.open) throw this.gone('a direct-tcpip');
    const ok = this.h.tcp(address, port);
    this.t.record({ kind: 'tcp', host: this.host, conn: this.conn, address, port, ok });
    return ok;
  }

  async answerOnLoopback(line: string, _timeoutMs: number): Promise<number | undefined> {
    if (!this.open || !this.h.loopback) {
      this.t.record({ kind: 'loopback', host: this.host, conn: this.conn });
      return undefined;
    }
    const port = this.t.nextPort();
    this.h.state.loopbackAnswers.set(port, { token: line, conn: this.conn });
    this.t.record({ kind: 'loopback', host: this.host, conn: this.conn, port });
    return port;
  }

  killServers(): void {
    for (const s of this.streams) s.kill();
  }

  async close(): Promise<void> {
    if (!this.open) return;
    this.open = false;
    this.t.record({ kind: 'close', host: this.host, conn: this.conn });
    this.t.forget(this);
    for (const s of this.streams) s.kill();
  }
}

/**
 * The kept `serve` script: a request is a line `NONCE LENGTH VERB ARGS...` and
 * LENGTH bytes of stdin; the answer is the verb's stdout, `\n--- fleetfw-stderr
 * NONCE\n`, its stderr, `\n--- fleetfw-rc RC NONCE\n`. EOF on stdin ends it (exit 0).
 */
class FakeServeStream extends Duplex implements HostStream {
  readonly stderr = new PassThrough();
  private buf = Buffer.alloc(0);
  private busy: Promise<void> = Promise.resolve();
  private ended = false;

  constructor(private readonly onRequest: (verb: string, args: string[], stdin: string) => Promise<ExecResult>) {
    // 'exit' and 'close' are emitted by hand, once, in the order an SSH channel emits them.
    super({ autoDestroy: false, emitClose: false, allowHalfOpen: true });
  }

  override _read(): void {}

  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.buf = Buffer.concat([this.buf, typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk]);
    this.takeRequests();
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    cb();
    void this.busy.then(() => {
      if (this.ended) return;
      this.emit('exit', 0);
      this.kill();
    });
  }

  private takeRequests(): void {
    for (;;) {
      const nl = this.buf.indexOf(0x0a);
      if (nl < 0) return;
      const [nonce = '', len = '', verb = '', ...args] = this.buf.subarray(0, nl).toString('utf8').split(' ');
      const n = Number(len);
      if (this.buf.length < nl + 1 + n) return;
      const stdin = this.buf.subarray(nl + 1, nl + 1 + n).toString('utf8');
      this.buf = this.buf.subarray(nl + 1 + n);
      this.busy = this.busy.then(() => this.serveOne(nonce, verb, args, stdin));
    }
  }

  private async serveOne(nonce: string, verb: string, args: string[], stdin: string): Promise<void> {
    if (this.ended) return;
    let r: ExecResult;
    try {
      r = await this.onRequest(verb, args, stdin);
    } catch {
      // The connection died under the verb: the channel closes without an answer.
      this.kill();
      return;
    }
    if (this.ended) return;
    this.push(Buffer.from(`${r.stdout}\n--- fleetfw-stderr ${nonce}\n${r.stderr}\n--- fleetfw-rc ${r.code ?? 255} ${nonce}\n`, 'utf8'));
  }

  /** The channel ends without an exit status. */
  kill(): void {
    if (this.ended) return;
    this.ended = true;
    this.emit('close');
  }

  close(): void {
    this.kill();
  }
}
