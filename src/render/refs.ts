// Typed `{{ reference }}` substitution. A reference is a whole token; its
// values are checked against the option it follows, so inventory data can only
// ever fill an address, interface or port slot: it cannot add an option, a
// rule, a newline or a shell word.
import { isIP } from 'node:net';
import type { Family, HostSpec, Inventory } from '../model/inventory.js';
import { quote } from '../inventory/tokens.js';
import { suggest } from '../inventory/suggest.js';

export type ValueType = 'addr' | 'cidr' | 'iface' | 'port' | 'portrange' | 'word';

export interface TypedValue {
  type: ValueType;
  family?: Family;
  value: string;
}

export interface RefContext {
  inv: Inventory;
  self: HostSpec;
  bastion: HostSpec;
  members: (group: string) => HostSpec[] | undefined;
  /** Every group name, for "did you mean" hints. */
  groupNames?: () => Iterable<string>;
  family: Family;
}

/** Options a reference may follow, and what they accept. */
const SLOT_TYPES: Record<string, ValueType[]> = {
  '-s': ['addr', 'cidr'],
  '--source': ['addr', 'cidr'],
  '-d': ['addr', 'cidr'],
  '--destination': ['addr', 'cidr'],
  '-i': ['iface'],
  '--in-interface': ['iface'],
  '-o': ['iface'],
  '--out-interface': ['iface'],
  '--dport': ['port', 'portrange'],
  '--sport': ['port', 'portrange'],
  '--destination-port': ['port', 'portrange'],
  '--source-port': ['port', 'portrange'],
  '--dports': ['port', 'portrange'],
  '--sports': ['port', 'portrange'],
  '--ports': ['port', 'portrange'],
};
/** multiport takes a comma list in one token instead of one rule per value. */
const LIST_SLOTS = new Set(['--dports', '--sports', '--ports']);

const REF = /^\{\{\s*([A-Za-z0-9_.:-]+)\s*\}\}$/;
const ADDRESS_FIELDS = ['public', 'private', 'public6', 'private6'] as const;
export type AddressField = (typeof ADDRESS_FIELDS)[number];

export function classifyValue(value: string): TypedValue | undefined {
  const ip = isIP(value);
  if (ip) return { type: 'addr', family: ip as Family, value };
  const cidr = /^(.+)\/(\d{1,3})$/.exec(value);
  if (cidr) {
    const fam = isIP(cidr[1]!);
    const bits = Number(cidr[2]);
    if (fam && bits <= (fam === 4 ? 32 : 128)) return { type: 'cidr', family: fam as Family, value };
  }
  if (/^\d{1,5}$/.test(value) && Number(value) >= 1 && Number(value) <= 65535) return { type: 'port', value };
  const range = /^(\d{1,5}):(\d{1,5})$/.exec(value);
  if (range && Number(range[1]) <= Number(range[2]) && Number(range[2]) <= 65535) return { type: 'portrange', value };
  if (/^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}$/.test(value)) return { type: 'iface', value };
  return undefined;
}

/**
 * A rule line's arguments as written (quotes kept) with their 1-based columns. It
 * splits where iptables-restore does (analyze/tokenize.ts): only at space, tab and
 * newline outside quotes, and right after a closing quote. Render joins the
 * arguments with single spaces, so the rendered line reads exactly as the template
 * line did. `{{ … }}` outside quotes stays whole, spaces and all.
 */
export function tokenizeRule(text: string): Array<{ text: string; col: number }> {
  const out: Array<{ text: string; col: number }> = [];
  let start = -1;
  const end = (at: number): void => {
    out.push({ text: text.slice(start, at), col: start + 1 });
    start = -1;
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === ' ' || c === '\t' || c === '\n') {
      if (start >= 0) end(i);
      i++;
      continue;
    }
    if (start < 0) start = i;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      // An open quote takes the rest of the line (the analysis refuses it).
      i = Math.min(j + 1, text.length);
      if (j < text.length) end(i);
      continue;
    }
    const close = c === '{' && text[i + 1] === '{' ? text.indexOf('}}', i + 2) : -1;
    i = close >= 0 ? close + 2 : i + 1;
  }
  if (start >= 0) end(text.length);
  return out;
}

/** `group.<g>.<field>` / `peers.<g>.<field>` with an address field: what an ipset can stand for. */
export function groupReference(token: string): { kind: 'group' | 'peers'; group: string; field: AddressField } | undefined {
  const parts = REF.exec(token)?.[1]?.split('.');
  if (!parts || parts.length < 3) return undefined;
  const [kind, ...rest] = parts;
  const field = rest.pop()!;
  if ((kind !== 'group' && kind !== 'peers') || !(ADDRESS_FIELDS as readonly string[]).includes(field)) return undefined;
  return { kind, group: rest.join('.'), field: field as AddressField };
}

