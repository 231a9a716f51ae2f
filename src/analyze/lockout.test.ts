import { describe, expect, it } from 'vitest';
import { checkManagementPath, type LockoutResult } from './lockout.js';
import { buildFilter, buildHost, buildInventory, buildTables, v4Only } from './fixtures/fleet.js';

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
    expect(checkManagementPath(inv, mysql, v4Only(rs))).toEqual({ ok: true });
  });

  it('INPUT DROP with no SSH rule: cut by the policy', () => {
    const r = failure(checkManagementPath(inv, mysql, v4Only(buildFilter({ INPUT: 'DROP' }, [ESTABLISHED]))));
    expect(r).toMatchObject({
      path: 'tunnel-1 (192.0.2.10) -> mysql-1 eth1 192.0.2.11:22/tcp NEW',
      leg: 'server-in',
      cutBy: 'policy DROP of chain INPUT',
      packet: '192.0.2.10:32768 -> 192.0.2.11:22/tcp SYN (NEW), as for every packet of source ports 32768-60999',
      hops: 'mysql-1: filter INPUT',
    });
    expect(r.message).toBe(
      'SSH from bastion tunnel-1 to mysql-1 would be dropped at mysql-1 filter INPUT (NEW, arriving): policy DROP of chain INPUT (packet 192.0.2.10:32768 -> 192.0.2.11:22/tcp SYN (NEW), as for every packet of source ports 32768-60999)',
    );
  });

  it('a final DROP rule is named with its file and line', () => {
    const rs = buildFilter({}, [ESTABLISHED, '-A INPUT -j DROP']);
    expect(failure(checkManagementPath(inv, mysql, v4Only(rs))).cutBy).toBe('rules.v4 line 6: -A INPUT -j DROP');
  });

  it('SSH only on the public interface', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -i eth0 -p tcp --dport 22 -j ACCEPT']);
    expect(failure(checkManagementPath(inv, mysql, v4Only(rs)))).toMatchObject({ leg: 'server-in', cutBy: 'policy DROP of chain INPUT' });
  });

  it('SSH only from a non-bastion address, closed by a REJECT', () => {
    const rs = buildFilter({}, [ESTABLISHED, '-A INPUT -s 192.0.2.12 -p tcp --dport 22 -j ACCEPT', '-A INPUT -p tcp -j REJECT --reject-with tcp-reset']);
    const r = failure(checkManagementPath(inv, mysql, v4Only(rs)));
    expect(r.cutBy).toBe('rules.v4 line 7: -A INPUT -p tcp -j REJECT --reject-with tcp-reset');
    expect(r.message).toContain('would be rejected');
  });

  it('OUTPUT DROP without ESTABLISHED cuts the reply', () => {
    const rs = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const r = failure(checkManagementPath(inv, mysql, v4Only(rs)));
    expect(r).toMatchObject({ leg: 'server-reply-out', cutBy: 'policy DROP of chain OUTPUT', packet: '192.0.2.11:22 -> 192.0.2.10:32768/tcp SYN,ACK (ESTABLISHED), as for every packet of source ports 32768-60999' });
    expect(r.message).toContain('would be dropped at mysql-1 filter OUTPUT (ESTABLISHED reply, leaving): policy DROP of chain OUTPUT');
    const fixed = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT', OUT_ESTABLISHED]);
    expect(checkManagementPath(inv, mysql, v4Only(fixed))).toEqual({ ok: true });
  });

  it('uses the host ssh port', () => {
    const h = { ...mysql, ssh: { ...mysql.ssh, port: 2222 } };
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    expect(failure(checkManagementPath(inv, h, v4Only(rs))).path).toBe('tunnel-1 (192.0.2.10) -> mysql-1 eth1 192.0.2.11:2222/tcp NEW');
  });

  it("checks the bastion's own legs when its rule set is given", () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const bastionRs = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const r = failure(checkManagementPath(inv, mysql, v4Only(rs), v4Only(bastionRs)));
    expect(r).toMatchObject({ leg: 'client-reply-in', cutBy: 'policy DROP of chain INPUT', hops: 'tunnel-1: filter INPUT' });
    expect(r.message).toContain('at tunnel-1 filter INPUT (ESTABLISHED reply, arriving)');
    expect(r.packet).toBe('192.0.2.11:22 -> 192.0.2.10:32768/tcp SYN,ACK (ESTABLISHED), as for every packet of source ports 32768-60999');
  });

  it('an unmodelled rule in the way is reported, not guessed', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp -m recent --name ssh --update --hitcount 4 -j DROP', '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const r = failure(checkManagementPath(inv, mysql, v4Only(rs)));
    expect(r.message).toContain('cannot be shown to pass at mysql-1 filter INPUT (NEW, arriving): ');
    expect(r.cutBy).toBe('rules.v4 line 6: -A INPUT -p tcp -m recent --name ssh --update --hitcount 4 -j DROP (cannot evaluate: -m recent --name ssh --update --hitcount 4)');
  });

  it('only ONE client source port dropped: the counterexample names that port', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --sport 40000 --dport 22 -j DROP', '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const r = failure(checkManagementPath(inv, mysql, v4Only(rs)));
    expect(r).toMatchObject({ leg: 'server-in', cutBy: 'rules.v4 line 6: -A INPUT -p tcp -m tcp --sport 40000 --dport 22 -j DROP', packet: '192.0.2.10:40000 -> 192.0.2.11:22/tcp SYN (NEW)' });
    // A port outside the client's range (Linux's ephemeral ports) does not matter.
    const low = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --sport 1024:32767 --dport 22 -j DROP', '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    expect(checkManagementPath(inv, mysql, v4Only(low))).toEqual({ ok: true });
  });

  it('the other tables on the path are checked and named: raw, mangle, nat, security', () => {
    const accept = [':INPUT DROP [0:0]', ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT'];
    const raw = failure(checkManagementPath(inv, mysql, v4Only(buildTables({ raw: ['-A PREROUTING -s 192.0.2.0/24 -p tcp --dport 22 -j DROP'], filter: accept }))));
    expect(raw.message).toMatch(/^SSH from bastion tunnel-1 to mysql-1 would be dropped at mysql-1 raw PREROUTING \(NEW, arriving\): rules\.v4 line 4: -A PREROUTING -s 192\.0\.2\.0\/24 -p tcp -m tcp --dport 22 -j DROP \(raw table\) \(packet /);
    expect(raw.hops).toBe('mysql-1: raw PREROUTING');
    const mangle = failure(checkManagementPath(inv, mysql, v4Only(buildTables({ mangle: ['-A OUTPUT -p tcp --sport 22 -j DROP'], filter: accept }))));
    expect(mangle).toMatchObject({ leg: 'server-reply-out', hops: 'mysql-1: mangle OUTPUT' });
    const security = failure(checkManagementPath(inv, mysql, v4Only(buildTables({ filter: accept, security: [':INPUT DROP [0:0]'] }))));
    expect(security).toMatchObject({ leg: 'server-in', cutBy: 'policy DROP of security chain INPUT', hops: 'mysql-1: filter INPUT > security INPUT' });
    const nat = failure(checkManagementPath(inv, mysql, v4Only(buildTables({ nat: [':PREROUTING DROP [0:0]'], filter: accept }))));
    expect(nat).toMatchObject({ leg: 'server-in', cutBy: 'policy DROP of nat chain PREROUTING' });
  });

  it('a REDIRECT of the SSH port reaches another server: the path is not proven', () => {
    const rs = buildTables({ nat: ['-A PREROUTING -p tcp --dport 22 -j REDIRECT --to-ports 2222'], filter: [':INPUT DROP [0:0]', ESTABLISHED, '-A INPUT -p tcp --dport 2222 -j ACCEPT', '-A OUTPUT -j ACCEPT'] });
    const r = failure(checkManagementPath(inv, mysql, v4Only(rs)));
    // The rewrite first (what an operator changes), then the rule that let the rewritten packet in.
    expect(r.cutBy).toBe('rules.v4 line 6: -A PREROUTING -p tcp -m tcp --dport 22 -j REDIRECT --to-ports 2222 (nat table) rewrites dport 22 to 2222; then rules.v4 line 13: -A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT');
    expect(r.packet).toBe('192.0.2.10:32768 -> 192.0.2.11:22/tcp SYN (NEW), as for every packet of source ports 32768-60999');
    expect(r.hops).toBe('mysql-1: nat PREROUTING > filter INPUT > nat INPUT');
    expect(r.message).toMatch(/^SSH from bastion tunnel-1 to mysql-1 would be redirected: /);
  });

  it('a DNAT of the SSH port to another machine: the connection is diverted', () => {
    const rs = buildTables({ nat: ['-A PREROUTING -p tcp --dport 22 -j DNAT --to-destination 192.0.2.99'] });
    const r = failure(checkManagementPath(inv, mysql, v4Only(rs)));
    expect(r).toMatchObject({
      leg: 'server-in',
      cutBy: "rules.v4 line 6: -A PREROUTING -p tcp -m tcp --dport 22 -j DNAT --to-destination 192.0.2.99 (nat table) rewrites dst 192.0.2.11 to 192.0.2.99; 192.0.2.99 is not mysql-1's: routed on",
      hops: 'mysql-1: nat PREROUTING > nat POSTROUTING',
    });
    expect(r.message).toMatch(/^SSH from bastion tunnel-1 to mysql-1 would be diverted at mysql-1 /);
  });

  it('the bastion\'s own source rewritten on its way out is not followed', () => {
    const masquerade = buildTables({ nat: ['-A POSTROUTING -o eth1 -j MASQUERADE'] });
    expect(checkManagementPath(inv, mysql, v4Only(buildFilter({}, [])), v4Only(masquerade))).toEqual({ ok: true });
    const snat = buildTables({ nat: ['-A POSTROUTING -o eth1 -j SNAT --to-source 192.0.2.100'] });
    const r = failure(checkManagementPath(inv, mysql, v4Only(buildFilter({}, [])), v4Only(snat)));
    expect(r).toMatchObject({
      leg: 'client-out',
      cutBy: 'rules.v4 line 6: -A POSTROUTING -o eth1 -j SNAT --to-source 192.0.2.100 (nat table) (cannot evaluate: SNAT rewrites the source 192.0.2.10 to 192.0.2.100 (fleetfw does not follow rewritten sources))',
      hops: 'tunnel-1: nat OUTPUT > nat POSTROUTING',
    });
    expect(r.message).toContain('cannot be shown to pass at tunnel-1 nat POSTROUTING (NEW, leaving): ');
  });

  it('NOTRACK on SSH: the packets are UNTRACKED, so an accept of NEW and ESTABLISHED does not let them in', () => {
    const rs = buildTables({ raw: ['-A PREROUTING -p tcp --dport 22 -j NOTRACK'], filter: [':INPUT DROP [0:0]', ESTABLISHED, '-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT'] });
    const r = failure(checkManagementPath(inv, mysql, v4Only(rs)));
    expect(r).toMatchObject({ leg: 'server-in', cutBy: 'policy DROP of chain INPUT', hops: 'mysql-1: raw PREROUTING > filter INPUT' });
    // The packet as the bastion sends it; the hops show where it became UNTRACKED.
    expect(r.packet).toBe('192.0.2.10:32768 -> 192.0.2.11:22/tcp SYN (NEW), as for every packet of source ports 32768-60999');
    const untracked = buildTables({ raw: ['-A PREROUTING -p tcp --dport 22 -j NOTRACK', '-A OUTPUT -p tcp --sport 22 -j NOTRACK'], filter: [':INPUT DROP [0:0]', '-A INPUT -p tcp --dport 22 -m conntrack --ctstate UNTRACKED -j ACCEPT'] });
    expect(checkManagementPath(inv, mysql, v4Only(untracked))).toEqual({ ok: true });
  });

  it('a host without a bastion fails with an inventory reason', () => {
    const lost = buildHost('lost-1', { private: '192.0.2.99', network: 'elsewhere' });
    expect(failure(checkManagementPath(inv, lost, v4Only(buildFilter({}, []))))).toMatchObject({ cutBy: 'inventory' });
  });
});

