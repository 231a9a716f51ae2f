// Compose one complete rule set per host and family from its base template
// and role fragments, substitute typed references, and add the management
// path. Pure: templates come in as parsed values (see load-templates.ts).
import { InputError, type Problem } from '../errors.js';
import type { Family, HostSpec, Inventory } from '../model/inventory.js';
import type { Origin } from '../model/ruleset.js';
import { bastionOf, groupMembers } from '../inventory/query.js';
import { declaredChain, type Template, type TemplateLine } from './template.js';
import { isReference, resolveReference, tokenizeRule, type RefContext } from './refs.js';

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
}

/** The template files a host needs (v6 ones only if they exist). */
export function templatePaths(host: HostSpec, family: Family): string[] {
  const ext = `v${family}`;
  return [`bases/${host.base}.${ext}`, ...host.roles.map((r) => `roles/${r}.${ext}`)];
}

export function renderFleet(inv: Inventory, templates: TemplateSet): RenderedHost[] {
  const problems: Problem[] = [];
  const members = groupMembers(inv);
  const rendered = inv.hosts.map((host) => {
    const ctxBase = { inv, self: host, bastion: bastionOf(inv, host), members: (g: string) => members.get(g) };
    const v4 = renderFamily({ ...ctxBase, family: 4 }, templates, problems);
    const v6 = renderFamily({ ...ctxBase, family: 6 }, templates, problems);
    const notes: string[] = [];
    if (v6.closedByDefault) notes.push(`IPv6 closed by default: no template bases/${host.base}.v6`);
    if (templates.get(`bases/${host.base}.v4`)?.managementOff) {
      notes.push(`management path owned by bases/${host.base}.v4 (%management off)`);
    }
    return { host: host.name, v4, v6, notes };
  });
  if (problems.length > 0) throw new InputError(sortProblems(problems));
  return rendered;
}

interface Out {
  lines: string[];
  origins: Array<Origin | undefined>;
}

function renderFamily(ctx: RefContext, templates: TemplateSet, problems: Problem[]): RenderedFamily {
  const { self, family } = ctx;
  const base = templates.get(`bases/${self.base}.v${family}`);
  const roles = self.roles
    .map((r) => templates.get(`roles/${r}.v${family}`))
    .filter((t): t is Template => t !== undefined);
  const out: Out = { lines: [], origins: [] };
  const emit = (line: string, origin?: Origin) => {
    out.lines.push(line);
    out.origins.push(origin);
  };
  const sources = base ? [base, ...roles].map((t) => t.file).join(', ') : 'none (closed by default)';
  emit(`# fleetfw: rules.v${family} for ${self.name}`);
  emit(`# templates: ${sources}`);

  if (!base) {
    for (const line of closedPolicy(family)) emit(line);
    return { text: out.lines.join('\n') + '\n', origins: out.origins, closedByDefault: true };
  }

  const management = base.managementOff ? [] : managementRules(ctx);
  const tables = base.sections.map((s) => s.table);
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
      emit(l.text, { file, line: l.line });
    };
    section?.lines.filter((l) => l.kind === 'chain').forEach((l) => declare(base.file, l));
    if (!section && table === 'filter') {
      ['INPUT', 'FORWARD', 'OUTPUT'].forEach((c) => declare('', { text: `:${c} ACCEPT [0:0]`, line: 0, indent: 0, kind: 'chain' }));
    }
    for (const { file, s } of fragments) s.lines.filter((l) => l.kind === 'chain').forEach((l) => declare(file, l));
    if (table === 'filter' && management.length > 0) {
      emit(`# fleetfw: management path (SSH via bastion ${ctx.bastion.name})`);
      management.forEach((m) => emit(m));
    }
    const body = section?.lines.filter((l) => l.kind !== 'chain') ?? [{ text: '%roles', line: 0, indent: 0, kind: 'roles' as const }];
    if (!body.some((l) => l.kind === 'roles')) body.push({ text: '%roles', line: 0, indent: 0, kind: 'roles' });
    for (const l of body) {
      if (l.kind === 'roles') {
        for (const { file, s } of fragments) {
          for (const fl of s.lines) if (fl.kind !== 'chain') emitLine(file, fl, ctx, emit, problems);
        }
      } else {
        emitLine(base.file, l, ctx, emit, problems);
      }
    }
    emit('COMMIT');
  }
  return { text: out.lines.join('\n') + '\n', origins: out.origins, closedByDefault: false };
}

