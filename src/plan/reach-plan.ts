// The reachability diff of a plan: the rules each host runs now (its live rules,
// or the stored render offline) against the rules it will run.
import type { Family, Inventory } from '../model/inventory.js';
import type { RuleSet } from '../model/ruleset.js';
import { parseRuleSet } from '../analyze/parse.js';
import { reachChanges, ReachTooLarge, type HostRuleSets } from '../analyze/reach.js';
import { formatIpSets, parseIpSets } from '../render/ipsets.js';
import type { ParsedFleet } from './checks.js';
import { reachReport, type ReachReport } from './reach-report.js';

/** What a host runs before the change: its rules as text, or `absent` (no such host yet), or `same` (not planned). */
export type RulesBefore = { v4: string; v6: string; ipsets?: string } | 'absent' | 'same';

/**
 * The report for `after` (what every host will run) against `before`. A host
 * whose current rules fleetfw cannot read is left out, with a note: no flow to it
 * or from it is claimed either way.
 */
export function planReach(
  inv: Inventory,
  after: ParsedFleet,
  afterText: (host: string) => { v4: string; v6: string; ipsets?: string } | undefined,
  before: (host: string) => RulesBefore,
): ReachReport & { notes: string[]; skipped?: boolean } {
  const was = new Map<string, HostRuleSets>();
  const now = new Map<string, HostRuleSets>();
  const notes: string[] = [];
  for (const h of inv.hosts) {
    const a = after.get(h.name);
    if (!a) continue;
    const b = before(h.name);
    if (b === 'absent') {
      now.set(h.name, a);
      continue;
    }
    if (b === 'same') {
      now.set(h.name, a);
      was.set(h.name, a);
      continue;
    }
    const parsedSets = parseIpSets(b.ipsets ?? '');
    const sets = new Map(parsedSets.map((s) => [s.name, s]));
    const same = afterText(h.name);
    const sameSets = formatIpSets(parsedSets) === (same?.ipsets ?? '');
    const parse = (text: string, family: Family, mine: RuleSet): RuleSet | string => {
      // The same rules and sets are the same rule set: the host's flows are then not evaluated twice.
      if (sameSets && text === same?.[family === 4 ? 'v4' : 'v6']) return mine;
      const { ruleSet, problems } = parseRuleSet(text, { family, file: `${h.name} current rules.v${family}` });
      if (problems.length > 0) return problems[0]!.message;
      return sets.size > 0 ? { ...ruleSet, sets } : ruleSet;
    };
    const v4 = parse(b.v4, 4, a.v4);
    const v6 = parse(b.v6, 6, a.v6);
    if (typeof v4 === 'string' || typeof v6 === 'string') {
      notes.push(`${h.name}: its current rules cannot be read (${typeof v4 === 'string' ? v4 : v6}): flows to and from it are not compared`);
      now.set(h.name, a);
      was.set(h.name, a);
      continue;
    }
    now.set(h.name, a);
    was.set(h.name, v4 === a.v4 && v6 === a.v6 ? a : { v4, v6 });
  }
  try {
    return { ...reachReport(inv, reachChanges({ inv, before: was, after: now })), notes };
  } catch (e) {
    if (!(e instanceof ReachTooLarge)) throw e;
    // Said, not guessed: a plan too large to compare flow by flow shows no reachability diff at all.
    notes.push(`reachability not compared: the change touches ${e.message}; plan fewer hosts at a time (--limit) to see it`);
    return { ...reachReport(inv, []), notes, skipped: true };
  }
}
