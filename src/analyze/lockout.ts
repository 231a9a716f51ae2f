// The one check that must never be wrong: after applying a rule set, can the
// operator still reach the host over SSH? Every host is reached through its
// network's bastion; the bastion is reached from the operators' addresses.
// Proven for every connection the path may use: every operator address, every
// client source port, through every table, replies and the handshake's ACK included.
import type { HostSpec, Inventory } from '../model/inventory.js';
import type { RuleSet } from '../model/ruleset.js';
import { managementAddress, operatorsOf, privateOf } from '../inventory/query.js';
import { decidedBy, describeExample, outcomeVerb, whereDecided } from './explain.js';
import type { Flow, FlowLeg, FlowResult } from './flow.js';
import { ANY_CLIENT_PORTS, LINUX_CLIENT_PORTS, OPEN_CONNECT, proveFlow, sourceRange, type FlowClass } from './prove.js';

export type LockoutResult =
  | { ok: true }
  | {
      ok: false;
      /** e.g. `tunnel-1 (192.0.2.10) -> mysql-1 eth1 192.0.2.11:22/tcp NEW` */
      path: string;
      /** The leg that cuts the path; undefined when the inventory has no path to check. */
      leg?: FlowLeg;
      /** `templates/bases/x.v4:7, rules.v4 line 14: -A INPUT -j DROP` or `policy DROP of chain INPUT` */
      cutBy: string;
      /** The counterexample: the packet that does not pass, and the range it stands for. */
      packet?: string;
      /** The tables that packet went through on the host that cut it. */
      hops?: string;
      message: string;
    };

const sshPort = (h: HostSpec): number => h.ssh.port ?? 22;

/** The addresses a host calls its own. */
export function ownAddresses(h: HostSpec): string[] {
  return [h.public, h.private, h.public6, h.private6].filter((a): a is string => a !== undefined);
}

// Made once per host for the whole fleet's checks.
const locals = new WeakMap<HostSpec, ReadonlySet<string>>();

/** A host's own addresses as a set (what the evaluator's HostView needs). */
export function localOf(h: HostSpec): ReadonlySet<string> {
  let set = locals.get(h);
  if (!set) locals.set(h, (set = new Set(ownAddresses(h))));
  return set;
}

function findBastion(inv: Inventory, host: HostSpec): HostSpec | undefined {
  const network = inv.networks.find((n) => n.name === host.network);
  return network && inv.hosts.find((h) => h.name === network.bastion);
}

function isBastion(inv: Inventory, host: HostSpec): boolean {
  return inv.networks.some((n) => n.bastion === host.name);
}

function describePath(f: Flow): string {
  const server = [f.server.name, f.server.iface, `${f.server.addr}:${f.port}/tcp`].filter(Boolean).join(' ');
  return `${f.client.name}${f.client.addr.includes('/') ? '' : ` (${f.client.addr})`} -> ${server} NEW`;
}

/** The connection reaches the SSH server itself: accepted all the way, and not redirected elsewhere. */
const reachesSsh = (r: FlowResult): boolean => r.outcome === 'allow' && r.rewrites.length === 0;

/** Prove one SSH path for its whole class; undefined = it works. */
function checkFlow(f: Flow, cls: FlowClass, what: string): LockoutResult | undefined {
  const proof = proveFlow(f, cls, reachesSsh);
  if (proof.ok) return undefined;
  const r = proof.result;
  const path = describePath(f);
  const cutBy = decidedBy(r);
  const verb = r.rewrites.length > 0 && r.outcome !== 'diverted' ? `would be redirected${r.outcome === 'allow' ? '' : ` and then ${outcomeVerb(r).replace(/^would be /, '')}`}` : outcomeVerb(r);
  const { packet, path: hops } = describeExample(proof);
  const at = r.leg ? ` at ${whereDecided(r)}` : '';
  return {
    ok: false,
    path,
    ...(r.leg ? { leg: r.leg } : {}),
    cutBy,
    ...(packet ? { packet, hops } : {}),
    message: `${what} ${verb}${at}: ${cutBy}${packet ? ` (packet ${packet})` : ''}`,
  };
}

function failSetup(path: string, message: string): LockoutResult {
  return { ok: false, path, cutBy: 'inventory', message };
}

