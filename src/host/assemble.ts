// The host script is one `sh -c` program on the wire, but its awk programs and the
// shell it runs from strings are files beside fleetfw-host.sh, so that each can be
// linted and tested on its own. This puts them back in: the build writes the result
// (dist/host/fleetfw-host.sh, what the package ships) and a checkout assembles the
// source when it runs (hostScript in run.ts). One function for both.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FleetError } from '../errors.js';

/** `NAME='#include FILE`, a whole line: the string's text starts with that of FILE. */
const INCLUDE = /^([A-Z][A-Z0-9_]*)='#include ([a-z0-9][a-z0-9.-]*)(.*)$/;
/** `. ./FILE` in an included file: a file included before, spliced in from its variable. */
const SOURCE = /^\s*\. \.\/([a-z0-9][a-z0-9.-]*)\s*$/;

/**
 * The code of a program file as it goes into the script: without the comment lines
 * at its top (what it is, how it is checked; a `#!` first line stays) and without its
 * final newline, so that its first line of code follows the opening quote (a comment
 * there, on the assignment's own line, would survive compaction and be sent) and its
 * last line meets what closes the string.
 */
export function programText(name: string, text: string): string {
  if (text.includes("'")) throw new FleetError(`${name} holds a single quote: it cannot go inside the host script's single-quoted string (awk writes \\047)`);
  if (!text.endsWith('\n')) throw new FleetError(`${name} does not end with a newline`);
  const lines = text.slice(0, -1).split('\n');
  const shebang = lines[0]?.startsWith('#!') ? [lines.shift()!] : [];
  while (lines.length > 0 && /^\s*(#.*)?$/.test(lines[0]!)) lines.shift();
  if (lines.length === 0) throw new FleetError(`${name} has no code`);
  return [...shebang, ...lines].join('\n');
}

/**
 * The script with every `NAME='#include FILE` line replaced by `NAME='` and the text
 * of FILE (see programText), the rest of the line kept (a closing quote, or nothing
 * when the string goes on: a newline is then part of it). In an included file, a line
 * `. ./FILE` (valid sh, and what shellcheck follows) names a file included earlier
 * as VAR: it becomes `'"$VAR"'`, so the text is sent once and spliced in by sh.
 * Text without includes comes back unchanged.
 */
export function assembleHostScript(script: string, read: (file: string) => string): string {
  const included = new Map<string, string>();
  const out = script.split('\n').map((line) => {
    const m = INCLUDE.exec(line);
    if (!m) {
      if (line.includes("'#include") && !line.trimStart().startsWith('#')) throw new FleetError(`malformed include in the host script: ${line}`);
      return line;
    }
    const [, name, file, rest] = m as unknown as [string, string, string, string];
    if (rest !== '' && rest !== "'") throw new FleetError(`${name}: nothing may follow #include ${file} on its line but the closing quote`);
    const text = programText(file, read(file))
      .split('\n')
      .map((l) => {
        if (l.includes('#include')) throw new FleetError(`${file}: an included file includes nothing (${l.trim()})`);
        const s = SOURCE.exec(l);
        if (!s) return l;
        const from = included.get(s[1]!);
        if (from === undefined) throw new FleetError(`${file} sources ${s[1]}, which no variable before ${name} includes`);
        return `'"$${from}"'`;
      })
      .join('\n');
    included.set(file, name);
    return `${name}='${text}${rest}`;
  });
  return out.join('\n');
}

/** FILE assembled with the programs beside it. */
export function assembleHostScriptFile(file: string): string {
  const dir = dirname(file);
  return assembleHostScript(readFileSync(file, 'utf8'), (name) => {
    const path = join(dir, name);
    if (!existsSync(path)) throw new FleetError(`${file} includes ${name}, which is missing from ${dir}`);
    return readFileSync(path, 'utf8');
  });
}
