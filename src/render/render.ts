// Compose one complete rule set per host and family from its base template
// and role fragments, substitute typed references, and add the management
// path. Pure: templates come in as parsed values (see load-templates.ts).
import { createHash } from 'node:crypto';
import { InputError, type Problem } from '../errors.js';
import type { Family, HostSpec, Inventory } from '../model/inventory.js';
import type { IpSet, Origin } from '../model/ruleset.js';
import { bastionOf, groupMembers, managementAddress, operatorsOf, privateOf } from '../inventory/query.js';
import { declaredChain, LOG_DROPS_CHAIN, type LogDrops, type Template, type TemplateLine } from './template.js';
import { groupReference, isReference, resolveReference, tokenizeRule, type AddressField, type RefContext } from './refs.js';
import { mergeFound, newValidationCache, validateRendered, type Found, type Piece } from './validate.js';

/** Groups with more members than this are matched through an ipset (inventory `settings.ipset_threshold`). */
export const DEFAULT_IPSET_THRESHOLD = 8;

/** Parsed templates keyed by their path relative to the templates folder, e.g. `roles/db.v4`. */
export type TemplateSet = Map<string, Template>;

export interface RenderedFamily {
  text: string;
  /** origins[i] is where output line i+1 came from (undefined for generated lines). */
  origins: Array<Origin | undefined>;
  /** True when fleetfw closed this family because no template exists for it. */
  closedByDefault: boolean;
}

export interface RenderedHost {
  host: string;
  v4: RenderedFamily;
  v6: RenderedFamily;
  /** Facts a reviewer should see (closed IPv6, management path owner). */
  notes: string[];
  /** ipsets the rules match against, sorted by name; absent or empty = none. Shared between hosts. */
  ipsets?: IpSet[];
}

/** Large group references → one shared ipset per group and address field, for the whole fleet. */
interface SetBuilder {
  threshold: number;
  /** undefined when the group is unknown or a member lacks the field: the expansion then reports it. */
  get(group: string, field: AddressField): IpSet | undefined;
}

/** `fleetfw-<group>-<field>`, hashed when longer than ipset's 31 characters. */
export function ipsetName(group: string, field: AddressField): string {
  const name = `fleetfw-${group}-${field}`;
  if (name.length <= 31) return name;
  return `fleetfw-${group.slice(0, 12)}-${createHash('sha256').update(`${group}\0${field}`).digest('hex').slice(0, 10)}`;
}

function setBuilder(inv: Inventory, members: Map<string, HostSpec[]>): SetBuilder {
  const cache = new Map<string, IpSet | undefined>();
  return {
    threshold: inv.settings.ipsetThreshold ?? DEFAULT_IPSET_THRESHOLD,
    get(group, field) {
      const name = ipsetName(group, field);
      if (!cache.has(name)) {
        const hosts = members.get(group);
        const addrs = hosts?.map((h) => h[field]);
        const complete = addrs !== undefined && addrs.every((a) => a !== undefined);
        cache.set(name, complete ? { name, family: field.endsWith('6') ? 6 : 4, members: addrs as string[] } : undefined);
      }
      return cache.get(name);
    },
  };
}

/** The template files a host needs (v6 ones only if they exist). */
export function templatePaths(host: HostSpec, family: Family): string[] {
  const ext = `v${family}`;
  return [`bases/${host.base}.${ext}`, ...host.roles.map((r) => `roles/${r}.${ext}`)];
}

/**
 * Render every host, then read each rendered rule set with the analyser's parser:
 * every problem of every template (its syntax, its references, the rules it
 * renders) is thrown at once as an InputError at the template's file:line:col.
 */
