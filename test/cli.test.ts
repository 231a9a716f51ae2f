// The built CLI's signals for scripts and CI: exit codes, colour, and a reader
// that closes early. No lab: these commands need no host.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './support.js';

const CLI = join(ROOT, 'dist/cli/main.js');

function fleetfw(args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '', FORCE_COLOR: undefined, FLEETFW_INVENTORY: undefined, ...env } });
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

/** Exit 64 (or 3), never an internal error, and the message says what to do. */
function refused(args: string[], says: RegExp, opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  const r = fleetfw(args, opts.env, opts.cwd);
  expect(r.stderr, `fleetfw ${args.join(' ')}`).not.toMatch(/internal error|This is a bug/);
  expect(r.code, `fleetfw ${args.join(' ')}: ${r.stderr}`).toBe(64);
  expect(r.stderr).toMatch(says);
  return r;
}

describe('explain: checked input', () => {
  it.each([
    [['--from', 'wordpres-1', '--port', '3306'], /--from wordpres-1: not a host, group or external .* \(did you mean "wordpress-1"\?\)/],
    [['--from', 'wordpres', '--port', '3306'], /did you mean "wordpress"\?/],
    [['--from', '999.1.1.1', '--port', '3306'], /--from 999\.1\.1\.1: not a valid IPv4 or IPv6 address or CIDR/],
    [['--from', '10.0.0.0/33', '--port', '3306'], /--from 10\.0\.0\.0\/33: bad netmask/],
    [['--from', '192.0.2.12', '--port', '3306', '--ipv6'], /is IPv4, but --ipv6/],
    [['--from', 'internet', '--port', 'abc'], /--port must be a port number from 1 to 65535, not "abc"/],
    [['--from', 'internet', '--port', '70000'], /--port must be a port number from 1 to 65535, not "70000"/],
    [['--from', 'internet', '--port', '0'], /1 to 65535/],
    [['--from', 'internet', '--port', '22', '--sport', '65536'], /--sport must be a port number/],
    [['--from', 'internet'], /--port is required with --proto tcp/],
    [['--from', 'internet', '--proto', 'icmp', '--port', '22'], /--port and --sport are for tcp and udp/],
  ])('explain mysql-1 %j', (args, says) => {
    refused(['explain', 'mysql-1', ...args], says);
  });

  it('the receiving host: a group or a typo is answered', () => {
    refused(['explain', 'mysql', '--from', 'internet', '--port', '3306'], /"mysql" is a group \(mysql-1, mysql-2\): explain takes one host, e\.g\. mysql-1/);
    refused(['explain', 'mysql-11', '--from', 'internet', '--port', '3306'], /no host named "mysql-11" in the inventory \(did you mean "mysql-1"\?\)/);
  });

  it('a group expands to its members, one trace each, the receiving host left out', () => {
    const r = fleetfw(['explain', 'mysql-1', '--from', 'backend', '--port', '3306']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('--from backend is a group: one packet from each member (mysql-2, wordpress-1, wordpress-2; mysql-1 itself left out)');
    expect(r.stdout.match(/^verdict: /gm)).toHaveLength(3);
    expect(r.stdout).toMatch(/^wordpress-1 192\.0\.2\.12:32768 -> mysql-1 192\.0\.2\.14:3306\/tcp SYN \(NEW\) in eth1$/m);
    expect(r.stdout).toMatch(/^verdicts: mysql-2 ACCEPT, wordpress-1 ACCEPT, wordpress-2 ACCEPT$/m);
    const json = JSON.parse(fleetfw(['explain', 'mysql-1', '--from', 'wordpress', '--port', '3306', '--format', 'json']).stdout) as Array<{ from: string; verdict: string }>;
    expect(json.map((t) => [t.from, t.verdict])).toEqual([['wordpress-1', 'ACCEPT'], ['wordpress-2', 'ACCEPT']]);
  });

  it('a CIDR is explained by one representative packet, and says so', () => {
    const r = fleetfw(['explain', 'mysql-1', '--from', '10.1.2.3/8', '--port', '3306']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^--from 10\.0\.0\.0\/8 is a range: this traces one packet, from 10\.0\.0\.1 \(its first address\)/m);
    expect(r.stdout).toMatch(/^10\.0\.0\.1:32768 -> mysql-1 203\.0\.113\.14:3306/m);
    const json = JSON.parse(fleetfw(['explain', 'mysql-1', '--from', '10.0.0.0/8', '--port', '3306', '--format', 'json']).stdout) as { range: string; representative: string; packet: { src: string } };
    expect(json).toMatchObject({ range: '10.0.0.0/8', representative: '10.0.0.1', packet: { src: '10.0.0.1' } });
  });
});

describe('--limit: globs and exclusions', () => {
  const hostsOf = (limit: string) => {
    const r = fleetfw(['plan', '--offline', '--format', 'json', '--limit', limit]);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { hosts: Array<{ host: string }> }).hosts.map((h) => h.host).sort();
  };

  it('selects by glob, exclusion and exclusion alone', () => {
    expect(hostsOf('wordpress*')).toEqual(['wordpress-1', 'wordpress-2']);
    expect(hostsOf('all,!backend')).toEqual(['haproxy-www', 'tunnel-1']);
    expect(hostsOf('wordpress,!wordpress-2')).toEqual(['wordpress-1']);
    expect(hostsOf('!mysql')).toEqual(['haproxy-www', 'tunnel-1', 'wordpress-1', 'wordpress-2']);
  });

  it('a pattern that matches nothing is a usage error with "did you mean", in every command', () => {
    for (const command of [['verify'], ['plan', '--offline'], ['render', '--out', join(tmpdir(), 'fleetfw-never-written')]]) {
      refused([...command, '--limit', 'wordpress,!wordpres-2'], /--limit: no host or group named "wordpres-2" \(in "!wordpres-2"\) \(did you mean "wordpress-2"\?\)/);
    }
    refused(['plan', '--offline', '--limit', 'wbe*'], /"wbe\*" matches no host or group/);
    refused(['plan', '--offline', '--limit', 'mysql,!mysql'], /selects no host/);
  });

  it('is documented in --help', () => {
    expect(fleetfw(['apply', '--help']).stdout).toMatch(/--limit <patterns>[\s\S]*globs[\s\S]*exclusions/);
  });
});

