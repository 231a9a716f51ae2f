// A running lab as tests and commands use it: run a command in a node, listen
// on a port, probe from one node to another, reboot a host, restart its sshd,
// stop the lab. Every entry into a namespace goes through its checked anchor.
import { spawn } from 'node:child_process';
import { existsSync, readlinkSync, statSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { isIP, isIPv6 } from 'node:net';
import { join } from 'node:path';
import { LabError } from '../errors.js';
import { isListening, isSshdOf, nsPrefix, startSshd } from './daemons.js';
import { NETNS_DIR } from './netns.js';
import { runProbe, type ProbeProto, type ProbeResult } from './probe.js';
import { isAlive, runCommand, sleep, type RunResult } from './proc.js';
import { hostDirOf, OPERATOR, type LabHostSpec, type LabOperator, type Side } from './spec.js';
import { liveLabs, saveState, teardown, track, type LabState, type NodeState } from './state.js';

export interface ExecOptions {
  input?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
}

export interface ProbeOptions {
  /** Default 1500. */
  timeoutMs?: number;
  /** Picks the address when `toAddr` is a lab name; must match when it is an address. */
  family?: 4 | 6;
}

export interface Lab {
  dir: string;
  prefix: string;
  /** ed25519 private key (no passphrase) authorised for root and the non-root user on every host. */
  identityFile: string;
  /** Every host's key under its name and its addresses (some entries hashed). */
  knownHostsFile: string;
  /** OpenSSH client config: HostName/User/Port/IdentityFile per host. */
  sshConfigFile: string;
  /** ssh-agent holding the identity (lives in the operator namespace). */
  agentSocket?: string;
  /** Where the operator (OPERATOR) sits on the public side. */
  operator: LabOperator;
  /** Per side, the subnets on its bridge (derived from the addresses, see addressing.ts). */
  subnets: Record<Side, string[]>;
  netnsOf(node: string): string;
  /** A host's folder in the lab dir: sshd_config, sshd.log, its /etc/iptables and /var/lib/fleetfw. */
  hostDir(host: string): string;
  exec(node: string, argv: string[], opts?: ExecOptions): Promise<RunResult>;
  listen(node: string, proto: 'tcp' | 'udp', port: number, addr?: string): Promise<void>;
  probe(from: string, toAddr: string, proto: ProbeProto, port?: number, opts?: ProbeOptions): Promise<ProbeResult>;
  reboot(host: string): Promise<void>;
  restartSshd(host: string): Promise<void>;
  stop(): Promise<void>;
}

// Fixed text (no inventory values): a power cycle leaves no table of either
// family (nft flush ruleset; without nft, each table emptied and then deleted by a
// restore that names it with nothing in it, which iptables-nft does), then the
// persisted files load as netfilter-persistent loads them at boot: ipsets first.
const REBOOT_SCRIPT = [
  'set -e',
  'if command -v nft >/dev/null 2>&1; then',
  '  nft flush ruleset',
  'else',
  '  for cmd in iptables ip6tables; do',
  '    tables=$($cmd-save | sed -n "s/^\\*//p")',
  '    for t in $tables; do',
  '      for c in $($cmd-save -t "$t" | sed -n "s/^:\\([^ ]*\\) \\(ACCEPT\\|DROP\\) .*/\\1/p"); do $cmd -t "$t" -P "$c" ACCEPT; done',
  '      $cmd -t "$t" -F',
  '      $cmd -t "$t" -X',
  '    done',
  '    for t in $tables; do printf "*%s\\nCOMMIT\\n" "$t"; done | $cmd-restore',
  '    case $($cmd -V) in',
  '      *nf_tables*) if $cmd-save | grep -q "^\\*"; then echo "$cmd: tables left after the flush" >&2; exit 1; fi ;;',
  '    esac',
  '  done',
  'fi',
  'if command -v ipset >/dev/null 2>&1; then ipset destroy; fi',
  'netfilter-persistent start',
].join('\n');

export class LabHandle implements Lab {
  readonly dir: string;
  readonly prefix: string;
  readonly identityFile: string;
  readonly knownHostsFile: string;
  readonly sshConfigFile: string;
  readonly agentSocket?: string;
  readonly operator: LabOperator;
  readonly subnets: Record<Side, string[]>;

  constructor(private readonly state: LabState) {
    this.dir = state.dir;
    this.prefix = state.prefix;
    this.identityFile = state.identityFile;
    this.knownHostsFile = state.knownHostsFile;
    this.sshConfigFile = state.sshConfigFile;
    if (state.agentSocket) this.agentSocket = state.agentSocket;
    this.operator = state.spec.operator;
    // A state written before subnets were recorded has none to tell.
    this.subnets = state.subnets ?? { public: [], private: [] };
  }

  private node(name: string): NodeState {
    const n = this.state.nodes[name];
    if (!n) throw new LabError(`lab ${this.prefix}: no host, external or operator named ${JSON.stringify(name)}`);
    return n;
  }

  private hostSpec(name: string): LabHostSpec {
    const h = this.state.spec.hosts.find((x) => x.name === name);
    if (!h) throw new LabError(`lab ${this.prefix}: ${JSON.stringify(name)} is not a host`);
    return h;
  }

  /**
   * The anchor pid, checked to still sit in the node's namespace: a stale or
   * reused pid must never let a command (iptables!) run in the machine's own namespace.
   */
  private anchor(name: string): number {
    const n = this.node(name);
    let ok: boolean;
    try {
      ok = n.anchorPid > 1 && readlinkSync(`/proc/${n.anchorPid}/ns/net`) === `net:[${statSync(`${NETNS_DIR}/${n.ns}`).ino}]`;
    } catch {
      ok = false;
    }
    if (!ok) throw new LabError(`lab ${this.prefix}: ${name}'s namespace ${n.ns} is gone (lab stopped?)`);
    return n.anchorPid;
  }

  netnsOf(node: string): string {
    return this.node(node).ns;
  }

  hostDir(host: string): string {
    this.hostSpec(host);
    return hostDirOf(this.dir, host);
  }

  async exec(node: string, argv: string[], opts: ExecOptions = {}): Promise<RunResult> {
    return runCommand([...nsPrefix(this.anchor(node)), ...argv], opts);
  }

  async listen(node: string, proto: 'tcp' | 'udp', port: number, addr?: string): Promise<void> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new LabError(`listen: bad port ${port}`);
    if (addr !== undefined && !isIP(addr)) throw new LabError(`listen: bad address ${JSON.stringify(addr)}`);
    const anchor = this.anchor(node);
    // Something listens there already (ours, from an earlier call): nothing to start.
    if (isListening(anchor, proto, port)) return;
    const fam = addr === undefined ? '6' : isIPv6(addr) ? '6' : '4';
    const opts = [String(port), ...(addr === undefined ? ['ipv6only=0'] : [`bind=${fam === '6' ? `[${addr}]` : addr}`]), 'reuseaddr', 'fork'];
    // tcp: every connection is answered "ok\n"; udp: every datagram is echoed back.
    const args =
      proto === 'tcp'
        ? [`TCP${fam}-LISTEN:${opts.join(',')}`, 'EXEC:/bin/echo ok']
        : [`UDP${fam}-RECVFROM:${opts.join(',')}`, 'PIPE'];
    const argv = [...nsPrefix(anchor, false), 'socat', ...args];
    const child = spawn(argv[0] as string, argv.slice(1), { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    track(this.dir, child);
    let err = '';
    let exited: number | null | undefined;
    child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
    child.once('exit', (code) => (exited = code));
    const started = Date.now();
    while (!isListening(anchor, proto, port)) {
      if (exited !== undefined) throw new LabError(`${node}: listener ${proto}/${port} exited (${exited}): ${err.trim()}`);
      if (Date.now() - started > 10_000) {
        child.kill('SIGKILL');
        throw new LabError(`${node}: listener ${proto}/${port} not up within 10 s: ${err.trim()}`);
      }
      await sleep(10);
    }
    child.stderr.destroy();
    child.unref();
  }

  async probe(from: string, toAddr: string, proto: ProbeProto, port?: number, opts: ProbeOptions = {}): Promise<ProbeResult> {
    if (proto !== 'icmp' && (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535)) {
      throw new LabError(`probe ${proto}: a port 1-65535 is needed`);
    }
    const addr = this.resolveAddress(toAddr, opts.family);
    return runProbe(nsPrefix(this.anchor(from), false), addr, proto, proto === 'icmp' ? undefined : port, opts.timeoutMs ?? 1500);
  }

  /** An address as given, or a lab name's first address of the family (public before private). */
  private resolveAddress(to: string, family: 4 | 6 | undefined): string {
    if (isIP(to)) {
      if (family !== undefined && isIP(to) !== family) throw new LabError(`probe: ${to} is not an IPv${family} address`);
      return to;
    }
    const h = this.state.spec.hosts.find((x) => x.name === to);
    const e = this.state.spec.externals.find((x) => x.name === to);
    const op = to === OPERATOR ? this.state.spec.operator : undefined;
    const cands =
      family === 6
        ? [h?.public6, h?.private6, e?.address6, op?.address6]
        : [h?.public, h?.private, e?.address, op?.address];
    const a = cands.find((x) => x !== undefined);
    if (!a) throw new LabError(`probe: no IPv${family ?? 4} address for ${JSON.stringify(to)}`);
    return a;
  }

  async reboot(host: string): Promise<void> {
    this.hostSpec(host);
    const r = await this.exec(host, ['sh', '-c', REBOOT_SCRIPT], { timeoutMs: 30_000 });
    await appendFile(join(this.hostDir(host), 'reboot.log'), `--- ${new Date().toISOString()} exit ${r.code}\n${r.stdout}${r.stderr}`).catch(() => undefined);
    if (r.code !== 0) throw new LabError(`${host}: simulated reboot failed (exit ${r.code}):\n${(r.stdout + r.stderr).trim()}`);
  }

  async restartSshd(host: string): Promise<void> {
    const h = this.hostSpec(host);
    const node = this.node(host);
    const anchor = this.anchor(host);
    // Only the listener goes; open sessions survive, as with `systemctl restart ssh`.
    // The recorded pid may be dead and reused by now (pid_max can be 32768): kill it
    // only while it is still an sshd in this host's network namespace.
    const ours = (pid: number): boolean => isAlive(pid) && isSshdOf(pid, anchor);
    if (node.sshdPid !== undefined && ours(node.sshdPid)) {
      process.kill(node.sshdPid, 'SIGTERM');
      const t0 = Date.now();
      while (ours(node.sshdPid) && Date.now() - t0 < 3000) await sleep(10);
      if (ours(node.sshdPid)) process.kill(node.sshdPid, 'SIGKILL');
    }
    node.sshdPid = await startSshd(this.dir, this.hostDir(host), anchor, host, h.sshPort);
    saveState(this.state);
  }

  async stop(): Promise<void> {
    if (!existsSync(this.dir) && !liveLabs.has(this.dir)) return;
    await teardown(this.state);
  }
}
