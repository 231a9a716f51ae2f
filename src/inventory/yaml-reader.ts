// Typed reads of YAML nodes that keep each value's line:col and dotted path and
// collect every problem instead of stopping at the first. Walking the nodes, not
// plain values, keeps positions and lets us see duplicate keys ourselves.
import { isAlias, isMap, isScalar, isSeq } from 'yaml';
import type { LineCounter, Node, ParsedNode } from 'yaml';
import { InputError } from '../errors.js';
import type { Problem } from '../errors.js';
import type { SourcePos } from '../model/inventory.js';
import { didYouMean, suggest } from './suggest.js';
import { quote } from './tokens.js';
import type { Checked } from './tokens.js';

export type YNode = Node | null | undefined;
export interface Where {
  path: string;
  line: number;
  col: number;
}
export interface Located<T = string> extends Where {
  value: T;
}
export interface Entry {
  key: Where;
  node: YNode;
  path: string;
}

/** Collects problems; typed readers return undefined after reporting. */
export class Reader {
  readonly problems: Problem[] = [];
  constructor(
    readonly file: string,
    private readonly lc: LineCounter,
  ) {}

  pos(w: Where): SourcePos {
    return { file: this.file, line: w.line, col: w.col };
  }

  where(node: YNode, path: string): Where {
    const offset = (node as ParsedNode | null | undefined)?.range?.[0];
    return { path, ...(offset === undefined ? { line: 1, col: 1 } : this.lc.linePos(offset)) };
  }

  report(w: Where, message: string): void {
    this.problems.push({ file: this.file, line: w.line, col: w.col, path: w.path, message });
  }

  error(): InputError {
    // Stable sort: same position keeps discovery order.
    return new InputError([...this.problems].sort((a, b) => a.line - b.line || a.col - b.col));
  }

  check<T>(w: Where, c: Checked<T>): T | undefined {
    if (c.ok) return c.value;
    this.report(w, c.reason);
    return undefined;
  }

  /**
   * Entries of a map node. With `keys`, other keys are reported as unknown;
   * a repeated key is reported at its second occurrence as `duplicate <noun>`.
   */
  map(node: YNode, path: string, keys?: readonly string[], noun = 'key'): Map<string, Entry> | undefined {
    if (!isMap(node)) return this.wrongType(node, path, 'a map');
    const out = new Map<string, Entry>();
    for (const pair of node.items) {
      const keyNode = pair.key as YNode;
      const name = isScalar(keyNode)
        ? typeof keyNode.value === 'string'
          ? keyNode.value
          : (keyNode.source ?? String(keyNode.value))
        : undefined;
      if (name === undefined) {
        this.report(this.where(keyNode, path), `expected a name as key, got ${describe(keyNode)}`);
        continue;
      }
      const entryPath = joinPath(path, name);
      const entry: Entry = { key: this.where(keyNode, entryPath), node: pair.value as YNode, path: entryPath };
      const first = out.get(name);
      if (first) {
        this.report(entry.key, `duplicate ${noun} ${quote(name)} (first defined at line ${first.key.line})`);
      } else if (keys && !keys.includes(name)) {
        const hint = suggest(name, keys);
        this.report(entry.key, `unknown key ${quote(name)}${didYouMean(hint)}`);
      } else {
        out.set(name, entry);
      }
    }
    return out;
  }

  list(node: YNode, path: string, what = 'a list'): Entry[] | undefined {
    if (!isSeq(node)) return this.wrongType(node, path, what);
    return node.items.map((item, i) => {
      const itemPath = `${path}[${i}]`;
      return { key: this.where(item as YNode, itemPath), node: item as YNode, path: itemPath };
    });
  }

  string(node: YNode, path: string): Located | undefined {
    if (!isScalar(node) || typeof node.value !== 'string') return this.wrongType(node, path, 'a string');
    return { ...this.where(node, path), value: node.value };
  }

  /** A string that must pass `check`; the located value is the checked (canonical) one. */
  token<T = string>(node: YNode, path: string, check: (s: string) => Checked<T>): Located<T> | undefined {
    const s = this.string(node, path);
    const v = s && this.check(s, check(s.value));
    return s && v !== undefined ? { ...s, value: v } : undefined;
  }

  /** A list of checked strings; each bad item is reported at its own node. */
  tokens<T = string>(node: YNode, path: string, check: (s: string) => Checked<T>): Located<T>[] | undefined {
    const items = this.list(node, path, 'a list of strings');
    return items?.flatMap((e) => this.token(e.node, e.path, check) ?? []);
  }

  int(node: YNode, path: string, min: number, max: number, what: string): Located<number> | undefined {
    if (!isScalar(node) || typeof node.value !== 'number' || !Number.isInteger(node.value)) {
      return this.wrongType(node, path, 'an integer');
    }
    const w = this.where(node, path);
    if (node.value < min || node.value > max) return void this.report(w, `${what} must be ${min}-${max}, got ${node.value}`);
    return { ...w, value: node.value };
  }

  bool(node: YNode, path: string): boolean | undefined {
    if (!isScalar(node) || typeof node.value !== 'boolean') return this.wrongType(node, path, 'true or false');
    return node.value;
  }

  /** One of a fixed set of words. */
  choice<T extends string>(node: YNode, path: string, options: readonly T[]): T | undefined {
    const s = this.string(node, path);
    if (!s) return undefined;
    if ((options as readonly string[]).includes(s.value)) return s.value as T;
    return void this.report(s, `expected ${options.map((o) => `"${o}"`).join(' or ')}, got ${quote(s.value)}`);
  }

  private wrongType(node: YNode, path: string, expected: string): undefined {
    this.report(this.where(node, path), `expected ${expected}, got ${describe(node)}`);
    return undefined;
  }
}

export function describe(node: YNode): string {
  if (isMap(node)) return 'a map';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null || v === undefined) return 'nothing';
    if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
    return `a ${typeof v}`;
  }
  if (isAlias(node)) return 'an alias (aliases are not supported)';
  return 'nothing';
}

/** `hosts.mysql-1.private`; a key that is not a plain name is bracketed and quoted. */
function joinPath(parent: string, key: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(key)) return `${parent}[${quote(key)}]`;
  return parent ? `${parent}.${key}` : key;
}
