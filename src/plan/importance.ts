// Which hosts a reviewer should see first when a plan is too long to show whole
// (the pull-request comment keeps under GitHub's size limit). A fixed,
// deterministic order, read from each host's diff:
//   1. problems: unreachable or failed hosts, persisted rules that would not
//      load at boot or were never persisted, leftover transactions, warnings;
//   2. the management path: a changed rule that names the host's SSH port, or a
//      changed INPUT or OUTPUT policy (every new host has both);
//   3. changes that open access: an added ACCEPT rule, a removed DROP or REJECT
//      rule, an added set member (sets are what ACCEPT rules match);
//   4. every other change (rules that only close, comments, reordering).
// Within a tier the larger change first (lines added plus removed), then by name.
import type { HostPlan } from './plan.js';

export type Concern = 'problem' | 'management' | 'opens' | 'other';

export interface HostWeight {
  concern: Concern;
  /** Lines added plus lines removed, over every file of the host. */
  size: number;
}

const TIER: Record<Concern, number> = { problem: 0, management: 1, opens: 2, other: 3 };

const PORT_OPTION = /(?:^|\s)(?:!\s+)?--(?:dport|sport|dports|sports|destination-port|source-port|destination-ports|source-ports)\s+(?:!\s+)?(\S+)/g;

/** Whether a rule's port matches (`22`, `20:30`, `80,22`) include `port`. */
function namesPort(rule: string, port: number): boolean {
  for (const m of rule.matchAll(PORT_OPTION)) {
    for (const part of m[1]!.split(',')) {
      const [lo, hi] = part.split(':');
      const from = lo === '' ? 0 : Number(lo);
      const to = hi === undefined ? from : hi === '' ? 65535 : Number(hi);
      if (port >= from && port <= to) return true;
    }
  }
  return false;
}

/** The changed lines of a patch (`+x` / `-x`), headers left out. */
function* changedLines(patch: string): Generator<string> {
  let start = 0;
  while (start < patch.length) {
    let end = patch.indexOf('\n', start);
    if (end === -1) end = patch.length;
    const line = patch.slice(start, end);
    start = end + 1;
    if ((line[0] === '+' && !line.startsWith('+++ ')) || (line[0] === '-' && !line.startsWith('--- '))) yield line;
  }
}

export function weighHost(h: HostPlan, sshPort = 22): HostWeight {
  const size = h.diffs.reduce((n, d) => n + d.added + d.removed, 0);
  if (h.status === 'unreachable' || h.status === 'error' || h.persistedBroken || h.unpersisted || h.leftover || (h.warnings?.length ?? 0) > 0) {
    return { concern: 'problem', size };
  }
  let opens = false;
  for (const d of h.diffs) {
    if (d.what === 'ipsets') {
      // Any added member; found near the top of a new set, so a 10,000-line set is not read through.
      opens ||= d.patch.startsWith('+add ') || d.patch.includes('\n+add ');
      continue;
    }
    for (const line of changedLines(d.patch)) {
      const added = line[0] === '+';
      const text = line.slice(1);
      if (/^:(INPUT|OUTPUT) /.test(text)) return { concern: 'management', size };
      if (!/^-[AI] /.test(text)) continue;
      if (namesPort(text, sshPort)) return { concern: 'management', size };
      if (added ? /\s-j ACCEPT\b/.test(text) : /\s-j (DROP|REJECT)\b/.test(text)) opens = true;
    }
  }
  return { concern: opens ? 'opens' : 'other', size };
}

/** Most important first (see the top of this file). */
export function compareWeights(a: { host: string; weight: HostWeight }, b: { host: string; weight: HostWeight }): number {
  return TIER[a.weight.concern] - TIER[b.weight.concern] || b.weight.size - a.weight.size || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0);
}
