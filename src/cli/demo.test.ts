import { afterEach, describe, expect, it, vi } from 'vitest';
import { ExitCode, FleetError } from '../errors.js';
import { cmdDemo } from './demo.js';

describe('fleetfw demo', () => {
  afterEach(() => vi.restoreAllMocks());

  it('refuses clearly, before touching anything, when not root', async () => {
    vi.spyOn(process, 'getuid').mockReturnValue(1000);
    const e = await cmdDemo({}).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FleetError);
    expect((e as FleetError).exitCode).toBe(ExitCode.usage);
    expect((e as FleetError).message).toMatch(/^the demo needs root: .* sudo npm run demo$/);
  });
});
