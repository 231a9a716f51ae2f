// Parse `ss -ltnup` (the host script's `listeners` verb and the facts'
// listeners section) into Listener values.
import type { Listener } from '../model/listener.js';

/** Lines of `ss -ltnup`; header, blank and unparseable lines are skipped. */
export function parseSsListeners(text: string): Listener[] {
  const out: Listener[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const proto = f[0];
    if ((proto !== 'tcp' && proto !== 'udp') || f.length < 5) continue;
    const local = splitEndpoint(f[4]!);
    if (!local) continue;
    const l: Listener = { proto, address: local.address, port: local.port };
    if (local.device) l.device = local.device;
    const users = /users:\(\("([^"]+)",pid=(\d+)/.exec(line);
    if (users) {
      l.process = users[1]!;
      l.pid = Number(users[2]);
    }
    out.push(l);
  }
  // Dual-stack daemons show up once per family and per fork: keep one of each.
  const seen = new Set<string>();
  return out.filter((l) => {
    const key = `${l.proto} ${l.address} ${l.device ?? ''} ${l.port}`;
    return seen.has(key) ? false : (seen.add(key), true);
  });
}

/** `0.0.0.0:22`, `*:80`, `[::]:22`, `127.0.0.53%lo:53`, `[fe80::1]%eth0:546` */
function splitEndpoint(s: string): { address: string; port: number; device?: string } | undefined {
  const colon = s.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const port = Number(s.slice(colon + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  let host = s.slice(0, colon);
  let device: string | undefined;
  const pct = host.lastIndexOf('%');
  if (pct > 0 && !host.slice(pct).includes(']')) {
    device = host.slice(pct + 1);
    host = host.slice(0, pct);
  }
  const address = host.replace(/^\[(.*)\]$/, '$1');
  return device ? { address, port, device } : { address, port };
}
