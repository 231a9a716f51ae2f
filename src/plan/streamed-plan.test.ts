// Plans of any size: a plan made host by host is the same plan (hash, summary,
// JSON bytes) as one held whole, and its JSON is written in pieces that parse.
import { Writable } from 'node:stream';
import { createTwoFilesPatch } from 'diff';
import { describe, expect, it } from 'vitest';
import type { IpSet } from '../model/ruleset.js';
import type { RenderedHost } from '../render/render.js';
import { formatIpSets } from '../render/ipsets.js';
import { writeChunks } from '../cli/io.js';
import { assemblePlan, diffText, failedHostPlan, planOfflineHost, textPieces } from './plan.js';
import { formatPlanJson, formatPlanText } from './report.js';
import { formatSavedPlan, buildSavedPlan, savedPlanChunks } from './saved-plan.js';
import { outlineOf, planJsonChunks, streamOf, streamPlan } from './streamed-plan.js';

const BASE = '*filter\n:INPUT DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -s 10.0.0.1/32 -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n';

function set(name: string, n: number): IpSet {
  return { name, family: 4, members: Array.from({ length: n }, (_, i) => `10.1.${i >> 8}.${i & 255}`) };
}

const SETS = [set('fleetfw-web-private', 40), set('fleetfw-db-private', 7)];

function rendered(host: string, extra = '', ipsets: IpSet[] = SETS): RenderedHost {
  return {
    host,
    v4: { text: BASE.replace('COMMIT', `${extra}COMMIT`), origins: [], closedByDefault: false },
    v6: { text: '*filter\n:INPUT DROP [0:0]\nCOMMIT\n', origins: [], closedByDefault: true },
    notes: [],
    ...(ipsets.length > 0 ? { ipsets } : {}),
  };
}

/** A fleet of `n` hosts: a third new, a third changed, a third in sync, and one failed. */
function fleet(n: number): { names: string[]; make: (name: string) => ReturnType<typeof planOfflineHost> } {
  const names = Array.from({ length: n }, (_, i) => `host-${String(i).padStart(5, '0')}`);
  const make = (name: string) => {
    const i = Number(name.slice(5));
    if (i === 7) return failedHostPlan(name, 'error', 'boom `x` | "quoted"\nnext line');
    const r = rendered(name, i % 2 ? '-A INPUT -p tcp -m tcp --dport 443 -m comment --comment "tab\there \\"q\\" ünï" -j ACCEPT\n' : '');
    if (i % 3 === 0) return planOfflineHost(r, {});
    if (i % 3 === 1) return planOfflineHost(r, { v4: BASE, v6: r.v6.text, ipsets: formatIpSets(SETS.slice(0, 1)) });
    return planOfflineHost(r, { v4: r.v4.text, v6: r.v6.text, ipsets: formatIpSets(SETS) });
  };
  return { names, make };
}

describe('a new file diffed without jsdiff', () => {
  const jsdiff = (after: string) =>
    createTwoFilesPatch('x (absent)', 'x (rendered)', '', after, undefined, undefined, { context: 3 })
      .split('\n')
      .filter((l) => !l.startsWith('====='))
      .join('\n');

  it.each([['a\nb\n'], ['a\nb'], ['x'], ['\n'], ['\n\n'], ['a\n\nb\n'], [' a\n'], ['++ looks like a header\n+x\n'], ['--- y\n'], [BASE]])('%j: the same patch and counts as jsdiff', (after) => {
    const d = diffText('x', '', after, ['absent', 'rendered']);
    const patch = jsdiff(after);
    expect(d.patch).toBe(patch);
    expect(d.added).toBe(patch.split('\n').filter((l) => l.startsWith('+') && !l.startsWith('+++ ')).length);
    expect(d.removed).toBe(0);
  });

  it("a new host's sets: the same patch as jsdiff, and the same desired text as formatIpSets", () => {
    const h = planOfflineHost(rendered('new-1'), {});
    const sets = h.diffs.find((d) => d.what === 'ipsets')!;
    expect(sets.patch).toBe(jsdiff(formatIpSets(SETS)).replaceAll('x (', 'new-1/ipsets ('));
    expect(sets.added).toBe(40 + 7 + 2);
    expect(h.desired!.ipsets).toBe(formatIpSets(SETS));
  });

  it("a new host's set texts are pieces the JSON writer joins (never flattened into the plan)", () => {
    const h = planOfflineHost(rendered('new-1'), {});
    const pieces = textPieces(h);
    expect(pieces.map((p) => p.key).sort()).toEqual(['ipsets', 'patch']);
    for (const p of pieces) expect(p.pieces.join('')).toBe((p.of as Record<string, string>)[p.key]);
    const plan = assemblePlan('offline', 'x.yaml', [h]);
    const chunks = [...planJsonChunks(streamOf(plan))];
    expect(chunks.join('')).toBe(JSON.stringify(plan, null, 2));
    // Written from the pieces: a shared set's escaped lines are a chunk of their own.
    expect(chunks.filter((c) => /^\+?create fleetfw-/.test(c)).length).toBeGreaterThanOrEqual(2);
    // A note that looks like a mark is written as it is.
    const odd = { ...h, notes: ['\u0000fleetfw-piece-0\u0000'] };
    const oddPlan = assemblePlan('offline', 'x.yaml', [odd]);
    expect([...planJsonChunks(streamOf(oddPlan))].join('')).toBe(JSON.stringify(oddPlan, null, 2));
  });
});

