import { describe, expect, it } from 'vitest';
import { parseFacts } from './facts.js';
import { parseKernelLog, parseLogMessage } from './kernel-log.js';
import { parseSsListeners } from './listeners.js';
import { parseRuleListing } from './rule-listing.js';

describe('parseSsListeners (ss -ltnup)', () => {
  // Real output, captured in a network namespace with socat listeners.
  const ss = [
    'Netid State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess',
    'udp   UNCONN 0      0            0.0.0.0:53        0.0.0.0:*    users:(("socat",pid=27591,fd=5))',
    'tcp   LISTEN 0      5          127.0.0.1:83        0.0.0.0:*    users:(("socat",pid=27590,fd=5))',
    'tcp   LISTEN 0      5               [::]:82           [::]:*    users:(("socat",pid=27589,fd=5))',
    'tcp   LISTEN 0      5                  *:81              *:*    users:(("socat",pid=27588,fd=5))',
    'tcp   LISTEN 0      128     0.0.0.0%eth1:22        0.0.0.0:*    users:(("sshd",pid=7,fd=3),("sshd",pid=9,fd=3))',
    'tcp   LISTEN 0      4096   127.0.0.53%lo:53        0.0.0.0:*',
  ].join('\n');

  it('reads protocol, address, port, bound device and process', () => {
    expect(parseSsListeners(ss)).toEqual([
      { proto: 'udp', address: '0.0.0.0', port: 53, process: 'socat', pid: 27591 },
      { proto: 'tcp', address: '127.0.0.1', port: 83, process: 'socat', pid: 27590 },
      { proto: 'tcp', address: '::', port: 82, process: 'socat', pid: 27589 },
      { proto: 'tcp', address: '*', port: 81, process: 'socat', pid: 27588 },
      { proto: 'tcp', address: '0.0.0.0', port: 22, device: 'eth1', process: 'sshd', pid: 7 },
      { proto: 'tcp', address: '127.0.0.53', port: 53, device: 'lo' },
    ]);
  });

  it('comes with the facts, in their listeners section', () => {
    const facts = parseFacts(['fleetfw-facts 1', 'backend=nft', '--- v4', '--- v6', '--- listeners', ss, '--- end', ''].join('\n'));
    expect(facts.listeners).toHaveLength(6);
    expect(parseFacts('fleetfw-facts 1\n--- v4\n--- v6\n--- listeners\nunavailable: ss not found\n--- end\n').listeners).toBeUndefined();
  });
});

describe('parseRuleListing (iptables -v -n -x -L --line-numbers)', () => {
  // Real output of iptables 1.8.9 (nft), including a rule without a target and a user chain.
  const listing = [
    'Chain INPUT (policy DROP 12 packets, 720 bytes)',
    'num      pkts      bytes target     prot opt in     out     source               destination         ',
    '1          31     2084 ACCEPT     6    --  eth1   *       10.0.0.0/8           0.0.0.0/0            tcp dpt:22',
    '2           0        0            17   --  *      *       0.0.0.0/0            0.0.0.0/0           ',
    '3           4      240 LOG-DROPS  0    --  *      *       0.0.0.0/0            0.0.0.0/0           ',
    '',
    'Chain LOG-DROPS (1 references)',
    'num      pkts      bytes target     prot opt in     out     source               destination         ',
    '1           4      240 LOG        0    --  *      *       0.0.0.0/0            0.0.0.0/0            limit: avg 1/sec burst 5 LOG flags 0 level 7 prefix "fleetfw DROP: "',
  ].join('\n');

  it('reads chains, policies with their counters, rules with theirs', () => {
    const [input, log] = parseRuleListing(listing);
    expect(input).toMatchObject({ name: 'INPUT', policy: { target: 'DROP', pkts: 12, bytes: 720 } });
    expect(input!.rules.map((r) => [r.num, r.pkts, r.bytes, r.target, r.in, r.source, r.extra])).toEqual([
      [1, 31, 2084, 'ACCEPT', 'eth1', '10.0.0.0/8', 'tcp dpt:22'],
      [2, 0, 0, '', '*', '0.0.0.0/0', ''],
      [3, 4, 240, 'LOG-DROPS', '*', '0.0.0.0/0', ''],
    ]);
    expect(log).toMatchObject({ name: 'LOG-DROPS', references: 1 });
    expect(log!.rules[0]!.extra).toBe('limit: avg 1/sec burst 5 LOG flags 0 level 7 prefix "fleetfw DROP: "');
  });

  it('scales the human units of a listing without -x', () => {
    const [c] = parseRuleListing('Chain INPUT (policy ACCEPT 3K packets, 2M bytes)\n1 12K 9M ACCEPT all -- * * 0.0.0.0/0 0.0.0.0/0\n');
    expect(c!.policy).toEqual({ target: 'ACCEPT', pkts: 3000, bytes: 2_000_000 });
    expect(c!.rules[0]).toMatchObject({ pkts: 12_000, bytes: 9_000_000 });
  });
});

describe('parseKernelLog', () => {
  // Captured from dmesg --time-format iso with nf_log_all_netns=1.
  const line = 'fleetfw DROP: IN=eth1 OUT= MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 SRC=192.0.2.250 DST=192.0.2.14 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=53350 DF PROTO=TCP SPT=48832 DPT=3306 WINDOW=65495 RES=0x00 SYN URGP=0 ';

  it('reads dmesg iso, raw dmesg and journal lines, with their times', () => {
    const log = parseKernelLog(
      [
        'now=1795241805',
        'uptime=1000.5',
        'source=dmesg',
        '--- log',
        `2026-11-21T06:16:05,318014+00:00 ${line}`,
        `[  990.500000] ${line}`,
        `1795241700.25 db kernel: ${line}`,
        'some other kernel line',
        '--- end',
      ].join('\n'),
    );
    expect(log.source).toBe('dmesg');
    expect(log.packets.map((p) => p.epoch)).toEqual([Date.parse('2026-11-21T06:16:05Z') / 1000 + 0.318014, 1795241795, 1795241700.25]);
    expect(log.packets[0]).toMatchObject({ prefix: 'fleetfw DROP:', in: 'eth1', out: '', src: '192.0.2.250', dst: '192.0.2.14', proto: 'TCP', spt: 48832, dpt: 3306 });
  });

  it('reports a host that cannot read its log', () => {
    expect(parseKernelLog('now=1\nsource=dmesg\n--- log\nunavailable: dmesg failed\n--- end\n').unavailable).toBe('dmesg failed');
  });

  it('reads ICMP types and ignores lines that are not netfilter logs', () => {
    expect(parseLogMessage('x IN=eth0 OUT= SRC=203.0.113.200 DST=203.0.113.14 PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1')).toMatchObject({ prefix: 'x', proto: 'ICMP', type: 8 });
    expect(parseLogMessage('eth1: link becomes ready')).toBeUndefined();
  });
});
