// Parse iptables-restore input or iptables-save output into a RuleSet. Common
// matches become Rule fields the evaluator understands; anything else is kept
// verbatim in `unmodelled` so that a packet reaching it gets "unknown", never a guess.
import type { Family } from '../model/inventory.js';
import type { Chain, CtState, Origin, PortMatch, Rule, RuleSet, Table } from '../model/ruleset.js';
import type { Problem } from '../errors.js';
import { canonicaliseCidr } from './cidr.js';
import { formatRuleSpec, quoteToken } from './format.js';
import {
  ADDR_TYPES,
  BUILTIN_CHAINS,
  DEFAULT_LOG_LEVEL,
  EXTENSION_TARGETS,
  LOG_FLAGS,
  LOG_LEVELS,
  canonicaliseProto,
  canonicaliseRejectWith,
  defaultRejectWith,
  lookupIcmpType,
  parseTcpFlags,
  TCP_FLAG,
} from './netfilter-names.js';

export interface ParseOptions {
  family: Family;
  /** Name used in origins and problems, e.g. `rules.v4` or `mysql-1 (live)`. */
  file: string;
  /**
   * Rules already parsed, by their line, shared by the parses of one fleet: most
   * rule lines repeat from host to host (90 % of a generated 10,000-host fleet's),
   * and a repeated line is copied instead of parsed again. Rules are never changed
   * once parsed, so the copies share their parts.
   */
  ruleCache?: Map<string, Rule>;
  /** Where each line of `text` was written: `sources[i]` is line i+1's template line (a render's provenance). */
  sources?: ReadonlyArray<Origin | undefined>;
}

export interface ParseResult {
  ruleSet: RuleSet;
  problems: Problem[];
}

import { tokenizeLine, type Token } from './tokenize.js';

// Callers that imported the tokenizer from here keep working.
export { tokenizeLine };

const CT_STATES: readonly CtState[] = ['INVALID', 'NEW', 'RELATED', 'ESTABLISHED', 'UNTRACKED'];
const LIMIT_UNITS: Array<[string, number]> = [['second', 1], ['minute', 60], ['hour', 3600], ['day', 86400]];
const LIMIT_SCALE = 10000;
const RATE_NAMES: Array<[string, number]> = [
  ['day', LIMIT_SCALE * 86400],
  ['hour', LIMIT_SCALE * 3600],
  ['min', LIMIT_SCALE * 60],
  ['sec', LIMIT_SCALE],
];

const CORE_OPTIONS: Record<string, 'src' | 'dst' | 'in' | 'out' | 'proto' | 'match' | 'jump' | 'goto' | 'frag'> = {
  '-s': 'src', '--source': 'src', '--src': 'src',
  '-d': 'dst', '--destination': 'dst', '--dst': 'dst',
  '-i': 'in', '--in-interface': 'in',
  '-o': 'out', '--out-interface': 'out',
  '-p': 'proto', '--protocol': 'proto',
  '-m': 'match', '--match': 'match',
  '-j': 'jump', '--jump': 'jump',
  '-g': 'goto', '--goto': 'goto',
  '-f': 'frag', '--fragment': 'frag',
};

