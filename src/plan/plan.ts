// Live (or stored) rules vs rendered, per host: a plain value that the CLI
// prints as text, markdown or JSON and that apply executes.
import { createHash, type Hash } from 'node:crypto';
import { createTwoFilesPatch } from 'diff';
import { PlanError } from '../errors.js';
import type { Family } from '../model/inventory.js';
import type { IpSet, RuleSet, Table } from '../model/ruleset.js';
import type { RenderedHost } from '../render/render.js';
import { persistedLoadProblem, type HostFacts, type PendingTxn } from '../model/host-facts.js';
import { parseRuleSet } from '../analyze/parse.js';
import { formatRuleSet } from '../analyze/format.js';
import { describeForeign, mergeForeign, splitForeign, type ForeignPart } from './foreign.js';
import { formatComparable, tablesToEmpty } from './tables.js';
import { formatIpSets, ipSetTexts, parseIpSets, setLines } from '../render/ipsets.js';

export const PLAN_FORMAT = 'fleetfw-plan';
export const PLAN_VERSION = 1;

export interface FamilyDiff {
  family: Family;
  /** Set for the diff of the host's ipsets (not a rules file of `family`). */
  what?: 'ipsets';
  added: number;
  removed: number;
  /** Unified diff, live (or stored) → rendered; empty when in sync. */
  patch: string;
}

export type HostStatus = 'in-sync' | 'changes' | 'unreachable' | 'error';

export interface HostPlan {
  host: string;
  status: HostStatus;
  error?: string;
  diffs: FamilyDiff[];
  /** Other software's chains and rules, preserved as they are. */
  preserved: string[];
  notes: string[];
  /** What apply loads: rendered rules plus the preserved parts (restore format), and the ipsets they match. */
  desired?: { v4: string; v6: string; ipsets?: string };
  /** Hash of the live rules the plan was made against (a stale plan is refused). */
  liveHash?: string;
  /** A transaction left on the host by an interrupted apply. */
  leftover?: PendingTxn;
  generation?: number;
  /** Persisted rules.v4/v6 differ from what runs. */
  persistedDrift?: boolean;
  /** Live plans: listening services the rendered rules would block or expose (see analyze/exposure.ts). */
  warnings?: string[];
  /** iptables-persistent is not installed: the rules would not come back after a reboot. */
  persistentMissing?: boolean;
  /** The persisted files would not load at boot (the host would come up without its firewall); an apply writes new ones. */
  persistedBroken?: string;
  /** A confirmed transaction whose persist failed: the host runs rules it would not boot. */
  unpersisted?: string;
  /** How the host's last finished transaction ended, by its own record (an `unknown` apply is settled here later). */
  lastTxn?: { id: string; state: string; generation?: number; reason?: string };
}

export interface Plan {
  format: typeof PLAN_FORMAT;
  version: typeof PLAN_VERSION;
  mode: 'live' | 'offline';
  inventory: string;
  /** Hash of every host's desired rules: recorded with each generation. */
  planHash: string;
  hosts: HostPlan[];
  summary: { hosts: number; changes: number; inSync: number; unreachable: number; errors: number };
}

function countLines(patch: string, sign: '+' | '-'): number {
  return patch.split('\n').filter((l) => l.startsWith(sign) && !l.startsWith(`${sign}${sign}${sign} `)).length;
}

/** Lines of a text as a diff counts them (a last line without a newline counts). */
function lineCount(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return text.endsWith('\n') ? n : n + 1;
}

/** Lines a patch of `text` would not count as added: `++ x` reads as a `+++ ` header (countLines). */
function headerLike(text: string): number {
  return text.includes('++ ') ? (text.match(/^\+\+ /gm) ?? []).length : 0;
}

/**
 * The patch of a file that did not exist, byte for byte what jsdiff makes, from
 * the added text in pieces: a new host's 10,000-member sets cost no diff and no
 * copy (the pieces are shared, see addedSetLines).
 */
function addedFilePatch(from: string, to: string, body: string, lines: number, newlineAtEnd: boolean): string {
  return `--- ${from}\n+++ ${to}\n@@ -0,0 +1,${lines} @@\n${body}${newlineAtEnd ? '' : '\\ No newline at end of file\n'}`;
}

