// The assembler of the host script: what it puts where, what it refuses, and that
// the real script and its program files fit together (programs.host.test.ts runs the
// programs themselves; run.host.test.ts runs what is sent).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { assembleHostScript, assembleHostScriptFile, programText } from './assemble.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const files = (map: Record<string, string>) => (name: string) => {
  const text = map[name];
  if (text === undefined) throw new Error(`no ${name}`);
  return text;
};

describe('assembleHostScript', () => {
  it('puts each file after its opening quote: its code without the comments at its top and its final newline; the rest of the line stays', () => {
    const script = ["A='#include a.awk'", "B='#include b.awk", "'", "C='#include c.sh'", 'echo "$A$B"'].join('\n');
    const read = files({
      'a.awk': '# a.awk: what it does\n#   and how it is tested\n\nfunction a() { return 1 }\n# inside: kept (compaction drops it)\nfunction a2() { return 2 }\n',
      'b.awk': 'function b() { return 3 }\n',
      'c.sh': '#!/bin/sh\n# c.sh: a script\n# shellcheck shell=sh\necho c\n',
    });
    expect(assembleHostScript(script, read)).toBe(
      [
        "A='function a() { return 1 }",
        '# inside: kept (compaction drops it)',
        "function a2() { return 2 }'",
        "B='function b() { return 3 }",
        "'",
        "C='#!/bin/sh",
        "echo c'",
        'echo "$A$B"',
      ].join('\n'),
    );
  });

  it('splices a library that an included file sources, from the variable that included it: its text is sent once', () => {
    const script = ["LIB='#include lib.sh'", "RUN='#include run.sh'"].join('\n');
    const read = files({ 'lib.sh': '# shellcheck shell=sh\nf() { :; }\n', 'run.sh': '#!/bin/sh\nx=1\n# shellcheck source=lib.sh\n. ./lib.sh\nf\n' });
    expect(assembleHostScript(script, read)).toBe(["LIB='f() { :; }'", "RUN='#!/bin/sh", 'x=1', '# shellcheck source=lib.sh', `'"$LIB"'`, "f'"].join('\n'));
  });

  it('leaves text without includes as it is: the built script goes through it again when it runs', () => {
    const built = assembleHostScriptFile(join(HERE, 'fleetfw-host.sh'));
    expect(assembleHostScript(built, () => expect.unreachable('nothing to read'))).toBe(built);
  });

  it('refuses what would break the script: a single quote, a file not ending a line, a library not included before, nested includes, anything after an include', () => {
    const one = (text: string, script = "A='#include a.awk'") => () => assembleHostScript(script, files({ 'a.awk': text, 'b.sh': 'b=1\n' }));
    expect(one("BEGIN { print \"it's\" }\n")).toThrow(/a\.awk holds a single quote/);
    expect(one('# it\'s only a comment\nBEGIN { }\n')).toThrow(/single quote/);
    expect(one('BEGIN { }')).toThrow(/does not end with a newline/);
    expect(one('# nothing but comments\n')).toThrow(/has no code/);
    expect(one('. ./b.sh\n')).toThrow(/sources b\.sh, which no variable before A includes/);
    expect(one('. ./b.sh\n', "A='#include a.awk'\nB='#include b.sh'")).toThrow(/which no variable before A includes/);
    expect(one("X='#include b.sh'\n")).toThrow(/single quote/);
    expect(one('# #include b.sh\nBEGIN { }\nx = "#include b.sh"\n')).toThrow(/an included file includes nothing/);
    expect(one('BEGIN { }\n', "A='#include a.awk' # a comment")).toThrow(/nothing may follow #include a\.awk/);
    expect(one('BEGIN { }\n', "  A='#include a.awk'")).toThrow(/malformed include/);
    expect(() => assembleHostScriptFile(join(HERE, 'no-such-dir', 'fleetfw-host.sh'))).toThrow();
  });
});

describe('the host script and its programs', () => {
  const source = readFileSync(join(HERE, 'fleetfw-host.sh'), 'utf8');
  const includes = [...source.matchAll(/^([A-Z_]+)='#include (\S+?)'?$/gm)].map((m) => ({ name: m[1]!, file: m[2]! }));

  it('includes every program file beside it, each once, and no other', () => {
    const programs = readdirSync(HERE).filter((f) => /\.(awk|sh|pl)$/.test(f) && f !== 'fleetfw-host.sh');
    expect(includes.map((i) => i.file).sort()).toEqual(programs.sort());
    expect(includes.map((i) => i.name)).toEqual(['TIME_AWK', 'CANON_AWK', 'SOCKETS_AWK', 'GUARD_LIB', 'DUMP_AWK', 'COPY_AWK', 'BOOT_TEST', 'SPLIT_AWK', 'PREPARE_AWK', 'CONFIRM_AWK', 'REVERT_SH', 'LIVE_PROBE_PL']);
  });

  it('assembles with every include resolved, each program\'s code in its string', () => {
    const assembled = assembleHostScriptFile(join(HERE, 'fleetfw-host.sh'));
    expect(assembled).not.toMatch(/^[^#\n]*'#include/m);
    for (const { name, file } of includes) {
      const code = programText(file, readFileSync(join(HERE, file), 'utf8')).replace(/^\. \.\/guard-lib\.sh$/m, `'"$GUARD_LIB"'`);
      expect(assembled, file).toContain(`\n${name}='${code}`);
    }
  });
});
