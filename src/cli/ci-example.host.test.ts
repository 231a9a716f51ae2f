// The example workflow's shell steps are bash that shellcheck finds clean (needs shellcheck).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const file = fileURLToPath(new URL('../../examples/github-actions/fleetfw-plan.yml', import.meta.url));
const workflow = parse(readFileSync(file, 'utf8'), { strict: true, uniqueKeys: true }) as { jobs: Record<string, { steps: Array<{ run?: string }> }> };

describe('GitHub Actions example', () => {
  it('every run step is shellcheck-clean bash', () => {
    let checked = 0;
    for (const [name, job] of Object.entries(workflow.jobs)) {
      for (const script of job.steps.flatMap((s) => (s.run ? [s.run] : []))) {
        const r = spawnSync('shellcheck', ['-s', 'bash', '-'], { input: script, encoding: 'utf8' });
        expect(r.error, 'shellcheck must be installed (scripts/install-debian-deps.sh)').toBeUndefined();
        expect(r.stdout, `${name}: ${script}`).toBe('');
        expect(r.status).toBe(0);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(0);
  });
});
