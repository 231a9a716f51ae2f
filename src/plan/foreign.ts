// Chains and rules that belong to other software (Docker, fail2ban, Kubernetes):
// fleetfw neither diffs them nor deletes them, and puts them back on every load.
import type { Family } from '../model/inventory.js';
import type { Chain, Rule, RuleSet } from '../model/ruleset.js';
import { cidrContains, isWholeSpace } from '../analyze/cidr.js';
import { formatRuleSet } from '../analyze/format.js';
import { parseRuleSet } from '../analyze/parse.js';
import { emptiedTable } from './tables.js';

/** Chain names other software creates, matched as globs. */
export const BUILTIN_FOREIGN_CHAINS = ['DOCKER', 'DOCKER-*', 'f2b-*', 'fail2ban-*', 'KUBE-*', 'CILIUM_*', 'cali-*', 'FLANNEL-*', 'LIBVIRT_*', 'ts-*', 'ufw-*'];
/** Interfaces of container bridges: rules on them in built-in chains are Docker's, not ours. */
const FOREIGN_INTERFACES = ['docker0', 'docker_gwbridge', 'br-*', 'cni*', 'flannel*', 'cali*', 'virbr*'];

export function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(name);
}

export interface ForeignPart {
  table: string;
  /** Whole chains owned by other software. */
  chains: Chain[];
  /** Rules of other software inside our chains (jumps into its chains, rules on its bridges). */
  rules: Rule[];
}

export function isForeignChain(name: string, patterns: readonly string[]): boolean {
  return [...BUILTIN_FOREIGN_CHAINS, ...patterns].some((p) => globMatch(p, name));
}

function onForeignInterface(rule: Rule): boolean {
  return [rule.in?.name, rule.out?.name].some((n) => n !== undefined && FOREIGN_INTERFACES.some((p) => globMatch(p, n.replace(/\+$/, '*'))));
}

/** Networks behind container bridges, named by rules on those bridges such as Docker's `-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE`. */
function containerNets(rules: Rule[]): string[] {
  return rules.filter((r) => onForeignInterface(r) && r.src && !r.src.negate && !isWholeSpace(r.src.cidr)).map((r) => r.src!.cidr);
}

function isForeignRule(rule: Rule, foreignChains: Set<string>, nets: string[]): boolean {
  if (rule.target && foreignChains.has(rule.target)) return true;
  if (onForeignInterface(rule)) return true;
  // Container to container, e.g. Docker's hairpin `-s 172.17.0.2/32 -d 172.17.0.2/32 … -j MASQUERADE` for a published port.
  const { src, dst } = rule;
  return !!src && !!dst && !src.negate && !dst.negate && nets.some((n) => cidrContains(n, src.cidr) && cidrContains(n, dst.cidr));
}

/** Split a live rule set into what fleetfw manages and what it must preserve. */
export function splitForeign(rs: RuleSet, patterns: readonly string[]): { managed: RuleSet; foreign: ForeignPart[] } {
  const foreign: ForeignPart[] = [];
  const tables = rs.tables.map((t) => {
    const foreignChains = new Set(t.chains.filter((c) => !c.builtin && isForeignChain(c.name, patterns)).map((c) => c.name));
    const part: ForeignPart = { table: t.name, chains: t.chains.filter((c) => foreignChains.has(c.name)), rules: [] };
    const nets = containerNets(t.chains.flatMap((c) => c.rules));
    const chains = t.chains
      .filter((c) => !foreignChains.has(c.name))
      .map((c) => {
        const ours = c.rules.filter((r) => !isForeignRule(r, foreignChains, nets));
        part.rules.push(...c.rules.filter((r) => isForeignRule(r, foreignChains, nets)));
        return { ...c, rules: ours };
      });
    if (part.chains.length > 0 || part.rules.length > 0) foreign.push(part);
    return { ...t, chains };
  });
  return { managed: { ...rs, tables }, foreign };
}

/**
 * Put the foreign parts back into a desired rule set: their chains declared and
 * filled as they were, their rules first in our built-in chains (Docker inserts
 * its jumps at the top), in their live order. A table the desired rules lack is
 * made, emptied, to hold them: the load replaces every table it names.
 */
export function mergeForeign(desired: RuleSet, foreign: ForeignPart[]): RuleSet {
  const absent = foreign.filter((f) => !desired.tables.some((t) => t.name === f.table)).map((f) => emptiedTable(f.table));
  const tables = [...desired.tables, ...absent].map((t) => {
    const part = foreign.find((f) => f.table === t.name);
    if (!part) return t;
    const chains = t.chains.map((c) => {
      const theirs = part.rules.filter((r) => r.chain === c.name);
      return theirs.length > 0 ? { ...c, rules: [...theirs, ...c.rules] } : c;
    });
    const missing = part.chains.filter((fc) => !chains.some((c) => c.name === fc.name));
    return { ...t, chains: [...chains, ...missing] };
  });
  return { ...desired, tables };
}

/**
 * A saved dump (a generation: what ran, other software's parts included)
 * reduced to fleetfw's own rules. A rollback merges today's foreign parts in
 * like any apply; the dump's own copies would come in twice (duplicate jumps)
 * or stale.
 */
export function withoutForeign(text: string, family: Family, patterns: readonly string[]): string {
  const { ruleSet, problems } = parseRuleSet(text, { family, file: 'generation' });
  // Unparseable text is left for the plan to report.
  if (problems.length > 0) return text;
  const { managed, foreign } = splitForeign(ruleSet, patterns);
  return foreign.length > 0 ? formatRuleSet(managed) : text;
}

export function describeForeign(parts: ForeignPart[]): string[] {
  return parts.flatMap((p) => [
    ...p.chains.map((c) => `${p.table}/${c.name} (${c.rules.length} rules)`),
    ...(p.rules.length > 0 ? [`${p.table}: ${p.rules.length} rules in built-in chains (${[...new Set(p.rules.map((r) => r.chain))].join(', ')})`] : []),
  ]);
}
