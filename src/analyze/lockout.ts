// The one check that must never be wrong: after applying a rule set, can the
// operator still reach the host over SSH? Every host is reached through its
// network's bastion; the bastion is reached from the operators' addresses.
import type { ExternalSpec, HostSpec, Inventory } from '../model/inventory.js';
import type { RuleSet } from '../model/ruleset.js';
import { isWholeSpace, pickFirstUsable } from './cidr.js';
import { describeDecision } from './evaluate.js';
import { evaluateFlow, type Flow, type FlowLeg } from './flow.js';

export type LockoutResult =
  | { ok: true }
  | {
      ok: false;
      /** e.g. `tunnel-1 (192.0.2.10) -> mysql-1 eth1 192.0.2.11:22/tcp NEW` */
      path: string;
      /** The leg that cuts the path; undefined when the inventory has no path to check. */
      leg?: FlowLeg;
      /** `rules.v4 line 14: -A INPUT -j DROP` or `policy DROP of chain INPUT` */
      cutBy: string;
      message: string;
    };

// Stand-in for "anywhere" when operators is 0.0.0.0/0 and there is no `internet` external.
const FALLBACK_INTERNET = '198.51.100.1';

const sshPort = (h: HostSpec): number => h.ssh.port ?? 22;

function findBastion(inv: Inventory, host: HostSpec): HostSpec | undefined {
  const network = inv.networks.find((n) => n.name === host.network);
  return network && inv.hosts.find((h) => h.name === network.bastion);
}

function isBastion(inv: Inventory, host: HostSpec): boolean {
  return inv.networks.some((n) => n.bastion === host.name);
}

/** A representative source address for an operators CIDR. */
function pickOperatorAddress(inv: Inventory, cidr: string): string {
  if (!isWholeSpace(cidr)) return pickFirstUsable(cidr);
  const internet: ExternalSpec | undefined =
    inv.externals.find((e) => e.name === 'internet') ?? inv.externals.find((e) => e.side === 'public');
  return internet?.address ?? FALLBACK_INTERNET;
}

const LEG_WORDS: Record<FlowLeg, string> = {
  'client-out': 'OUTPUT (NEW)',
  'server-in': 'INPUT (NEW)',
  'server-reply-out': 'OUTPUT (ESTABLISHED reply)',
  'client-reply-in': 'INPUT (ESTABLISHED reply)',
};

function describePath(f: Flow): string {
  const server = [f.server.name, f.server.iface, `${f.server.addr}:${f.port}/tcp`].filter(Boolean).join(' ');
  return `${f.client.name} (${f.client.addr}) -> ${server} NEW`;
}

/** Evaluate one SSH flow; undefined = it works. */
function checkFlow(f: Flow, what: string): LockoutResult | undefined {
  const r = evaluateFlow(f);
  if (r.outcome === 'allow') return undefined;
  const path = describePath(f);
  const cutBy = r.evaluation ? describeDecision(r.evaluation) : 'unknown';
  const verb = r.outcome === 'unknown' ? 'cannot be shown to pass' : `would be ${r.outcome === 'reject' ? 'rejected' : 'dropped'}`;
  const at = r.leg ? ` at ${r.host} ${LEG_WORDS[r.leg]}` : '';
  return { ok: false, path, ...(r.leg ? { leg: r.leg } : {}), cutBy, message: `${what} ${verb}${at}: ${cutBy}` };
}

function failSetup(path: string, message: string): LockoutResult {
  return { ok: false, path, cutBy: 'inventory', message };
}

/**
 * Is the management path to `host` open under `rs` (its IPv4 rule set)? For a bastion:
 * from every operator source to its public address, and out to every host it manages.
 * For any other host: from its bastion's private address (`bastionRs` adds the bastion's legs).
 */
export function checkManagementPath(inv: Inventory, host: HostSpec, rs: RuleSet, bastionRs?: RuleSet): LockoutResult {
  if (isBastion(inv, host)) {
    if (!host.public) return failSetup(host.name, `bastion ${host.name} has no public address to reach it by`);
    for (const cidr of inv.operators.length > 0 ? inv.operators : ['0.0.0.0/0']) {
      const addr = pickOperatorAddress(inv, cidr);
      const flow: Flow = {
        family: 4,
        proto: 'tcp',
        port: sshPort(host),
        client: { name: `operator ${cidr}`, addr },
        server: { name: host.name, addr: host.public, iface: host.interfaces.public, rs },
      };
      const bad = checkFlow(flow, `SSH from operators (${cidr}) to bastion ${host.name}`);
      if (bad) return bad;
    }
    const managed = inv.hosts.filter((h) => h.name !== host.name && findBastion(inv, h)?.name === host.name);
    for (const target of managed) {
      const bad = checkBastionToTarget(host, target, { bastion: rs });
      if (bad) return bad;
    }
    return { ok: true };
  }
  const bastion = findBastion(inv, host);
  if (!bastion) return failSetup(host.name, `${host.name} has no bastion (network "${host.network}")`);
  return checkBastionToTarget(bastion, host, { target: rs, ...(bastionRs ? { bastion: bastionRs } : {}) }) ?? { ok: true };
}

/** SSH from a bastion's private address to a target's, judged by whichever rule sets are given. */
function checkBastionToTarget(bastion: HostSpec, target: HostSpec, rs: { bastion?: RuleSet; target?: RuleSet }): LockoutResult | undefined {
  if (!bastion.private || !target.private) {
    return failSetup(`${bastion.name} -> ${target.name}`, `${bastion.name} or ${target.name} has no private address for the management path`);
  }
  const flow: Flow = {
    family: 4,
    proto: 'tcp',
    port: sshPort(target),
    client: { name: bastion.name, addr: bastion.private, iface: bastion.interfaces.private, ...(rs.bastion ? { rs: rs.bastion } : {}) },
    server: { name: target.name, addr: target.private, iface: target.interfaces.private, ...(rs.target ? { rs: rs.target } : {}) },
  };
  return checkFlow(flow, `SSH from bastion ${bastion.name} to ${target.name}`);
}
