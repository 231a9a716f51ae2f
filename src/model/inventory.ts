// The validated inventory: plain values, produced only by src/inventory/load.ts.
// Every other stage trusts these shapes: addresses are canonical, names are
// checked tokens, and each entity remembers where it was written.

export interface SourcePos {
  file: string;
  line: number; // 1-based
  col: number; // 1-based
}

export type Side = 'public' | 'private';
export type Family = 4 | 6;

export interface Interfaces {
  public: string;
  private: string;
}

export interface SshSettings {
  /** Login user; undefined = let ~/.ssh/config (or the local user) decide. */
  user?: string;
  /** Port; undefined = ~/.ssh/config or 22. */
  port?: number;
  /** Private key file; undefined = ~/.ssh/config IdentityFile or ssh-agent. */
  identityFile?: string;
  /** Run host-side scripts through `sudo -n` (required for non-root users). */
  sudo: boolean;
}

/** A var is a checked token or a list of them (see inventory/tokens.ts). */
export type VarValue = string | string[];

export interface HostSpec {
  name: string;
  /** IPv4 addresses (canonical dotted quad). */
  public?: string;
  private?: string;
  /** IPv6 addresses (canonical, compressed). */
  public6?: string;
  private6?: string;
  interfaces: Interfaces;
  /** Roles select templates (templates/roles/<role>.v4|.v6). */
  roles: string[];
  /** Every group this host is in: its roles, its extra groups, and `all`. Sorted. */
  groups: string[];
  /** Base template (templates/bases/<base>.v4|.v6). */
  base: string;
  /** The private network it sits on; selects its bastion. */
  network: string;
  ssh: SshSettings;
  vars: Record<string, VarValue>;
  pos: SourcePos;
}

export interface NetworkSpec {
  name: string;
  /** Host name of the bastion through which every other host of this network is reached. */
  bastion: string;
  pos: SourcePos;
}

/** A machine outside the inventory that intents and the lab talk about (`internet`, `intruder`). */
export interface ExternalSpec {
  name: string;
  address: string;
  address6?: string;
  side: Side;
  pos?: SourcePos;
}

export type Proto = 'tcp' | 'udp' | 'icmp';
export type Expect = 'allow' | 'deny' | 'reject' | 'drop';

/** An expected flow, e.g. `wordpress -> mysql:3306 allow`. */
export interface IntentSpec {
  /** As written, for messages. */
  text: string;
  /** Host, group or external name. */
  from: string;
  to: string;
  proto: Proto;
  /** Destination port for tcp/udp; undefined for icmp (echo-request). */
  port?: number;
  expect: Expect;
  family: Family;
  /** Which side of `to` is addressed; undefined = decided from the endpoints. */
  via?: Side;
  pos: SourcePos;
}

export interface Settings {
  /** Auto-rollback window, seconds. */
  window: number;
  /** Generations kept on each host. */
  generations: number;
  /** Install iptables-persistent when missing. */
  installPersistent: boolean;
  /** Path to known_hosts; undefined = ~/.ssh/known_hosts. */
  knownHosts?: string;
  /** A group reference with more members than this becomes one ipset match; undefined = the default (8). */
  ipsetThreshold?: number;
}

/** A health probe run after the load and before confirming: `from` must reach the host on `port`. */
export interface HealthProbe {
  port: number;
  /** A host name; undefined = the host's bastion. */
  from?: string;
  pos: SourcePos;
}

export interface Inventory {
  /** Absolute path of the inventory file. */
  file: string;
  /** Absolute path of the templates folder. */
  templatesDir: string;
  /** Sources allowed to SSH to a bastion's public interface. */
  operators: string[];
  networks: NetworkSpec[];
  /** Sorted by name. */
  hosts: HostSpec[];
  externals: ExternalSpec[];
  intents: IntentSpec[];
  /** Chain-name patterns of other software (Docker, fail2ban) that fleetfw preserves. */
  preserve: string[];
  /** Role → probes that must pass before a host with that role is confirmed. */
  health: Record<string, HealthProbe[]>;
  settings: Settings;
}