/** A text's lines, each with a `+` and a newline. */
function plusLines(text: string): string {
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  return `+${body.replace(/\n/g, '\n+')}\n`;
}

export function diffText(name: string, before: string, after: string, labels: [string, string]): Omit<FamilyDiff, 'family'> {
  if (before === after) return { added: 0, removed: 0, patch: '' };
  const from = `${name} (${labels[0]})`;
  const to = `${name} (${labels[1]})`;
  // A new file: every line added (jsdiff takes about 10 ms for a 10,000-line set; this, a copy).
  if (before === '' && from !== to && !after.includes('\r')) {
    const lines = lineCount(after);
    return { added: lines - headerLike(after), removed: 0, patch: addedFilePatch(from, to, plusLines(after), lines, after.endsWith('\n')) };
  }
  const patch = createTwoFilesPatch(from, to, before, after, undefined, undefined, { context: 3 })
    .split('\n')
    .filter((l) => !l.startsWith('====='))
    .join('\n');
  return { added: countLines(patch, '+'), removed: countLines(patch, '-'), patch };
}

function parseOrThrow(text: string, family: Family, file: string): RuleSet {
  const { ruleSet, problems } = parseRuleSet(text, { family, file });
  if (problems.length > 0) {
    throw new PlanError(`${file}: cannot parse: ${problems.map((p) => `line ${p.line}: ${p.message}`).join('; ')}`);
  }
  return ruleSet;
}

/**
 * What a load must get for the host to run `want`: the rendered text itself,
 * unless live tables it lacks must be emptied or other software's parts merged in.
 */
function desiredText(text: string, want: RuleSet, emptied: Table[], foreign: ForeignPart[]): string {
  if (foreign.length > 0) return formatRuleSet(mergeForeign({ ...want, tables: [...want.tables, ...emptied] }, foreign));
  if (emptied.length === 0) return text;
  return `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${formatRuleSet({ ...want, tables: emptied })}`;
}

/** Compare one host's live facts with its rendered rules. */
/** `wanted` names the rules the host should run in the diff: the render, or a generation for a rollback. */
export function planLiveHost(rendered: RenderedHost, facts: HostFacts, preserve: readonly string[], wanted = 'rendered'): HostPlan {
  const plan: HostPlan = {
    host: rendered.host,
    status: 'in-sync',
    diffs: [],
    preserved: [],
    notes: [...rendered.notes],
    liveHash: facts.liveHash,
    generation: facts.generation,
    persistedDrift: !facts.persistedSame,
  };
  const broken = persistedLoadProblem(rendered.host, facts);
  if (broken) plan.persistedBroken = broken;
  if (facts.lastTxn) plan.lastTxn = facts.lastTxn;
  if (facts.unpersisted) {
    const u = facts.unpersisted;
    plan.unpersisted = `transaction ${u.id}${u.generation !== undefined ? ` (generation ${u.generation})` : ''} was confirmed but not persisted: ${u.reason}; the next apply persists it first`;
  }
  if (facts.txn) plan.leftover = facts.txn;
  if (!facts.persistent) {
    plan.persistentMissing = true;
    plan.notes.push('iptables-persistent is not installed: apply installs it (unless --no-install-persistent)');
  }
  if (facts.backend === 'mixed') {
    return { ...plan, status: 'error', error: 'both iptables backends (nft and legacy) hold rules: refusing to guess which one is live' };
  }
  if (!facts.restore) return { ...plan, status: 'error', error: 'iptables-restore / ip6tables-restore not found on the host' };
  // formatIpSets' text, joined from the shared set texts (see planOfflineHost).
  const setTexts = ipSetTexts(rendered.ipsets ?? []);
  const ipsets = setTexts.reduce((text, set) => `${text}${set}\n`, '');
  // Refused rather than degraded: the threshold setting is the operator's choice of per-member rules.
  if (ipsets && (!facts.ipset || facts.ipsetPersistent === false)) {
    const missing = facts.ipset ? 'ipset-persistent (the host would boot its rules without their sets)' : 'ipset';
    const names = (rendered.ipsets ?? []).map((s) => s.name).join(', ');
    return { ...plan, status: 'error', error: `the rules match ipsets (${names}) but ${missing} is not installed: apt-get install ipset ipset-persistent, or raise settings.ipset_threshold to get one rule per member` };
  }
  const canonical = facts.canonical && 'v4' in facts.canonical ? facts.canonical : undefined;
  if (facts.canonical && 'unavailable' in facts.canonical) {
    plan.notes.push(`host could not canonicalise the rules (${facts.canonical.unavailable}); compared fleetfw's own formatting`);
  }
  const desired = { v4: '', v6: '' };
  for (const family of [4, 6] as const) {
    const key = family === 4 ? 'v4' : 'v6';
    const want = parseOrThrow(canonical ? canonical[key] : rendered[key].text, family, `${rendered.host}/rules.${key}`);
    const live = parseOrThrow(facts.live[key], family, `${rendered.host} live ${key}`);
    const { managed, foreign } = splitForeign(live, preserve);
    plan.preserved.push(...describeForeign(foreign).map((d) => `${d} (${key})`));
    const d = diffText(`${rendered.host}/rules.${key}`, formatComparable(managed), formatComparable(want), ['live', wanted]);
    if (d.patch) plan.diffs.push({ family, ...d });
    desired[key] = desiredText(rendered[key].text, want, tablesToEmpty(managed, want), foreign);
  }
  const liveSets = formatIpSets(parseIpSets(facts.ipsets ?? ''));
  // A host without sets gets the shared added lines: a 1,000-host plan holds each set's once.
  const setLabels: [string, string] = ['live', wanted];
  const setDiff = !liveSets && ipsets ? addedSetsDiff(`${rendered.host}/ipsets`, rendered.ipsets!, setLabels) : diffText(`${rendered.host}/ipsets`, liveSets, ipsets, setLabels);
  pushSetDiff(plan, setDiff);
  plan.desired = ipsets ? { ...desired, ipsets } : desired;
  if (ipsets) setTextsOf.set(plan.desired, setTexts);
  if (plan.diffs.length > 0) plan.status = 'changes';
  return plan;
}

