// The Docker fleet's entrypoint is POSIX sh that shellcheck finds clean (needs shellcheck).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

describe('docker/entrypoint.sh', () => {
  it('is shellcheck-clean POSIX sh', () => {
    const r = spawnSync('shellcheck', ['-s', 'sh', join(ROOT, 'docker/entrypoint.sh')], { encoding: 'utf8' });
    expect(r.error, 'shellcheck must be installed (scripts/install-debian-deps.sh)').toBeUndefined();
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