/** A host's rule sets by family (the lockout check proves each path in its own). */
export interface FamilyRuleSets {
  v4: RuleSet;
  v6: RuleSet;
}

const ofFamily = (rs: FamilyRuleSets | undefined, family: 4 | 6): RuleSet | undefined => (rs ? (family === 4 ? rs.v4 : rs.v6) : undefined);

/**
 * Is the management path to `host` open under `rs`? For a bastion: from every
 * operator source to its public address, and out to every host it manages. For any
 * other host: from its bastion's private address (`bastionRs` adds the bastion's
 * legs). Each path is proven in the family of the address fleetfw reaches the host by
 * (managementAddress): IPv4, else IPv6.
 */
export function checkManagementPath(inv: Inventory, host: HostSpec, rs: FamilyRuleSets, bastionRs?: FamilyRuleSets): LockoutResult {
  if (isBastion(inv, host)) {
    const mgmt = managementAddress(inv, host);
    if (!mgmt) return failSetup(host.name, `bastion ${host.name} has no public address to reach it by`);
    const any = mgmt.family === 4 ? '0.0.0.0/0' : '::/0';
    const operators = inv.operators.length > 0 ? operatorsOf(inv, mgmt.family) : [any];
    if (operators.length === 0) {
      return failSetup(host.name, `bastion ${host.name} is reached over IPv${mgmt.family} (${mgmt.address}) but no operator address is IPv${mgmt.family}`);
    }
    for (const cidr of operators) {
      const srcs = sourceRange(cidr, ownAddresses(host));
      if (srcs.length === 0) continue;
      const flow: Flow = {
        family: mgmt.family,
        proto: 'tcp',
        port: sshPort(host),
        client: { name: `operators ${cidr}`, addr: cidr },
        server: { name: host.name, addr: mgmt.address, iface: host.interfaces.public, rs: ofFamily(rs, mgmt.family)!, local: localOf(host) },
      };
      const bad = checkFlow(flow, { srcs, sports: [ANY_CLIENT_PORTS], open: OPEN_CONNECT, mode: 'allow' }, `SSH from operators (${cidr}) to bastion ${host.name}`);
      if (bad) return bad;
    }
    const managed = inv.hosts.filter((h) => h.name !== host.name && findBastion(inv, h)?.name === host.name);
    for (const target of managed) {
      const bad = checkBastionToTarget(inv, host, target, { bastion: rs });
      if (bad) return bad;
    }
    return { ok: true };
  }
  const bastion = findBastion(inv, host);
  if (!bastion) return failSetup(host.name, `${host.name} has no bastion (network "${host.network}")`);
  return checkBastionToTarget(inv, bastion, host, { target: rs, ...(bastionRs ? { bastion: bastionRs } : {}) }) ?? { ok: true };
}

/** SSH from a bastion's private address to a target's, in the target's management family, judged by whichever rule sets are given. */
function checkBastionToTarget(inv: Inventory, bastion: HostSpec, target: HostSpec, rs: { bastion?: FamilyRuleSets; target?: FamilyRuleSets }): LockoutResult | undefined {
  const mgmt = managementAddress(inv, target);
  if (!mgmt) return failSetup(`${bastion.name} -> ${target.name}`, `${target.name} has no private address for the management path`);
  const from = privateOf(bastion, mgmt.family);
  if (!from) {
    return failSetup(`${bastion.name} -> ${target.name}`, `${target.name} is reached over IPv${mgmt.family} (${mgmt.address}) but bastion ${bastion.name} has no private IPv${mgmt.family} address to reach it from`);
  }
  const b = ofFamily(rs.bastion, mgmt.family);
  const t = ofFamily(rs.target, mgmt.family);
  const flow: Flow = {
    family: mgmt.family,
    proto: 'tcp',
    port: sshPort(target),
    client: { name: bastion.name, addr: from, iface: bastion.interfaces.private, local: localOf(bastion), ...(b ? { rs: b } : {}) },
    server: { name: target.name, addr: mgmt.address, iface: target.interfaces.private, local: localOf(target), ...(t ? { rs: t } : {}) },
  };
  return checkFlow(flow, { sports: [LINUX_CLIENT_PORTS], open: OPEN_CONNECT, mode: 'allow' }, `SSH from bastion ${bastion.name} to ${target.name}`);
}
