// The hostname the scan predicts for `ssh -G` is the one ssh prints: checked
// against the real ssh for the forms a HostName takes, IPv6 ones included.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { scanSshConfig, sshGShare } from './ssh-config-scan.js';

const dir = mkdtempSync(join(tmpdir(), 'fleetfw-ssh-g-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NAMES = ['web.example', 'Web.Example', '127.1', '192.0.2.10', '2001:db8::1', '2001:DB8::1', '2001:db8:1::3e8', '2001:db8:0:0:1:0:0:1', '2001:0db8::1', '2001:db8::ffff:192.0.2.1', 'fe80::1', '2001:db8:1::ff00'];

describe('sshGShare predicts what ssh -G prints', () => {
  it('for every HostName form: the same hostname, or no prediction', () => {
    const config = join(dir, 'config');
    writeFileSync(config, NAMES.map((n, i) => `Host h${i}\n  HostName ${n}\n`).join(''));
    const scan = scanSshConfig(config);
    if (!scan.supported) throw new Error(scan.reason);
    let predicted = 0;
    NAMES.forEach((name, i) => {
      const printed = /^hostname (.*)$/m.exec(execFileSync('ssh', ['-G', '-F', config, '--', `h${i}`], { encoding: 'utf8' }))?.[1];
      const share = sshGShare(scan.blocks, `h${i}`);
      if (share) {
        predicted++;
        expect(share.hostname, name).toBe(printed);
      }
    });
    // The canonical forms are predicted, not only left to ssh.
    expect(predicted).toBeGreaterThanOrEqual(6);
  });
});