// Options (and how many values each takes) of the modules we model.
const MODULE_OPTIONS: Record<string, Record<string, number>> = {
  tcp: { '--sport': 1, '--source-port': 1, '--dport': 1, '--destination-port': 1, '--syn': 0, '--tcp-flags': 2, '--tcp-option': 1 },
  udp: { '--sport': 1, '--source-port': 1, '--dport': 1, '--destination-port': 1 },
  icmp: { '--icmp-type': 1 },
  icmp6: { '--icmpv6-type': 1 },
  multiport: { '--dports': 1, '--destination-ports': 1, '--sports': 1, '--source-ports': 1, '--ports': 1 },
  conntrack: { '--ctstate': 1 },
  state: { '--state': 1 },
  limit: { '--limit': 1, '--limit-burst': 1 },
  comment: { '--comment': 1 },
  set: { '--match-set': 2 },
  addrtype: { '--src-type': 1, '--dst-type': 1, '--limit-iface-in': 0, '--limit-iface-out': 0 },
};
const TARGET_OPTIONS: Record<string, Record<string, number>> = {
  REJECT: { '--reject-with': 1 },
  LOG: { '--log-prefix': 1, '--log-level': 1, ...Object.fromEntries(LOG_FLAGS.map((f) => [f, 0])) },
  // Address rewriting: only the options iptables-save prints back as written, so
  // that an abbreviation (`--to`) is refused instead of analysed as something else.
  DNAT: { '--to-destination': 1, '--random': 0, '--persistent': 0 },
  SNAT: { '--to-source': 1, '--random': 0, '--random-fully': 0, '--persistent': 0 },
  MASQUERADE: { '--to-ports': 1, '--random': 0, '--random-fully': 0 },
  REDIRECT: { '--to-ports': 1, '--random': 0 },
};
/** Targets the kernel accepts in one table only (iptables-restore refuses them elsewhere, at load). */
const TARGET_TABLE: Record<string, string> = {
  REJECT: 'filter',
  DNAT: 'nat', SNAT: 'nat', MASQUERADE: 'nat', REDIRECT: 'nat', NETMAP: 'nat',
  CT: 'raw', NOTRACK: 'raw',
};
/** Built-in chains an address-rewriting target works in (the kernel refuses it elsewhere). */
const TARGET_HOOKS: Record<string, string[]> = {
  DNAT: ['PREROUTING', 'OUTPUT'],
  REDIRECT: ['PREROUTING', 'OUTPUT'],
  SNAT: ['POSTROUTING', 'INPUT'],
  MASQUERADE: ['POSTROUTING'],
};
const MULTIPORT_PROTOS = new Set(['tcp', 'udp', 'udplite', 'sctp', 'dccp']);
const PROTO_MODULES = new Set(['tcp', 'udp', 'icmp', 'icmp6']);

interface Opt {
  negate: boolean;
  name: string;
  args: string[];
  col: number;
}

interface Segment {
  /** Module name, or `-f` for the fragment flag. */
  name: string;
  opts: Opt[];
  col: number;
  /** An option outside our tables was seen: keep the whole module verbatim. */
  foreign: boolean;
}

type Report = (col: number, message: string) => void;

/** Module that carries `--dport` etc. for a protocol, per family. */
function protoModuleFor(proto: string | undefined, family: Family): string | undefined {
  if (proto === 'tcp' || proto === 'udp') return proto;
  if (proto === 'icmp' && family === 4) return 'icmp';
  if (proto === 'ipv6-icmp' && family === 6) return 'icmp6';
  return undefined;
}

function isOptionToken(t: Token): boolean {
  return !t.quoted && (t.text === '!' || /^-[A-Za-z-]/.test(t.text));
}

/** Collect values for an option: a fixed count, or (count < 0) every following non-option token. */
function takeArgs(tokens: Token[], from: number, count: number): string[] | undefined {
  const out: string[] = [];
  for (let j = from; j < tokens.length && (count < 0 || out.length < count); j++) {
    const t = tokens[j] as Token;
    if (count < 0 && isOptionToken(t)) break;
    out.push(t.text);
  }
  return count >= 0 && out.length < count ? undefined : out;
}

function formatOpt(o: Opt): string {
  return [...(o.negate ? ['!'] : []), o.name, ...o.args.map(quoteToken)].join(' ');
}

/** Option names iptables-save prints instead of the aliases one may write. */
const SAVED_NAME: Record<string, Record<string, string>> = {
  multiport: { '--destination-ports': '--dports', '--source-ports': '--sports' },
};

function formatSegment(s: Segment): string {
  const names = SAVED_NAME[s.name];
  const opts = names ? s.opts.map((o) => ({ ...o, name: names[o.name] ?? o.name })) : s.opts;
  return s.name === '-f' ? formatOpt(s.opts[0] as Opt) : [`-m ${s.name}`, ...opts.map(formatOpt)].join(' ');
}

/** `22`, `1024:65535`, `:1023`, `1024:` → inclusive range (tcp/udp allow a == b). */
function parsePortRange(spec: string, allowEqual: boolean): [number, number] | undefined {
  const m = /^(\d{0,5})(?::(\d{0,5}))?$/.exec(spec);
  if (!m || spec === '' || spec === ':') return undefined;
  const lo = m[1] === '' ? 0 : Number(m[1]);
  const hi = m[2] === undefined ? lo : m[2] === '' ? 65535 : Number(m[2]);
  if (lo > 65535 || hi > 65535 || lo > hi) return undefined;
  if (m[2] !== undefined && !allowEqual && lo >= hi) return undefined;
  return [lo, hi];
}

