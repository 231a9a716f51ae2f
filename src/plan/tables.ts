// What "the same rules" means for a plan's diff: an empty table (every
// built-in chain with policy ACCEPT, no rule, no user chain) is the same as no
// table. Emptying a table leaves one behind, and a revert of a table that did
// not exist does too, while a boot loads only the tables the files name. The
// host script's CANON_AWK holds the same rule for every hash.
import type { RuleSet, Table } from '../model/ruleset.js';
import { formatRuleSet } from '../analyze/format.js';
import { BUILTIN_CHAINS } from '../analyze/netfilter-names.js';

export function isEmptyTable(table: Table): boolean {
  return table.chains.every((c) => c.builtin && (c.policy ?? 'ACCEPT') === 'ACCEPT' && c.rules.length === 0);
}

export function withoutEmptyTables(rs: RuleSet): RuleSet {
  return { ...rs, tables: rs.tables.filter((t) => !isEmptyTable(t)) };
}

/** The text a diff compares: iptables-save's format, empty tables left out. */
export function formatComparable(rs: RuleSet): string {
  return formatRuleSet(withoutEmptyTables(rs));
}

/** A table as iptables-restore empties it: its built-in chains, policy ACCEPT, no rules. */
export function emptiedTable(name: string): Table {
  return { name, chains: (BUILTIN_CHAINS[name] ?? []).map((c) => ({ name: c, builtin: true, policy: 'ACCEPT' as const, rules: [] })) };
}

/**
 * The live tables with rules that the desired rules lack, emptied:
 * iptables-restore replaces only the tables its input names, so a table left
 * out would stay as it is.
 */
export function tablesToEmpty(live: RuleSet, desired: RuleSet): Table[] {
  const wanted = new Set(desired.tables.map((t) => t.name));
  return live.tables.filter((t) => !wanted.has(t.name) && !isEmptyTable(t)).map((t) => emptiedTable(t.name));
}
