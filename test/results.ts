// Figures for the README's reliability table: every trap, fault, bad input,
// scenario and probe an end-to-end test tries appends one JSON line here;
// scripts/reliability-report.mjs turns them into the table. The file is
// truncated once per vitest run (test/reliability-setup.ts).
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type ResultKind = 'trap' | 'fault' | 'bad-input' | 'scenario' | 'probe';

export interface ResultData {
  ok: boolean;
  /** A host left neither on its old rules nor on confirmed new ones, or unreachable afterwards. */
  stranded?: boolean;
  /** Load to verified revert, for traps. */
  revertMs?: number;
  detail?: string;
}

export const RESULTS_FILE = join(dirname(fileURLToPath(import.meta.url)), '..', 'test-results', 'reliability.jsonl');

export function recordResult(kind: ResultKind, name: string, data: ResultData): void {
  mkdirSync(dirname(RESULTS_FILE), { recursive: true });
  // One appendFileSync per line: concurrent test files never interleave within a line.
  appendFileSync(RESULTS_FILE, `${JSON.stringify({ kind, name, ...data, at: new Date().toISOString() })}\n`);
}