export function isReference(token: string): boolean {
  return token.includes('{{') || token.includes('}}');
}

/** Resolve one `{{ … }}` token to its values, or explain why not. */
export function resolveReference(
  token: string,
  option: string | undefined,
  ctx: RefContext,
): { values: TypedValue[]; joined: boolean } | { error: string } {
  const m = REF.exec(token);
  if (!m) return { error: malformed(token) };
  const ref = m[1]!;
  const slot = option === undefined ? undefined : SLOT_TYPES[option];
  if (!slot) {
    return {
      error: `{{ ${ref} }} follows "${option ?? '(nothing)'}"; references may only fill -s, -d, -i, -o, --sport, --dport or multiport ports`,
    };
  }
  const resolved = lookup(ref, ctx);
  if ('error' in resolved) return resolved;
  for (const v of resolved.values) {
    if (!slot.includes(v.type)) {
      return { error: `{{ ${ref} }} gives "${v.value}" (${describe(v)}) but ${option} takes ${slot.map(describeType).join(' or ')}` };
    }
    if (v.family && v.family !== ctx.family) {
      return { error: `{{ ${ref} }} gives IPv${v.family} address ${v.value} in an IPv${ctx.family} template` };
    }
  }
  return { values: resolved.values, joined: LIST_SLOTS.has(option!) };
}

function lookup(ref: string, ctx: RefContext): { values: TypedValue[] } | { error: string } {
  const parts = ref.split('.');
  const head = parts[0];
  const field = parts[parts.length - 1]!;
  const middle = parts.slice(1, -1).join('.');
  switch (head) {
    case 'self':
      if (parts.length === 3 && parts[1] === 'if' && (field === 'public' || field === 'private')) {
        return { values: [{ type: 'iface', value: ctx.self.interfaces[field] }] };
      }
      return parts.length === 2 ? hostAddresses(ref, [ctx.self], field, ctx) : unknown(ref, ctx);
    case 'bastion':
      return parts.length === 2 ? hostAddresses(ref, [ctx.bastion], field, ctx) : unknown(ref, ctx);
    case 'host': {
      if (parts.length < 3) return unknown(ref, ctx);
      const host = hostsByName(ctx.inv).get(middle);
      if (!host) return { error: `{{ ${ref} }}: no host named ${quote(middle)} in the inventory${fleetHint(ctx, 'host', middle, () => ctx.inv.hosts.map((h) => h.name), (s) => `host.${s}.${field}`)}` };
      return hostAddresses(ref, [host], field, ctx);
    }
    case 'group':
    case 'peers': {
      if (parts.length < 3) return unknown(ref, ctx);
      const members = ctx.members(middle);
      if (!members) return { error: `{{ ${ref} }}: no group named ${quote(middle)} in the inventory${fleetHint(ctx, 'group', middle, () => ctx.groupNames?.() ?? [], (s) => `${head}.${s}.${field}`)}` };
      const hosts = head === 'peers' ? members.filter((h) => h.name !== ctx.self.name) : members;
      return hostAddresses(ref, hosts, field, ctx);
    }
    case 'vars': {
      if (parts.length !== 2) return unknown(ref, ctx);
      const value = ctx.self.vars[field];
      if (value === undefined) return { error: `{{ ${ref} }}: host ${ctx.self.name} has no var ${quote(field)}${hint(field, Object.keys(ctx.self.vars), (s) => `vars.${s}`)}` };
      const values: TypedValue[] = [];
      for (const v of Array.isArray(value) ? value : [value]) {
        const typed = classifyValue(v);
        if (!typed) return { error: `{{ ${ref} }}: value "${v}" is not an address, CIDR, port or interface name` };
        values.push(typed);
      }
      return { values };
    }
    case 'operators':
      if (parts.length !== 1) return unknown(ref, ctx);
      return {
        values: ctx.inv.operators
          .map((cidr) => classifyValue(cidr))
          .filter((v): v is TypedValue => v !== undefined && v.family === ctx.family),
      };
    default:
      return unknown(ref, ctx);
  }
}

