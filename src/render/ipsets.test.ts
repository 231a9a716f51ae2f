// Large groups render as one ipset match per rule (seed 000's whitelist of every
// private server on every private server must not grow as N² rules).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadInventory } from '../inventory/load.js';
import { verifyIntents } from '../analyze/intents.js';
import { evaluatePacket } from '../analyze/evaluate.js';
import { parseFleet } from '../plan/checks.js';
import { loadTemplates } from './load-templates.js';
import { renderFleet } from './render.js';
import { formatIpSets, parseIpSets } from './ipsets.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const dir = mkdtempSync(join(tmpdir(), 'fleetfw-ipsets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** S1 with `extra` more WordPress backends (192.0.2.100+). */
function scaledS1(extra: number, settings = '') {
  const base = readFileSync(join(ROOT, 'inventories/s1.yaml'), 'utf8').replace('templates: ../templates', `templates: ${join(ROOT, 'templates')}`);
  const hosts = Array.from({ length: extra }, (_, i) => `  wp-${i + 3}: { public: 203.0.113.${100 + i}, private: 192.0.2.${100 + i}, roles: [backend, wordpress] }`);
  const text = base.replace('hosts:\n', `${settings}hosts:\n${hosts.join('\n')}\n`);
  const file = join(dir, `s1-${extra}-${settings ? 'x' : 'd'}.yaml`);
  writeFileSync(file, text);
  const inv = loadInventory(file);
  return { inv, rendered: renderFleet(inv, loadTemplates(inv)) };
}

const rulesOf = (text: string, pattern: string) => text.split('\n').filter((l) => l.startsWith('-A') && l.includes(pattern));

describe('ipsets for large groups', () => {
  const { inv, rendered: fleet } = scaledS1(10);
  const host = (name: string) => fleet.find((r) => r.host === name)!;

  it('renders peers.backend (13 members) as one rule per host, self excluded, members in a shared set', () => {
    const wp = host('wordpress-1');
    expect(rulesOf(wp.v4.text, 'match-set')).toEqual(['-A INPUT -i eth1 -p tcp ! -s 192.0.2.12 -m set --match-set fleetfw-backend-private src -j ACCEPT']);
    expect(wp.ipsets?.map((s) => s.name)).toEqual(['fleetfw-backend-private']);
    expect(wp.ipsets![0]!.members).toHaveLength(14);
    expect(wp.ipsets![0]).toBe(host('mysql-1').ipsets![0]); // one object for the fleet, not a copy per host
    expect(rulesOf(host('haproxy-www').v4.text, 'match-set')).toEqual(['-A OUTPUT -o eth1 -p tcp -m set --match-set fleetfw-wordpress-private dst --dport 80 -j ACCEPT']);
  });

  it('keeps small groups (and everything under settings.ipset_threshold) as one rule per member', () => {
    expect(host('wordpress-1').v4.text).toContain('-s 192.0.2.11 --dport 80'); // group.haproxy: one member
    const perMember = scaledS1(10, 'settings: { ipset_threshold: 50 }\n');
    const wp = perMember.rendered.find((r) => r.host === 'wordpress-1')!;
    expect(wp.ipsets).toBeUndefined();
    expect(rulesOf(wp.v4.text, '-i eth1 -p tcp -s ')).toHaveLength(13 + 1);
  });

  it('evaluates set matches: members allowed, others and self refused, every S1 intent holds', () => {
    const parsed = parseFleet(fleet);
    expect(verifyIntents(inv, parsed).filter((r) => !r.ok)).toEqual([]);
    const rs = parsed.get('mysql-1')!.v4;
    const from = (src: string) => evaluatePacket(rs, { family: 4, hook: 'INPUT', in: 'eth1', src, dst: '192.0.2.14', proto: 'tcp', sport: 40000, dport: 3306, state: 'NEW' }).verdict;
    expect(from('192.0.2.105')).toBe('ACCEPT'); // wp-8, a backend
    expect(from('192.0.2.250')).toBe('DROP'); // intruder
    expect(from('192.0.2.14')).toBe('DROP'); // itself: peers excludes self
    expect(evaluatePacket({ ...rs, sets: undefined }, { family: 4, hook: 'INPUT', in: 'eth1', src: '192.0.2.105', dst: '192.0.2.14', proto: 'tcp', sport: 40000, dport: 3306, state: 'NEW' }).verdict).toBe('unknown');
  });

  it('formats sets canonically and reads them back from ipset save', () => {
    const text = formatIpSets(host('wordpress-1').ipsets!);
    expect(text.split('\n').slice(0, 3)).toEqual(['create fleetfw-backend-private hash:ip family inet', 'add fleetfw-backend-private 192.0.2.12', 'add fleetfw-backend-private 192.0.2.13']);
    const saved = `create fleetfw-backend-private hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1\n${text.split('\n').slice(1).reverse().join('\n')}\ncreate other hash:ip family inet\nadd other 10.0.0.1\n`;
    expect(formatIpSets(parseIpSets(saved))).toBe(text);
  });
});
