// ICMP echo as fleetfw's probes send it: identifier, sequence, a fixed payload,
// and what an answer to it says (reply, an error quoting it, or nothing of ours).

export type EchoAnswer = 'open' | 'refused' | 'unreachable';

const ECHO_PAYLOAD = Buffer.from('fleetfw-probe');
/** The identifier of the lab's one-shot probes (sequence 1); the hosts' probes use their probe's id and a sequence drawn per run. */
const LAB_IDENT = 0x6666;

export function buildEchoRequest(v6: boolean, ident = LAB_IDENT, seq = 1): Buffer {
  const b = Buffer.concat([Buffer.from([v6 ? 128 : 8, 0, 0, 0, ident >> 8, ident & 0xff, seq >> 8, seq & 0xff]), ECHO_PAYLOAD]);
  // The kernel fills in the ICMPv6 checksum itself; ICMPv4 needs ours.
  if (!v6) b.writeUInt16BE(inetChecksum(b), 2);
  return b;
}

function inetChecksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += ((b[i] ?? 0) << 8) + (b[i + 1] ?? 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

/**
 * Finds the answer to our echo request in raw-socket output. The socket also
 * sees unrelated ICMP (neighbour discovery, our own request on loopback) and
 * reads may merge datagrams, so we search for our identifier and payload: in an
 * echo reply it follows the reply header; in an error it is quoted after the
 * error header and the original IP header.
 */
export function classifyIcmp(data: Buffer, v6: boolean, ident = LAB_IDENT, seq = 1): EchoAnswer | undefined {
  const marker = Buffer.concat([Buffer.from([ident >> 8, ident & 0xff, seq >> 8, seq & 0xff]), ECHO_PAYLOAD]);
  const ipHeader = v6 ? 40 : 20;
  for (let p = data.indexOf(marker); p >= 0; p = data.indexOf(marker, p + 1)) {
    const type = data[p - 4];
    if (type === (v6 ? 129 : 0)) return 'open';
    if (type !== (v6 ? 128 : 8)) continue;
    const err = p - 4 - ipHeader - 8;
    if (err < 0) continue;
    const errType = data[err];
    const code = data[err + 1] ?? 0;
    // Host/net unreachable (v4 codes 0,1; v6 codes 0,3) means no path; the rest (port, admin-prohibited…) is a REJECT.
    if (!v6 && errType === 3) return code === 0 || code === 1 ? 'unreachable' : 'refused';
    if (v6 && errType === 1) return code === 0 || code === 3 ? 'unreachable' : 'refused';
  }
  return undefined;
}

