import { describe, expect, it } from 'vitest';
import { checkManagementPath, type LockoutResult } from './lockout.js';
import { buildFilter, buildHost, buildInventory } from './fixtures/fleet.js';

const inv = buildInventory();
const host = (name: string) => {
  const h = inv.hosts.find((x) => x.name === name);
  if (!h) throw new Error(name);
  return h;
};
const mysql = host('mysql-1');
const tunnel = host('tunnel-1');

const ESTABLISHED = '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT';
const OUT_ESTABLISHED = '-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT';

const failure = (r: LockoutResult) => {
  if (r.ok) throw new Error('expected a lockout');
  return r;
};

describe('checkManagementPath: a host behind the bastion', () => {
  it('is ok when SSH from the bastion on the private interface is accepted', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -i eth1 -s 192.0.2.10 -p tcp --dport 22 -j ACCEPT']);
    expect(checkManagementPath(inv, mysql, rs)).toEqual({ ok: true });
  });

  it('INPUT DROP with no SSH rule: cut by the policy', () => {
    const r = failure(checkManagementPath(inv, mysql, buildFilter({ INPUT: 'DROP' }, [ESTABLISHED])));
    expect(r).toMatchObject({
      path: 'tunnel-1 (192.0.2.10) -> mysql-1 eth1 192.0.2.11:22/tcp NEW',
      leg: 'server-in',
      cutBy: 'policy DROP of chain INPUT',
    });
    expect(r.message).toBe('SSH from bastion tunnel-1 to mysql-1 would be dropped at mysql-1 INPUT (NEW): policy DROP of chain INPUT');
  });

  it('a final DROP rule is named with its file and line', () => {
    const rs = buildFilter({}, [ESTABLISHED, '-A INPUT -j DROP']);
    expect(failure(checkManagementPath(inv, mysql, rs)).cutBy).toBe('rules.v4 line 6: -A INPUT -j DROP');
  });

  it('SSH only on the public interface', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -i eth0 -p tcp --dport 22 -j ACCEPT']);
    expect(failure(checkManagementPath(inv, mysql, rs))).toMatchObject({ leg: 'server-in', cutBy: 'policy DROP of chain INPUT' });
  });

  it('SSH only from a non-bastion address, closed by a REJECT', () => {
    const rs = buildFilter({}, [ESTABLISHED, '-A INPUT -s 192.0.2.12 -p tcp --dport 22 -j ACCEPT', '-A INPUT -p tcp -j REJECT --reject-with tcp-reset']);
    const r = failure(checkManagementPath(inv, mysql, rs));
    expect(r.cutBy).toBe('rules.v4 line 7: -A INPUT -p tcp -j REJECT --reject-with tcp-reset');
    expect(r.message).toContain('would be rejected');
  });

  it('OUTPUT DROP without ESTABLISHED cuts the reply', () => {
    const rs = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    expect(failure(checkManagementPath(inv, mysql, rs))).toMatchObject({ leg: 'server-reply-out', cutBy: 'policy DROP of chain OUTPUT' });
    const fixed = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT', OUT_ESTABLISHED]);
    expect(checkManagementPath(inv, mysql, fixed)).toEqual({ ok: true });
  });

  it('uses the host ssh port', () => {
    const h = { ...mysql, ssh: { ...mysql.ssh, port: 2222 } };
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    expect(failure(checkManagementPath(inv, h, rs)).path).toBe('tunnel-1 (192.0.2.10) -> mysql-1 eth1 192.0.2.11:2222/tcp NEW');
  });

  it("checks the bastion's own legs when its rule set is given", () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const bastionRs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -p tcp --dport 22 -j ACCEPT']);
    expect(failure(checkManagementPath(inv, mysql, rs, bastionRs))).toMatchObject({ leg: 'client-reply-in', cutBy: 'policy DROP of chain INPUT' });
  });

  it('an unmodelled rule in the way is reported, not guessed', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp -m recent --name ssh --update --hitcount 4 -j DROP', '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const r = failure(checkManagementPath(inv, mysql, rs));
    expect(r.message).toContain('cannot be shown to pass');
    expect(r.cutBy).toContain('rules.v4 line 6: -A INPUT -p tcp -m recent');
  });

  it('a host without a bastion fails with an inventory reason', () => {
    const lost = buildHost('lost-1', { private: '192.0.2.99', network: 'elsewhere' });
    expect(failure(checkManagementPath(inv, lost, buildFilter({}, [])))).toMatchObject({ cutBy: 'inventory' });
  });
});

describe('checkManagementPath: the bastion', () => {
  const open = [ESTABLISHED, '-A INPUT -i eth0 -s 203.0.113.0/24 -p tcp --dport 22 -j ACCEPT'];

  it('is ok when operators reach its public SSH and it reaches every host', () => {
    expect(checkManagementPath(inv, tunnel, buildFilter({ INPUT: 'DROP' }, open))).toEqual({ ok: true });
  });

  it('closing its public SSH is a lockout naming the cutting rule', () => {
    const rs = buildFilter({}, [ESTABLISHED, '-A INPUT -i eth1 -p tcp --dport 22 -j ACCEPT', '-A INPUT -p tcp --dport 22 -j DROP']);
    const r = failure(checkManagementPath(inv, tunnel, rs));
    expect(r).toMatchObject({
      path: 'operator 203.0.113.0/24 (203.0.113.1) -> tunnel-1 eth0 203.0.113.10:22/tcp NEW',
      leg: 'server-in',
      cutBy: 'rules.v4 line 7: -A INPUT -p tcp -m tcp --dport 22 -j DROP',
    });
  });

  it('with operators 0.0.0.0/0 it uses the internet external as the source', () => {
    const anywhere = buildInventory({ operators: ['0.0.0.0/0'] });
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -s 203.0.113.0/24 -p tcp --dport 22 -j ACCEPT']);
    expect(checkManagementPath(anywhere, tunnel, rs)).toEqual({ ok: true });
    const narrow = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -s 198.51.100.0/24 -p tcp --dport 22 -j ACCEPT']);
    expect(failure(checkManagementPath(anywhere, tunnel, narrow)).path).toContain('(203.0.113.200)');
  });

  it('its OUTPUT must let SSH out to the hosts it manages', () => {
    const rs = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, [...open, OUT_ESTABLISHED, '-A OUTPUT -d 192.0.2.11 -p tcp --dport 22 -j ACCEPT']);
    const r = failure(checkManagementPath(inv, tunnel, rs));
    expect(r).toMatchObject({ path: 'tunnel-1 (192.0.2.10) -> web-1 eth1 192.0.2.12:22/tcp NEW', leg: 'client-out', cutBy: 'policy DROP of chain OUTPUT' });
  });
});