describe('checkManagementPath: the bastion', () => {
  const open = [ESTABLISHED, '-A INPUT -i eth0 -s 203.0.113.0/24 -p tcp --dport 22 -j ACCEPT'];

  it('is ok when operators reach its public SSH and it reaches every host', () => {
    expect(checkManagementPath(inv, tunnel, v4Only(buildFilter({ INPUT: 'DROP' }, open)))).toEqual({ ok: true });
  });

  it('closing its public SSH is a lockout naming the cutting rule', () => {
    const rs = buildFilter({}, [ESTABLISHED, '-A INPUT -i eth1 -p tcp --dport 22 -j ACCEPT', '-A INPUT -p tcp --dport 22 -j DROP']);
    const r = failure(checkManagementPath(inv, tunnel, v4Only(rs)));
    expect(r).toMatchObject({
      path: 'operators 203.0.113.0/24 -> tunnel-1 eth0 203.0.113.10:22/tcp NEW',
      leg: 'server-in',
      cutBy: 'rules.v4 line 7: -A INPUT -p tcp -m tcp --dport 22 -j DROP',
      packet: '203.0.113.0:32768 -> 203.0.113.10:22/tcp SYN (NEW), as for every packet of sources 203.0.113.0-203.0.113.9 and source ports 32768-65535',
    });
    expect(r.message).toMatch(/^SSH from operators \(203\.0\.113\.0\/24\) to bastion tunnel-1 would be dropped at tunnel-1 filter INPUT \(NEW, arriving\): /);
  });

  it('only ONE operator address cut is found, from the whole network', () => {
    const rs = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -s 203.0.113.77 -j DROP', ...open.slice(1)]);
    expect(failure(checkManagementPath(inv, tunnel, v4Only(rs)))).toMatchObject({
      leg: 'server-in',
      cutBy: 'rules.v4 line 6: -A INPUT -s 203.0.113.77/32 -j DROP',
      packet: '203.0.113.77:32768 -> 203.0.113.10:22/tcp SYN (NEW), as for every packet of source ports 32768-65535',
    });
    // The bastion's own address in that network is not a source anyone sends from.
    const self = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -s 203.0.113.10 -j DROP', ...open.slice(1)]);
    expect(checkManagementPath(inv, tunnel, v4Only(self))).toEqual({ ok: true });
  });

  it('every operators entry is proven', () => {
    const two = buildInventory({ operators: ['203.0.113.0/24', '198.51.100.7/32'] });
    expect(failure(checkManagementPath(two, tunnel, v4Only(buildFilter({ INPUT: 'DROP' }, open)))).path).toBe('operators 198.51.100.7/32 -> tunnel-1 eth0 203.0.113.10:22/tcp NEW');
    const both = buildFilter({ INPUT: 'DROP' }, [...open, '-A INPUT -s 198.51.100.7 -p tcp --dport 22 -j ACCEPT']);
    expect(checkManagementPath(two, tunnel, v4Only(both))).toEqual({ ok: true });
  });

  it('with operators 0.0.0.0/0 every public source address is proven; private networks are left out', () => {
    const anywhere = buildInventory({ operators: ['0.0.0.0/0'] });
    const all = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -s 10.0.0.0/8 -j DROP', '-A INPUT -s 192.168.0.0/16 -j DROP', '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    expect(checkManagementPath(anywhere, tunnel, v4Only(all))).toEqual({ ok: true });
    // One network is not "anywhere": the first public address outside it is the counterexample.
    const narrow = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -s 203.0.113.0/24 -p tcp --dport 22 -j ACCEPT']);
    const r = failure(checkManagementPath(anywhere, tunnel, v4Only(narrow)));
    expect(r).toMatchObject({
      path: 'operators 0.0.0.0/0 -> tunnel-1 eth0 203.0.113.10:22/tcp NEW',
      leg: 'server-in',
      cutBy: 'policy DROP of chain INPUT',
      packet: '1.0.0.0:32768 -> 203.0.113.10:22/tcp SYN (NEW), as for every packet of sources 1.0.0.0-9.255.255.255 and source ports 32768-65535',
    });
    // A single public address dropped is found.
    const one = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -s 8.8.8.8 -j DROP', '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    expect(failure(checkManagementPath(anywhere, tunnel, v4Only(one))).packet).toBe('8.8.8.8:32768 -> 203.0.113.10:22/tcp SYN (NEW), as for every packet of source ports 32768-65535');
  });

  it('its OUTPUT must let SSH out to the hosts it manages', () => {
    const rs = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, [...open, OUT_ESTABLISHED, '-A OUTPUT -d 192.0.2.11 -p tcp --dport 22 -j ACCEPT']);
    const r = failure(checkManagementPath(inv, tunnel, v4Only(rs)));
    expect(r).toMatchObject({ path: 'tunnel-1 (192.0.2.10) -> web-1 eth1 192.0.2.12:22/tcp NEW', leg: 'client-out', cutBy: 'policy DROP of chain OUTPUT' });
  });
});

