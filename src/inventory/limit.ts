// `--limit`: which hosts a command works on, in Ansible's pattern language, so
// that `--limit 'web*'`, `--limit 'all,!db'` and `--limit 'wordpress,!wordpress-2'`
// mean what an Ansible user expects. A pattern that matches nothing is refused:
// a misspelt exclusion would otherwise quietly include the host it meant to spare.
import { UsageError } from '../errors.js';
import type { HostSpec, Inventory } from '../model/inventory.js';
import { didYouMean, suggest } from './suggest.js';

/** One comma-separated item of a limit: a name or glob, to add, intersect (`&`) or exclude (`!`). */
export interface LimitPattern {
  op: 'add' | 'and' | 'not';
  pattern: string;
}

/** `a,b:!c,&d` → patterns; commas and colons separate, as in Ansible (names hold neither). */
export function parseLimit(limit: string): LimitPattern[] {
  const items = limit.split(/[,:]/).map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new UsageError(`--limit "${limit}" names no host or group`);
  return items.map((item) => {
    const op = item.startsWith('!') ? 'not' : item.startsWith('&') ? 'and' : 'add';
    const pattern = (op === 'add' ? item : item.slice(1)).trim();
    if (!pattern) throw new UsageError(`--limit: "${item}" needs a host or group after "${item[0]}"`);
    return { op, pattern };
  });
}

const isGlob = (pattern: string): boolean => /[*?[]/.test(pattern);

/** fnmatch as Ansible uses it: `*`, `?`, `[abc]`, `[a-z]`, `[!abc]`; case-sensitive. */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else if (ch === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, end);
      const negate = body.startsWith('!');
      if (negate) body = body.slice(1);
      re += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = end;
    } else re += ch.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** The hosts a pattern names: hosts by name, and the members of every group it names (`all` included). */
function hostsMatching(inv: Inventory, pattern: string): Set<string> {
  const matches = isGlob(pattern) ? ((re: RegExp) => (s: string) => re.test(s))(globToRegExp(pattern)) : (s: string) => s === pattern;
  const out = new Set<string>();
  for (const h of inv.hosts) if (matches(h.name) || h.groups.some(matches)) out.add(h.name);
  return out;
}

function noMatch(inv: Inventory, p: LimitPattern): string {
  const written = `${p.op === 'not' ? '!' : p.op === 'and' ? '&' : ''}${p.pattern}`;
  const groups = [...new Set(inv.hosts.flatMap((h) => h.groups))].sort();
  if (isGlob(p.pattern)) {
    const shown = groups.slice(0, 12).join(', ') + (groups.length > 12 ? ', …' : '');
    return `"${written}" matches no host or group (groups: ${shown})`;
  }
  return `no host or group named "${p.pattern}"${p.op === 'add' ? '' : ` (in "${written}")`}${didYouMean(suggest(p.pattern, [...inv.hosts.map((h) => h.name), ...groups]))}`;
}

/**
 * The hosts `--limit` selects, in inventory order: the union of the plain
 * patterns (every host when there are only exclusions), narrowed by each
 * `&pattern`, minus each `!pattern`. Every pattern must match some host.
 */
export function selectByLimit(inv: Inventory, limit: string | undefined): HostSpec[] {
  if (limit === undefined) return inv.hosts;
  const patterns = parseLimit(limit);
  const matched = patterns.map((p) => ({ p, hosts: hostsMatching(inv, p.pattern) }));
  const unmatched = matched.filter((m) => m.hosts.size === 0).map((m) => noMatch(inv, m.p));
  if (unmatched.length > 0) throw new UsageError(`--limit: ${unmatched.join('; ')}`);
  const adds = matched.filter((m) => m.p.op === 'add');
  const selected = inv.hosts.filter(
    (h) =>
      (adds.length === 0 || adds.some((m) => m.hosts.has(h.name))) &&
      matched.every((m) => (m.p.op === 'and' ? m.hosts.has(h.name) : m.p.op === 'not' ? !m.hosts.has(h.name) : true)),
  );
  if (selected.length === 0) {
    const why = matched.some((m) => m.p.op === 'and') ? 'no host it names is in every "&" pattern and not excluded' : 'its exclusions remove every host it names';
    throw new UsageError(`--limit "${limit}" selects no host: ${why}`);
  }
  return selected;
}
