// What every command starts from: the inventory (or the embedded example),
// its rendered rule sets, and for live commands the SSH transport.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.js';
import type { HostSpec, Inventory } from '../model/inventory.js';
import { loadInventory } from '../inventory/load.js';
import { bastionOf } from '../inventory/query.js';
import { loadTemplates } from '../render/load-templates.js';
import { renderFleet, type RenderedHost } from '../render/render.js';
import { createSshTransport, formatHostKeyAddition, type SshEndpoint, type Transport } from '../transport/ssh.js';
import { resolveSshOptionsMany } from '../transport/ssh-config.js';
import { askSecret, err } from './io.js';

/** The package's own example (S1), used when no --inventory is given. */
export const EMBEDDED_INVENTORY = fileURLToPath(new URL('../../inventories/s1.yaml', import.meta.url));

export interface InventoryOptions {
  inventory?: string;
  limit?: string;
}

export interface SshCliOptions {
  knownHosts?: string;
  acceptNewHostKeys?: boolean;
  sshConfig?: string;
  identity?: string;
}

export function loadFleet(opts: InventoryOptions): { inv: Inventory; display: string; rendered: RenderedHost[] } {
  let file = opts.inventory ?? process.env.FLEETFW_INVENTORY;
  let display = file;
  if (!file) {
    file = EMBEDDED_INVENTORY;
    display = 'inventories/s1.yaml (embedded example)';
    err(`fleetfw: no --inventory given: using the embedded example ${display}`);
  }
  if (!existsSync(file)) throw new UsageError(`inventory file not found: ${file}`);
  const inv = loadInventory(file, { displayPath: opts.inventory ?? 'inventories/s1.yaml' });
  const rendered = renderFleet(inv, loadTemplates(inv));
  return { inv, display: display!, rendered };
}

/** `--limit a,b,group`: hosts by name or group. */
export function selectHosts(inv: Inventory, limit: string | undefined): HostSpec[] {
  if (!limit) return inv.hosts;
  const wanted = limit.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = wanted.filter((w) => !inv.hosts.some((h) => h.name === w || h.groups.includes(w)));
  if (unknown.length > 0) throw new UsageError(`--limit: no host or group named ${unknown.map((u) => `"${u}"`).join(', ')}`);
  return inv.hosts.filter((h) => wanted.includes(h.name) || h.groups.some((g) => wanted.includes(g)));
}

function expandHome(p: string): string {
  return p.startsWith('~/') ? `${homedir()}/${p.slice(2)}` : p;
}

/** SSH endpoints for every host, settings layered: flag > inventory > ~/.ssh/config > defaults. */
export async function openTransport(inv: Inventory, opts: SshCliOptions): Promise<Transport> {
  const sshConfig = opts.sshConfig ?? process.env.FLEETFW_SSH_CONFIG;
  const identity = opts.identity ?? process.env.FLEETFW_IDENTITY;
  const hosts = inv.hosts;
  const options = await resolveSshOptionsMany(
    hosts.map((h) => h.name),
    (_, i) => {
      const h = hosts[i]!;
      const key = identity ?? h.ssh.identityFile;
      return { user: h.ssh.user, port: h.ssh.port, identityFiles: key ? [expandHome(key)] : undefined };
    },
    { configFile: sshConfig },
  );
  const resolved = hosts.map((h, i) => ({ h, o: options[i]! }));
  const endpoints: SshEndpoint[] = resolved.map(({ h, o }) => {
    const bastion = bastionOf(inv, h);
    const isBastion = bastion.name === h.name;
    return {
      name: h.name,
      address: (isBastion ? h.public : h.private) ?? h.public ?? '',
      port: o.port,
      user: o.user,
      identityFile: o.identityFiles[0],
      bastion: isBastion ? undefined : bastion.name,
      hashKnownHosts: o.hashKnownHosts,
    };
  });
  const first = resolved[0]?.o;
  const knownHosts = expandHome(opts.knownHosts ?? process.env.FLEETFW_KNOWN_HOSTS ?? inv.settings.knownHosts ?? first?.knownHostsFile ?? '~/.ssh/known_hosts');
  const agent = first?.identityAgent && first.identityAgent !== 'none' ? expandHome(first.identityAgent) : process.env.SSH_AUTH_SOCK;
  return createSshTransport(endpoints, {
    knownHostsFile: knownHosts,
    acceptNewHostKeys: Boolean(opts.acceptNewHostKeys),
    agentSocket: first?.identityAgent === 'none' ? undefined : agent,
    onHostKeyAdded: (added) => err(formatHostKeyAddition(added)),
    // Without a terminal the transport's own advice (use ssh-agent) is the clear message.
    ...(process.stdin.isTTY ? { askPassphrase: (file: string) => askSecret(`Passphrase for ${file}: `) } : {}),
  });
}
