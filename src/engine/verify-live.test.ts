// What a probe's answer means for an intent, and the host's answers read back.
import { describe, expect, it } from 'vitest';
import { holds, observedOf } from './verify-live.js';
import { parseProbeAnswers, type ProbeSpec } from '../host/live-probes.js';
import { buildEchoRequest } from '../model/icmp-echo.js';

describe('what a probe saw, in an intent\'s words', () => {
  it('a refusal is a reject only when something listens there; else it cannot be told from an allowed port with nothing behind it', () => {
    expect(observedOf('refused', 'started', 'tcp').observed).toBe('reject');
    expect(observedOf('refused', 'existing', 'tcp').observed).toBe('reject');
    expect(observedOf('refused', 'external', 'udp').observed).toBe('reject');
    expect(observedOf('refused', 'busy', 'tcp')).toMatchObject({ observed: 'unknown', note: expect.stringContaining('nothing fleetfw could start') });
    expect(observedOf('refused', { error: 'bind-98' }, 'tcp').observed).toBe('unknown');
    expect(observedOf('refused', undefined, 'icmp').observed).toBe('reject');
  });

  it('no answer is a drop, but not from a UDP service of the host, which need not answer a probe', () => {
    expect(observedOf('timeout', 'started', 'udp').observed).toBe('drop');
    expect(observedOf('timeout', 'busy', 'tcp').observed).toBe('drop');
    expect(observedOf('timeout', 'existing', 'udp').observed).toBe('unknown');
    expect(observedOf('open', 'busy', 'tcp').observed).toBe('allow');
    expect(observedOf('unreachable', undefined, 'tcp').observed).toBe('reject');
  });

  it('an intent holds on what its words say; unknown never holds; not probed is neither', () => {
    expect(holds('deny', 'drop')).toBe(true);
    expect(holds('deny', 'reject')).toBe(true);
    expect(holds('deny', 'allow')).toBe(false);
    expect(holds('reject', 'drop')).toBe(false);
    expect(holds('drop', 'drop')).toBe(true);
    expect(holds('allow', 'unknown')).toBe(false);
    expect(holds('deny', 'unknown')).toBe(false);
    expect(holds('allow', 'not-probed')).toBeUndefined();
  });
});

describe("the host's probe answers", () => {
  const probes: ProbeSpec[] = [
    { id: 1, proto: 'tcp', addr: '192.0.2.1', port: 22, timeoutMs: 1500 },
    { id: 2, proto: 'icmp', addr: '2001:db8::1', timeoutMs: 1500 },
    { id: 3, proto: 'udp', addr: '192.0.2.1', port: 53, timeoutMs: 1500 },
    { id: 4, proto: 'tcp', addr: '192.0.2.1', port: 80, timeoutMs: 1500 },
  ];

  it('reads verdicts, times and errors; an ICMP answer is classified by its own identifier; a probe the host did not answer is an error', () => {
    // An echo reply to probe 2: the request of identifier 2 with its type turned into a reply.
    const reply = buildEchoRequest(true, 2, 4321);
    reply[0] = 129;
    const other = buildEchoRequest(true, 7, 4321);
    other[0] = 129;
    const a = parseProbeAnswers(['1 12 open', `2 3 icmp 4321 ${reply.toString('hex')}`, '3 - error no-tool-for-udp', 'junk', '9 1 open'], probes);
    expect(a.get(1)).toEqual({ verdict: 'open', ms: 12 });
    expect(a.get(2)).toEqual({ verdict: 'open', ms: 3 });
    expect(a.get(3)).toEqual({ error: 'no-tool-for-udp' });
    expect(a.get(4)).toEqual({ error: 'no answer from the host' });
    // Another probe's reply is not this one's answer.
    expect(parseProbeAnswers([`2 5 icmp 4321 ${other.toString('hex')}`], probes).get(2)).toEqual({ verdict: 'timeout', ms: 5 });
    // Nor is an answer of another run (another sequence).
    expect(parseProbeAnswers([`2 5 icmp 99 ${reply.toString('hex')}`], probes).get(2)).toEqual({ verdict: 'timeout', ms: 5 });
  });
});