/** Compare rendered rules with a stored render (a snapshot folder), no SSH. */
export function planOfflineHost(rendered: RenderedHost, stored: { v4?: string; v6?: string; ipsets?: string }): HostPlan {
  const plan: HostPlan = { host: rendered.host, status: 'in-sync', diffs: [], preserved: [], notes: [...rendered.notes] };
  for (const family of [4, 6] as const) {
    const key = family === 4 ? 'v4' : 'v6';
    const label = stored[key] === undefined ? 'absent' : 'snapshot';
    const d = diffText(`${rendered.host}/rules.${key}`, stored[key] ?? '', rendered[key].text, [label, 'rendered']);
    if (d.patch) plan.diffs.push({ family, ...d });
  }
  if (stored.v4 === undefined && stored.v6 === undefined) plan.notes.push('new host: no stored rules');
  // formatIpSets' text, joined without a copy of the shared set texts (a 10,000-host plan holds them once).
  const setTexts = ipSetTexts(rendered.ipsets ?? []);
  const ipsets = setTexts.reduce((text, set) => `${text}${set}\n`, '');
  const setLabels: [string, string] = [stored.ipsets === undefined ? 'absent' : 'snapshot', 'rendered'];
  const setDiff = !stored.ipsets && ipsets ? addedSetsDiff(`${rendered.host}/ipsets`, rendered.ipsets!, setLabels) : diffText(`${rendered.host}/ipsets`, stored.ipsets ?? '', ipsets, setLabels);
  pushSetDiff(plan, setDiff);
  plan.desired = { v4: rendered.v4.text, v6: rendered.v6.text, ...(ipsets ? { ipsets } : {}) };
  if (ipsets) setTextsOf.set(plan.desired, setTexts);
  if (plan.diffs.length > 0) plan.status = 'changes';
  return plan;
}

// A group's set, as added lines of a patch: made once per set and run, like its text (render/ipsets.ts).
const addedLinesOf = new WeakMap<IpSet, { body: string; lines: number }>();

function addedSetLines(set: IpSet): { body: string; lines: number } {
  let added = addedLinesOf.get(set);
  if (added === undefined) {
    const text = setLines(set);
    added = { body: plusLines(text), lines: lineCount(text) };
    addedLinesOf.set(set, added);
  }
  return added;
}