describe('plan --offline --against', () => {
  it('must exist and be a stored render', () => {
    refused(['plan', '--offline', '--against', '/nonexistent'], /--against \/nonexistent: no such folder/);
    refused(['plan', '--offline', '--against', 'inventories'], /--against inventories: not a stored render .*\(did you mean "inventories\/s1\.rendered"\?\)/);
    refused(['plan', '--offline', '--against', 'README.md'], /not a folder/);
    refused(['plan', '--against', 'inventories/s1.rendered', '-i', 'inventories/s1.yaml'], /--against is for --offline/);
    expect(fleetfw(['plan', '--offline', '--against', 'inventories/s1.rendered']).code).toBe(0);
  });
});

describe('without --inventory', () => {
  const away = mkdtempSync(join(tmpdir(), 'fleetfw-cli-'));
  const found = mkdtempSync(join(tmpdir(), 'fleetfw-cli-'));
  // S1 as ./fleetfw.yaml, its templates where the copy can find them.
  writeFileSync(join(found, 'fleetfw.yaml'), readFileSync(join(ROOT, 'inventories/s1.yaml'), 'utf8').replace(/^templates: .*$/m, `templates: ${join(ROOT, 'templates')}`));
  afterAll(() => [away, found].forEach((d) => rmSync(d, { recursive: true, force: true })));

  const LIVE = [['apply', '--yes'], ['plan'], ['rollback', 'mysql-1', '--yes'], ['status'], ['history', 'mysql-1'], ['show', 'mysql-1'], ['logs', 'mysql-1'], ['discover']];
  it.each(LIVE)('%s … never uses the embedded example, not even in fleetfw own folder', (...command) => {
    for (const cwd of [ROOT, away]) {
      refused(command, new RegExp(`^fleetfw: ${command[0]}: no inventory given: name one with --inventory FILE, set FLEETFW_INVENTORY, or put a fleetfw\\.yaml in this folder \\(${command[0]} reads or changes real hosts, so it never falls back to the embedded example`), { cwd });
    }
  });

  it('render, verify, explain and plan --offline use the example only in fleetfw own folder', () => {
    const out = join(away, 'out');
    for (const command of [['verify'], ['plan', '--offline'], ['explain', 'mysql-1', '--from', 'internet', '--port', '3306'], ['render', '--out', out]]) {
      const here = fleetfw(command);
      expect(here.code, here.stderr).toBe(0);
      expect(here.stderr).toContain('using the embedded example');
      refused(command, /no inventory given: .*the embedded example is used only inside fleetfw's own folder/, { cwd: away });
    }
  });

  it('FLEETFW_INVENTORY, then ./fleetfw.yaml', () => {
    const env = fleetfw(['verify'], { FLEETFW_INVENTORY: join(ROOT, 'inventories/s1.yaml') }, away);
    expect(env.code, env.stderr).toBe(0);
    expect(env.stderr).not.toContain('embedded example');
    refused(['apply', '--yes'], /inventory file not found: \/nowhere\.yaml \(from FLEETFW_INVENTORY\)/, { env: { FLEETFW_INVENTORY: '/nowhere.yaml' }, cwd: away });
    const cwd = fleetfw(['verify'], {}, found);
    expect(cwd.code, cwd.stderr).toBe(0);
    // No stored render beside ./fleetfw.yaml: every host is new, and the plan says why.
    const plan = fleetfw(['plan', '--offline'], {}, found);
    expect(plan.code, plan.stderr).toBe(2);
    expect(plan.stderr).toContain(`no stored render at ${join(found, 'fleetfw.rendered')}: every host is new`);
    // A saved plan names the inventory as found, relative, for `apply FILE` in a checkout.
    expect(fleetfw(['plan', '--offline', '--out', 'plan.json'], {}, found).code).toBe(2);
    expect(JSON.parse(readFileSync(join(found, 'plan.json'), 'utf8'))).toMatchObject({ inventory: { path: 'fleetfw.yaml' } });
  });

  it('is documented in --help', () => {
    expect(fleetfw(['apply', '--help']).stdout).toContain('never the embedded example');
    expect(fleetfw(['verify', '--help']).stdout).toContain("inside fleetfw's own folder only");
  });
});
