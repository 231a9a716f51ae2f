import { describe, expect, it } from 'vitest';
import { unknownKeyAdvice } from './host-key-advice.js';

const bastion = { address: '203.0.113.10', port: 22, user: 'root' };
const target = { address: '192.0.2.14', port: 2222, user: 'deploy' };

describe('advice for an unknown host key', () => {
  it('a host reached directly (a bastion): ssh-keyscan from here', () => {
    expect(unknownKeyAdvice(bastion, '/home/op/.ssh/known_hosts')).toBe('or add it with ssh-keyscan -p 22 203.0.113.10 >> /home/op/.ssh/known_hosts');
  });

  it('a host behind a bastion: ssh-keyscan run on the bastion, or ssh -J; never ssh-keyscan of its address from here', () => {
    const advice = unknownKeyAdvice(target, '/home/op/.ssh/known_hosts', bastion);
    expect(advice).toContain('ssh -o UserKnownHostsFile=/home/op/.ssh/known_hosts -p 22 root@203.0.113.10 ssh-keyscan -p 2222 192.0.2.14 >> /home/op/.ssh/known_hosts');
    expect(advice).toContain('ssh -J root@203.0.113.10:22 -o UserKnownHostsFile=/home/op/.ssh/known_hosts -p 2222 deploy@192.0.2.14 true');
    expect(advice).not.toMatch(/(^|add it with )ssh-keyscan -p 2222 192\.0\.2\.14/);
  });

  it('names the identity file, brackets an IPv6 jump host, quotes what the shell would split', () => {
    const advice = unknownKeyAdvice(target, '/tmp/my known_hosts', { address: '2001:db8::10', port: 2200, user: 'root', identityFile: '/lab/id_ed25519' });
    expect(advice).toContain("ssh -i /lab/id_ed25519 -o UserKnownHostsFile='/tmp/my known_hosts' -p 2200 root@2001:db8::10 ssh-keyscan");
    expect(advice).toContain('-J root@[2001:db8::10]:2200');
  });
});
