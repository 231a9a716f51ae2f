// verify --live's host side, run as the host script runs it, in a throwaway network
// namespace with real netfilter: listeners (ours, a service's, a port taken on
// another address), then probes with every tool the script can fall back on, each
// verdict read back as fleetfw reads it, and nothing left behind.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseProbeAnswers, type ProbeSpec } from './live-probes.js';
import { hostScript } from './run.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'fleetfw-live-probe-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const PROBES: Array<ProbeSpec & { want: Record<string, string> }> = [
  { id: 1, proto: 'tcp', addr: '127.0.0.1', port: 80, timeoutMs: 800, want: { perl: 'open', socat: 'open', bash: 'open' } },
  { id: 2, proto: 'tcp', addr: '192.0.2.1', port: 81, timeoutMs: 800, want: { perl: 'timeout', socat: 'timeout', bash: 'timeout' } },
  { id: 3, proto: 'tcp', addr: '192.0.2.1', port: 82, timeoutMs: 2500, want: { perl: 'unreachable', socat: 'unreachable', bash: 'unreachable' } },
  { id: 4, proto: 'tcp', addr: '192.0.2.1', port: 83, timeoutMs: 800, want: { perl: 'refused', socat: 'refused', bash: 'refused' } },
  { id: 5, proto: 'udp', addr: '127.0.0.1', port: 90, timeoutMs: 800, want: { perl: 'open', socat: 'open', bash: 'error' } },
  { id: 6, proto: 'udp', addr: '192.0.2.1', port: 91, timeoutMs: 800, want: { perl: 'timeout', socat: 'timeout', bash: 'error' } },
  { id: 7, proto: 'udp', addr: '192.0.2.1', port: 92, timeoutMs: 800, want: { perl: 'refused', socat: 'refused', bash: 'error' } },
  { id: 8, proto: 'icmp', addr: '127.0.0.1', timeoutMs: 800, want: { perl: 'open', socat: 'error', bash: 'error' } },
  { id: 9, proto: 'icmp', addr: '192.0.2.1', timeoutMs: 800, want: { perl: 'timeout', socat: 'error', bash: 'error' } },
  { id: 10, proto: 'icmp', addr: '::1', timeoutMs: 800, want: { perl: 'open', socat: 'error', bash: 'error' } },
  { id: 11, proto: 'tcp', addr: '2001:db8::1', port: 80, timeoutMs: 800, want: { perl: 'open', socat: 'open', bash: 'open' } },
  { id: 12, proto: 'tcp', addr: '192.0.2.1', port: 85, timeoutMs: 800, want: { perl: 'open', socat: 'open', bash: 'open' } },
  // No route from the source: nothing left it, so it tells nothing of the destination.
  { id: 13, proto: 'tcp', addr: '198.51.100.1', port: 80, timeoutMs: 800, want: { perl: 'error', socat: 'error', bash: 'error' } },
];

// Each tool's run: a namespace of its own, the listeners up, the probes, the listeners ended.
const RUN = `
set -eu
ip link set lo up
ip addr add 192.0.2.1/24 dev lo
ip -6 addr add 2001:db8::1/128 dev lo nodad
iptables -A INPUT -p tcp --dport 81 -j DROP
iptables -A INPUT -p tcp --dport 82 -j REJECT --reject-with icmp-admin-prohibited
iptables -A INPUT -p udp --dport 91 -j DROP
iptables -A INPUT -p icmp --icmp-type echo-request -s 192.0.2.1 -d 192.0.2.1 -j DROP
# A service on every address of port 85, and one on 127.0.0.1 only of port 86.
# An IPv6-only wildcard on 8080 and an IPv4 wildcard on 8081: neither covers the other family.
# Each with its own deadline, so that none outlives an interrupted run.
timeout 60 socat TCP4-LISTEN:85,reuseaddr,fork SYSTEM:true </dev/null >/dev/null 2>&1 & svc1=$!
timeout 60 socat TCP4-LISTEN:86,bind=127.0.0.1,reuseaddr,fork SYSTEM:true </dev/null >/dev/null 2>&1 & svc2=$!
timeout 60 socat TCP6-LISTEN:8080,ipv6only=1,reuseaddr,fork SYSTEM:true </dev/null >/dev/null 2>&1 & svc3=$!
timeout 60 socat TCP4-LISTEN:8081,reuseaddr,fork SYSTEM:true </dev/null >/dev/null 2>&1 & svc4=$!
trap 'kill "$svc1" "$svc2" "$svc3" "$svc4" 2>/dev/null || true' EXIT
for p in 85 86 8080 8081; do while ! ss -Hltn "sport = :$p" | grep -q .; do sleep 0.02; done; done
mkfifo "$FIFOS/in" "$FIFOS/out"
sh -c "$HOST" fleetfw-host listen 60 <"$FIFOS/in" >"$FIFOS/out" & lpid=$!
exec 3>"$FIFOS/in" 4<"$FIFOS/out"
printf '%s\\n' '1 tcp 127.0.0.1 80' '2 udp 127.0.0.1 90' '3 tcp 2001:db8::1 80' '4 tcp 192.0.2.1 85' '5 tcp 192.0.2.1 86' '6 tcp 127.0.0.1 80' '7 tcp 1.2.3.4;id 80' '8 tcp 127.0.0.1 8080' '9 tcp ::1 8081' end >&3
while IFS= read -r l <&4; do echo "listen: $l"; [ "$l" = ready ] && break; done
printf '%s' "$PROBES" | sh -c "$HOST" fleetfw-host probe
exec 3>&-
while IFS= read -r l <&4; do echo "listen: $l"; done
wait "$lpid"
echo "--- left"
ss -Hltnu | grep -v -e ':85 ' -e ':86 ' -e ':8080 ' -e ':8081 ' || true
`;