export function renderFleet(inv: Inventory, templates: TemplateSet): RenderedHost[] {
  // Each template's own syntax problems, once; a template with problems still renders what it can.
  const problems: Problem[] = [...templates.values()].flatMap((t) => t.problems ?? []);
  // A role may write a table in several sections (they are appended in order); a base
  // may not: its section of a table is where the roles go.
  for (const [path, t] of templates) {
    if (!path.startsWith('bases/')) continue;
    t.sections.forEach((s, i) => {
      const first = t.sections.findIndex((x) => x.table === s.table);
      if (first < i) problems.push({ file: t.file, line: s.line, col: 1, path: '', message: `table *${s.table} appears twice in this base (first at line ${t.sections[first]!.line}): write its rules in one section` });
    });
  }
  const found: Found[] = [];
  const cache = newValidationCache();
  const members = groupMembers(inv);
  const sets = setBuilder(inv, members);
  const rendered = inv.hosts.map((host) => {
    const ctxBase = { inv, self: host, bastion: bastionOf(inv, host), members: (g: string) => members.get(g), groupNames: () => members.keys() };
    const used = new Map<string, IpSet>();
    const family = (f: Family): RenderedFamily => {
      const own: Problem[] = [];
      const { rendered: r, pieces } = renderFamily({ ...ctxBase, family: f }, templates, own, { ...sets, used });
      // A reference that fails on every host of a role is one mistake, whatever each host's name and values.
      found.push(...own.map((p) => ({ problem: p, same: hostFree(p.message, host.name) })));
      found.push(...validateRendered(host.name, f, r, cache, pieces).found);
      return r;
    };
    const v4 = family(4);
    const v6 = family(6);
    const notes: string[] = [];
    if (v6.closedByDefault) notes.push(`IPv6 closed by default: no template bases/${host.base}.v6`);
    if (templates.get(`bases/${host.base}.v4`)?.managementOff) {
      notes.push(`management path owned by bases/${host.base}.v4 (%management off)`);
    }
    const ipsets = [...used.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    return { host: host.name, v4, v6, notes, ...(ipsets.length > 0 ? { ipsets } : {}) };
  });
  if (problems.length > 0 || found.length > 0) throw new InputError(sortProblems([...problems, ...mergeFound(found)]));
  return rendered;
}

interface Out {
  lines: string[];
  origins: Array<Origin | undefined>;
  /** The template line each output line came from: its pieces are worked out again only for a line with a problem. */
  sources: Array<TemplateLine | undefined>;
}

type HostSets = SetBuilder & { used: Map<string, IpSet> };

function renderFamily(ctx: RefContext, templates: TemplateSet, problems: Problem[], sets: HostSets): { rendered: RenderedFamily; pieces: PiecesOf } {
  const { self, family } = ctx;
  const base = templates.get(`bases/${self.base}.v${family}`);
  const roles = self.roles
    .map((r) => templates.get(`roles/${r}.v${family}`))
    .filter((t): t is Template => t !== undefined);
  const out: Out = { lines: [], origins: [], sources: [] };
  const emit = (line: string, origin?: Origin, source?: TemplateLine) => {
    out.lines.push(line);
    out.origins.push(origin);
    out.sources.push(source);
  };
  const done = (closedByDefault: boolean) => ({
    rendered: { text: out.lines.join('\n') + '\n', origins: out.origins, closedByDefault },
    pieces: (line: number) => piecesOf(out.lines[line - 1] ?? '', out.sources[line - 1], ctx, sets),
  });
  const sources = base ? [base, ...roles].map((t) => t.file).join(', ') : 'none (closed by default)';
  emit(`# fleetfw: rules.v${family} for ${self.name}`);
  emit(`# templates: ${sources}`);

  if (!base) {
    for (const line of closedPolicy(family)) emit(line);
    return done(true);
  }

  const management = base.managementOff ? [] : managementRules(ctx);
  const tables = [...new Set(base.sections.map((s) => s.table))];
  const extraTables = roles.flatMap((r) => r.sections.map((s) => s.table)).filter((t) => !tables.includes(t));
  for (const table of [...tables, ...new Set(extraTables)]) {
    const section = base.sections.find((s) => s.table === table);
    const fragments = roles.flatMap((r) => r.sections.filter((s) => s.table === table).map((s) => ({ file: r.file, s })));
    emit(`*${table}`);
    // Chain declarations first: the base's, then any new chain a role declares.
    const declared = new Set<string>();
    const declare = (file: string, l: TemplateLine) => {
      const name = declaredChain(l);
      if (declared.has(name)) return;
      declared.add(name);
      emit(l.text, { file, line: l.line }, l);
    };
    section?.lines.filter((l) => l.kind === 'chain').forEach((l) => declare(base.file, l));
    if (!section && table === 'filter') {
      ['INPUT', 'FORWARD', 'OUTPUT'].forEach((c) => declare('', { text: `:${c} ACCEPT [0:0]`, line: 0, indent: 0, kind: 'chain' }));
    }
    for (const { file, s } of fragments) s.lines.filter((l) => l.kind === 'chain').forEach((l) => declare(file, l));
    const logDrops = logDropsOf(table, [...(section ? [{ file: base.file, s: section }] : []), ...fragments], problems, self.name);
    if (logDrops) declare(logDrops.file, { text: `:${LOG_DROPS_CHAIN} - [0:0]`, line: logDrops.line, indent: logDrops.source.indent, kind: 'log-drops' });
    if (table === 'filter' && management.length > 0) {
      emit(`# fleetfw: management path (SSH via bastion ${ctx.bastion.name})`);
      management.forEach((m) => emit(m));
    }
    const body = section?.lines.filter((l) => l.kind !== 'chain') ?? [{ text: '%roles', line: 0, indent: 0, kind: 'roles' as const }];
    if (!body.some((l) => l.kind === 'roles')) body.push({ text: '%roles', line: 0, indent: 0, kind: 'roles' });
    for (const l of body) {
      if (l.kind === 'roles') {
        for (const { file, s } of fragments) {
          for (const fl of s.lines) if (fl.kind !== 'chain') emitLine(file, fl, ctx, emit, problems, sets);
        }
      } else {
        emitLine(base.file, l, ctx, emit, problems, sets);
      }
    }
    if (logDrops) {
      const d = logDrops.drops;
      emit(`# fleetfw: log what the chains above are about to drop (%log-drops, rate-limited)`);
      emit(`-A ${LOG_DROPS_CHAIN} -m limit --limit ${d.rate} -j LOG --log-prefix "${d.prefix}" --log-level 7`, { file: logDrops.file, line: logDrops.line }, logDrops.source);
    }
    emit('COMMIT');
  }
  return done(false);
}

const ADDRESS_SLOTS: Record<string, 'src' | 'dst'> = { '-s': 'src', '--source': 'src', '-d': 'dst', '--destination': 'dst' };

/**
 * A large group in an address slot becomes `-m set --match-set <set> src|dst` instead of
 * one rule per member; `peers` keeps its meaning (members but this host) with `! -s self`.
 * Returns the tokens that replace the option and the reference, or undefined to expand.
 * Decided before resolving, so a 10,000-member group is never copied per host.
 */
function setTokens(option: string | undefined, before: string | undefined, token: string, ctx: RefContext, sets: HostSets): string[] | undefined {
  const dir = option === undefined ? undefined : ADDRESS_SLOTS[option];
  const ref = dir && groupReference(token);
  // A negated group ("from none of them") stays expanded: `! -m set` of peers cannot keep self out.
  if (!ref || before === '!') return undefined;
  const set = sets.get(ref.group, ref.field);
  if (!set || set.family !== ctx.family) return undefined;
  const self = ctx.self[ref.field];
  const excludeSelf = ref.kind === 'peers' && self !== undefined && ctx.self.groups.includes(ref.group);
  if (set.members.length - (excludeSelf ? 1 : 0) <= sets.threshold) return undefined;
  sets.used.set(set.name, set);
  return [...(excludeSelf ? ['!', dir === 'src' ? '-s' : '-d', self] : []), '-m', 'set', '--match-set', set.name, dir];
}

/** A rule line's variants: one per value of its list references (or one ipset match), or why it has none. */
interface Expansion<T> {
  variants: T[][];
  errors: Array<{ col: number; message: string }>;
  /** A reference with no values (an empty group): the line becomes a comment. */
  empty?: string;
}

/** Expand a template rule line's references; `make` builds each argument (a string, or a Piece for messages). */
function expandLine<T>(l: TemplateLine, ctx: RefContext, sets: HostSets, make: (text: string, col: number, from?: string) => T): Expansion<T> {
  const tokens = tokenizeRule(l.text);
  let variants: T[][] = [[]];
  const errors: Expansion<T>['errors'] = [];
  let empty: string | undefined;
  for (let i = 0; i < tokens.length; i++) {
    const { text: token, col: tokenCol } = tokens[i]!;
    const col = tokenCol + l.indent;
    if (!isReference(token)) {
      // Every variant is an array of its own (expansions copy): append in place.
      for (const v of variants) v.push(make(token, col));
      continue;
    }
    const viaSet = setTokens(tokens[i - 1]?.text, tokens[i - 2]?.text, token, ctx, sets);
    if (viaSet) {
      variants = variants.map((v) => [...v.slice(0, -1), ...viaSet.map((text) => make(text, col, token))]);
      continue;
    }
    const r = resolveReference(token, tokens[i - 1]?.text, ctx);
    if ('error' in r) {
      errors.push({ col, message: r.error });
      continue;
    }
    if (r.values.length === 0) empty = token;
    const values = r.joined ? [r.values.map((v) => v.value).join(',')] : r.values.map((v) => v.value);
    variants = variants.flatMap((v) => values.map((value) => [...v, make(value, col, token)]));
  }
  return { variants, errors, ...(empty !== undefined ? { empty } : {}) };
}

/** Finds the pieces of an output line (1-based) when a message needs them. */
type PiecesOf = (line: number) => Piece[] | undefined;

/** The arguments of an output line and where each was written, worked out again from its template line. */
function piecesOf(text: string, source: TemplateLine | undefined, ctx: RefContext, sets: HostSets): Piece[] | undefined {
  if (!source) return undefined;
  if (source.kind === 'log-drops') return [{ text, col: source.indent + 1, from: '%log-drops' }];
  if (source.kind !== 'rule') return [{ text, col: source.indent + 1 }];
  const piece = (t: string, col: number, from?: string): Piece => (from ? { text: t, col, from: from.replace(/\s+/g, ' ') } : { text: t, col });
  return expandLine(source, ctx, sets, piece).variants.find((v) => v.map((p) => p.text).join(' ') === text);
}

/**
 * Emit a template line, expanding list references into one rule per value (or one
 * ipset match). Every bad reference of the line is reported; the line is then left out.
 */
function emitLine(
  file: string,
  l: TemplateLine,
  ctx: RefContext,
  emit: (line: string, origin?: Origin, source?: TemplateLine) => void,
  problems: Problem[],
  sets: HostSets,
): void {
  const origin = { file, line: l.line };
  if (l.kind === 'log-drops') {
    // The jump sits where the directive is: after the accepts, before the chain's final drop.
    emit(`-A ${l.logDrops!.chain} -j ${LOG_DROPS_CHAIN}`, origin, l);
    return;
  }
  if (l.kind === 'comment') {
    emit(l.text, origin, l);
    return;
  }
  const { variants, errors, empty } = expandLine(l, ctx, sets, (text) => text);
  for (const e of errors) problems.push({ file, line: l.line, col: e.col, path: `hosts.${ctx.self.name}`, message: e.message });
  if (errors.length > 0) return;
  if (empty !== undefined) {
    emit(`# (no addresses for ${empty}: ${l.text.replace(/\s+/g, ' ')})`, origin);
    return;
  }
  for (const v of variants) emit(v.join(' '), origin, l);
}

/**
 * The path fleetfw itself needs, first in INPUT/OUTPUT so no template rule can
 * cut it: SSH from the bastion on the private side; on the bastion, SSH from
 * the operators on the public side and out to the private network.
 */
function managementRules(ctx: RefContext): string[] {
  const { self, bastion, family, inv } = ctx;
  const port = self.ssh.port ?? 22;
  const tcp = (dir: '--dport' | '--sport', p: number) => `-p tcp -m tcp ${dir} ${p}`;
  const established = '-m conntrack --ctstate ESTABLISHED';
  // Replies of our own sshd go out without a conntrack match: on a host whose
  // first conntrack rule is being loaded, the SSH session that loads it is
  // picked up mid-stream as NEW, and an ESTABLISHED-only rule would stall it.
  // Each host's path runs in one family: that of the address fleetfw reaches it by
  // (managementAddress), a bastion's own over IPv4 unless it has only IPv6.
  if (self.name !== bastion.name) {
    if (managementAddress(inv, self)?.family !== family) return [];
    const address = privateOf(bastion, family);
    if (address === undefined) return []; // the lockout check reports it
    const from = `${address}/${family === 4 ? 32 : 128}`;
    const iface = self.interfaces.private;
    return [
      `-A INPUT -s ${from} -i ${iface} ${tcp('--dport', port)} -j ACCEPT`,
      `-A OUTPUT -d ${from} -o ${iface} ${tcp('--sport', port)} -j ACCEPT`,
    ];
  }
  const rules: string[] = [];
  if (managementAddress(inv, self)?.family === family) {
    const any = family === 4 ? '0.0.0.0/0' : '::/0';
    for (const cidr of operatorsOf(inv, family)) {
      const src = cidr === any ? '' : `-s ${cidr} `;
      const dst = cidr === any ? '' : `-d ${cidr} `;
      rules.push(`-A INPUT ${src}-i ${self.interfaces.public} ${tcp('--dport', port)} -j ACCEPT`);
      rules.push(`-A OUTPUT ${dst}-o ${self.interfaces.public} ${tcp('--sport', port)} -j ACCEPT`);
    }
  }
  const managed = inv.hosts.filter((h) => h.name !== self.name && managementAddress(inv, h)?.family === family);
  const targetPorts = [...new Set(managed.map((h) => h.ssh.port ?? 22))].sort((a, b) => a - b);
  for (const p of targetPorts) {
    rules.push(`-A OUTPUT -o ${self.interfaces.private} ${tcp('--dport', p)} -j ACCEPT`);
    rules.push(`-A INPUT -i ${self.interfaces.private} ${tcp('--sport', p)} ${established} -j ACCEPT`);
  }
  return rules;
}

/** The table's `%log-drops` settings; every directive of a table must agree, since they share one LOG rule. */
function logDropsOf(
  table: string,
  sources: Array<{ file: string; s: { lines: TemplateLine[] } }>,
  problems: Problem[],
  host: string,
): { drops: LogDrops; file: string; line: number; source: TemplateLine } | undefined {
  let first: { drops: LogDrops; file: string; line: number; source: TemplateLine } | undefined;
  for (const { file, s } of sources) {
    for (const l of s.lines) {
      if (l.kind !== 'log-drops' || !l.logDrops) continue;
      if (table !== 'filter') continue;
      if (!first) first = { drops: l.logDrops, file, line: l.line, source: l };
      else if (first.drops.rate !== l.logDrops.rate || first.drops.prefix !== l.logDrops.prefix) {
        problems.push({ file, line: l.line, col: l.indent + 1, path: `hosts.${host}`, message: `%log-drops rate and prefix differ from ${first.file}:${first.line} (one LOG rule serves the table)` });
      }
    }
  }
  return first;
}

/** Seed 004's IPv6 deny-all, used when a base has no v6 template. */
function closedPolicy(family: Family): string[] {
  const lo = family === 6 ? '::1/128' : '127.0.0.0/8';
  return [
    `# fleetfw: IPv${family} closed by default (no template): nothing in or out but loopback`,
    '*filter',
    ':INPUT DROP [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT DROP [0:0]',
    '-A INPUT -i lo -j ACCEPT',
    `-A INPUT -s ${lo} ! -i lo -j DROP`,
    '-A OUTPUT -o lo -j ACCEPT',
    'COMMIT',
  ];
}

/** A message without what is the host's own: its name (a whole word), quoted values, addresses and numbers. */
function hostFree(message: string, host: string): string {
  let out = '';
  let from = 0;
  for (let at = message.indexOf(host); at >= 0; at = message.indexOf(host, at + 1)) {
    const before = message[at - 1];
    const after = message[at + host.length];
    if ((before !== undefined && NAME_CHAR.test(before)) || (after !== undefined && NAME_CHAR.test(after))) continue;
    out += `${message.slice(from, at)}\0`;
    from = at + host.length;
  }
  return (out + message.slice(from)).replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/[\d.:a-fA-F]*\d[\d.:a-fA-F/]*/g, '0');
}
const NAME_CHAR = /[\w.-]/;

/** One problem per template position: a shared template fails the same way for every host. */
function sortProblems(problems: Problem[]): Problem[] {
  const seen = new Set<string>();
  return [...problems]
    .sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col)
    .filter((p) => {
      const key = `${p.file}:${p.line}:${p.col}:${p.message}`;
      return seen.has(key) ? false : (seen.add(key), true);
    });
}
