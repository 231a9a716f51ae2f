// What the match modules and targets of one rule mean: each module's options
// become Rule fields the evaluator understands (or the module stays verbatim),
// the target's options are checked and printed as iptables-save prints them.
import type { Family } from '../model/inventory.js';
import type { CtState, PortMatch, Rule } from '../model/ruleset.js';
import { quoteToken } from './format.js';
import {
  ADDR_TYPES,
  DEFAULT_LOG_LEVEL,
  EXTENSION_TARGETS,
  LOG_FLAGS,
  LOG_LEVELS,
  canonicaliseRejectWith,
  defaultRejectWith,
  lookupIcmpType,
  parseTcpFlags,
  TCP_FLAG,
} from './netfilter-names.js';

const CT_STATES: readonly CtState[] = ['INVALID', 'NEW', 'RELATED', 'ESTABLISHED', 'UNTRACKED'];
const LIMIT_UNITS: Array<[string, number]> = [['second', 1], ['minute', 60], ['hour', 3600], ['day', 86400]];
const LIMIT_SCALE = 10000;
const RATE_NAMES: Array<[string, number]> = [
  ['day', LIMIT_SCALE * 86400],
  ['hour', LIMIT_SCALE * 3600],
  ['min', LIMIT_SCALE * 60],
  ['sec', LIMIT_SCALE],
];

export interface Opt {
  negate: boolean;
  name: string;
  args: string[];
  col: number;
}

export interface Segment {
  /** Module name, or `-f` for the fragment flag. */
  name: string;
  opts: Opt[];
  col: number;
  /** An option outside our tables was seen: keep the whole module verbatim. */
  foreign: boolean;
}

export type Report = (col: number, message: string) => void;

export function formatOpt(o: Opt): string {
  return [...(o.negate ? ['!'] : []), o.name, ...o.args.map(quoteToken)].join(' ');
}

/** `22`, `1024:65535`, `:1023`, `1024:` → inclusive range (tcp/udp allow a == b). */
function parsePortRange(spec: string, allowEqual: boolean): [number, number] | undefined {
  const m = /^(\d{0,5})(?::(\d{0,5}))?$/.exec(spec);
  if (!m || spec === '' || spec === ':') return undefined;
  // iptables reads a leading zero as octal (010 is port 8): refused rather than read otherwise.
  if (/(^|:)0\d/.test(spec)) return undefined;
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

/** Set rule fields from one module; returns its matchOrder keys, or undefined to keep it verbatim. */
export function interpretSegment(seg: Segment, rule: Rule, family: Family, report: Report): string[] | undefined {
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

export function interpretTarget(rule: Rule, opts: Opt[], family: Family, report: Report): void {
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
