// A plan too large to hold: an offline plan of 10,000 new hosts is about 4 GB
// of diff text (each host's sets name the whole fleet). Its hosts are made
// twice, one at a time: once for the summary, the plan hash and the order of
// importance (keeping only each host's outline), and again as they are
// printed, each dropped once written.
import { createHash, randomBytes } from 'node:crypto';
import { compareHostNames, hashHostPlan, PLAN_FORMAT, PLAN_VERSION, summarizeHosts, textPieces, type HostPlan, type Plan } from './plan.js';
import { weighHost, type HostWeight } from './importance.js';

export interface StreamedPlan extends Omit<Plan, 'hosts'> {
  /** Every host in name order, without its diffs' text and desired rules: what summaries, ranks and exit codes read. */
  outlines: readonly HostPlan[];
  /** Why each host matters to a reviewer (importance.ts), by host name. */
  weights: ReadonlyMap<string, HostWeight>;
  /** Every host's full plan, in name order, each made when it is reached and not kept. */
  hosts(): Iterable<HostPlan>;
  /** One host's full plan. */
  host(name: string): HostPlan;
}

export interface StreamOptions {
  /** The SSH port of a host (the management path); 22 when undefined. */
  sshPort?: (host: string) => number | undefined;
}

/** A host's plan without the text that makes it large. */
export function outlineOf(h: HostPlan): HostPlan {
  const { desired: _desired, ...rest } = h;
  return { ...rest, diffs: h.diffs.map((d) => ({ ...d, patch: '' })) };
}

/** A plan of `names`, each host made by `make` (twice: keep it pure). */
export function streamPlan(mode: Plan['mode'], inventory: string, names: readonly string[], make: (host: string) => HostPlan, opts: StreamOptions = {}): StreamedPlan {
  const sorted = [...names].sort(compareHostNames);
  const hash = createHash('sha256');
  const outlines: HostPlan[] = [];
  const weights = new Map<string, HostWeight>();
  for (const name of sorted) {
    const h = make(name);
    hashHostPlan(hash, h);
    weights.set(h.host, weighHost(h, opts.sshPort?.(h.host)));
    outlines.push(outlineOf(h));
  }
  return {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    mode,
    inventory,
    planHash: hash.digest('hex').slice(0, 16),
    summary: summarizeHosts(outlines),
    outlines,
    weights,
    *hosts() {
      for (const name of sorted) yield make(name);
    },
    host: make,
  };
}

/** A plan already held in memory (a live plan), read the same way. */
export function streamOf(plan: Plan | StreamedPlan, opts: StreamOptions = {}): StreamedPlan {
  if (isStreamed(plan)) return plan;
  const byName = new Map(plan.hosts.map((h) => [h.host, h]));
  const { hosts, ...head } = plan;
  return {
    ...head,
    outlines: hosts,
    weights: new Map(hosts.map((h) => [h.host, weighHost(h, opts.sshPort?.(h.host))])),
    hosts: () => hosts,
    host: (name) => {
      const h = byName.get(name);
      if (!h) throw new RangeError(`no host ${name} in the plan`);
      return h;
    },
  };
}

export function isStreamed(plan: Plan | StreamedPlan): plan is StreamedPlan {
  return 'outlines' in plan;
}

/** The hosts' outlines (or the hosts themselves) of either kind of plan. */
export function outlinesOf(plan: Plan | StreamedPlan): readonly HostPlan[] {
  return isStreamed(plan) ? plan.outlines : plan.hosts;
}

/**
 * `JSON.stringify(plan, null, 2)` in pieces, one host at a time: the same bytes
 * (the `fleetfw-plan` version 1 format). `indent` places it inside another
 * document (a saved plan holds the plan one level down).
 */
