// Static safety checks over a whole rendered fleet, before anything is sent:
// the management path of every host (lockout), and the lint findings.
import type { Family, Inventory } from '../model/inventory.js';
import type { Rule, RuleSet } from '../model/ruleset.js';
import { bastionOf } from '../inventory/query.js';
import { parseRuleSet } from '../analyze/parse.js';
import { lintRuleSet } from '../analyze/checks.js';
import { checkManagementPath } from '../analyze/lockout.js';
import type { RenderedHost } from '../render/render.js';

export interface FleetFinding {
  host: string;
  severity: 'error' | 'warning';
  code: string;
  message: string;
}

export type ParsedFleet = Map<string, { v4: RuleSet; v6: RuleSet }>;

/** Parse every rendered host; rendered text always parses (render checks it), so problems are bugs. */
export function parseFleet(rendered: RenderedHost[]): ParsedFleet {
  const out: ParsedFleet = new Map();
  const ruleCache = new Map<string, Rule>();
  for (const r of rendered) {
    const sets = new Map((r.ipsets ?? []).map((s) => [s.name, s]));
    const parse = (family: Family) => {
      const key = family === 4 ? 'v4' : 'v6';
      const { ruleSet, problems } = parseRuleSet(r[key].text, { family, file: `${r.host}/rules.${key}`, ruleCache });
      if (problems.length > 0) {
        throw new Error(`${r.host}/rules.${key}: ${problems.map((p) => `line ${p.line}: ${p.message}`).join('; ')}`);
      }
      return sets.size > 0 ? { ...ruleSet, sets } : ruleSet;
    };
    out.set(r.host, { v4: parse(4), v6: parse(6) });
  }
  return out;
}

export function checkFleet(inv: Inventory, parsed: ParsedFleet): FleetFinding[] {
  const findings: FleetFinding[] = [];
  for (const host of inv.hosts) {
    const sets = parsed.get(host.name);
    if (!sets) continue;
    const bastion = bastionOf(inv, host);
    const lockout = checkManagementPath(inv, host, sets.v4, bastion.name === host.name ? undefined : parsed.get(bastion.name)?.v4);
    if (!lockout.ok) {
      findings.push({ host: host.name, severity: 'error', code: 'lockout', message: `${lockout.message} (path: ${lockout.path}; cut by ${lockout.cutBy})` });
    }
    for (const [key, rs] of [['v4', sets.v4], ['v6', sets.v6]] as const) {
      for (const f of lintRuleSet(rs)) {
        findings.push({ host: host.name, severity: f.severity, code: f.code, message: `rules.${key}: ${f.message}` });
      }
    }
  }
  return findings;
}
