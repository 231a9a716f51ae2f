// A plan saved for review (`fleetfw plan --out FILE`) and applied later
// exactly as reviewed (`fleetfw apply FILE`). The file pins what the plan was
// made from (inventory bytes, each host's render) and against (each host's
// live rules), so that apply can refuse anything that moved since.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { formatIpSets } from '../render/ipsets.js';
import type { RenderedHost } from '../render/render.js';
import { PLAN_FORMAT, PLAN_VERSION, type Plan } from './plan.js';
import { planJsonChunks, type StreamedPlan } from './streamed-plan.js';

export const SAVED_PLAN_FORMAT = 'fleetfw-saved-plan';
export const SAVED_PLAN_VERSION = 1;

export interface SavedPlan {
  format: typeof SAVED_PLAN_FORMAT;
  version: typeof SAVED_PLAN_VERSION;
  createdAt: string;
  createdBy: string;
  inventory: {
    /** As given on the command line (relative paths stay relative, for CI checkouts). */
    path: string;
    sha256: string;
  };
  /** Per host: sha256 of its rendered rules.v4, rules.v6 and ipsets, catches template changes. */
  renders: Record<string, string>;
  plan: Plan;
}

export function sha256(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

export function renderHash(r: RenderedHost): string {
  const sets = formatIpSets(r.ipsets ?? []);
  return sha256(`${r.v4.text}\0${r.v6.text}${sets ? `\0${sets}` : ''}`);
}

export interface SavedPlanSource {
  inventoryPath: string;
  inventoryText: string | Buffer;
  rendered: RenderedHost[];
  createdBy: string;
  now?: Date;
}

/** Everything of a saved plan but the plan itself, for the plan of `hosts`. */
export function savedPlanHead(hosts: readonly string[], source: SavedPlanSource): Omit<SavedPlan, 'plan'> {
  const planned = new Set(hosts);
  return {
    format: SAVED_PLAN_FORMAT,
    version: SAVED_PLAN_VERSION,
    createdAt: (source.now ?? new Date()).toISOString().replace(/\.\d+Z$/, 'Z'),
    createdBy: source.createdBy,
    inventory: { path: source.inventoryPath, sha256: sha256(source.inventoryText) },
    renders: Object.fromEntries(source.rendered.filter((r) => planned.has(r.host)).map((r) => [r.host, renderHash(r)])),
  };
}

export function buildSavedPlan(plan: Plan, source: SavedPlanSource): SavedPlan {
  return { ...savedPlanHead(plan.hosts.map((h) => h.host), source), plan };
}

export function formatSavedPlan(saved: SavedPlan): string {
  return `${JSON.stringify(saved, null, 2)}\n`;
}

/**
 * formatSavedPlan(buildSavedPlan(plan, source)) in pieces, one host at a time
 * (the same bytes): a plan too large for one string is saved all the same.
 */
export function* savedPlanChunks(plan: StreamedPlan, source: SavedPlanSource): Generator<string> {
  const head = JSON.stringify(savedPlanHead(plan.outlines.map((h) => h.host), source), null, 2);
  yield `${head.slice(0, head.lastIndexOf('\n'))},\n  "plan": `;
  yield* planJsonChunks(plan, '  ');
  yield '\n}\n';
}

const familyDiff = z.object({ family: z.union([z.literal(4), z.literal(6)]), added: z.number(), removed: z.number(), patch: z.string() });
const hostPlan = z.object({
  host: z.string().min(1),
  status: z.enum(['in-sync', 'changes', 'unreachable', 'error']),
  error: z.string().optional(),
  diffs: z.array(familyDiff),
  preserved: z.array(z.string()),
  /** Written by older versions, which left tables the templates lack as they were. */
  unmanagedTables: z.array(z.string()).optional(),
  notes: z.array(z.string()),
  desired: z.object({ v4: z.string(), v6: z.string(), ipsets: z.string().optional() }).optional(),
  liveHash: z.string().optional(),
  leftover: z.object({ id: z.string(), state: z.string(), watchdogAlive: z.boolean(), started: z.string(), user: z.string() }).optional(),
  generation: z.number().optional(),
  persistedDrift: z.boolean().optional(),
  persistedBroken: z.string().optional(),
  unpersisted: z.string().optional(),
  lastTxn: z.object({ id: z.string(), state: z.string(), generation: z.number().optional(), reason: z.string().optional() }).optional(),
}).loose(); // fields added to HostPlan later must survive a save and load
const savedPlanSchema = z.object({
  format: z.literal(SAVED_PLAN_FORMAT),
  version: z.literal(SAVED_PLAN_VERSION),
  createdAt: z.string(),
  createdBy: z.string(),
  inventory: z.object({ path: z.string().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  renders: z.record(z.string(), z.string()),
  plan: z.object({
    format: z.literal(PLAN_FORMAT),
    version: z.literal(PLAN_VERSION),
    mode: z.enum(['live', 'offline']),
    inventory: z.string(),
    planHash: z.string(),
    hosts: z.array(hostPlan),
    summary: z.object({ hosts: z.number(), changes: z.number(), inSync: z.number(), unreachable: z.number(), errors: z.number() }),
  }).loose(),
});

/** Parse a saved plan; the error says what is wrong (a plan printed with --format json is not a saved plan). */
export function parseSavedPlan(text: string): { saved: SavedPlan } | { error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return { error: `not JSON: ${(e as Error).message}` };
  }
  const format = (raw as { format?: unknown } | null)?.format;
  if (format === PLAN_FORMAT) return { error: 'this is a plan printed with --format json, not a saved plan: save one with `fleetfw plan --out FILE`' };
  if (format !== SAVED_PLAN_FORMAT) return { error: `not a fleetfw saved plan (format ${JSON.stringify(format)})` };
  const version = (raw as { version?: unknown }).version;
  if (version !== SAVED_PLAN_VERSION) return { error: `saved plan version ${JSON.stringify(version)} is not supported (this fleetfw reads version ${SAVED_PLAN_VERSION})` };
  const r = savedPlanSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    return { error: `malformed saved plan: ${issue.path.join('.') || '(top)'}: ${issue.message}` };
  }
  return { saved: r.data as SavedPlan };
}

/**
 * Why a saved plan can no longer be applied as reviewed, judged from the
 * inventory and templates alone (no host involved): empty when it still can.
 */
export function findSourceChanges(saved: SavedPlan, current: { inventoryText: string | Buffer; rendered: RenderedHost[] }): string[] {
  const problems: string[] = [];
  const now = sha256(current.inventoryText);
  if (now !== saved.inventory.sha256) {
    problems.push(`inventory ${saved.inventory.path} changed since the plan was made (plan: sha256 ${short(saved.inventory.sha256)}, now: ${short(now)})`);
  }
  const byHost = new Map(current.rendered.map((r) => [r.host, r]));
  const missing = saved.plan.hosts.filter((h) => !byHost.has(h.host)).map((h) => h.host);
  if (missing.length > 0) problems.push(`hosts no longer in the inventory: ${missing.join(', ')}`);
  const moved = Object.entries(saved.renders)
    .filter(([host, hash]) => byHost.has(host) && renderHash(byHost.get(host)!) !== hash)
    .map(([host]) => host);
  if (moved.length > 0) problems.push(`the inventory and templates now render different rules for: ${moved.join(', ')}`);
  return problems;
}

export function short(hash: string): string {
  return hash.slice(0, 12);
}