/** Emit a template line, expanding list references into one rule per value. */
function emitLine(
  file: string,
  l: TemplateLine,
  ctx: RefContext,
  emit: (line: string, origin?: Origin) => void,
  problems: Problem[],
): void {
  const origin = { file, line: l.line };
  if (l.kind === 'comment') {
    emit(l.text, origin);
    return;
  }
  const tokens = tokenizeRule(l.text);
  let variants: string[][] = [[]];
  let empty: string | undefined;
  for (let i = 0; i < tokens.length; i++) {
    const { text: token, col } = tokens[i]!;
    if (!isReference(token)) {
      variants = variants.map((v) => [...v, token]);
      continue;
    }
    const r = resolveReference(token, tokens[i - 1]?.text, ctx);
    if ('error' in r) {
      problems.push({ file, line: l.line, col: col + l.indent, path: `hosts.${ctx.self.name}`, message: r.error });
      return;
    }
    if (r.values.length === 0) empty = token;
    const values = r.joined ? [r.values.map((v) => v.value).join(',')] : r.values.map((v) => v.value);
    variants = variants.flatMap((v) => values.map((value) => [...v, value]));
  }
  if (empty !== undefined) {
    emit(`# (no addresses for ${empty}: ${l.text.replace(/\s+/g, ' ')})`, origin);
    return;
  }
  for (const v of variants) emit(v.join(' '), origin);
}

/**
 * The path fleetfw itself needs, first in INPUT/OUTPUT so no template rule can
 * cut it: SSH from the bastion on the private side; on the bastion, SSH from
 * the operators on the public side and out to the private network.
 */
function managementRules(ctx: RefContext): string[] {
  const { self, bastion, family, inv } = ctx;
  if (family === 6) return []; // management runs over IPv4 private addresses
  const port = self.ssh.port ?? 22;
  const tcp = (dir: '--dport' | '--sport', p: number) => `-p tcp -m tcp ${dir} ${p}`;
  const established = '-m conntrack --ctstate ESTABLISHED';
  // Replies of our own sshd go out without a conntrack match: on a host whose
  // first conntrack rule is being loaded, the SSH session that loads it is
  // picked up mid-stream as NEW, and an ESTABLISHED-only rule would stall it.
  if (self.name !== bastion.name) {
    const from = `${bastion.private}/32`;
    const iface = self.interfaces.private;
    return [
      `-A INPUT -s ${from} -i ${iface} ${tcp('--dport', port)} -j ACCEPT`,
      `-A OUTPUT -d ${from} -o ${iface} ${tcp('--sport', port)} -j ACCEPT`,
    ];
  }
  const rules: string[] = [];
  for (const cidr of inv.operators.filter((c) => !c.includes(':'))) {
    const src = cidr === '0.0.0.0/0' ? '' : `-s ${cidr} `;
    const dst = cidr === '0.0.0.0/0' ? '' : `-d ${cidr} `;
    rules.push(`-A INPUT ${src}-i ${self.interfaces.public} ${tcp('--dport', port)} -j ACCEPT`);
    rules.push(`-A OUTPUT ${dst}-o ${self.interfaces.public} ${tcp('--sport', port)} -j ACCEPT`);
  }
  const targetPorts = [...new Set(inv.hosts.filter((h) => h.name !== self.name).map((h) => h.ssh.port ?? 22))].sort((a, b) => a - b);
  for (const p of targetPorts) {
    rules.push(`-A OUTPUT -o ${self.interfaces.private} ${tcp('--dport', p)} -j ACCEPT`);
    rules.push(`-A INPUT -i ${self.interfaces.private} ${tcp('--sport', p)} ${established} -j ACCEPT`);
  }
  return rules;
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
