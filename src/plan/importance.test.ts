// The order a cut markdown plan shows hosts in: problems, the management path,
// access opened, the rest; larger first, then by name.
import { describe, expect, it } from 'vitest';
import type { RenderedHost } from '../render/render.js';
import { compareWeights, weighHost } from './importance.js';
import { failedHostPlan, planOfflineHost, type HostPlan } from './plan.js';

const BASE = '*filter\n:INPUT DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -s 10.0.0.1/32 -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 25 -j DROP\nCOMMIT\n';
const V6 = '*filter\n:INPUT DROP [0:0]\nCOMMIT\n';

function changed(host: string, v4: string, ipsets?: { stored: string; members: string[] }): HostPlan {
  const r: RenderedHost = {
    host,
    v4: { text: v4, origins: [], closedByDefault: false },
    v6: { text: V6, origins: [], closedByDefault: true },
    notes: [],
    ...(ipsets ? { ipsets: [{ name: 'fleetfw-web-private', family: 4 as const, members: ipsets.members }] } : {}),
  };
  return planOfflineHost(r, { v4: BASE, v6: V6, ipsets: ipsets?.stored });
}

describe('why a host matters', () => {
  it('problems first: failed hosts, broken persisted files, leftovers, warnings', () => {
    expect(weighHost(failedHostPlan('a', 'unreachable', 'timeout')).concern).toBe('problem');
    expect(weighHost({ ...changed('a', BASE), persistedBroken: 'rules.v4 would not load' }).concern).toBe('problem');
    expect(weighHost({ ...changed('a', BASE), warnings: ['blocks sshd'] }).concern).toBe('problem');
  });

  it('the management path: a changed rule naming the SSH port, or a changed INPUT/OUTPUT policy', () => {
    expect(weighHost(changed('a', BASE.replace('10.0.0.1/32', '10.0.0.2/32'))).concern).toBe('management');
    expect(weighHost(changed('a', BASE.replace(':OUTPUT ACCEPT', ':OUTPUT DROP'))).concern).toBe('management');
    expect(weighHost(changed('a', BASE.replace('COMMIT', '-A INPUT -p tcp -m multiport --dports 80,20:30 -j DROP\nCOMMIT'))).concern).toBe('management');
    // Another SSH port: 22 is an ordinary port then.
    const moved = changed('a', BASE.replace('--dport 22', '--dport 2222'));
    expect(weighHost(moved, 2222).concern).toBe('management');
    expect(weighHost(changed('a', BASE.replace('COMMIT', '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT')), 2222).concern).toBe('opens');
    // Every new host gets its policies and its management path.
    expect(weighHost(planOfflineHost({ host: 'n', v4: { text: BASE, origins: [], closedByDefault: false }, v6: { text: V6, origins: [], closedByDefault: true }, notes: [] }, {})).concern).toBe('management');
  });

  it('then access opened: an ACCEPT added, a DROP or REJECT removed, set members added', () => {
    expect(weighHost(changed('a', BASE.replace('COMMIT', '-A INPUT -p tcp -m tcp --dport 443 -j ACCEPT\nCOMMIT'))).concern).toBe('opens');
    expect(weighHost(changed('a', BASE.replace('-A INPUT -p tcp -m tcp --dport 25 -j DROP\n', ''))).concern).toBe('opens');
    const stored = 'create fleetfw-web-private hash:ip family inet\nadd fleetfw-web-private 10.1.0.1\n';
    expect(weighHost(changed('a', BASE, { stored, members: ['10.1.0.1', '10.1.0.2'] })).concern).toBe('opens');
  });

  it('the rest: rules that only close, members removed', () => {
    expect(weighHost(changed('a', BASE.replace('COMMIT', '-A INPUT -p tcp -m tcp --dport 3306 -j REJECT\nCOMMIT'))).concern).toBe('other');
    const stored = 'create fleetfw-web-private hash:ip family inet\nadd fleetfw-web-private 10.1.0.1\nadd fleetfw-web-private 10.1.0.2\n';
    expect(weighHost(changed('a', BASE, { stored, members: ['10.1.0.1'] }))).toEqual({ concern: 'other', size: 1 });
  });

  it('orders by concern, then the larger change, then by name', () => {
    const hosts = [
      changed('small-opens', BASE.replace('COMMIT', '-A INPUT -p tcp -m tcp --dport 443 -j ACCEPT\nCOMMIT')),
      changed('big-other', BASE.replace('COMMIT', '-A INPUT -p tcp -m tcp --dport 1 -j DROP\n-A INPUT -p tcp -m tcp --dport 2 -j DROP\nCOMMIT')),
      changed('b-opens', BASE.replace('COMMIT', '-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 81 -j ACCEPT\nCOMMIT')),
      changed('a-opens', BASE.replace('COMMIT', '-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 81 -j ACCEPT\nCOMMIT')),
      changed('mgmt', BASE.replace('10.0.0.1/32', '10.0.0.2/32')),
      failedHostPlan('zz-failed', 'error', 'boom'),
    ];
    const order = hosts.map((h) => ({ host: h.host, weight: weighHost(h) })).sort(compareWeights).map((h) => h.host);
    expect(order).toEqual(['zz-failed', 'mgmt', 'a-opens', 'b-opens', 'small-opens', 'big-other']);
  });
});