/** libxt_limit: parse `N/unit` to its internal period, then print the way iptables-save does. */
export function canonicaliseLimit(spec: string): string | undefined {
  const m = /^(\d+)(?:\/([a-z]*))?$/i.exec(spec);
  if (!m) return undefined;
  let mult = 1;
  if (m[2] !== undefined) {
    const unit = m[2].toLowerCase();
    const hit = unit === '' ? undefined : LIMIT_UNITS.find(([name]) => name.startsWith(unit));
    if (!hit) return undefined;
    mult = hit[1];
  }
  const rate = Number(m[1]);
  if (rate === 0) return undefined;
  const period = Math.floor((LIMIT_SCALE * mult) / rate);
  if (period === 0) return undefined;
  let i = 1;
  for (; i < RATE_NAMES.length; i++) {
    const unitMult = (RATE_NAMES[i] as [string, number])[1];
    if (period > unitMult || Math.floor(unitMult / period) < unitMult % period) break;
  }
  const [name, unitMult] = RATE_NAMES[i - 1] as [string, number];
  return `${Math.floor(unitMult / period)}/${name}`;
}

/** Walk the tokens after `-A CHAIN` into core options, module segments and the target. */
function parseRuleTokens(tokens: Token[], rule: Rule, family: Family, report: Report): void {
  const segments: Segment[] = [];
  let protoSeg: Segment | undefined;
  let cur: Segment | undefined;
  let neg: Token | undefined;
  let targetSeen = false;
  const targetOpts: Opt[] = [];
  const seenCore = new Set<string>();

  const openSegment = (name: string, col: number): Segment => {
    const seg: Segment = { name, opts: [], col, foreign: false };
    segments.push(seg);
    return seg;
  };

  let i = 0;
  while (i < tokens.length) {
    const t = tokens[i] as Token;
    if (t.text === '!' && !t.quoted) {
      if (neg) report(t.col, 'two `!` in a row');
      neg = t;
      i++;
      continue;
    }
    const negate = neg !== undefined;
    const core = t.quoted ? undefined : CORE_OPTIONS[t.text];
    if (core) {
      neg = undefined;
      if (core === 'frag') {
        openSegment('-f', t.col).opts.push({ negate, name: '-f', args: [], col: t.col });
        cur = undefined;
        i++;
        continue;
      }
      const value = tokens[i + 1];
      if (!value) {
        report(t.col, `${t.text} needs a value`);
        return;
      }
      if (negate && (core === 'match' || core === 'jump' || core === 'goto')) report(t.col, `\`!\` cannot negate ${t.text}`);
      if (core !== 'match' && seenCore.has(core)) report(t.col, `${t.text} given twice`);
      if (core !== 'match') seenCore.add(core);
      i += 2;
      switch (core) {
        case 'src':
        case 'dst': {
          if (value.text.includes(',')) {
            report(value.col, `address lists are not supported (${value.text}); write one rule per address`);
            break;
          }
          const c = canonicaliseCidr(value.text, family);
          if ('error' in c) report(value.col, c.error);
          else if (c.cidr.endsWith('/0') && negate) report(t.col, `! ${t.text} ${value.text} matches nothing (the kernel refuses it)`);
          else if (!c.cidr.endsWith('/0')) rule[core] = { cidr: c.cidr, negate };
          break;
        }
        case 'in':
        case 'out':
          if (value.text.length === 0 || value.text.length > 15 || /[\s/]/.test(value.text)) {
            report(value.col, `bad interface name: ${value.text}`);
          } else if (!(value.text === '+' && !negate)) {
            rule[core] = { name: value.text, negate };
          }
          break;
        case 'proto': {
          const name = canonicaliseProto(value.text);
          if (!name) report(value.col, `unknown protocol: ${value.text}`);
          else if (name === 'all' && negate) report(t.col, '! -p all matches nothing (iptables refuses it)');
          else if (name !== 'all') rule.proto = { name, negate };
          break;
        }
        case 'match': {
          const name = value.text;
          if (name === '') report(value.col, '-m needs a module name');
          if (name === 'multiport' && !(rule.proto && !rule.proto.negate && MULTIPORT_PROTOS.has(rule.proto.name))) {
            report(value.col, '-m multiport needs -p tcp, udp, udplite, sctp or dccp before it');
          }
          if (PROTO_MODULES.has(name)) {
            const expected = protoModuleFor(rule.proto && !rule.proto.negate ? rule.proto.name : undefined, family);
            if (expected !== name) {
              report(value.col, `-m ${name} needs -p ${name === 'icmp6' ? 'ipv6-icmp' : name} before it`);
              cur = openSegment(name, t.col);
              cur.foreign = true;
            } else {
              protoSeg ??= openSegment(name, t.col);
              cur = protoSeg;
            }
          } else {
            cur = openSegment(name, t.col);
          }
          break;
        }
        case 'jump':
        case 'goto': {
          if (value.text === '') report(value.col, `${t.text} needs a target name`);
          const only = TARGET_TABLE[value.text];
          if (only && only !== rule.table) report(value.col, `${value.text} is only valid in the ${only} table`);
          if (value.text === 'DROP' && rule.table === 'nat') report(value.col, 'DROP is not allowed in the nat table (iptables refuses it: filter in the filter table)');
          const hooks = TARGET_HOOKS[value.text];
          if (hooks && rule.table === 'nat' && (BUILTIN_CHAINS.nat ?? []).includes(rule.chain) && !hooks.includes(rule.chain)) {
            report(value.col, `${value.text} is only valid in ${hooks.join(' and ')} (and chains jumped to from there)`);
          }
          rule.target = value.text;
          rule.goto = core === 'goto';
          targetSeen = true;
          cur = undefined;
          break;
        }
      }
      continue;
    }
    if (!isOptionToken(t)) {
      report(t.col, `unexpected ${JSON.stringify(t.text)}`);
      neg = undefined;
      i++;
      continue;
    }
    // A match or target option: the target's own options first (they only exist after -j),
    // then the module being written, then the implicit protocol match.
    neg = undefined;
    const targetTable = rule.target ? TARGET_OPTIONS[rule.target] : undefined;
    const curTable = cur ? MODULE_OPTIONS[cur.name] : undefined;
    const protoName = protoModuleFor(rule.proto && !rule.proto.negate ? rule.proto.name : undefined, family);
    const protoTable = protoName ? MODULE_OPTIONS[protoName] : undefined;
    let count: number | undefined;
    let dest: Segment | 'target' | undefined;
    if (targetSeen && targetTable && t.text in targetTable) {
      dest = 'target';
      count = targetTable[t.text];
    } else if (cur && curTable && t.text in curTable) {
      dest = cur;
      count = curTable[t.text];
    } else if (protoTable && t.text in protoTable && protoName) {
      protoSeg ??= openSegment(protoName, t.col);
      dest = protoSeg;
      count = protoTable[t.text];
    } else if (targetSeen && !targetTable && rule.target && !cur) {
      dest = 'target'; // an extension target we do not model: keep its options verbatim
      count = -1;
    } else if (cur) {
      dest = cur; // unknown option of this module: keep the module verbatim
      cur.foreign = true;
      count = -1;
    } else if (targetSeen && targetTable && rule.target) {
      report(t.col, `${rule.target} has no option ${t.text} (${Object.keys(targetTable).join(', ')})`);
      i += 1 + (takeArgs(tokens, i + 1, -1)?.length ?? 0);
      continue;
    } else {
      report(t.col, `unknown option ${t.text}${protoName ? '' : ' (does it need -p or -m first?)'}`);
      i += 1 + (takeArgs(tokens, i + 1, -1)?.length ?? 0);
      continue;
    }
    const args = takeArgs(tokens, i + 1, count ?? -1);
    if (!args) {
      report(t.col, `${t.text} needs ${count} value${count === 1 ? '' : 's'}`);
      return;
    }
    const opt: Opt = { negate, name: t.text, args, col: t.col };
    if (dest === 'target') targetOpts.push(opt);
    else dest.opts.push(opt);
    i += 1 + args.length;
    if (dest !== 'target' && dest !== cur) cur = dest;
  }
  if (neg) report(neg.col, '`!` at the end of the rule');

  // Interpret segments in printed order; a second constraint on the same field stays verbatim.
  const keep = (seg: Segment): void => {
    rule.unmodelled.push(formatSegment(seg));
    rule.matchOrder?.push(`unmodelled:${rule.unmodelled.length - 1}`);
  };
  rule.matchOrder = [];
  for (const seg of segments) {
    if (seg.foreign || seg.name === '-f' || !MODULE_OPTIONS[seg.name]) {
      keep(seg);
      continue;
    }
    const placed = interpretSegment(seg, rule, family, report);
    if (placed === undefined) keep(seg);
    else rule.matchOrder.push(...placed);
  }
  interpretTarget(rule, targetOpts, family, report);
}

