// In a lab, the externals of the inventory are namespaces of their own: verify
// --live sends their probes from there, and answers there for the intents of
// hosts towards them, exactly as the machines they stand for would.
import type { ExternalSpec, IntentSpec } from '../model/inventory.js';
import type { Lab } from './handle.js';
import type { ProbeResult } from './probe.js';

export function labExternalProbes(lab: Lab) {
  return {
    probe: async (q: { ext: ExternalSpec; toAddr: string; intent: IntentSpec; timeoutMs: number }): Promise<{ verdict: ProbeResult }> => ({
      verdict: await lab.probe(q.ext.name, q.toAddr, q.intent.proto, q.intent.port, { timeoutMs: q.timeoutMs }),
    }),
    listen: async (ext: ExternalSpec, proto: 'tcp' | 'udp', port: number): Promise<{ ok: true }> => {
      await lab.listen(ext.name, proto, port);
      return { ok: true };
    },
  };
}
