// The host script's answers: key=value lines, then `--- NAME` sections, ended by
// `--- end`. One reader for every verb that prints them.

export interface Section {
  /** '' for the lines before the first header. */
  name: string;
  lines: string[];
}

/**
 * Split `stdout` at its `--- NAME` lines. With `names`, only those headers count,
 * so that a line of data (a dump, a log) can never start a section.
 */
export function parseSections(stdout: string, names?: readonly string[]): Section[] {
  const out: Section[] = [{ name: '', lines: [] }];
  for (const line of stdout.split('\n')) {
    const m = /^--- (\S+)$/.exec(line);
    if (m && (names === undefined || names.includes(m[1]!))) out.push({ name: m[1]!, lines: [] });
    else out[out.length - 1]!.lines.push(line);
  }
  return out;
}

/** `key=value` lines into a map (the first `=` splits; other lines are ignored). */
export function keyValues(lines: readonly string[]): Map<string, string> {
  const kv = new Map<string, string>();
  for (const l of lines) {
    const eq = l.indexOf('=');
    if (eq > 0) kv.set(l.slice(0, eq), l.slice(eq + 1));
  }
  return kv;
}
