// docker-compose.yml is the S1 fleet for Docker users. No Docker engine runs
// in CI, so its structure is checked against inventories/s1.yaml here.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadInventory } from '../inventory/load.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

interface Service {
  build?: string;
  image?: string;
  command?: string[];
  hostname?: string;
  cap_add?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  networks?: Record<string, { ipv4_address: string; priority: number }>;
  network_mode?: string;
}

const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
  networks: Record<string, { ipam: { config: Array<{ subnet: string; gateway: string }> } }>;
};
const inv = loadInventory(join(ROOT, 'inventories/s1.yaml'));

describe('docker-compose.yml: the S1 fleet', () => {
  it('has one service per inventory host, plus the one-shot key maker', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['keys', ...inv.hosts.map((h) => h.name)].sort());
    expect(compose.services.keys).toMatchObject({ command: ['keys'], network_mode: 'none' });
  });

  it('every server: its name, NET_ADMIN, sshd entrypoint, the shared key folder', () => {
    for (const h of inv.hosts) {
      const s = compose.services[h.name]!;
      expect(s.hostname).toBe(h.name);
      expect(s.cap_add).toContain('NET_ADMIN');
      expect(s.command).toEqual(['server']);
      expect(s.build).toBe('./docker');
      expect(s.volumes).toEqual(['./.docker-fleet:/fleet']);
    }
  });

  it('addresses, interface order and login user match the inventory exactly', () => {
    for (const h of inv.hosts) {
      const s = compose.services[h.name]!;
      expect(Object.keys(s.networks!).sort()).toEqual(['private', 'public']);
      expect(s.networks!.public!.ipv4_address).toBe(h.public);
      expect(s.networks!.private!.ipv4_address).toBe(h.private);
      // The entrypoint names interfaces by these addresses: eth0 public, eth1 private, as the inventory says.
      expect(s.environment).toMatchObject({ PUBLIC_ADDRESS: h.public, PRIVATE_ADDRESS: h.private });
      expect(h.interfaces).toEqual({ public: 'eth0', private: 'eth1' });
      expect(s.networks!.public!.priority).toBeGreaterThan(s.networks!.private!.priority);
      expect(s.environment!.SSH_USER ?? 'root').toBe(h.ssh.user ?? 'root');
    }
  });

  it('networks: public and private subnets hold every host address; the Docker host is an operator', () => {
    const subnet = (n: string) => ipaddr.parseCIDR(compose.networks[n]!.ipam.config[0]!.subnet);
    for (const h of inv.hosts) {
      expect(ipaddr.parse(h.public!).match(subnet('public'))).toBe(true);
      expect(ipaddr.parse(h.private!).match(subnet('private'))).toBe(true);
    }
    const gateway = ipaddr.parse(compose.networks.public!.ipam.config[0]!.gateway);
    expect(inv.operators.some((o) => gateway.match(ipaddr.parseCIDR(o)))).toBe(true);
  });

  it('the entrypoint is executable and the image runs it (shellcheck: docker-compose.host.test.ts)', () => {
    const entry = join(ROOT, 'docker/entrypoint.sh');
    expect(statSync(entry).mode & 0o111).not.toBe(0);
    const dockerfile = readFileSync(join(ROOT, 'docker/Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^COPY entrypoint\.sh \/usr\/local\/bin\/fleetfw-entrypoint$/m);
    for (const pkg of ['openssh-server', 'iptables', 'iptables-persistent', 'sudo', 'iproute2']) expect(dockerfile).toContain(pkg);
    expect(existsSync(join(ROOT, '.gitignore')) && readFileSync(join(ROOT, '.gitignore'), 'utf8')).toContain('.docker-fleet/');
  });
});
