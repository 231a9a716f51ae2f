// vitest globalSetup of the e2e project: start every run with an empty
// reliability record, so the README table only ever shows one run's figures.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { RESULTS_FILE } from './results.js';

export function setup(): void {
  mkdirSync(dirname(RESULTS_FILE), { recursive: true });
  writeFileSync(RESULTS_FILE, '');
}