function hostAddresses(ref: string, hosts: HostSpec[], field: string, ctx: RefContext): { values: TypedValue[] } | { error: string } {
  if (!(ADDRESS_FIELDS as readonly string[]).includes(field)) return unknown(ref, ctx);
  const values: TypedValue[] = [];
  for (const h of hosts) {
    const address = h[field as AddressField];
    if (!address) return { error: `{{ ${ref} }}: host ${h.name} has no ${field} address` };
    values.push({ type: 'addr', family: field.endsWith('6') ? 6 : 4, value: address });
  }
  return { values };
}

const KNOWN_REFERENCES =
  'known: self.<field>, self.if.public|private, bastion.<field>, group.<group>.<field>, ' +
  'peers.<group>.<field>, host.<host>.<field>, vars.<name>, operators; fields: public, private, public6, private6';

function unknown(ref: string, ctx: RefContext): { error: string } {
  const meant = closestReference(ref, ctx);
  return { error: `unknown reference {{ ${ref} }} (${meant ? `did you mean {{ ${meant} }}?` : KNOWN_REFERENCES})` };
}

/** ` (did you mean {{ … }}?)` when `word` is close to one of `names`. */
function hint(word: string, names: Iterable<string>, shape: (s: string) => string): string {
  const s = suggest(word, names);
  return s ? ` (did you mean {{ ${shape(s)} }}?)` : '';
}

// Hosts by name, once per inventory: `host.<h>` in a role of 10,000 hosts looks up 10,000 times.
const byName = new WeakMap<Inventory, Map<string, HostSpec>>();

function hostsByName(inv: Inventory): Map<string, HostSpec> {
  let map = byName.get(inv);
  if (!map) byName.set(inv, (map = new Map(inv.hosts.map((h) => [h.name, h]))));
  return map;
}

// The closest host or group name, once per inventory and word: a bad reference in a
// role fails on each of its hosts, and a fleet may have 10,000 names to compare.
const fleetHints = new WeakMap<Inventory, Map<string, string | undefined>>();

function fleetHint(ctx: RefContext, kind: string, word: string, names: () => Iterable<string>, shape: (s: string) => string): string {
  let cache = fleetHints.get(ctx.inv);
  if (!cache) fleetHints.set(ctx.inv, (cache = new Map()));
  const key = `${kind}\0${word}`;
  if (!cache.has(key)) cache.set(key, suggest(word, names()));
  const s = cache.get(key);
  return s ? ` (did you mean {{ ${shape(s)} }}?)` : '';
}

/** The reference a misspelt one most likely meant, part by part: `slef.privat` → `self.private`. */
function closestReference(ref: string, ctx: RefContext): string | undefined {
  const parts = ref.split('.');
  const pick = (word: string | undefined, names: readonly string[]) => (word === undefined ? undefined : names.includes(word) ? word : suggest(word, names));
  const head = pick(parts[0], ['self', 'bastion', 'host', 'group', 'peers', 'vars', 'operators']);
  const rest = parts.slice(1);
  const meant = (prefix: string, word: string | undefined, names: readonly string[]) => {
    const f = pick(word, names);
    return f === undefined ? undefined : `${prefix}.${f}`;
  };
  switch (head) {
    case 'self':
      return meant('self', rest.join('.'), [...ADDRESS_FIELDS, 'if.public', 'if.private']);
    case 'bastion':
      return meant('bastion', rest.join('.'), ADDRESS_FIELDS);
    case 'vars':
      return meant('vars', rest.join('.'), Object.keys(ctx.self.vars));
    case 'operators':
      return 'operators';
    case 'host':
    case 'group':
    case 'peers':
      return rest.length < 2 ? undefined : meant(`${head}.${rest.slice(0, -1).join('.')}`, rest[rest.length - 1], ADDRESS_FIELDS);
    default:
      return undefined;
  }
}

/** Why a `{{ … }}` argument is not a reference. */
function malformed(token: string): string {
  // quote(): a template's U+202E or U+2028 must not reach the terminal raw.
  const shown = quote(token.replace(/\s+/g, ' '));
  const open = token.indexOf('{{');
  if (open < 0) return `${shown}: }} without {{ (a reference is written {{ self.private }})`;
  if (!token.includes('}}', open + 2)) return `unclosed reference ${shown}: {{ without }} (a reference is written {{ self.private }})`;
  if (/^\{\{\s*\}\}$/.test(token)) return 'empty reference {{ }} (a reference is written {{ self.private }})';
  return `${shown} is not a reference: write it as a whole word, e.g. {{ self.private }}`;
}

function describeType(t: ValueType): string {
  return { addr: 'an address', cidr: 'a CIDR', iface: 'an interface name', port: 'a port', portrange: 'a port range', word: 'a word' }[t];
}

function describe(v: TypedValue): string {
  return describeType(v.type);
}
