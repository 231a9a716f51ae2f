// Building a lab from its state: keys and per-host files on disk, the
// namespaces, the switch (a wan and a lan bridge), every node's addresses and
// routes, the anchors, the sshds, the agent, and the client's known_hosts and
// ssh config.
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import type { Addressing, LabInterface } from './addressing.js';
import { startAgent, startAnchor, startSshd } from './daemons.js';
import { addNamespaces, runIpBatch } from './netns.js';
import { mapLimit, runCommand } from './proc.js';
import { hostDirOf, OPERATOR, type LabHostSpec } from './spec.js';
import { generateKey, prepareUserAccount, renderClientConfig, renderKnownHosts, renderSshdConfig, type KnownHostInput } from './sshd.js';
import type { LabState, NodeState } from './state.js';

/**
 * Where each host sees the lab dir (bind-mounted in its private mount
 * namespace): sshd reads authorized_keys as the login user, and a non-root user
 * could not reach them through a lab dir whose parents others cannot enter.
 */
export const LAB_MOUNT = '/run/fleetfw-lab';

export async function buildLab(state: LabState, addressing: Addressing, concurrency: number): Promise<void> {
  const { spec, dir } = state;
  // Shared mountpoints: sshd's privsep dir, the state dir each host gets privately, the lab dir's place.
  for (const d of ['/run/sshd', '/var/lib/fleetfw', '/run/fleetfw', LAB_MOUNT]) await mkdir(d, { recursive: true });

  const identityPub = await generateKey(state.identityFile, 'fleetfw-lab');
  const authorizedKeys = join(dir, 'authorized_keys');
  await writeFile(authorizedKeys, identityPub + '\n');
  // Explicit modes throughout: a umask of 077 must not lock a non-root lab user out.
  await chmod(authorizedKeys, 0o644);

  // Per-host files first (pure disk work), while namespaces are created.
  const preparedP = mapLimit(spec.hosts, concurrency, (h) => prepareHostDir(dir, h));
  const all = Object.values(state.nodes);
  await addNamespaces([state.switchNs, ...all.map((n) => n.ns)]);
  await wireSwitch(state);
  const prepared = await preparedP;

  const hostIndex = new Map(spec.hosts.map((h, i) => [h.name, i]));
  const neighbours = staticNeighbours(spec.hosts);
  await mapLimit(Object.entries(state.nodes), concurrency, async ([name, node]) => {
    const ifaces = addressing.interfaces[name] ?? [];
    if (node.kind === 'host') {
      const i = hostIndex.get(name) as number;
      const h = spec.hosts[i] as LabHostSpec;
      await runIpBatch([...interfaceLines([h.interfaces.public, h.interfaces.private], ifaces), ...(neighbours.get(h.name) ?? [])], node.ns);
      node.anchorPid = await startAnchor(dir, node.ns, name, [[dir, LAB_MOUNT], ...(prepared[i] as PreparedHost).binds]);
      node.sshdPid = await startSshd(dir, hostDirOf(dir, name), node.anchorPid, name, h.sshPort);
    } else {
      await runIpBatch(interfaceLines(['eth0'], ifaces), node.ns);
      node.anchorPid = await startAnchor(dir, node.ns, name === OPERATOR ? 'operator' : name, []);
    }
  });

  state.agentSocket = await startAgent(dir, (state.nodes[OPERATOR] as NodeState).anchorPid, state.identityFile);
  await writeClientFiles(state, prepared);
}

async function writeClientFiles(state: LabState, prepared: PreparedHost[]): Promise<void> {
  const { hosts } = state.spec;
  const anyBastion = hosts.some((h) => h.bastion);
  const known: KnownHostInput[] = hosts.map((h, i) => {
    const addrs = [h.public, h.private, h.public6, h.private6].filter((a): a is string => a !== undefined);
    const [first, ...rest] = addrs;
    const publicKey = (prepared[i] as PreparedHost).publicKey;
    // Odd hosts get even their name hashed: parsers must cope with both forms.
    return i % 2 === 0
      ? { name: h.name, port: h.sshPort, plain: [h.name, ...(first ? [first] : [])], hashed: rest, publicKey }
      : { name: h.name, port: h.sshPort, plain: first ? [first] : [], hashed: [h.name, ...rest], publicKey };
  });
  await writeFile(state.knownHostsFile, renderKnownHosts(known));
  const clientHosts = hosts.map((h) => ({
    name: h.name,
    hostName: (!anyBastion || h.bastion ? (h.public ?? h.public6 ?? h.private ?? h.private6) : (h.private ?? h.private6 ?? h.public ?? h.public6)) as string,
    user: h.user,
    port: h.sshPort,
  }));
  await writeFile(state.sshConfigFile, renderClientConfig(clientHosts, state.identityFile, state.knownHostsFile));
}

/**
 * Past this many hosts, each bastion and every other lab host know each other's
 * private addresses as permanent neighbours. The kernel's neighbour tables are shared
 * by every namespace, with 1,024 learnt entries by default: a bastion that reaches
 * 1,000 hosts, and each of them answering it, would overflow them. Permanent entries
 * are not counted (and smaller labs keep learning theirs, as real hosts do).
 */
export const STATIC_NEIGHBOURS_FROM = 200;

/** The private interface's MAC of lab host `i` (set when neighbours are static). */
const privateMac = (i: number): string => `02:f1:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}:01`;