describe('checkManagementPath: a host reached over IPv6', () => {
  // web-1 has no private IPv4 address: fleetfw reaches it at its private IPv6 one, from the bastion's.
  const v6inv = buildInventory();
  v6inv.hosts = v6inv.hosts.map((h) =>
    h.name === 'web-1' ? { ...h, private: undefined, private6: '2001:db8:1::12' } : h.name === 'tunnel-1' ? { ...h, private6: '2001:db8:1::10' } : h,
  );
  const web = v6inv.hosts.find((h) => h.name === 'web-1')!;
  const tunnel6 = v6inv.hosts.find((h) => h.name === 'tunnel-1')!;
  const closed4 = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, []);
  const ssh6 = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', '-A INPUT -i eth1 -s 2001:db8:1::10 -p tcp --dport 22 -j ACCEPT'], 6);

  it('is proven in the IPv6 rules, whatever the IPv4 ones say', () => {
    expect(checkManagementPath(v6inv, web, { v4: closed4, v6: ssh6 })).toEqual({ ok: true });
  });

  it('an IPv6 rule set that drops it is a lockout, on the IPv6 path', () => {
    const r = failure(checkManagementPath(v6inv, web, { v4: buildFilter({}, []), v6: buildFilter({ INPUT: 'DROP' }, [], 6) }));
    expect(r).toMatchObject({ path: 'tunnel-1 (2001:db8:1::10) -> web-1 eth1 2001:db8:1::12:22/tcp NEW', leg: 'server-in', cutBy: 'policy DROP of chain INPUT' });
  });

  it("the bastion's IPv6 OUTPUT must let it out; its IPv4 rules do not count for that host", () => {
    const open4 = buildFilter({ INPUT: 'DROP' }, [ESTABLISHED, '-A INPUT -p tcp --dport 22 -j ACCEPT']);
    const out6 = buildFilter({ OUTPUT: 'DROP' }, ['-A OUTPUT -d 2001:db8:1::12 -p tcp --dport 22 -j ACCEPT', '-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT'], 6);
    expect(checkManagementPath(v6inv, tunnel6, { v4: open4, v6: out6 })).toEqual({ ok: true });
    const r = failure(checkManagementPath(v6inv, tunnel6, { v4: open4, v6: buildFilter({ OUTPUT: 'DROP' }, [], 6) }));
    expect(r).toMatchObject({ path: 'tunnel-1 (2001:db8:1::10) -> web-1 eth1 2001:db8:1::12:22/tcp NEW', leg: 'client-out' });
  });

  it('a bastion without a private IPv6 address cannot reach it: said, not assumed', () => {
    const noAddr = { ...v6inv, hosts: v6inv.hosts.map((h) => (h.name === 'tunnel-1' ? { ...h, private6: undefined } : h)) };
    const r = failure(checkManagementPath(noAddr, web, { v4: closed4, v6: ssh6 }));
    expect(r.message).toMatch(/web-1 is reached over IPv6 \(2001:db8:1::12\) but bastion tunnel-1 has no private IPv6 address/);
  });
});
