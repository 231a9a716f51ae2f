// Watching a rollout. Three renderings of the same ApplyEvent stream:
//   live   on a terminal: one line per host, redrawn in place (ANSI cursor
//          moves), with counts and elapsed time;
//   lines  without a terminal: one plain line per event (logs, CI);
//   json   --json: one {"type":"event",...} object per line on stdout.
import { Chalk } from 'chalk';
import type { ApplyEvent, Stage } from '../apply/transaction.js';
import { colorFor } from './io.js';

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

export type ProgressMode = 'live' | 'lines' | 'json';

export interface ProgressOptions {
  mode: ProgressMode;
  /** Where live and line output goes (stderr: stdout stays data). */
  stream: ProgressStream;
  /** Where JSON lines go. */
  stdout: ProgressStream;
  color: boolean;
  /** Hosts in rollout order; the live view lists them all from the start. */
  hosts: string[];
  title: string;
  /** Auto-rollback window in seconds: the live view counts it down. */
  window?: number;
  now?: () => number;
  /** Live redraw period for the clocks; 0 = only on events (tests). */
  tickMs?: number;
}

export interface ProgressView {
  onEvent(e: ApplyEvent): void;
  /** Final frame; stops the clock. Call before printing anything else. */
  stop(): void;
}

export function chooseProgressMode(stream: ProgressStream, json: boolean, env: NodeJS.ProcessEnv = process.env): ProgressMode {
  if (json) return 'json';
  return stream.isTTY && env.TERM !== 'dumb' ? 'live' : 'lines';
}

type Paint = (s: string) => string;

function stagePaint(stage: Stage | 'waiting', c: InstanceType<typeof Chalk>): Paint {
  if (stage === 'persisted') return c.green;
  if (stage === 'failed' || stage === 'unknown') return c.red;
  if (stage === 'rolling-back' || stage === 'rolled-back') return c.yellow;
  if (stage === 'waiting' || stage === 'unchanged' || stage === 'skipped') return c.dim;
  return c.cyan;
}

/** The plain line of one event: what fleetfw always printed without a terminal. */
export function formatEventLine(e: ApplyEvent, c: InstanceType<typeof Chalk>): string {
  const paint = e.stage === 'persisted' ? c.green : e.stage === 'failed' || e.stage === 'unknown' ? c.red : e.stage.startsWith('roll') ? c.yellow : (s: string) => s;
  return `[${(e.at / 1000).toFixed(1).padStart(6)}s] ${e.host}: ${paint(e.stage)}${e.detail ? ` (${e.detail})` : ''}`;
}

/** The shortest time between two frames drawn for events. */
const FRAME_MS = 50;
const DONE: ReadonlySet<Stage> = new Set(['persisted', 'rolled-back', 'unchanged', 'failed', 'unknown', 'skipped']);
const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const MARK: Partial<Record<Stage | 'waiting', string>> = {
  waiting: '·',
  persisted: '✓',
  'rolled-back': '↺',
  failed: '✗',
  unknown: '?',
  skipped: '-',
  unchanged: '=',
};

interface HostState {
  stage: Stage | 'waiting';
  detail?: string;
  startedAt?: number;
  endedAt?: number;
  loadedAt?: number;
}

export function startProgress(opts: ProgressOptions): ProgressView {
  const c = new Chalk({ level: opts.color ? 1 : 0 });
  if (opts.mode === 'json') {
    return { onEvent: (e) => opts.stdout.write(`${JSON.stringify({ type: 'event', ...e })}\n`), stop: () => undefined };
  }
  if (opts.mode === 'lines') {
    return { onEvent: (e) => opts.stream.write(`${formatEventLine(e, c)}\n`), stop: () => undefined };
  }
  return startLiveView(opts, c);
}

