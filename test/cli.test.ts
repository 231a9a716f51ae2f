// The built CLI's signals for scripts and CI: exit codes, colour, and a reader
// that closes early. No lab: these commands need no host.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './support.js';

const CLI = join(ROOT, 'dist/cli/main.js');

function fleetfw(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NO_COLOR: '', FORCE_COLOR: undefined, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `fleetfw ARGS | head -1` in a real shell pipe: the CLI's status and what it wrote on stderr. */
function piped(args: string[]) {
  const r = spawnSync('bash', ['-c', `set -o pipefail; node "$0" "$@" 2>/tmp/fleetfw-cli-stderr.$$ | head -1 >/dev/null; rc=$?; cat /tmp/fleetfw-cli-stderr.$$ >&2; rm -f /tmp/fleetfw-cli-stderr.$$; exit $rc`, CLI, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return { code: r.status, stderr: r.stderr };
}

describe('usage errors are exit 64 in every command', () => {
  it.each([
    [['plan', '--bogus']],
    [['plan', '--offline', '--format', 'xml']],
    [['verify', '--nope']],
    [['explain', 'mysql-1']],
    [['bogus-command']],
  ])('fleetfw %j', (args) => {
    const r = fleetfw(args);
    expect(r.code, r.stderr).toBe(64);
    expect(r.stderr).not.toContain('internal error');
  });
});

describe('exit hints tell the truth', () => {
  it('an offline plan with no change exits 0 and says nothing about exit 2', () => {
    const r = fleetfw(['plan', '--offline']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('exit code 2');
  });
});

describe('a reader that closes early', () => {
  it.each([[['verify']], [['--help']], [['plan', '--offline', '--format', 'json']]])('fleetfw %j | head -1 ends quietly with exit 0', (args) => {
    const r = piped(args);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(/EPIPE|Unhandled|internal error/);
  });
});

describe('colour', () => {
  const ESC = '\u001b[';
  it('FORCE_COLOR=1 colours output that is not a terminal; FORCE_COLOR=0 and NO_COLOR do not', () => {
    expect(fleetfw(['verify'], { FORCE_COLOR: '1' }).stdout).toContain(ESC);
    expect(fleetfw(['verify'], { FORCE_COLOR: '0' }).stdout).not.toContain(ESC);
    expect(fleetfw(['verify'], { NO_COLOR: '1' }).stdout).not.toContain(ESC);
    expect(fleetfw(['verify']).stdout).not.toContain(ESC);
  });
});