/** diffText('', formatIpSets(sets)) made of each set's shared lines: a plan of 10,000 new hosts copies no set. */
function addedSetsDiff(name: string, sets: readonly IpSet[], labels: [string, string]): Omit<FamilyDiff, 'family'> & { pieces: string[] } {
  const bodies: string[] = [];
  let lines = 0;
  for (const s of [...sets].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const added = addedSetLines(s);
    bodies.push(added.body);
    lines += added.lines;
  }
  const head = addedFilePatch(`${name} (${labels[0]})`, `${name} (${labels[1]})`, '', lines, true);
  return { added: lines, removed: 0, patch: bodies.reduce((text, b) => `${text}${b}`, head), pieces: [head, ...bodies] };
}

/** An ipsets diff whose patch is made of shared pieces: pushed with them recorded (textPieces). */
function pushSetDiff(plan: HostPlan, d: Omit<FamilyDiff, 'family'> & { pieces?: string[] }): void {
  if (!d.patch) return;
  const { pieces, ...diff } = d;
  const pushed: FamilyDiff = { family: 4, what: 'ipsets', ...diff };
  plan.diffs.push(pushed);
  if (pieces) patchPiecesOf.set(pushed, pieces);
}

export function failedHostPlan(host: string, status: 'unreachable' | 'error', error: string): HostPlan {
  return { host, status, error, diffs: [], preserved: [], notes: [] };
}

/** Hosts in a plan's order: by name. */
export function compareHostNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// The shared set texts an offline host's desired sets are made of: hashed one by one, the
// host's own text is never flattened into a copy (4 GB for 10,000 new hosts).
const setTextsOf = new WeakMap<NonNullable<HostPlan['desired']>, readonly string[]>();
// Likewise the pieces of an added-sets patch: its header, then each set's shared lines.
const patchPiecesOf = new WeakMap<FamilyDiff, readonly string[]>();

/**
 * The pieces a host's large texts are joined from (desired ipsets, added-sets
 * patches), for writers that must not flatten them: a joined text flattened once
 * (JSON.stringify does) keeps a flat copy for as long as the plan lives, about
 * 90 KB per host of a 1,000-host fleet.
 */
export function textPieces(h: HostPlan): Array<{ of: object; key: string; pieces: readonly string[] }> {
  const out: Array<{ of: object; key: string; pieces: readonly string[] }> = [];
  const sets = h.desired && setTextsOf.get(h.desired);
  if (h.desired && sets) out.push({ of: h.desired, key: 'ipsets', pieces: sets.flatMap((t) => [t, '\n']) });
  for (const d of h.diffs) {
    const pieces = patchPiecesOf.get(d);
    if (pieces) out.push({ of: d, key: 'patch', pieces });
  }
  return out;
}

/** Adds one host's desired rules to the plan hash; hosts in name order. */
export function hashHostPlan(hash: Hash, h: HostPlan): void {
  // Piece by piece: the same bytes as one template string.
  hash.update(`${h.host}\0${h.desired?.v4 ?? ''}\0${h.desired?.v6 ?? ''}\0`);
  if (!h.desired?.ipsets) return;
  const texts = setTextsOf.get(h.desired);
  if (texts) for (const t of texts) hash.update(t).update('\n');
  else hash.update(h.desired.ipsets);
  hash.update('\0');
}

export function summarizeHosts(hosts: readonly HostPlan[]): Plan['summary'] {
  const count = (s: HostStatus) => hosts.filter((h) => h.status === s).length;
  return { hosts: hosts.length, changes: count('changes'), inSync: count('in-sync'), unreachable: count('unreachable'), errors: count('error') };
}

export function assemblePlan(mode: Plan['mode'], inventory: string, hosts: HostPlan[]): Plan {
  const sorted = [...hosts].sort((a, b) => compareHostNames(a.host, b.host));
  const hash = createHash('sha256');
  for (const h of sorted) hashHostPlan(hash, h);
  return {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    mode,
    inventory,
    planHash: hash.digest('hex').slice(0, 16),
    hosts: sorted,
    summary: summarizeHosts(sorted),
  };
}
