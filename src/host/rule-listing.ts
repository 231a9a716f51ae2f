// Parse `iptables -v -n -x -L --line-numbers` (the host script's `show` verb)
// into chains and rules with their packet and byte counters.

export interface ListedRule {
  num: number;
  pkts: number;
  bytes: number;
  target: string;
  prot: string;
  opt: string;
  in: string;
  out: string;
  source: string;
  destination: string;
  /** Everything after the destination column: matches and target options. */
  extra: string;
}

export interface ListedChain {
  name: string;
  /** Built-in chains: their policy and the packets and bytes it decided. */
  policy?: { target: string; pkts: number; bytes: number };
  /** User chains: how many rules jump here. */
  references?: number;
  rules: ListedRule[];
}

/** Counters come exact with -x; without it iptables prints 12K, 3M: those scale. */
function count(s: string): number {
  const m = /^(\d+)([KMGT]?)$/.exec(s);
  if (!m) return Number.NaN;
  return Number(m[1]) * 1000 ** ' KMGT'.indexOf(m[2] || ' ');
}

export function parseRuleListing(text: string): ListedChain[] {
  const chains: ListedChain[] = [];
  let chain: ListedChain | undefined;
  for (const line of text.split('\n')) {
    const head = /^Chain (\S+) \((.*)\)$/.exec(line.trimEnd());
    if (head) {
      chain = { name: head[1]!, rules: [] };
      const pol = /^policy (\S+) (\S+) packets, (\S+) bytes$/.exec(head[2]!);
      const ref = /^(\d+) references$/.exec(head[2]!);
      if (pol) chain.policy = { target: pol[1]!, pkts: count(pol[2]!), bytes: count(pol[3]!) };
      if (ref) chain.references = Number(ref[1]);
      chains.push(chain);
      continue;
    }
    const f = line.trim().split(/\s+/);
    if (!chain || !/^\d+$/.test(f[0] ?? '')) continue;
    // A rule without -j leaves the target column blank; the opt column (`--`) tells where we are.
    const isOpt = (s: string | undefined) => /^(--|-f|!f)$/.test(s ?? '');
    const cols = isOpt(f[5]) ? f : isOpt(f[4]) ? [f[0]!, f[1]!, f[2]!, '', ...f.slice(3)] : undefined;
    if (!cols) continue;
    const [num, pkts, bytes, target, prot, opt, inIf, outIf, source, destination, ...extra] = cols as string[];
    chain.rules.push({
      num: Number(num),
      pkts: count(pkts!),
      bytes: count(bytes!),
      target: target!,
      prot: prot ?? '',
      opt: opt ?? '',
      in: inIf ?? '',
      out: outIf ?? '',
      source: source ?? '',
      destination: destination ?? '',
      extra: extra.join(' '),
    });
  }
  return chains;
}