/** Set rule fields from one module; returns its matchOrder keys, or undefined to keep it verbatim. */
function interpretSegment(seg: Segment, rule: Rule, family: Family, report: Report): string[] | undefined {
  const portMatch = (o: Opt, multiport: boolean): PortMatch | undefined => {
    const parts = multiport ? (o.args[0] ?? '').split(',') : [o.args[0] ?? ''];
    const ranges: Array<[number, number]> = [];
    for (const p of parts) {
      const r = parsePortRange(p, !multiport);
      if (!r) {
        report(o.col, `bad port${multiport ? ' list' : ''}: ${o.args[0]} (numbers 0-65535, ranges a:b)`);
        return undefined;
      }
      ranges.push(r);
    }
    if (multiport && ranges.reduce((n, [a, b]) => n + (a === b ? 1 : 2), 0) > 15) {
      report(o.col, 'multiport takes at most 15 ports (a range counts as two)');
      return undefined;
    }
    return multiport ? { ranges, negate: o.negate, multiport: true } : { ranges, negate: o.negate };
  };
  const only = (o: Opt): string => `${o.name} is given twice`;
  switch (seg.name) {
    case 'tcp':
    case 'udp': {
      const portField = (o: Opt): 'sport' | 'dport' | undefined =>
        /^--(sport|source-port)$/.test(o.name) ? 'sport' : /^--(dport|destination-port)$/.test(o.name) ? 'dport' : undefined;
      const fields = seg.opts.map(portField).filter((f) => f !== undefined);
      if (fields.some((f) => rule[f])) return undefined;
      if (new Set(fields).size < fields.length) report(seg.col, 'a port option is given twice');
      const inner: string[] = [];
      for (const o of seg.opts) {
        const field = portField(o);
        if (field) {
          const pm = portMatch(o, false);
          // iptables drops a full range from the dump; the match module itself stays.
          const full = pm !== undefined && pm.ranges[0]?.[0] === 0 && pm.ranges[0]?.[1] === 65535;
          if (full && pm.negate) report(o.col, `! ${o.name} 0:65535 matches no port (iptables would drop the test and match every packet)`);
          else if (pm && !full) rule[field] = pm;
        } else if (o.name === '--syn' || o.name === '--tcp-flags') {
          if (rule.tcpFlags) report(o.col, 'only one of --syn / --tcp-flags');
          const syn = o.name === '--syn';
          const mask = syn ? TCP_FLAG.FIN! | TCP_FLAG.SYN! | TCP_FLAG.RST! | TCP_FLAG.ACK! : parseTcpFlags(o.args[0] ?? '');
          const comp = syn ? TCP_FLAG.SYN! : parseTcpFlags(o.args[1] ?? '');
          if (mask === undefined || comp === undefined) report(o.col, `bad TCP flags: ${o.args.join(' ')}`);
          else rule.tcpFlags = { mask, comp, negate: o.negate };
        } else {
          inner.push(formatOpt(o));
        }
      }
      rule.unmodelled.push(...inner);
      return ['proto'];
    }
    case 'icmp':
    case 'icmp6': {
      if (rule.icmpType) return undefined;
      for (const o of seg.opts) {
        const spec = lookupIcmpType(o.args[0] ?? '', family);
        if (rule.icmpType) report(o.col, only(o));
        else if (!spec || (family === 6 && o.args[0] === 'any')) report(o.col, `unknown ICMP${family === 6 ? 'v6' : ''} type: ${o.args[0]}`);
        else rule.icmpType = { ...spec, negate: o.negate };
      }
      return ['proto'];
    }
    case 'multiport': {
      const o = seg.opts[0];
      if (!o || seg.opts.length > 1) {
        report(seg.col, 'multiport takes exactly one of --dports, --sports, --ports');
        return undefined;
      }
      const kind = /dest/.test(o.name) || o.name === '--dports' ? 'dports' : /source/.test(o.name) || o.name === '--sports' ? 'sports' : 'ports';
      const field = kind === 'dports' ? 'dport' : kind === 'sports' ? 'sport' : 'ports';
      if (rule[field]) return undefined;
      const pm = portMatch(o, true);
      if (!pm) return undefined;
      rule[field] = pm;
      return [`multiport:${kind}`];
    }
    case 'conntrack':
    case 'state': {
      const o = seg.opts[0];
      if (!o || seg.opts.length > 1 || rule.state) return undefined;
      const states = (o.args[0] ?? '').split(',');
      if (!states.every((s): s is CtState => (CT_STATES as readonly string[]).includes(s))) return undefined;
      const sorted = CT_STATES.filter((s) => states.includes(s));
      rule.state = seg.name === 'state' ? { states: sorted, negate: o.negate, module: 'state' } : { states: sorted, negate: o.negate };
      return ['state'];
    }
    case 'limit': {
      if (rule.limit) return undefined;
      let rate = '3/hour';
      let burst: number | undefined;
      for (const o of seg.opts) {
        if (o.negate) return undefined;
        if (o.name === '--limit') {
          const r = canonicaliseLimit(o.args[0] ?? '');
          if (!r) report(o.col, `bad rate: ${o.args[0]} (N/sec, N/min, N/hour, N/day)`);
          else rate = r;
        } else {
          const b = Number(o.args[0]);
          if (!/^\d+$/.test(o.args[0] ?? '') || b < 1 || b > 10000) report(o.col, `bad burst: ${o.args[0]}`);
          else if (b !== 5) burst = b;
        }
      }
      rule.limit = rate;
      if (burst !== undefined) rule.limitBurst = burst;
      return ['limit'];
    }
    case 'set': {
      // One address dimension (hash:ip); anything else (src,dst, counters) stays verbatim.
      const o = seg.opts[0];
      const dir = o?.args[1];
      if (!o || seg.opts.length > 1 || (dir !== 'src' && dir !== 'dst')) return undefined;
      const field = dir === 'src' ? 'srcSet' : 'dstSet';
      if (rule[field]) return undefined;
      const name = o.args[0] ?? '';
      if (name.length === 0 || name.length > 31) report(o.col, `bad set name ${JSON.stringify(name)} (1-31 characters)`);
      rule[field] = { name, negate: o.negate };
      return [`set:${dir}`];
    }
    case 'addrtype': {
      // Without --limit-iface-*: those depend on the interface's own addresses.
      if (rule.addrType || seg.opts.some((o) => o.name.startsWith('--limit-iface'))) return undefined;
      const at: NonNullable<Rule['addrType']> = {};
      for (const o of seg.opts) {
        const side = o.name === '--src-type' ? 'src' : 'dst';
        const types = (o.args[0] ?? '').toUpperCase().split(',');
        if (at[side]) report(o.col, only(o));
        else if (!types.every((t) => ADDR_TYPES.includes(t))) report(o.col, `unknown address type in ${o.args[0]} (${ADDR_TYPES.join(', ')})`);
        else at[side] = { types: ADDR_TYPES.filter((t) => types.includes(t)), negate: o.negate };
      }
      if (!at.src && !at.dst) report(seg.col, '-m addrtype needs --src-type or --dst-type');
      rule.addrType = at;
      return ['addrtype'];
    }
    case 'comment': {
      const o = seg.opts[0];
      if (!o || seg.opts.length > 1 || o.negate || rule.comment !== undefined) return undefined;
      if (Buffer.byteLength(o.args[0] ?? '') > 255) report(o.col, 'comment longer than 255 bytes (iptables would cut it)');
      rule.comment = o.args[0] ?? '';
      return ['comment'];
    }
    default:
      return undefined;
  }
}

