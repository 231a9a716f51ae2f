// A listening socket on a host, as `ss -ltnup` reports it.

export interface Listener {
  proto: 'tcp' | 'udp';
  /** As ss prints it without brackets: `0.0.0.0`, `*` (dual stack), `::`, `192.0.2.14`. */
  address: string;
  port: number;
  /** `%eth1` after the address: the socket is bound to that interface. */
  device?: string;
  /** First process name from ss -p, e.g. `sshd`. */
  process?: string;
  pid?: number;
}
