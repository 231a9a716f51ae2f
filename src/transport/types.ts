// What the rest of fleetfw knows of a transport: sessions that run commands on
// one host. The SSH implementation is ssh.ts; tests use a scripted fake.
import { ExitCode, FleetError } from '../errors.js';
import type { Duplex, Readable } from 'node:stream';

export interface ExecResult {
  code: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  stdin?: string | Buffer;
  timeoutMs?: number;
}

/** A command left running: its stdin and stdout, stderr apart; 'close' when the channel ends. */
export interface HostStream extends Duplex {
  readonly stderr: Readable;
  /** Close the channel (the remote process then gets EOF and SIGPIPE, as with a lost session). */
  close(): void;
}

export interface HostSession {
  readonly host: string;
  exec(command: string, opts?: ExecOptions): Promise<ExecResult>;
  /** Start `command` and hand over its streams (for a conversation with one process). */
  spawn(command: string): Promise<HostStream>;
  /** Can this host open a TCP connection to address:port right now? (a direct-tcpip channel, closed at once) */
  connectTcp(address: string, port: number, timeoutMs: number): Promise<boolean>;
  /**
   * Have the host's sshd listen on a loopback port for this connection (remote
   * forwarding, port chosen by sshd) and answer every connection to it with
   * `line`: a process on the host that reads the line back has proved that this
   * connection carries data both ways. Undefined when sshd refuses to forward.
   */
  answerOnLoopback(line: string, timeoutMs: number): Promise<number | undefined>;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Overrides {@link TransportOptions.connectRetries} for this open. */
  retries?: number;
}

export interface Transport {
  /** A NEW TCP+SSH connection each call (to a target: a new channel through the shared bastion connection). */
  open(host: string, opts?: OpenOptions): Promise<HostSession>;
  close(): Promise<void>;
}

export type TransportHop = 'bastion' | 'target';
/** `config`: the host's SSH settings refuse it (ssh config, see ssh-settings.ts): nothing was sent to it. */
export type TransportReason = 'hostkey-unknown' | 'hostkey-changed' | 'auth' | 'timeout' | 'connect' | 'channel' | 'exec' | 'config';

export class TransportError extends FleetError {
  constructor(
    message: string,
    readonly host: string,
    readonly hop: TransportHop,
    readonly reason: TransportReason,
    /** Transient failures (connect, channel open) are retried; host keys and auth never. */
    readonly retryable = false,
  ) {
    super(message, ExitCode.hostsFailed);
  }
}
