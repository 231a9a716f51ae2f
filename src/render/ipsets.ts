// The text form of a host's ipsets: `ipset restore` lines, canonical (sets by
// name, members sorted) so that the rendered sets and the live ones diff cleanly.
import type { IpSet } from '../model/ruleset.js';

/** Canonical `ipset restore` text of a host's sets (members sorted), as shipped and as diffed. */
export function formatIpSets(sets: readonly IpSet[]): string {
  const out = ipSetTexts(sets);
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}

/** Each set's text (setLines), by set name: formatIpSets is them, each followed by a newline. */
export function ipSetTexts(sets: readonly IpSet[]): string[] {
  return [...sets].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map(setLines);
}

// A group's set is one object shared by every host that matches it: its text is
// made once per run, not once per host (a 1,000-member set on 1,000 hosts).
const linesOf = new WeakMap<IpSet, string>();

/** One set's `create` and `add` lines, no final newline (made once per set and run). */
export function setLines(s: IpSet): string {
  let text = linesOf.get(s);
  if (text === undefined) {
    const members = sortAddresses(s.members).map((m) => `add ${s.name} ${m}`);
    text = [`create ${s.name} hash:ip family ${s.family === 6 ? 'inet6' : 'inet'}`, ...members].join('\n');
    linesOf.set(s, text);
  }
  return text;
}

/** Numeric order for IPv4 (zero-padded octets), text order for IPv6; each key computed once. */
function sortAddresses(addrs: readonly string[]): string[] {
  const key = (a: string) => (a.includes(':') ? a : a.split('.').map((o) => o.padStart(3, '0')).join('.'));
  return addrs
    .map((a) => [key(a), a] as const)
    .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
    .map((x) => x[1]);
}

/** fleetfw's sets from `ipset save` lines (create options beyond the family are dropped). */
export function parseIpSets(text: string): IpSet[] {
  const sets = new Map<string, { name: string; family: 4 | 6; members: string[] }>();
  for (const line of text.split('\n')) {
    const [verb, name, a, , family] = line.trim().split(/\s+/);
    if (!name?.startsWith('fleetfw-')) continue;
    if (verb === 'create') sets.set(name, { name, family: family === 'inet6' ? 6 : 4, members: sets.get(name)?.members ?? [] });
    else if (verb === 'add' && a) {
      const s = sets.get(name) ?? { name, family: a.includes(':') ? 6 : 4, members: [] };
      s.members.push(a);
      sets.set(name, s);
    }
  }
  return [...sets.values()];
}