/** Per host, `ip -batch` lines for its permanent neighbours (none for a small lab). */
export function staticNeighbours(hosts: readonly LabHostSpec[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (hosts.length <= STATIC_NEIGHBOURS_FROM) return out;
  const bastions = hosts.map((h, i) => ({ h, i })).filter(({ h }) => h.bastion);
  const line = (addr: string, i: number, dev: string) => `neigh replace ${addr} lladdr ${privateMac(i)} dev ${dev} nud permanent`;
  const privates = (h: LabHostSpec) => [h.private, h.private6].filter((a): a is string => a !== undefined);
  const of = (name: string): string[] => {
    let l = out.get(name);
    if (!l) out.set(name, (l = []));
    return l;
  };
  hosts.forEach((h, i) => {
    if (h.bastion) return;
    for (const b of bastions) {
      of(h.name).push(...privates(b.h).map((a) => line(a, b.i, h.interfaces.private)));
      of(b.h.name).push(...privates(h).map((a) => line(a, i, b.h.interfaces.private)));
    }
  });
  return out;
}

/** `ip -batch` lines for a node: links up, then each address with its prefix length, then the on-link routes. */
export function interfaceLines(links: string[], ifaces: LabInterface[]): string[] {
  const lines = ['link set lo up', ...links.map((l) => `link set ${l} up`)];
  for (const i of ifaces) {
    // nodad: an IPv6 address usable at once instead of after duplicate-address detection.
    for (const a of i.addresses) lines.push(`addr add ${a} dev ${i.name}${a.includes(':') ? ' nodad' : ''}`);
  }
  for (const i of ifaces) for (const r of i.routes) lines.push(`route add ${r} dev ${i.name}`);
  return lines;
}

async function wireSwitch(state: LabState): Promise<void> {
  const sw = state.switchNs;
  // Bridged frames need not cross the switch's (empty) netfilter, and the switch needs no IPv6 of its own.
  await runCommand(['ip', 'netns', 'exec', sw, 'sysctl', '-q', '-w', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.all.disable_ipv6=1']);
  const lines = ['link add wan type bridge forward_delay 0 stp_state 0 mcast_snooping 0', 'link add lan type bridge forward_delay 0 stp_state 0 mcast_snooping 0', 'link set wan up', 'link set lan up'];
  // Switch-side names by index: inventory names may be long or carry characters links may not.
  state.spec.hosts.forEach((h, i) => {
    const ns = (state.nodes[h.name] as NodeState).ns;
    lines.push(`link add h${i}w type veth peer name ${h.interfaces.public} netns ${ns}`, `link set h${i}w master wan up`);
    const mac = state.spec.hosts.length > STATIC_NEIGHBOURS_FROM ? ` address ${privateMac(i)}` : '';
    lines.push(`link add h${i}l type veth peer name ${h.interfaces.private}${mac} netns ${ns}`, `link set h${i}l master lan up`);
  });
  state.spec.externals.forEach((e, i) => {
    const ns = (state.nodes[e.name] as NodeState).ns;
    lines.push(`link add x${i} type veth peer name eth0 netns ${ns}`, `link set x${i} master ${e.side === 'public' ? 'wan' : 'lan'} up`);
  });
  lines.push(`link add op type veth peer name eth0 netns ${(state.nodes[OPERATOR] as NodeState).ns}`, 'link set op master wan up');
  await runIpBatch(lines, sw);
}

interface PreparedHost {
  publicKey: string;
  binds: Array<[string, string]>;
}

async function prepareHostDir(dir: string, h: LabHostSpec): Promise<PreparedHost> {
  const hd = hostDirOf(dir, h.name);
  await mkdir(join(hd, 'etc-iptables'), { recursive: true });
  await mkdir(join(hd, 'state'), { recursive: true, mode: 0o700 });
  // The host script's scratch files: each host its own, as each server has its own /run.
  await mkdir(join(hd, 'run-fleetfw'), { recursive: true, mode: 0o700 });
  for (let d = hd; d !== dir; d = dirname(d)) await chmod(d, 0o755);
  // A fresh iptables-persistent install leaves empty rules files; netfilter-persistent loads them as no-ops.
  await writeFile(join(hd, 'etc-iptables', 'rules.v4'), '');
  await writeFile(join(hd, 'etc-iptables', 'rules.v6'), '');
  await writeFile(join(hd, 'hosts'), `127.0.0.1\tlocalhost\n127.0.1.1\t${h.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n`);
  for (const f of ['etc-iptables/rules.v4', 'etc-iptables/rules.v6', 'hosts']) await chmod(join(hd, f), 0o644);
  const hostKey = join(hd, 'ssh_host_ed25519_key');
  const publicKey = await generateKey(hostKey, `root@${h.name}`);
  await writeFile(
    join(hd, 'sshd_config'),
    renderSshdConfig({ port: h.sshPort, hostKey, pidFile: join(hd, 'sshd.pid'), authorizedKeysFile: join(LAB_MOUNT, 'authorized_keys') }),
  );
  const binds: Array<[string, string]> = [
    [join(hd, 'etc-iptables'), '/etc/iptables'],
    [join(hd, 'state'), '/var/lib/fleetfw'],
    [join(hd, 'run-fleetfw'), '/run/fleetfw'],
    [join(hd, 'hosts'), '/etc/hosts'],
  ];
  if (h.user !== 'root') {
    const homeInHost = join(LAB_MOUNT, relative(dir, hd), `home-${h.user}`);
    binds.push(...(await prepareUserAccount(h.user, hd, homeInHost)).binds);
  }
  return { publicKey, binds };
}
