// The host script shaken per verb set (shake.ts), checked on the real script: for
// every verb the dispatcher knows, what is sent defines every function and string it
// names (found here with a parse of its own, not the shaker's), keeps the verb's own
// function whole, stubs the others, and invents nothing. shake.host.test.ts runs the
// shaken scripts (sh -n, shellcheck, a transaction on the real tools).
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { KEPT_VERBS } from '../apply/transaction.js';
import { assembleHostScriptFile } from './assemble.js';
import { HostServer, compactScript, hostCommand, hostScript, hostScriptFor } from './run.js';
import { scriptVerbs, shakeScript, topLevel } from './shake.js';
import type { HostSession, HostStream } from '../transport/types.js';

const full = assembleHostScriptFile(fileURLToPath(new URL('./fleetfw-host.sh', import.meta.url)));
const verbs = [...scriptVerbs(full).keys()];
/** Verb sets as fleetfw sends them: each verb alone, and the script a read leaves running for an apply. */
const sets: string[][] = [...verbs.map((v) => [v]), ['serve', ...KEPT_VERBS]];

/** Names a text defines: functions (`name() {` starting a line, also inside eval'd strings) and programs (`NAME='`). */
const definedIn = (sent: string) => new Set([...sent.matchAll(/^(?:([A-Za-z_][A-Za-z0-9_]*)\(\)\s*\{|([A-Z_][A-Z0-9_]*)=')/gm)].map((m) => m[1] ?? m[2]!));
const namesOfFull = definedIn(hostScript());
/** The words of a text but case patterns (`listeners)`: a verb, not a call) and the verbs the stubs name. */
const words = (sent: string) => new Set(sent.replace(/^[a-z][a-z0-9|-]*\)/gm, '').replace(/unsent [a-z-]+/g, '').match(/[A-Za-z_][A-Za-z0-9_]*/g) ?? []);
/** A one-line stub that refuses a verb the script was not sent for. */
const STUB = /^(cmd_[a-z_]+)\(\) \{ unsent [a-z-]+; \}$/;

describe('the host script shaken per verb set', () => {
  it('knows the dispatcher verbs, serve among them', () => {
    expect(verbs).toEqual(expect.arrayContaining(['facts', 'prepare', 'confirm', 'abort', 'outcome', 'history', 'generation', 'ensure-persistent', 'listeners', 'show', 'kernel-log', 'probe', 'listen', 'ping', 'serve']));
    for (const v of KEPT_VERBS) expect(verbs).toContain(v);
  });

  it('splits the script into top-level blocks that give it back whole', () => {
    const blocks = topLevel(full);
    expect(blocks.map((b) => b.text).join('\n')).toBe(full);
    // Every function defined at column 0 is a block of its own, or inside a string (GUARD_LIB, REVERT_SH).
    const named = new Set(blocks.filter((b) => b.kind !== 'other').map((b) => b.name));
    const ends: number[] = [];
    blocks.reduce((at, b) => (ends.push(at + b.text.length), at + b.text.length + 1), 0);
    for (const m of full.matchAll(/^([A-Za-z_][A-Za-z0-9_]*)\(\)\s*\{/gm)) {
      const b = blocks[ends.findIndex((e) => e > m.index)]!;
      expect(b.kind === 'string' || (b.kind === 'function' && b.name === m[1]), m[1]).toBe(true);
    }
    for (const name of ['CANON_AWK', 'REVERT_SH', 'GUARD_LIB', 'BOOT_TEST', 'PREPARE_AWK', 'CONFIRM_AWK']) expect(named.has(name), name).toBe(true);
  });

  for (const set of sets) {
    it(`for ${set.join(' + ')}: defines everything it names, keeps its own functions whole, refuses the others`, () => {
      const sent = hostScriptFor(set);
      const defined = definedIn(sent);
      const missing = [...words(sent)].filter((w) => namesOfFull.has(w) && !defined.has(w));
      expect(missing, `named but not defined in the script for ${set.join(' ')}`).toEqual([]);
      const lines = sent.split('\n');
      const stubs = lines.filter((l) => STUB.test(l)).map((l) => STUB.exec(l)![1]!);
      const own = new Set(set.flatMap((v) => scriptVerbs(full).get(v) ?? []));
      for (const fn of own) expect(stubs, fn).not.toContain(fn);
      // Each verb's own function as in the whole script.
      const wholeLines = hostScript().split('\n');
      for (const fn of own) {
        const from = wholeLines.findIndex((l) => l.startsWith(`${fn}() {`));
        const to = wholeLines[from]!.endsWith('}') ? from : wholeLines.indexOf('}', from);
        expect(sent, fn).toContain(wholeLines.slice(from, to + 1).join('\n'));
      }
      // Every other verb's function is a stub (a verb not sent is refused, never "not found").
      for (const [v, fns] of scriptVerbs(full)) if (!set.includes(v)) for (const fn of fns) if (!own.has(fn)) expect(stubs, `${v}: ${fn}`).toContain(fn);
      // Nothing invented: but the stubs, its lines are the whole script's, in order.
      let at = 0;
      for (const l of lines.filter((l) => !STUB.test(l) && !l.startsWith('unsent() {'))) {
        at = wholeLines.indexOf(l, at);
        expect(at, l).toBeGreaterThanOrEqual(0);
        at++;
      }
      expect(sent.length).toBeLessThan(hostScript().length);
    });
  }

  it('is the same text whatever the order of the verbs, and cached per set', () => {
    expect(hostScriptFor(['prepare', 'facts', 'serve'])).toBe(hostScriptFor(['serve', 'facts', 'prepare', 'facts']));
    expect(hostCommand('serve', [], false, ['facts', 'prepare'])).toBe(hostCommand('serve', [], false, ['prepare', 'facts']));
    expect(compactScript(shakeScript(full, ['facts']))).toBe(hostScriptFor(['facts']));
    // Every verb at once: nothing stubbed.
    expect(hostScriptFor(verbs)).not.toContain('unsent');
  });

  it('sends a one-shot command the script for its verb only, and a kept script that for its verbs', () => {
    const facts = hostCommand('facts', [], false);
    const whole = (fn: string) => new RegExp(`\\n${fn}\\(\\) \\{(?! unsent)`);
    expect(facts).toMatch(whole('cmd_facts'));
    expect(facts).not.toMatch(whole('cmd_prepare'));
    expect(facts).toContain('cmd_prepare() { unsent prepare; }');
    const serve = hostCommand('serve', [], false, KEPT_VERBS);
    for (const fn of ['cmd_serve', 'cmd_facts', 'cmd_prepare', 'cmd_confirm', 'cmd_ensure_persistent']) expect(serve).toMatch(whole(fn));
    expect(hostCommand('serve', [], false, 'all')).toContain(hostScript().slice(0, -1).replace(/'/g, `'\\''`));
  });

  it('a kept script refuses, before sending anything, a verb it was not started for', async () => {
    const written: string[] = [];
    const stream = Object.assign(
      { on: () => stream, write: (d: string) => void written.push(d), close: () => undefined, end: () => undefined, once: () => stream },
      { stderr: { on: () => undefined } },
    ) as unknown as HostStream;
    let command = '';
    const session = { host: 'h1', spawn: async (c: string) => ((command = c), stream) } as unknown as HostSession;
    const server = await HostServer.start(session, false, ['facts']);
    expect(command).toMatch(/\ncmd_facts\(\) \{(?! unsent)/);
    expect(command).toContain('cmd_history() { unsent history; }');
    await expect(server.request('history', [])).rejects.toThrow(/started without verb history/);
    expect(written).toEqual([]);
    void server.request('ping', []);
    expect(written).toHaveLength(1);
  });
});