export function* planJsonChunks(plan: StreamedPlan, indent = '', extra?: Record<string, unknown>): Generator<string> {
  const nest = (json: string, by: string) => (by ? json.replace(/\n/g, `\n${by}`) : json);
  const { format, version, mode, inventory, planHash, summary } = plan;
  const head = JSON.stringify({ format, version, mode, inventory, planHash }, null, 2);
  // Everything of the head but its closing brace, then the hosts array.
  yield nest(head.slice(0, head.lastIndexOf('\n')), indent);
  // A host's JSON at its depth in the document: stringified inside as many arrays, then cut out
  // (re-indenting 800 KB of JSON per host would cost as much as making it).
  const depth = 2 + indent.length / 2;
  let first = true;
  const escaped = new Map<string, string>();
  for (const h of plan.hosts()) {
    const { host: withMarks, pieces } = markPieces(h);
    const json = JSON.stringify(nestIn(withMarks, depth), null, 2);
    yield first ? `,\n${indent}  "hosts": [\n${indent}    ` : `,\n${indent}    `;
    const body = json.slice(json.indexOf('{'), json.lastIndexOf('}') + 1);
    const marks = pieces.length === 0 ? [] : [...body.matchAll(MARK)].map((m) => Number(m[1]));
    if (pieces.length === 0) yield body;
    else if (marks.length === pieces.length && [...marks].sort((a, b) => a - b).every((n, i) => n === i)) yield* spliceEscaped(body, pieces, escaped);
    else {
      const plain = JSON.stringify(nestIn(h, depth), null, 2);
      yield plain.slice(plain.indexOf('{'), plain.lastIndexOf('}') + 1);
    }
    first = false;
  }
  yield first ? `,\n${indent}  "hosts": []` : `\n${indent}  ]`;
  for (const [key, value] of Object.entries(extra ?? {})) yield `,\n${indent}  ${JSON.stringify(key)}: ${nest(JSON.stringify(value, null, 2), `${indent}  `)}`;
  yield `,\n${indent}  "summary": ${nest(JSON.stringify(summary, null, 2), `${indent}  `)}\n${indent}}`;
}

/** `x` inside `depth` arrays: stringified there, its JSON has the indentation of that depth. */
function nestIn(x: unknown, depth: number): unknown {
  let nested = x;
  for (let i = 0; i < depth; i++) nested = [nested];
  return nested;
}

// A host's pieced texts in its JSON: a mark each (NUL and a random token: no
// text of a host holds one), replaced by the pieces' escaped texts as they are
// written. A JSON whose marks are not exactly those made is written plainly.
const TOKEN = randomBytes(8).toString('hex');
const mark = (i: number) => `\u0000fleetfw-piece-${TOKEN}-${i}\u0000`;
const MARK = new RegExp(`\\\\u0000fleetfw-piece-${TOKEN}-(\\d+)\\\\u0000`, 'g');

function markPieces(h: HostPlan): { host: HostPlan; pieces: Array<readonly string[]> } {
  const found = textPieces(h);
  if (found.length === 0) return { host: h, pieces: [] };
  const pieces = found.map((f) => f.pieces);
  const marked = new Map(found.map((f, i) => [f.of, { [f.key]: mark(i) }] as const));
  const host: HostPlan = {
    ...h,
    diffs: h.diffs.map((d) => (marked.has(d) ? { ...d, ...marked.get(d) } : d)),
    ...(h.desired ? { desired: marked.has(h.desired) ? { ...h.desired, ...marked.get(h.desired) } : h.desired } : {}),
  };
  return { host, pieces };
}

/** `json` with each mark replaced by its pieces, escaped as JSON string text (each shared piece escaped once). */
function* spliceEscaped(json: string, pieces: ReadonlyArray<readonly string[]>, escaped: Map<string, string>): Generator<string> {
  let at = 0;
  for (const m of json.matchAll(MARK)) {
    yield json.slice(at, m.index);
    for (const p of pieces[Number(m[1])]!) {
      let e = escaped.get(p);
      if (e === undefined) {
        e = JSON.stringify(p).slice(1, -1);
        // Only shared pieces are worth keeping (set lines); a header is one host's.
        if (p.length > 256) escaped.set(p, e);
      }
      yield e;
    }
    at = m.index + m[0].length;
  }
  yield json.slice(at);
}