function run(tool: string): { listen: string[]; answers: Map<number, { verdict?: string; error?: string }>; left: string; tool: string } {
  const tmp = join(scratch, tool);
  const fifos = join(scratch, `${tool}-fifos`);
  for (const d of [tmp, fifos]) {
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d);
  }
  const probes = PROBES.map((p) => `${p.id} ${p.proto} ${p.addr} ${p.port ?? '-'} ${p.timeoutMs}\n`).join('');
  const r = spawnSync('unshare', ['-n', 'bash', '-c', RUN], {
    encoding: 'utf8',
    env: { ...process.env, HOST: hostScript(), PROBES: probes, FIFOS: fifos, FLEETFW_PROBE_TOOL: tool, TMPDIR: tmp, FLEETFW_STATE: join(tmp, 'state') },
    timeout: 60_000,
  });
  expect(r.status, r.stderr).toBe(0);
  const lines = r.stdout.split('\n');
  const listen = lines.filter((l) => l.startsWith('listen: ')).map((l) => l.slice(8));
  const at = (name: string) => lines.indexOf(`--- ${name}`);
  const answers = parseProbeAnswers(lines.slice(at('probes') + 1, at('end')), PROBES);
  expect(readdirSync(tmp).filter((f) => f !== 'state'), 'no temporary file left').toEqual([]);
  return { listen, answers, left: lines.slice(at('left') + 1).join('\n').trim(), tool: lines.find((l) => l.startsWith('tool='))?.slice(5) ?? '' };
}

describe('verify --live on a host: listeners and probes', () => {
  for (const tool of ['perl', 'socat', 'bash']) {
    it(`with ${tool}: each probe's verdict, listeners only where nothing listens, none left`, () => {
      const r = run(tool);
      expect(r.tool).toBe(tool);
      for (const p of PROBES) {
        const a = r.answers.get(p.id)!;
        const got = 'verdict' in a ? a.verdict : 'error';
        expect(`${p.id} ${p.proto} ${p.addr}:${p.port ?? ''} ${got}`).toBe(`${p.id} ${p.proto} ${p.addr}:${p.port ?? ''} ${p.want[tool]}`);
      }
      // bash has no listener: socat stands in for it, as it does for the probes.
      const states = r.listen.filter((l) => /^\d+ /.test(l));
      expect(states.slice(0, 3)).toEqual(['1 started', '2 started', '3 started']);
      expect(states[3]).toBe('4 existing');
      // Port 86 is taken on 127.0.0.1 only; the second listener on 127.0.0.1:80 is the first one.
      expect(states[4]).toBe('5 busy');
      expect(states[5]).toBe('6 started');
      expect(states[6]).toMatch(/^7 error bad-/);
      // A wildcard of the other family does not cover the address: not a service there, and not ours to take.
      expect(states[7]).toBe('8 busy');
      expect(states[8]).toBe('9 busy');
      expect(r.listen).toContain('ready');
      expect(r.listen).toContain('stopped');
      expect(r.left, 'no listener of ours left').toBe('');
    });
  }
});

describe('verify --live on a host: what it needs', () => {
  it('the probe program uses only modules of perl-base, which every Debian-family system has', () => {
    const program = readFileSync(join(HERE, 'live-probe.pl'), 'utf8');
    const modules = [...program.matchAll(/^use ([A-Za-z:]+)/gm)].map((m) => m[1]!);
    expect(modules.length).toBeGreaterThan(3);
    const base = spawnSync('dpkg', ['-L', 'perl-base'], { encoding: 'utf8' }).stdout;
    for (const m of modules) expect(base, m).toMatch(new RegExp(`/${m.replace(/::/g, '/')}\\.pm$`, 'm'));
  });
});
