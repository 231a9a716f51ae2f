// Static safety checks over a whole fleet, before anything is sent: the
// management path of every host (lockout), the intents, and the lint findings;
// over the rendered rules, or over the rules the hosts will really run.
import { InputError } from '../errors.js';
import type { Family, Inventory } from '../model/inventory.js';
import type { Rule, RuleSet } from '../model/ruleset.js';
import { bastionOf } from '../inventory/query.js';
import { parseRuleSet } from '../analyze/parse.js';
import { lintRuleSet } from '../analyze/checks.js';
import { checkManagementPath } from '../analyze/lockout.js';
import { verifyIntents } from '../analyze/intents.js';
import type { RenderedHost } from '../render/render.js';
import { mergeFound, newValidationCache, validateRendered, type Found } from '../render/validate.js';
import { splitForeign } from './foreign.js';
import type { Plan } from './plan.js';

export interface FleetFinding {
  host: string;
  severity: 'error' | 'warning';
  code: string;
  message: string;
}

export type ParsedFleet = Map<string, { v4: RuleSet; v6: RuleSet }>;

/**
 * Parse every rendered host. A rendered line the analyser reads differently from
 * iptables-restore (or not at all) is the template's fault: reported as invalid
 * input at the template line it came from.
 */
export function parseFleet(rendered: RenderedHost[]): ParsedFleet {
  const out: ParsedFleet = new Map();
  const cache = newValidationCache();
  const found: Found[] = [];
  for (const r of rendered) {
    const sets = new Map((r.ipsets ?? []).map((s) => [s.name, s]));
    const parse = (family: Family) => {
      // The same validation as render's (which already parsed what renderFleet returned).
      const parsed = validateRendered(r.host, family, r[family === 4 ? 'v4' : 'v6'], cache);
      found.push(...parsed.found);
      return sets.size > 0 ? { ...parsed.ruleSet, sets } : parsed.ruleSet;
    };
    out.set(r.host, { v4: parse(4), v6: parse(6) });
  }
  if (found.length > 0) throw new InputError(mergeFound(found));
  return out;
}

export function checkFleet(inv: Inventory, parsed: ParsedFleet): FleetFinding[] {
  const findings: FleetFinding[] = [];
  for (const host of inv.hosts) {
    const sets = parsed.get(host.name);
    if (!sets) continue;
    const bastion = bastionOf(inv, host);
    const lockout = checkManagementPath(inv, host, sets, bastion.name === host.name ? undefined : parsed.get(bastion.name));
    if (!lockout.ok) {
      findings.push({ host: host.name, severity: 'error', code: 'lockout', message: `${lockout.message} (path: ${lockout.path}${lockout.hops ? `; tables: ${lockout.hops}` : ''})` });
    }
    for (const [key, rs] of [['v4', sets.v4], ['v6', sets.v6]] as const) {
      for (const f of lintRuleSet(rs)) {
        findings.push({ host: host.name, severity: f.severity, code: f.code, message: `rules.${key}: ${f.message}` });
      }
    }
  }
  return findings;
}

/**
 * Every failed check of the fleet that concerns `names` (all hosts when absent):
 * the management paths and lint of those hosts, and every intent pair one of them
 * is an end of, proven over the rule sets in `parsed`.
 */
export function fleetFindings(inv: Inventory, parsed: ParsedFleet, names?: ReadonlySet<string>): FleetFinding[] {
  const mine = (h: string) => names === undefined || names.has(h);
  const findings = checkFleet(inv, parsed).filter((f) => mine(f.host));
  for (const r of verifyIntents(inv, parsed)) {
    for (const p of r.pairs) {
      if (p.ok || (!mine(p.from) && !mine(p.to))) continue;
      const example = p.counterexample ? `; packet ${p.counterexample}; path ${p.path}` : '';
      const why = p.decidedBy || p.reason || '';
      findings.push({ host: mine(p.to) ? p.to : p.from, severity: 'error', code: 'intent', message: `intent "${r.intent.text}" fails for ${p.from} -> ${p.to}: ${p.outcome}${why ? ` (${why})` : ''}${example}` });
    }
  }
  return findings;
}

/**
 * The rule sets the hosts will really run once a live plan is applied: each
 * planned host's desired rules (the render with the live rules' preserved chains
 * and jumps merged in), other hosts as rendered. Rendered rules keep their
 * template lines; preserved ones are labelled as the host's live rules.
 */
export function plannedRuleSets(parsed: ParsedFleet, plan: Plan, rendered: RenderedHost[], preserve: readonly string[]): ParsedFleet {
  const out: ParsedFleet = new Map(parsed);
  const byHost = new Map(rendered.map((r) => [r.host, r]));
  for (const h of plan.hosts) {
    const base = parsed.get(h.host);
    const r = byHost.get(h.host);
    if (!h.desired || !base || !r) continue;
    const family = (key: 'v4' | 'v6', f: Family): RuleSet => {
      const text = h.desired![key];
      if (text === r[key].text) return base[key];
      const { ruleSet, problems } = parseRuleSet(text, { family: f, file: `${h.host} planned rules.${key}` });
      if (problems.length > 0) return base[key];
      labelRules(ruleSet, base[key], preserve, 'live rules (preserved)');
      return base[key].sets ? { ...ruleSet, sets: base[key].sets } : ruleSet;
    };
    out.set(h.host, { v4: family('v4', 4), v6: family('v6', 6) });
  }
  return out;
}

/** Give the planned rules the template lines of the rendered rules they are, and mark the preserved ones. */
function labelRules(planned: RuleSet, rendered: RuleSet, preserve: readonly string[], liveLabel: string): void {
  const key = (r: Rule) => `${r.table} ${r.chain} ${r.text}`;
  const sources = new Map<string, Rule>();
  for (const t of rendered.tables) for (const c of t.chains) for (const r of c.rules) if (!sources.has(key(r))) sources.set(key(r), r);
  const { foreign } = splitForeign(planned, preserve);
  const preserved = new Set(foreign.flatMap((p) => [...p.rules, ...p.chains.flatMap((c) => c.rules)]).map(key));
  for (const t of planned.tables) {
    for (const c of t.chains) {
      for (const r of c.rules) {
        const from = preserved.has(key(r)) ? undefined : sources.get(key(r));
        if (from) {
          r.origin = from.origin;
          if (from.source) r.source = from.source;
        } else if (preserved.has(key(r))) {
          r.origin = { file: liveLabel, line: r.index };
        }
      }
    }
  }
}
