// The host script and its client must agree on the exit codes and the markers
// that split its input: both are read from the script's own text here.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HostExit, SETS_SPLIT_LINE, SPLIT_LINE } from './run.js';

const script = readFileSync(new URL('./fleetfw-host.sh', import.meta.url), 'utf8');

describe('the host script and its client agree', () => {
  it('on every exit code, by name', () => {
    const line = script.split('\n').find((l) => l.startsWith('E_USAGE='));
    expect(line, 'the script defines its exit codes on one E_USAGE=... line').toBeDefined();
    const inScript = Object.fromEntries([...line!.matchAll(/E_([A-Z]+)=(\d+)/g)].map((m) => [m[1]!.toLowerCase(), Number(m[2])]));
    const names: Record<string, string> = { notxn: 'noTxn' };
    const inClient = Object.fromEntries(Object.entries(inScript).map(([k]) => [k, HostExit[(names[k] ?? k) as keyof typeof HostExit]]));
    expect(inClient).toEqual(inScript);
    expect(Object.keys(inScript)).toHaveLength(Object.keys(HostExit).length);
  });

  it('on the lines that split the candidate into v4, v6 and ipsets', () => {
    expect(script).toContain(`SPLIT='${SPLIT_LINE}'`);
    expect(script).toContain(`SETS_SPLIT='${SETS_SPLIT_LINE}'`);
  });

  it('on every verb the client runs', () => {
    const dispatched = new Set([...script.matchAll(/^\s+([a-z-]+)\) cmd_/gm)].map((m) => m[1]!));
    const client = readFileSync(new URL('./client.ts', import.meta.url), 'utf8');
    const called = new Set([...client.matchAll(/verb\(on, '([a-z-]+)'/g)].map((m) => m[1]!));
    expect(called.size).toBeGreaterThan(8);
    for (const v of called) expect(dispatched, `the script dispatches ${v}`).toContain(v);
  });
});
