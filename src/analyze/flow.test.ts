import { describe, expect, it } from 'vitest';
import { evaluateFlow, type Flow } from './flow.js';
import { buildFilter, findRule } from './fixtures/fleet.js';

const server = buildFilter({ INPUT: 'DROP', OUTPUT: 'DROP' }, [
  '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  '-A INPUT -i eth1 -s 192.0.2.12 -p tcp --dport 3306 -j ACCEPT',
  '-A INPUT -p icmp --icmp-type echo-request -j ACCEPT',
  '-A INPUT -p tcp --dport 25 -j REJECT --reject-with tcp-reset',
  '-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
]);
const client = buildFilter({ INPUT: 'DROP', OUTPUT: 'ACCEPT' }, ['-A INPUT -m state --state ESTABLISHED -j ACCEPT']);

const flow = (fields: Partial<Flow>): Flow => ({
  family: 4,
  proto: 'tcp',
  port: 3306,
  client: { name: 'web-1', addr: '192.0.2.12', iface: 'eth1', rs: client },
  server: { name: 'mysql-1', addr: '192.0.2.11', iface: 'eth1', rs: server },
  ...fields,
});

describe('evaluateFlow', () => {
  it('allows when all four legs accept, reporting the server rule that let it in', () => {
    const r = evaluateFlow(flow({}));
    expect(r.outcome).toBe('allow');
    expect(r.host).toBe('mysql-1');
    expect(r.evaluation?.decidedBy).toEqual({ kind: 'rule', rule: findRule(server, 'INPUT', 2) });
    expect(r.legs.map((l) => `${l.leg}:${l.evaluation.verdict}`)).toEqual([
      'client-out:ACCEPT',
      'server-in:ACCEPT',
      'server-reply-out:ACCEPT',
      'client-reply-in:ACCEPT',
    ]);
    expect(r.legs[2]?.packet).toMatchObject({ hook: 'OUTPUT', src: '192.0.2.11', dst: '192.0.2.12', sport: 3306, dport: 40000, state: 'ESTABLISHED' });
  });

  it('drops at the server INPUT policy for another source', () => {
    const r = evaluateFlow(flow({ client: { name: 'intruder', addr: '192.0.2.250' } }));
    expect(r).toMatchObject({ outcome: 'drop', leg: 'server-in', host: 'mysql-1', evaluation: { decidedBy: { kind: 'policy', chain: 'INPUT' } } });
  });

  it('reports reject with the REJECT rule', () => {
    expect(evaluateFlow(flow({ port: 25 }))).toMatchObject({ outcome: 'reject', leg: 'server-in', evaluation: { rejectWith: 'tcp-reset' } });
  });

  it('a reply leg can deny: server OUTPUT DROP without ESTABLISHED', () => {
    const noReply = buildFilter({ INPUT: 'ACCEPT', OUTPUT: 'DROP' }, []);
    expect(evaluateFlow(flow({ server: { name: 'mysql-1', addr: '192.0.2.11', iface: 'eth1', rs: noReply } }))).toMatchObject({
      outcome: 'drop',
      leg: 'server-reply-out',
    });
  });

  it('a client that blocks its own traffic denies at client-out', () => {
    const closed = buildFilter({ OUTPUT: 'DROP' }, []);
    expect(evaluateFlow(flow({ client: { name: 'web-1', addr: '192.0.2.12', iface: 'eth1', rs: closed } })).leg).toBe('client-out');
  });

  it('ICMP echo: request NEW out, reply ESTABLISHED back', () => {
    const r = evaluateFlow(flow({ proto: 'icmp', icmp: true, client: { name: 'internet', addr: '203.0.113.200' } }));
    expect(r.outcome).toBe('allow');
    expect(r.legs.map((l) => l.packet.icmpType)).toEqual([8, 0]);
  });

  it('IPv6 echo uses types 128/129', () => {
    const v6 = buildFilter({ INPUT: 'DROP' }, ['-A INPUT -p ipv6-icmp --icmpv6-type 128 -j ACCEPT'], 6);
    const r = evaluateFlow({
      family: 6,
      proto: 'icmp',
      icmp: true,
      client: { name: 'internet', addr: '2001:db8:ffff::1' },
      server: { name: 'h', addr: '2001:db8::2', rs: v6 },
    });
    expect(r.outcome).toBe('allow');
    expect(r.legs.map((l) => l.packet.icmpType)).toEqual([128, 129]);
  });

  it('two externals: nothing to evaluate, allowed', () => {
    expect(evaluateFlow(flow({ client: { name: 'a', addr: '10.0.0.1' }, server: { name: 'b', addr: '10.0.0.2' } }))).toEqual({ outcome: 'allow', legs: [] });
  });

  it('unknown on the first leg wins even if a later leg would deny', () => {
    const odd = buildFilter({ OUTPUT: 'ACCEPT' }, ['-A OUTPUT -m owner --uid-owner 0 -j ACCEPT']);
    expect(evaluateFlow(flow({ client: { name: 'web-1', addr: '192.0.2.12', iface: 'eth1', rs: odd }, port: 9 }))).toMatchObject({
      outcome: 'unknown',
      leg: 'client-out',
    });
  });
});
