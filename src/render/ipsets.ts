// The text form of a host's ipsets: `ipset restore` lines, canonical (sets by
// name, members sorted) so that the rendered sets and the live ones diff cleanly.
import type { IpSet } from '../model/ruleset.js';

/** Canonical `ipset restore` text of a host's sets (members sorted), as shipped and as diffed. */
export function formatIpSets(sets: readonly IpSet[]): string {
  const out: string[] = [];
  for (const s of [...sets].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    out.push(`create ${s.name} hash:ip family ${s.family === 6 ? 'inet6' : 'inet'}`);
    for (const m of sortAddresses(s.members)) out.push(`add ${s.name} ${m}`);
  }
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}

function sortAddresses(addrs: readonly string[]): string[] {
  const key = (a: string) => (a.includes(':') ? a : a.split('.').map((o) => o.padStart(3, '0')).join('.'));
  return [...addrs].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
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
