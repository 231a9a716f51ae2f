// One rule's tokens after `-A CHAIN`, walked as iptables does: core options,
// `-m` modules with their options, the target with its options. Which options
// each module takes decides where a token belongs; what they mean is rule-matches.ts.
import type { Family } from '../model/inventory.js';
import type { Rule } from '../model/ruleset.js';
import { canonicaliseCidr } from './cidr.js';
import { BUILTIN_CHAINS, LOG_FLAGS, canonicaliseProto } from './netfilter-names.js';
import { formatOpt, interpretSegment, interpretTarget, type Opt, type Report, type Segment } from './rule-matches.js';
import type { Token } from './tokenize.js';

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
/**
 * Modules whose table above lists every option the extension has (libxt_tcp, libxt_udp …):
 * any other option after them is a mistake, not an option we do not model.
 */
export const COMPLETE_MODULES: ReadonlySet<string> = new Set(['tcp', 'udp', 'icmp', 'icmp6', 'multiport', 'state', 'limit', 'comment', 'addrtype']);

/** The option names the parser knows (core, per modelled module, per modelled target), for "did you mean" hints. */
export function knownOptionNames(): { core: string[]; modules: Record<string, string[]>; targets: Record<string, string[]> } {
  const names = (table: Record<string, Record<string, number>>) => Object.fromEntries(Object.entries(table).map(([k, v]) => [k, Object.keys(v)]));
  return { core: Object.keys(CORE_OPTIONS), modules: names(MODULE_OPTIONS), targets: names(TARGET_OPTIONS) };
}

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

/** Option names iptables-save prints instead of the aliases one may write. */
const SAVED_NAME: Record<string, Record<string, string>> = {
  multiport: { '--destination-ports': '--dports', '--source-ports': '--sports' },
};

function formatSegment(s: Segment): string {
  const names = SAVED_NAME[s.name];
  const opts = names ? s.opts.map((o) => ({ ...o, name: names[o.name] ?? o.name })) : s.opts;
  return s.name === '-f' ? formatOpt(s.opts[0] as Opt) : [`-m ${s.name}`, ...opts.map(formatOpt)].join(' ');
}

/** Walk the tokens after `-A CHAIN` into core options, module segments and the target. */
export function parseRuleTokens(tokens: Token[], rule: Rule, family: Family, report: Report): void {
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