function startLiveView(opts: ProgressOptions, c: InstanceType<typeof Chalk>): ProgressView {
  const now = opts.now ?? Date.now;
  const t0 = now();
  const hosts = [...opts.hosts];
  const states = new Map<string, HostState>(hosts.map((h) => [h, { stage: 'waiting' }]));
  let nameWidth = Math.max(8, ...hosts.map((h) => h.length));
  let drawn = 0;
  let frame = 0;
  let stopped = false;

  const showCursor = () => opts.stream.write('\x1b[?25h');
  opts.stream.write('\x1b[?25l');
  // A kill (Ctrl-C exits the process) must not leave the terminal without a cursor.
  process.once('exit', showCursor);

  const secs = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

  const hostLine = (host: string, s: HostState, width: number): string => {
    const t = now();
    const mark = DONE.has(s.stage as Stage) || s.stage === 'waiting' ? MARK[s.stage]! : SPINNER[frame % SPINNER.length]!;
    const label = s.stage.replace('-', ' ');
    let detail = s.detail ?? '';
    if (opts.window && s.loadedAt !== undefined && (s.stage === 'loaded' || s.stage === 'confirming' || s.stage === 'rolling-back')) {
      const left = Math.max(0, Math.ceil((s.loadedAt + opts.window * 1000 - t) / 1000));
      detail = s.stage === 'rolling-back' ? `host reverts in ${left}s: ${detail}` : `window ${left}s left`;
    }
    const took = s.startedAt === undefined ? '' : secs((s.endedAt ?? t) - s.startedAt);
    const head = `  ${mark} ${host.padEnd(nameWidth)}  ${label.padEnd(13)} `;
    const tail = took.padStart(7);
    const room = Math.max(0, width - head.length - tail.length - 1);
    const fitted = detail.length > room ? `${detail.slice(0, Math.max(0, room - 1))}…` : detail.padEnd(room);
    return `${stagePaint(s.stage, c)(head)}${c.dim(fitted)} ${tail}`;
  };

  const footer = (width: number): string => {
    const all = [...states.values()];
    const n = (pred: (s: HostState) => boolean) => all.filter(pred).length;
    const parts = [
      `${n((s) => s.stage === 'persisted')} persisted`,
      `${n((s) => s.stage !== 'waiting' && !DONE.has(s.stage as Stage))} in progress`,
      `${n((s) => s.stage === 'waiting')} waiting`,
      `${n((s) => s.stage === 'rolled-back')} rolled back`,
      `${n((s) => s.stage === 'failed' || s.stage === 'unknown')} failed`,
    ];
    const skipped = n((s) => s.stage === 'skipped');
    if (skipped) parts.push(`${skipped} skipped`);
    const clock = secs(now() - t0);
    let text = parts.join(' · ');
    // On a narrow terminal the zero counts go first, then the cut.
    if (text.length + 3 + clock.length > width) text = parts.filter((p) => !p.startsWith('0 ')).join(' · ');
    return `${text.slice(0, Math.max(0, width - 3 - clock.length))}   ${c.bold(clock)}`;
  };

  /** Host lines that fit the terminal: hosts at work and in trouble first. */
  const visibleHosts = (rows: number): { shown: string[]; hidden: string[] } => {
    const room = Math.max(1, rows - 3);
    if (hosts.length <= room) return { shown: hosts, hidden: [] };
    const rank = (h: string) => {
      const st = states.get(h)!.stage;
      if (st === 'waiting') return 2;
      if (!DONE.has(st as Stage)) return 0;
      return st === 'persisted' || st === 'unchanged' ? 3 : 1;
    };
    const ordered = [...hosts].sort((a, b) => rank(a) - rank(b));
    return { shown: ordered.slice(0, room - 1), hidden: ordered.slice(room - 1) };
  };

  const draw = () => {
    const width = Math.max(40, (opts.stream.columns ?? 80) - 1);
    const { shown, hidden } = visibleHosts(opts.stream.rows ?? 24);
    const lines = [c.bold(opts.title.slice(0, width)), ...shown.map((h) => hostLine(h, states.get(h)!, width))];
    if (hidden.length > 0) {
      const done = hidden.filter((h) => DONE.has(states.get(h)!.stage as Stage)).length;
      lines.push(c.dim(`  … ${hidden.length} more (${done} done, ${hidden.length - done} waiting)`));
    }
    lines.push(footer(width));
    // Up to the first line of the previous frame, rewrite every line, clear what is left below.
    const up = drawn > 0 ? `\x1b[${drawn}A` : '';
    opts.stream.write(`${up}\r${lines.map((l) => `\x1b[2K${l}`).join('\n')}\n\x1b[J`);
    drawn = lines.length;
    frame++;
  };

  draw();
  const timer = opts.tickMs === 0 ? undefined : setInterval(draw, opts.tickMs ?? 200);
  timer?.unref();
  // A frame costs O(hosts): events closer than a frame apart share one (a 1,000-host
  // rollout makes thousands of events), so the view costs O(hosts × frames), not O(hosts²).
  let pending: NodeJS.Timeout | undefined;
  const redraw = () => {
    if (opts.tickMs === 0) return draw();
    if (pending) return;
    pending = setTimeout(() => {
      pending = undefined;
      if (!stopped) draw();
    }, FRAME_MS);
    pending.unref();
  };

  return {
    onEvent(e) {
      if (stopped) return;
      let s = states.get(e.host);
      if (!s) {
        s = { stage: 'waiting' };
        states.set(e.host, s);
        hosts.push(e.host);
        nameWidth = Math.max(nameWidth, e.host.length);
      }
      s.startedAt ??= t0 + e.at;
      s.stage = e.stage;
      s.detail = e.detail;
      if (e.stage === 'loaded') s.loadedAt = t0 + e.at;
      if (DONE.has(e.stage)) s.endedAt = t0 + e.at;
      redraw();
    },
    stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearInterval(timer);
      if (pending) clearTimeout(pending);
      draw();
      showCursor();
      process.off('exit', showCursor);
    },
  };
}

/** The view for a rollout on this process's terminal: live on a TTY, lines otherwise, JSON with --json. */
export function startRolloutProgress(o: { hosts: string[]; title: string; window: number; json: boolean; color?: boolean }): ProgressView {
  return startProgress({
    mode: chooseProgressMode(process.stderr, o.json),
    stream: process.stderr,
    stdout: process.stdout,
    color: colorFor(process.stderr, o.color),
    hosts: o.hosts,
    title: o.title,
    window: o.window,
  });
}
