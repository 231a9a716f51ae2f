import { afterEach, describe, expect, it } from 'vitest';
import type { ApplyEvent } from '../apply/transaction.js';
import { chooseProgressMode, startProgress, type ProgressOptions } from './progress.js';

/** A fake terminal: keeps what was written and plays the escapes fleetfw uses onto a screen. */
class FakeTty {
  isTTY = true;
  raw = '';
  constructor(
    public columns = 100,
    public rows = 30,
  ) {}
  write(text: string): boolean {
    this.raw += text;
    return true;
  }
  screen(): string[] {
    const screen: string[] = [''];
    let row = 0;
    let col = 0;
    const put = (ch: string) => {
      const line = screen[row] ?? '';
      screen[row] = line.padEnd(col).slice(0, col) + ch + line.slice(col + 1);
      col++;
    };
    const text = this.raw;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i]!;
      if (ch === '\x1b') {
        // eslint-disable-next-line no-control-regex -- a fake terminal: it parses the ESC [ sequences the view writes
        const m = /^\x1b\[(\??)(\d*)([A-Za-z])/.exec(text.slice(i));
        if (!m) throw new Error(`unknown escape at ${i}: ${JSON.stringify(text.slice(i, i + 8))}`);
        i += m[0].length - 1;
        const [, priv, num, cmd] = m;
        if (priv) continue; // cursor show/hide
        if (cmd === 'A') row = Math.max(0, row - Number(num || 1));
        else if (cmd === 'K') screen[row] = '';
        else if (cmd === 'J') {
          // Erase from the cursor to the end of the screen.
          screen[row] = (screen[row] ?? '').slice(0, col);
          screen.length = row + 1;
        } else if (cmd !== 'm') throw new Error(`unexpected escape ${m[0]}`);
      } else if (ch === '\r') col = 0;
      else if (ch === '\n') {
        row++;
        col = 0;
        screen[row] ??= '';
      } else put(ch);
    }
    while (screen.length > 0 && screen[screen.length - 1] === '') screen.pop();
    return screen.map((l) => l.trimEnd());
  }
}

const HOSTS = ['tunnel-1', 'web-1', 'web-2', 'db-1'];
let clock = 0;
let views: Array<{ stop(): void }> = [];
afterEach(() => {
  for (const v of views) v.stop();
  views = [];
});

function live(tty: FakeTty, extra: Partial<ProgressOptions> = {}) {
  clock = 1_000_000;
  const view = startProgress({
    mode: 'live',
    stream: tty,
    stdout: { write: () => true },
    color: false,
    hosts: HOSTS,
    title: 'fleetfw apply: 4 host(s), window 60s, plan abcd',
    window: 60,
    now: () => clock,
    tickMs: 0,
    ...extra,
  });
  views.push(view);
  return view;
}

function at(ms: number, host: string, stage: ApplyEvent['stage'], detail?: string): ApplyEvent {
  clock = 1_000_000 + ms;
  return { host, stage, detail, at: ms };
}

