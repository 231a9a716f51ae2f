// Checks across hosts, run once every host is read: each host on a network its
// bastion can reach, no address used twice, a template for every role and base.
import path from 'node:path';
import { didYouMean, suggest } from './suggest.js';
import { ADDRESS_FIELDS } from './sections.js';
import type { HostDraft, NetworkDraft, Overridable, TemplateExists } from './sections.js';
import { quote } from './tokens.js';
import type { Located, Reader } from './yaml-reader.js';

/**
 * Put each host on a network (explicit, implied by being its bastion, or the only
 * one) and check its bastion can reach it over the private side.
 */
export function assignNetworks(r: Reader, hosts: HostDraft[], networks: NetworkDraft[]): void {
  const byName = new Map(networks.map((n) => [n.name, n]));
  const byHost = new Map(hosts.map((h) => [h.name, h]));
  for (const h of hosts) {
    const served = networks.find((n) => n.bastion === h.name);
    if (h.network === null) continue;
    if (h.network) {
      const n = byName.get(h.network.value);
      if (!n) {
        const hint = suggest(h.network.value, byName.keys());
        r.report(h.network, `unknown network ${quote(h.network.value)}${didYouMean(hint)}`);
        continue;
      }
      if (served && served !== n) r.report(h.network, `host ${quote(h.name)} is the bastion of network "${served.name}" so it must be on it`);
    } else {
      const implied = served ?? (networks.length === 1 ? networks[0] : undefined);
      if (implied) h.network = { ...h.at, value: implied.name };
      else if (networks.length > 1) {
        const list = networks.map((n) => n.name).join(', ');
        r.report({ ...h.at, path: `${h.at.path}.network` }, `no "network" given and there are ${networks.length} networks (${list})`);
      }
      if (!implied) continue;
    }
    const n = byName.get(h.network!.value)!;
    if (n.bastion === h.name) continue;
    if (h.addresses.private === undefined && h.addresses.private6 === undefined) {
      r.report(h.at, `host ${quote(h.name)} has no private address (private or private6), so bastion ${quote(n.bastion)} cannot reach it`);
      continue;
    }
    // Reached at its private IPv4 address, else its IPv6 one: from the bastion's of that family.
    const field = h.addresses.private !== undefined ? 'private' : 'private6';
    const bastion = byHost.get(n.bastion);
    if (bastion && bastion.addresses[field] === undefined) {
      r.report(h.addresses[field]!, `host ${quote(h.name)} is reached at its ${field} address, but bastion ${quote(n.bastion)} has no ${field} address to reach it from`);
    }
  }
}

export function checkAddressesUnique(r: Reader, hosts: HostDraft[]): void {
  const seen = new Map<string, string>();
  for (const h of hosts) {
    for (const f of ADDRESS_FIELDS) {
      const a = h.addresses[f];
      if (!a) continue;
      const first = seen.get(a.value);
      if (first) r.report(a, `address ${a.value} is already used by ${first}`);
      else seen.set(a.value, a.path);
    }
  }
}

/** Every role needs templates/roles/<role>.v4 and every base templates/bases/<base>.v4; reported once, where first named. */
export function checkTemplates(r: Reader, dir: string, hosts: HostDraft[], d: Overridable, templateExists: TemplateExists): void {
  const need = (kind: 'roles' | 'bases', site: Located, noun: string, done: Set<string>) => {
    if (done.has(site.value)) return;
    done.add(site.value);
    const file = path.join(dir, kind, `${site.value}.v4`);
    if (!templateExists(file, 'file')) r.report(site, `${noun} ${quote(site.value)} has no template (expected ${path.relative(process.cwd(), file)})`);
  };
  const roles = new Set<string>();
  const bases = new Set<string>();
  if (d.base) need('bases', d.base, 'base', bases);
  for (const h of hosts) {
    for (const role of h.roles) need('roles', role, 'role', roles);
    const base = h.base !== undefined ? h.base : d.base;
    if (base) need('bases', base, 'base', bases);
    else if (base === undefined) r.report({ ...h.at, path: `${h.at.path}.base` }, 'no base given (set "base" here or in defaults)');
  }
}