function interpretTarget(rule: Rule, opts: Opt[], family: Family, report: Report): void {
  const t = rule.target;
  if (t === 'REJECT') {
    let with_ = defaultRejectWith(family);
    for (const o of opts) {
      const c = canonicaliseRejectWith(o.args[0] ?? '', family);
      if (!c) report(o.col, `unknown --reject-with for IPv${family}: ${o.args[0]}`);
      else if (c === 'tcp-reset' && rule.proto?.name !== 'tcp') report(o.col, 'tcp-reset needs -p tcp');
      else with_ = c;
    }
    rule.targetArgs = ['--reject-with', with_];
  } else if (t === 'LOG') {
    let prefix = '';
    let level = DEFAULT_LOG_LEVEL;
    const flags = new Set<string>();
    for (const o of opts) {
      const v = o.args[0] ?? '';
      if (o.name === '--log-prefix') {
        if (v.length === 0 || Buffer.byteLength(v) > 29) report(o.col, '--log-prefix must be 1 to 29 bytes (iptables would cut it)');
        prefix = v;
      } else if (o.name === '--log-level') {
        const n = /^[0-7]$/.test(v) ? Number(v) : LOG_LEVELS[v];
        if (n === undefined) report(o.col, `bad --log-level: ${v}`);
        else level = n;
      } else {
        flags.add(o.name);
      }
    }
    rule.targetArgs = [
      ...(prefix ? ['--log-prefix', prefix] : []),
      ...(level !== DEFAULT_LOG_LEVEL ? ['--log-level', String(level)] : []),
      ...LOG_FLAGS.filter((f) => flags.has(f)),
    ];
  } else {
    if (opts.length > 0 && t && !EXTENSION_TARGETS.has(t)) report((opts[0] as Opt).col, `${t} takes no options`);
    rule.targetArgs = opts.flatMap((o) => [...(o.negate ? ['!'] : []), o.name, ...o.args]);
  }
}

