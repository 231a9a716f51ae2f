import { afterEach, describe, expect, it, vi } from 'vitest';
import { ExitCode, FleetError, InternalError, PlanError } from '../errors.js';
import { report } from './program.js';

function reported(e: unknown): { code: number; text: string } {
  const chunks: string[] = [];
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (chunks.push(String(chunk)), true));
  const code = report(e);
  return { code, text: chunks.join('') };
}

describe('report', () => {
  afterEach(() => vi.restoreAllMocks());

  it('says a known failure in its own words, with its exit code', () => {
    const r = reported(new PlanError('web-1 live v4: cannot parse: line 2: COMMIT expected'));
    expect(r.code).toBe(ExitCode.hostsFailed);
    expect(r.text).toContain('fleetfw: web-1 live v4: cannot parse');
    expect(r.text).not.toContain('internal error');
  });

  it('calls a broken invariant a bug, like any unknown error', () => {
    for (const e of [new InternalError('not a CIDR: x'), new Error('boom')]) {
      const r = reported(e);
      expect(r.code).toBe(ExitCode.internal);
      expect(r.text).toMatch(/internal error: .*(not a CIDR: x|boom)/);
      expect(r.text).toContain('This is a bug in fleetfw');
    }
    expect(reported(new FleetError('plain')).text).not.toContain('This is a bug');
  });
});
