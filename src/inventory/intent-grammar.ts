// The intent grammar: one line of `intents:` into an IntentSpec, every endpoint
// checked against the names the inventory defines so a typo is caught here and
// not when the intent is proven.
import type { Expect, Family, IntentSpec, Proto, Side } from '../model/inventory.js';
import { didYouMean, suggest } from './suggest.js';
import { isPort, quote } from './tokens.js';
import type { Entry, Reader } from './yaml-reader.js';

const EXPECTS: Expect[] = ['allow', 'deny', 'reject', 'drop'];
const INTENT_GRAMMAR = 'FROM -> TO:PORT[/tcp|/udp] EXPECT [ipv6] [via public|private]';

/** One intent line; `names` are the hosts, groups and externals it may name. */
export function readIntent(r: Reader, e: Entry, names: Set<string>): IntentSpec | undefined {
  const s = r.string(e.node, e.path);
  if (!s) return undefined;
  const malformed = () => void r.report(s, `malformed intent ${quote(s.value)} (expected ${INTENT_GRAMMAR})`);
  const [from, arrow, target, expect, ...opts] = s.value.trim().split(/[ \t]+/);
  const colon = target?.indexOf(':') ?? -1;
  if (arrow !== '->' || !from || !target || colon < 1 || !expect) return malformed();
  const to = target.slice(0, colon);
  const portText = target.slice(colon + 1);

  let ok = true;
  const bad = (message: string) => {
    r.report(s, message);
    ok = false;
  };
  for (const name of [from, to]) {
    if (names.has(name)) continue;
    const hint = suggest(name, names);
    bad(`unknown host, group or external ${quote(name)}${didYouMean(hint)}`);
  }
  let proto: Proto = 'icmp';
  let port: number | undefined;
  if (portText !== 'icmp') {
    const m = /^([^/]*)(?:\/(tcp|udp))?$/.exec(portText);
    const p = m && /^[0-9]+$/.test(m[1]!) ? isPort(Number(m[1])) : undefined;
    if (!p) bad(`invalid port ${quote(portText)} (expected PORT, PORT/tcp, PORT/udp or icmp)`);
    else if (!p.ok) bad(p.reason);
    else [port, proto] = [p.value, (m![2] as Proto | undefined) ?? 'tcp'];
  }
  if (!(EXPECTS as string[]).includes(expect)) {
    const hint = suggest(expect, EXPECTS);
    bad(`unknown expectation ${quote(expect)} (${hint ? `did you mean "${hint}"?` : `expected ${EXPECTS.join(', ')}`})`);
  }
  let family: Family = 4;
  let via: Side | undefined;
  let i = 0;
  if (opts[i] === 'ipv6') [family, i] = [6, i + 1];
  if (opts[i] === 'via') {
    const side = opts[i + 1];
    if (side !== 'public' && side !== 'private') return malformed();
    [via, i] = [side, i + 2];
  }
  if (i < opts.length) return malformed();
  if (!ok) return undefined;
  return {
    text: s.value,
    from,
    to,
    proto,
    ...(port === undefined ? {} : { port }),
    expect: expect as Expect,
    family,
    ...(via ? { via } : {}),
    pos: r.pos(s),
  };
}
