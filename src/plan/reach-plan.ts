// The reachability diff of a plan: the rules each host runs now (its live rules,
// or the stored render offline) against the rules it will run.
import type { Family, Inventory } from '../model/inventory.js';
import type { IpSet, RuleSet } from '../model/ruleset.js';
import { parseRuleSet } from '../analyze/parse.js';
import { reachChanges, ReachTooLarge, type HostRuleSets } from '../analyze/reach.js';
import { reachMatrix, type ReachMatrix } from '../analyze/reach-matrix.js';
import { formatIpSets, parseIpSets } from '../render/ipsets.js';
import type { ParsedFleet } from './checks.js';
import { reachReport, type ReachReport } from './reach-report.js';

/** A host's rules as text. */
export interface RulesText {
  v4: string;
  v6: string;
  ipsets?: string;
}

/**
 * What a host runs before the change: its rules as text, `absent` (no such host
 * yet), `same` (already runs what it will run), `kept` (not in this change: runs
 * these rules before and after), or `gone` (not in this change and not there).
 */
export type RulesBefore = RulesText | 'absent' | 'same' | { kept: RulesText } | 'gone';

/** The who-can-reach-whom matrix of a plan, or why it was not drawn. */
export type PlanMatrix = { matrix: ReachMatrix } | { tooLarge: string };

/**
 * The report for `after` (what every planned host will run) against `before`. A
 * host whose current rules fleetfw cannot read is taken as already running its
 * planned rules, and a note says so.
 */
export function planReach(
  inv: Inventory,
  after: ParsedFleet,
  afterText: (host: string) => { v4: string; v6: string; ipsets?: string } | undefined,
  before: (host: string) => RulesBefore,
): ReachReport & { notes: string[]; skipped?: boolean; matrix?: () => PlanMatrix } {
  const was = new Map<string, HostRuleSets>();
  const now = new Map<string, HostRuleSets>();
  const notes: string[] = [];
  const setsOf = ipSetsParser();
  for (const h of inv.hosts) {
    const a = after.get(h.name);
    if (!a) continue;
    const b = before(h.name);
    if (b === 'gone') continue;
    if (typeof b === 'object' && 'kept' in b) {
      const kept = parseText(h.name, b.kept, setsOf);
      if (typeof kept === 'string') {
        notes.push(`${h.name}: its current rules cannot be read (${kept}): flows to and from it are compared as if it ran its render`);
        now.set(h.name, a);
        was.set(h.name, a);
      } else {
        now.set(h.name, kept);
        was.set(h.name, kept);
      }
      continue;
    }
    if (b === 'absent') {
      now.set(h.name, a);
      continue;
    }
    if (b === 'same') {
      now.set(h.name, a);
      was.set(h.name, a);
      continue;
    }
    const { sets, canonical } = setsOf(b.ipsets ?? '');
    const same = afterText(h.name);
    const sameSets = canonical === (same?.ipsets ?? '');
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
      notes.push(`${h.name}: its current rules cannot be read (${typeof v4 === 'string' ? v4 : v6}): it is taken as already running its planned rules`);
      now.set(h.name, a);
      was.set(h.name, a);
      continue;
    }
    now.set(h.name, a);
    was.set(h.name, v4 === a.v4 && v6 === a.v6 ? a : { v4, v6 });
  }
  // Drawn only when asked for (--format html): it proves every pair, not only the changed ones.
  const matrix = (): PlanMatrix => {
    try {
      return { matrix: reachMatrix({ inv, before: was, after: now }) };
    } catch (e) {
      if (!(e instanceof ReachTooLarge)) throw e;
      return { tooLarge: e.message };
    }
  };
  try {
    return { ...reachReport(inv, reachChanges({ inv, before: was, after: now })), notes, matrix };
  } catch (e) {
    if (!(e instanceof ReachTooLarge)) throw e;
    // Said, not guessed: a plan too large to compare flow by flow shows no reachability diff at all.
    notes.push(`reachability not compared: the change touches ${e.message}; plan fewer hosts at a time (--limit) to see it`);
    return { ...reachReport(inv, []), notes, skipped: true, matrix };
  }
}

type IpSetsParser = (text: string) => { sets: Map<string, IpSet>; canonical: string };

/**
 * Each distinct ipsets text parsed once: the hosts of a group then share their sets,
 * and what the reachability diff works out per set (1,000 hosts with one 1,000-member set).
 */
function ipSetsParser(): IpSetsParser {
  const seen = new Map<string, ReturnType<IpSetsParser>>();
  return (text) => {
    let p = seen.get(text);
    if (!p) {
      const parsed = parseIpSets(text);
      seen.set(text, (p = { sets: new Map(parsed.map((x) => [x.name, x])), canonical: formatIpSets(parsed) }));
    }
    return p;
  };
}

/** Rules as text, parsed (with their sets), or the first problem. */
function parseText(host: string, t: RulesText, setsOf: IpSetsParser): HostRuleSets | string {
  const { sets } = setsOf(t.ipsets ?? '');
  const out: Partial<HostRuleSets> = {};
  for (const family of [4, 6] as const) {
    const { ruleSet, problems } = parseRuleSet(family === 4 ? t.v4 : t.v6, { family, file: `${host} rules.v${family}` });
    if (problems.length > 0) return problems[0]!.message;
    out[family === 4 ? 'v4' : 'v6'] = sets.size > 0 ? { ...ruleSet, sets } : ruleSet;
  }
  return out as HostRuleSets;
}