describe('a plan made host by host', () => {
  const { names, make } = fleet(60);
  const whole = assemblePlan('offline', 'inventories/big.yaml', names.map(make));
  const streamed = streamPlan('offline', 'inventories/big.yaml', [...names].reverse(), make);

  it('has the same hash, summary and hosts as the plan held whole', () => {
    expect(streamed.planHash).toBe(whole.planHash);
    expect(streamed.summary).toEqual(whole.summary);
    expect(streamed.summary).toMatchObject({ hosts: 60, errors: 1 });
    expect([...streamed.hosts()]).toEqual(whole.hosts);
    expect(streamed.outlines).toEqual(whole.hosts.map(outlineOf));
  });

  it('keeps no diff text or desired rules between passes', () => {
    for (const h of streamed.outlines) {
      expect(h.desired).toBeUndefined();
      expect(h.diffs.every((d) => d.patch === '')).toBe(true);
    }
  });

  it('prints the same text and JSON (fleetfw-plan version 1) as the plan held whole', () => {
    expect(formatPlanJson(streamed)).toBe(`${JSON.stringify(whole, null, 2)}\n`);
    expect(formatPlanJson(whole)).toBe(`${JSON.stringify(whole, null, 2)}\n`);
    expect(formatPlanText(streamed, { color: false })).toBe(formatPlanText(whole, { color: false }));
    expect(formatPlanText(streamed, { color: true })).toBe(formatPlanText(whole, { color: true }));
  });

  it('a plan of no host is still the same JSON', () => {
    const empty = assemblePlan('live', 'x.yaml', []);
    expect([...planJsonChunks(streamOf(empty))].join('')).toBe(JSON.stringify(empty, null, 2));
  });

  it('saves the same file host by host as whole (plan --out)', () => {
    const source = { inventoryPath: 'inventories/big.yaml', inventoryText: 'hosts: {}\n', rendered: names.map((n) => rendered(n)), createdBy: 'test', now: new Date('2026-01-02T03:04:05Z') };
    expect([...savedPlanChunks(streamed, source)].join('')).toBe(formatSavedPlan(buildSavedPlan(whole, source)));
  });
});

describe('streaming JSON', () => {
  it('3,000 hosts: written in pieces through back-pressure, and the whole parses to the plan', async () => {
    const { names, make } = fleet(3000);
    const plan = streamPlan('offline', 'inventories/big.yaml', names, make);
    const received: string[] = [];
    let waits = 0;
    // A slow reader with a small buffer: the writer must wait for it.
    const reader = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _enc, done) {
        received.push(chunk.toString('utf8'));
        setImmediate(done);
      },
    });
    reader.on('drain', () => waits++);
    function* pieces() {
      yield* planJsonChunks(plan);
      yield '\n';
    }
    await writeChunks(reader, pieces());
    expect(waits).toBeGreaterThan(10);
    // No single giant write: a batch is about 64 KB plus at most one host.
    expect(Math.max(...received.map((r) => r.length))).toBeLessThan(256 * 1024);
    const text = received.join('');
    const parsed = JSON.parse(text) as { format: string; version: number; hosts: Array<{ host: string }>; summary: unknown; planHash: string };
    expect(parsed).toMatchObject({ format: 'fleetfw-plan', version: 1, planHash: plan.planHash, summary: plan.summary });
    expect(parsed.hosts.map((h) => h.host)).toEqual(names);
    expect(parsed).toEqual(JSON.parse(JSON.stringify(assemblePlan('offline', 'inventories/big.yaml', names.map(make)))));
  });

  it('stops writing when the reader has gone', async () => {
    const reader = new Writable({ write: (_c, _e, done) => done() });
    reader.destroy();
    let made = 0;
    function* endless() {
      for (;;) {
        made++;
        yield 'x'.repeat(1000);
      }
    }
    await writeChunks(reader, endless());
    expect(made).toBeLessThan(100);
  });
});