describe('live rollout view on a terminal', () => {
  it('events closer than a frame apart share one frame; stop draws the last state', async () => {
    const tty = new FakeTty();
    const many = Array.from({ length: 1000 }, (_, i) => `wordpress-${i + 1}`);
    const view = live(tty, { hosts: many, tickMs: 60_000 });
    const frames = () => tty.raw.split('\x1b[J').length - 1;
    expect(frames()).toBe(1);
    for (const h of many) view.onEvent(at(10, h, 'connecting'));
    for (const h of many) view.onEvent(at(20, h, 'persisted', 'generation 1'));
    // A burst of 2,000 events: at most one frame drawn for it so far, one more once it settles.
    expect(frames()).toBe(1);
    await new Promise<void>((resolve) => {
      const poll = () => (frames() > 1 ? resolve() : setTimeout(poll, 5));
      poll();
    });
    expect(frames()).toBe(2);
    view.stop();
    expect(tty.screen().at(-1)).toMatch(/^1000 persisted · 0 in progress · 0 waiting/);
  });

  it('draws every host from the start, then redraws in place: one line per host, never a scrolling log', () => {
    const tty = new FakeTty();
    const view = live(tty);
    expect(tty.screen()).toEqual([
      'fleetfw apply: 4 host(s), window 60s, plan abcd',
      '  · tunnel-1  waiting',
      '  · web-1     waiting',
      '  · web-2     waiting',
      '  · db-1      waiting',
      '0 persisted · 0 in progress · 4 waiting · 0 rolled back · 0 failed   0.0s',
    ]);
    for (const e of [
      at(0, 'tunnel-1', 'connecting'),
      at(100, 'tunnel-1', 'testing'),
      at(300, 'tunnel-1', 'loaded', 'txid 1, window 60s'),
      at(300, 'tunnel-1', 'confirming'),
      at(500, 'tunnel-1', 'persisted', 'generation 1'),
      at(600, 'web-1', 'connecting'),
      at(900, 'web-1', 'loaded', 'txid 2, window 60s'),
      at(900, 'web-1', 'confirming'),
      at(1000, 'web-2', 'connecting'),
      at(1200, 'web-2', 'failed', 'iptables-restore -t refused the IPv4 rules'),
    ]) view.onEvent(e);
    clock = 1_000_000 + 12_000;
    view.stop();
    const screen = tty.screen();
    expect(screen).toHaveLength(6);
    expect(screen[0]).toBe('fleetfw apply: 4 host(s), window 60s, plan abcd');
    expect(screen[1]).toMatch(/^ {2}✓ tunnel-1 {2}persisted {5}generation 1 +0\.5s$/);
    // Inside its window: the countdown, and the clock keeps running.
    expect(screen[2]).toMatch(/^ {2}\S web-1 {5}confirming {4}window 49s left +11\.4s$/);
    expect(screen[3]).toMatch(/^ {2}✗ web-2 {5}failed {8}iptables-restore -t refused the IPv4 rules +0\.2s$/);
    expect(screen[4]).toBe('  · db-1      waiting');
    expect(screen[5]).toBe('1 persisted · 1 in progress · 1 waiting · 0 rolled back · 1 failed   12.0s');
    // Cursor hidden while drawing, shown again at the end.
    expect(tty.raw.startsWith('\x1b[?25l')).toBe(true);
    expect(tty.raw.endsWith('\x1b[?25h')).toBe(true);
  });

  it('shows a rollback with the time left until the host reverts by itself', () => {
    const tty = new FakeTty();
    const view = live(tty, { hosts: ['mysql-1'] });
    view.onEvent(at(0, 'mysql-1', 'connecting'));
    view.onEvent(at(200, 'mysql-1', 'loaded', 'txid 3, window 60s'));
    view.onEvent(at(2200, 'mysql-1', 'rolling-back', 'confirmation failed'));
    expect(tty.screen()[1]).toMatch(/rolling back {2}host reverts in 58s: confirmation failed/);
    view.onEvent(at(61_000, 'mysql-1', 'rolled-back', 'confirmation failed'));
    view.stop();
    expect(tty.screen()[1]).toMatch(/^ {2}↺ mysql-1 {3}rolled back {3}confirmation failed +61\.0s$/);
    expect(tty.screen()[2]).toMatch(/^0 persisted · 0 in progress · 0 waiting · 1 rolled back · 0 failed/);
  });

  it('fits the terminal: long details are cut, a fleet taller than the screen is summarised', () => {
    const tty = new FakeTty(60, 6);
    const view = live(tty);
    view.onEvent(at(0, 'tunnel-1', 'failed', 'a very long reason '.repeat(10)));
    view.onEvent(at(0, 'web-1', 'connecting'));
    view.stop();
    const screen = tty.screen();
    expect(screen.every((l) => l.length <= 59)).toBe(true);
    // 6 rows: title, 2 hosts (in progress and failed first), "more", footer.
    expect(screen).toHaveLength(5);
    expect(screen[1]).toContain('web-1');
    expect(screen[2]).toContain('tunnel-1');
    expect(screen[2]).toContain('…');
    expect(screen[3]).toBe('  … 2 more (0 done, 2 waiting)');
  });

  it('uses no colour when asked for none (NO_COLOR, --no-color), only cursor moves', () => {
    const tty = new FakeTty();
    const view = live(tty, { color: false });
    view.onEvent(at(0, 'tunnel-1', 'persisted'));
    view.stop();
    // eslint-disable-next-line no-control-regex -- any SGR (colour) sequence, ESC [ … m, among the cursor moves
    expect(tty.raw).not.toMatch(/\x1b\[\d*(;\d+)*m/);
    const colored = new FakeTty();
    const v2 = live(colored, { color: true });
    v2.onEvent(at(0, 'tunnel-1', 'persisted'));
    v2.stop();
    expect(colored.raw).toContain('\x1b[32m');
  });
});

describe('without a terminal, and with --json', () => {
  it('picks live only on a terminal that can move the cursor', () => {
    expect(chooseProgressMode({ write: () => true, isTTY: true }, false, {})).toBe('live');
    expect(chooseProgressMode({ write: () => true, isTTY: true }, false, { TERM: 'dumb' })).toBe('lines');
    expect(chooseProgressMode({ write: () => true }, false, {})).toBe('lines');
    expect(chooseProgressMode({ write: () => true, isTTY: true }, true, {})).toBe('json');
  });

  it('prints one plain line per event, no escapes', () => {
    const tty = new FakeTty();
    tty.isTTY = false;
    const view = startProgress({ mode: 'lines', stream: tty, stdout: { write: () => true }, color: false, hosts: HOSTS, title: 't' });
    view.onEvent({ host: 'tunnel-1', stage: 'loaded', detail: 'txid 1, window 60s', at: 312 });
    view.onEvent({ host: 'tunnel-1', stage: 'persisted', detail: 'generation 1', at: 1500 });
    view.stop();
    expect(tty.raw).toBe('[   0.3s] tunnel-1: loaded (txid 1, window 60s)\n[   1.5s] tunnel-1: persisted (generation 1)\n');
  });

  it('streams one JSON object per line on stdout, type "event", nothing on the terminal', () => {
    const tty = new FakeTty();
    let stdout = '';
    const view = startProgress({ mode: 'json', stream: tty, stdout: { write: (s: string) => (stdout += s) }, color: true, hosts: HOSTS, title: 't' });
    view.onEvent({ host: 'web-1', stage: 'connecting', at: 0 });
    view.onEvent({ host: 'web-1', stage: 'failed', detail: 'no route', at: 10 });
    view.stop();
    expect(tty.raw).toBe('');
    expect(stdout.trimEnd().split('\n').map((l) => JSON.parse(l))).toEqual([
      { type: 'event', host: 'web-1', stage: 'connecting', at: 0 },
      { type: 'event', host: 'web-1', stage: 'failed', detail: 'no route', at: 10 },
    ]);
  });
});