/** Blank-separated words with their columns (iptables-restore reads `*table` and `:chain` lines so). */
function splitBlanks(line: string): { tokens: Token[] } {
  const tokens: Token[] = [];
  for (const m of line.matchAll(/[^ \t]+/g)) tokens.push({ text: m[0], col: (m.index ?? 0) + 1, quoted: false });
  return { tokens };
}

interface OpenTable {
  table: Table;
  line: number;
}

/** Parse a whole iptables-restore / iptables-save document. Never throws: problems are returned. */
export function parseRuleSet(text: string, opts: ParseOptions): ParseResult {
  const { family, file } = opts;
  const problems: Problem[] = [];
  const tables: Table[] = [];
  let open: OpenTable | undefined;

  /** The chain `-A NAME` appends to: declared, or a built-in one iptables-restore creates on use (policy ACCEPT). */
  const chainFor = (table: Table, name: string): Chain | undefined => {
    let chain = table.chains.find((c) => c.name === name);
    if (!chain && (BUILTIN_CHAINS[table.name] ?? []).includes(name)) {
      chain = { name, builtin: true, policy: 'ACCEPT', rules: [] };
      table.chains.push(chain);
    }
    return chain;
  };

  const lines = text.split('\n');
  lines.forEach((rawLine, idx) => {
    const lineNo = idx + 1;
    const line = rawLine;
    const report = (col: number, message: string, path = ''): void => {
      problems.push({ file, line: lineNo, col, path, message });
    };
    // iptables-restore's own line rules: `#` only in the first column, `*`, `:` and
    // COMMIT only there too, blank-only lines refused, a carriage return kept as text.
    if (line === '' || line.startsWith('#')) return;
    const trimmed = line.trim();
    const cr = line.indexOf('\r');
    if (cr >= 0) {
      report(cr + 1, 'carriage return in the line (CRLF line endings?): iptables-restore reads it as part of the rule');
      return;
    }
    if (trimmed === '') {
      report(1, 'a line of only blanks (iptables-restore refuses it)');
      return;
    }
    if (/^\s/.test(line) && /^(#|\*|:|COMMIT)/.test(trimmed)) {
      report(1, `${JSON.stringify(trimmed.slice(0, 12))} must start in the first column (iptables-restore reads it as a rule otherwise)`);
      return;
    }
    const cacheKey = open && opts.ruleCache ? `${family} ${open.table.name} ${line}` : undefined;
    const seen = cacheKey === undefined ? undefined : opts.ruleCache?.get(cacheKey);
    // The same line parsed fine in the same table; its chain must exist here too (else the full parse says why).
    const seenChain = seen && open ? chainFor(open.table, seen.chain) : undefined;
    if (seen && seenChain) {
      const copy: Rule = { ...seen, index: seenChain.rules.length + 1, origin: { file, line: lineNo } };
      const source = opts.sources?.[idx];
      if (source) copy.source = source;
      else delete copy.source;
      seenChain.rules.push(copy);
      return;
    }
    // Table and chain lines are split at blanks only, quotes and all; rule lines as arguments.
    const tk = line.startsWith('*') || line.startsWith(':') ? splitBlanks(line) : tokenizeLine(line);
    if ('error' in tk) {
      report(tk.col, tk.error);
      return;
    }
    let tokens = tk.tokens;
    const first = tokens[0] as Token;
    if (/^\[\d+:\d+\]$/.test(first.text)) tokens = tokens.slice(1); // `[packets:bytes] -A …`
    const head = tokens[0];
    if (!head) {
      report(first.col, 'counters without a rule');
      return;
    }

    if (head.text.startsWith('*')) {
      const name = head.text.slice(1);
      if (open) report(head.col, `*${name} before COMMIT of *${open.table.name} (line ${open.line})`);
      if (!BUILTIN_CHAINS[name]) {
        report(head.col + 1, `unknown table ${JSON.stringify(name)} (filter, nat, mangle, raw, security)`);
        open = undefined;
        return;
      }
      if (tokens.length > 1) report((tokens[1] as Token).col, 'unexpected text after the table name');
      if (tables.some((t) => t.name === name)) report(head.col, `table ${name} appears twice`);
      const table: Table = { name, chains: [] };
      tables.push(table);
      open = { table, line: lineNo };
      return;
    }
    if (head.text === 'COMMIT' || line.startsWith('COMMIT')) {
      if (line !== 'COMMIT') {
        report(head.col, 'COMMIT takes nothing after it');
        return;
      }
      if (!open) report(head.col, 'COMMIT without a *table');
      open = undefined;
      return;
    }
    if (head.text.startsWith(':')) {
      if (!open) {
        report(head.col, 'chain declaration before any *table');
        return;
      }
      const name = head.text.slice(1);
      const policy = tokens[1]?.text;
      const path = `${open.table.name}.${name}`;
      const builtin = (BUILTIN_CHAINS[open.table.name] ?? []).includes(name);
      if (!/^[^\s!"\\-][^\s"\\]{0,28}$/.test(name)) report(head.col + 1, `bad chain name ${JSON.stringify(name)}`, path);
      if (tokens[2] && !/^\[\d+:\d+\]$/.test(tokens[2].text)) report(tokens[2].col, 'expected [packets:bytes]', path);
      const polCol = tokens[1]?.col ?? head.col + head.text.length;
      if (builtin && policy !== 'ACCEPT' && policy !== 'DROP') {
        report(polCol, `unknown policy ${JSON.stringify(policy ?? '')} for built-in chain (ACCEPT or DROP)`, path);
      } else if (!builtin && policy !== '-') {
        report(polCol, `user-defined chain takes policy "-", not ${JSON.stringify(policy ?? '')}`, path);
      }
      if (open.table.chains.some((c) => c.name === name)) {
        report(head.col, `chain ${name} declared twice`, path);
        return;
      }
      const chain: Chain = { name, builtin, rules: [], origin: { file, line: lineNo } };
      if (builtin) chain.policy = policy === 'DROP' ? 'DROP' : 'ACCEPT';
      open.table.chains.push(chain);
      return;
    }
    if (head.text === '-A' || head.text === '--append') {
      if (!open) {
        report(head.col, 'rule before any *table');
        return;
      }
      const chainTok = tokens[1];
      if (!chainTok) {
        report(head.col, '-A needs a chain name');
        return;
      }
      const table = open.table;
      const chain = chainFor(table, chainTok.text);
      const path = `${table.name}.${chainTok.text}`;
      if (!chain) {
        report(chainTok.col, `chain ${chainTok.text} is not declared in *${table.name} (add :${chainTok.text} - [0:0])`, path);
        return;
      }
      const rule: Rule = {
        table: table.name,
        chain: chain.name,
        index: chain.rules.length + 1,
        unmodelled: [],
        goto: false,
        targetArgs: [],
        text: '',
        origin: { file, line: lineNo },
      };
      const source = opts.sources?.[idx];
      if (source) rule.source = source;
      const before = problems.length;
      parseRuleTokens(tokens.slice(2), rule, family, (col, message) => report(col, message, path));
      // iptables refuses an interface the hook cannot have (no output device on INPUT, no input on OUTPUT).
      const noOut = ['INPUT', 'PREROUTING'].includes(chain.name) && chain.builtin;
      const noIn = ['OUTPUT', 'POSTROUTING'].includes(chain.name) && chain.builtin;
      if ((noOut && rule.out) || (noIn && rule.in)) {
        const opt = noOut ? '-o' : '-i';
        report(tokens.find((t) => t.text === opt || t.text === (noOut ? '--out-interface' : '--in-interface'))?.col ?? 1, `can't use ${opt} with ${chain.name}`, path);
      }
      if (problems.length > before) return;
      rule.text = formatRuleSpec(rule);
      chain.rules.push(rule);
      if (cacheKey !== undefined) opts.ruleCache?.set(cacheKey, rule);
      return;
    }
    if (/^-[A-Z]$|^--[a-z-]+$/.test(head.text)) {
      report(head.col, `${head.text}: only -A rules belong in a rule set document`);
      return;
    }
    report(head.col, `unrecognised line: ${JSON.stringify(trimmed.slice(0, 40))}`);
  });
  if (open) {
    problems.push({ file, line: open.line, col: 1, path: '', message: `*${open.table.name} has no COMMIT` });
  }
  return { ruleSet: { family, tables }, problems };
}
