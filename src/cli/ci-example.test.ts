// examples/github-actions/fleetfw-plan.yml: parses, has the jobs and steps the
// README promises, and its shell steps are clean.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

interface Step {
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  id?: string;
  env?: Record<string, string>;
  with?: Record<string, unknown>;
}
interface Job {
  if?: string;
  steps: Step[];
  concurrency?: { group: string; 'cancel-in-progress': boolean };
}
interface Workflow {
  on: { pull_request: { types: string[]; paths: string[] } };
  permissions: Record<string, string>;
  jobs: Record<string, Job>;
}

const file = fileURLToPath(new URL('../../examples/github-actions/fleetfw-plan.yml', import.meta.url));
const workflow = parse(readFileSync(file, 'utf8'), { strict: true, uniqueKeys: true }) as Workflow;
export const runs = (job: Job) => job.steps.filter((s) => s.run).map((s) => s.run!);
const stepUsing = (job: Job, action: string) => job.steps.find((s) => s.uses?.startsWith(`${action}@`));

describe('GitHub Actions example', () => {
  it('runs on pull requests, including their merge (closed), with the permissions it needs', () => {
    expect(workflow.on.pull_request.types).toEqual(expect.arrayContaining(['opened', 'synchronize', 'reopened', 'closed']));
    expect(workflow.permissions).toMatchObject({ 'pull-requests': 'write', actions: 'read', contents: 'read' });
    expect(Object.keys(workflow.jobs)).toEqual(['plan', 'apply']);
  });

  it('plan: offline plan as markdown and as an HTML page, live plan saved with --out, the plans uploaded, one sticky comment', () => {
    const plan = workflow.jobs.plan!;
    expect(plan.if).toBe("github.event.action != 'closed'");
    const scripts = runs(plan).join('\n');
    expect(scripts).toMatch(/fleetfw plan --offline --inventory "\$INVENTORY" --out plan-offline\.json --markdown-limit 30000 --format markdown > plan-offline\.md/);
    expect(scripts).toMatch(/fleetfw plan --inventory "\$INVENTORY" --out plan\.json --markdown-limit 30000 --format markdown > plan-live\.md/);
    // The offline plan as one HTML page too, kept with the offline plan; its exit code judged the same way.
    const page = plan.steps.find((s) => s.run?.includes('--format html'))!;
    expect(page.if).toBe("steps.offline.outcome == 'success'");
    expect(page.run).toMatch(/^set \+e\nnpx fleetfw plan --offline --inventory "\$INVENTORY" --format html > plan-offline\.html\ncode=\$\?\n\[ "\$code" -eq 0 \] \|\| \[ "\$code" -eq 2 \]\n$/);
    // Exit 2 (changes) is a good plan; anything but 0 or 2 fails the job.
    expect(scripts).toContain('[ "$code" -eq 0 ] || [ "$code" -eq 2 ]');
    const live = plan.steps.find((s) => s.id === 'live')!;
    expect(live.if).toBe("steps.secrets.outputs.live == 'true'");
    expect(live.env).toMatchObject({ FLEETFW_IDENTITY: expect.any(String), FLEETFW_KNOWN_HOSTS: expect.any(String) });
    const uploads = plan.steps.filter((s) => s.uses?.startsWith('actions/upload-artifact@'));
    expect(uploads.map((u) => [u.if, u.with])).toEqual([
      ["steps.offline.outcome == 'success'", expect.objectContaining({ name: 'fleetfw-plan-offline', path: 'plan-offline.json\nplan-offline.html\n' })],
      ["steps.live.outcome == 'success'", expect.objectContaining({ name: 'fleetfw-plan', path: 'plan.json' })],
    ]);
    const comment = stepUsing(plan, 'actions/github-script')!.with!.script as string;
    expect(comment).toContain("const marker = '<!-- fleetfw-plan -->'");
    expect(comment).toContain('updateComment');
    expect(comment).toContain('createComment');
    expect(comment).toContain('github.paginate');
  });

  it('apply: only a merged pull request into main, one at a time, exactly the reviewed plan artifact', () => {
    const apply = workflow.jobs.apply!;
    expect(apply.if).toContain('github.event.pull_request.merged == true');
    expect(apply.if).toContain("github.event.pull_request.base.ref == 'main'");
    expect(apply.concurrency).toEqual({ group: 'fleetfw-apply', 'cancel-in-progress': false });
    const checkout = stepUsing(apply, 'actions/checkout')!;
    expect(checkout.with).toEqual({ ref: '${{ github.event.pull_request.merge_commit_sha }}' });
    const download = stepUsing(apply, 'actions/download-artifact')!;
    expect(download.with).toMatchObject({ name: 'fleetfw-plan', 'run-id': '${{ steps.run.outputs.id }}' });
    const names = apply.steps.map((s) => s.name ?? s.uses ?? s.run);
    expect(names.indexOf('Download the reviewed plan')).toBeLessThan(names.indexOf('Apply the reviewed plan'));
    expect(apply.steps.find((s) => s.name === 'Apply the reviewed plan')!.run).toMatch(/^npx fleetfw apply plan\.json --yes /);
  });

  it('the sticky comment fits the 65,536 characters GitHub accepts: both plans cut to their limits, the full plans as artifacts', () => {
    const plan = workflow.jobs.plan!;
    const limits = runs(plan).flatMap((r) => [...r.matchAll(/--markdown-limit (\d+)/g)].map((m) => Number(m[1])));
    expect(limits).toHaveLength(2);
    const comment = stepUsing(plan, 'actions/github-script')!.with!.script as string;
    // The comment's own text (marker, headings, footer with a long repository name and run id) beside the two plans.
    const own = comment.length + 400;
    expect(limits.reduce((a, b) => a + b, 0) + own).toBeLessThan(65_536);
    expect(comment).toContain('fleetfw-plan-offline');
  });

  it('never pastes expressions into shell scripts (secrets and PR text go through env)', () => {
    for (const job of Object.values(workflow.jobs)) for (const r of runs(job)) expect(r).not.toContain('${{');
  });

});
