// The host command line and the script itself, checked with the real sh and
// shellcheck (host project: needs the tools, not root).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { assembleHostScriptFile, programText } from './assemble.js';
import { compactScript, hostCommand, hostScript, joinFamilies, shellQuote, splitFamilies } from './run.js';

describe('host command line', () => {
  it('quotes the script so a shell gets it back byte for byte', () => {
    const tricky = `a'b"c $(x) \`y\` \\ \n end`;
    const r = spawnSync('sh', ['-c', `printf %s ${shellQuote(tricky)}`], { encoding: 'utf8' });
    expect(r.stdout).toBe(tricky);
  });

  it('runs the shipped script with checked arguments, through sudo -n when asked', () => {
    const cmd = hostCommand('prepare', ['20261121-abc', '60'], true);
    expect(cmd.startsWith("sudo -n sh -c 'set -eu\n")).toBe(true);
    expect(cmd.endsWith("' fleetfw-host prepare 20261121-abc 60")).toBe(true);
    expect(hostCommand('facts', [], false).startsWith("sh -c '")).toBe(true);
  });

  it('refuses any argument a shell could read as more than one word', () => {
    for (const bad of ['a b', 'x;y', '$(id)', '`id`', 'a\nb', '', "it's", 'ü']) {
      expect(() => hostCommand('facts', [bad], false)).toThrow(/unsafe argument/);
    }
  });

  it('carries both families on one stdin and splits them back', () => {
    const joined = joinFamilies('*filter\nCOMMIT', '*filter\n:INPUT DROP [0:0]\nCOMMIT\n');
    expect(splitFamilies(joined)).toEqual({ v4: '*filter\nCOMMIT\n', v6: '*filter\n:INPUT DROP [0:0]\nCOMMIT\n' });
    const sets = 'create fleetfw-web-private hash:ip family inet\nadd fleetfw-web-private 192.0.2.5\n';
    const withSets = joinFamilies('*filter\nCOMMIT', '*filter\nCOMMIT', sets);
    expect(splitFamilies(withSets)).toEqual({ v4: '*filter\nCOMMIT\n', v6: '*filter\nCOMMIT\n', ipsets: sets });
  });

  it('the host script is shellcheck-clean POSIX sh, as written and as assembled', () => {
    const file = fileURLToPath(new URL('./fleetfw-host.sh', import.meta.url));
    for (const [what, args, input] of [
      ['source', [file], undefined],
      ['assembled', ['-'], assembleHostScriptFile(file)],
    ] as const) {
      const r = spawnSync('shellcheck', ['-s', 'sh', ...args], { input, encoding: 'utf8' });
      expect(r.error, 'shellcheck must be installed (scripts/install-debian-deps.sh)').toBeUndefined();
      expect(r.stdout + r.stderr, what).toBe('');
      expect(r.status).toBe(0);
    }
    expect(hostScript()).toContain('set -eu');
  });

  it('sends each program as the code of its file, and writes the revert script whole: revert.sh with the guard library in it, shellcheck-clean as it runs', () => {
    // The sent script's definitions, without its last line (the one that runs a verb), then each string.
    const library = hostScript().replace(/\nif \[ "\$\{1:-\}" = serve \][^\n]*\n?$/, '\n');
    expect(library).not.toBe(hostScript());
    const code = (file: string) => compactScript(programText(file, readFileSync(fileURLToPath(new URL(file, import.meta.url)), 'utf8')));
    // As prepare writes txn/revert.sh: printf '%s\n' "$REVERT_SH".
    const written = (name: string) => {
      const r = spawnSync('sh', ['-c', `${library}\nprintf '%s\\n' "$${name}"`], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    };
    const sent = (name: string) => compactScript(written(name));
    const programs: Record<string, string> = {
      TIME_AWK: 'time.awk', CANON_AWK: 'canon.awk', DUMP_AWK: 'dump.awk', COPY_AWK: 'copy.awk', SPLIT_AWK: 'split.awk',
      PREPARE_AWK: 'prepare.awk', CONFIRM_AWK: 'confirm.awk', GUARD_LIB: 'guard-lib.sh', BOOT_TEST: 'boot-test.sh',
    };
    for (const [name, file] of Object.entries(programs)) expect(sent(name), name).toBe(code(file));
    // What prepare writes as txn/revert.sh: the guard library where revert.sh sources it.
    expect(sent('REVERT_SH')).toBe(code('revert.sh').replace(/^\. \.\/guard-lib\.sh\n/m, code('guard-lib.sh')));
    const revert = written('REVERT_SH');
    expect(revert.startsWith('#!/bin/sh\n')).toBe(true);
    const r = spawnSync('shellcheck', ['-s', 'sh', '-'], { input: revert, encoding: 'utf8' });
    expect(r.error, 'shellcheck must be installed (scripts/install-debian-deps.sh)').toBeUndefined();
    expect(r.stdout + r.stderr).toBe('');
  });

  it('is sent compact: no comment or blank line, no indentation, and still the same program to sh', () => {
    const source = assembleHostScriptFile(fileURLToPath(new URL('./fleetfw-host.sh', import.meta.url)));
    // What makes dropping those lines safe: no here-document, a space before every continuation.
    expect(source).not.toMatch(/<</);
    expect(source.split('\n').filter((l) => /\S\\$/.test(l))).toEqual([]);
    const sent = hostScript();
    expect(sent).toBe(compactScript(source));
    expect(sent.length).toBeLessThan(source.length * 0.75);
    expect(sent.split('\n').filter((l) => /^\s|^#/.test(l))).toEqual([]);
    const parsed = spawnSync('sh', ['-n', '-c', sent], { encoding: 'utf8' });
    expect(parsed.status, parsed.stderr).toBe(0);
    // The same functions, the same awk programs (compared without indentation).
    const words = (t: string) => t.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    expect(words(sent)).toEqual(words(source));
  });
});

