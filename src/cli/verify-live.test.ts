// This machine standing in for an external in verify --live: only where the
// destination's rules decide its packets as they decide the external's.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadInventory } from '../inventory/load.js';
import { loadTemplates } from '../render/load-templates.js';
import { renderFleet } from '../render/render.js';
import { parseFleet } from '../plan/checks.js';
import { verifyIntents } from '../analyze/intents.js';
import { operatorStandIn } from './live-report.js';
import { run } from './fixtures/run-cli.js';

const inv = loadInventory(fileURLToPath(new URL('../../inventories/s1.yaml', import.meta.url)));
const ruleSets = parseFleet(renderFleet(inv, loadTemplates(inv)));
const results = verifyIntents(inv, ruleSets);

function standIn(intentText: string, to: string, local: string | undefined) {
  const r = results.find((x) => x.intent.text === intentText)!;
  const pair = r.pairs.find((p) => p.to === to)!;
  const probed: string[] = [];
  const hooks = operatorStandIn(inv, ruleSets, {
    localAddressFor: async () => local,
    probeLocal: async (addr, proto, port) => {
      probed.push(`${addr}:${port}/${proto}`);
      return 'timeout';
    },
  });
  const q = { ext: inv.externals.find((e) => e.name === pair.from)!, to: inv.hosts.find((h) => h.name === to)!, toAddr: pair.toAddr!, intent: r.intent, modelOutcome: pair.outcome, modelDecidedBy: pair.decidedBy, timeoutMs: 100 };
  return hooks.probe!(q).then((answer) => ({ answer, probed }));
}

describe('this machine standing in for an external', () => {
  it('probes when the rules treat its address as the external\'s', async () => {
    const { answer, probed } = await standIn('internet -> mysql:3306 deny', 'mysql-1', '198.51.100.7');
    expect(answer).toEqual({ verdict: 'timeout', via: 'this machine, 198.51.100.7' });
    expect(probed).toEqual(['203.0.113.14:3306/tcp']);
  });

  it('does not, naming both outcomes, when they treat it otherwise (here: an address the bastion lets in)', async () => {
    // The bastion lets any address in on 22, but mysql-1 lets in SSH only from tunnel-1's private address.
    const { answer, probed } = await standIn('intruder -> all:22 deny', 'mysql-1', '192.0.2.10');
    expect(answer).toEqual({ skip: expect.stringMatching(/^mysql-1's rules treat this machine \(192\.0\.2\.10\) otherwise than intruder: allow by mysql-1 .*, not drop by mysql-1 .*policy DROP/) });
    expect(probed).toEqual([]);
  });

  it('does not without a route', async () => {
    expect((await standIn('internet -> mysql:3306 deny', 'mysql-1', undefined)).answer).toEqual({ skip: 'this machine has no route to 203.0.113.14' });
  });
});

describe('verify --live reads real hosts', () => {
  it('never from the embedded example: without an inventory it is a usage error, as for plan and apply', async () => {
    const r = await run(['verify', '--live']);
    expect(r.code).toBe(64);
    expect(r.output).toContain('verify --live reads or changes real hosts, so it never falls back to the embedded example');
  });

  it('a bad --timeout is a usage error before anything connects', async () => {
    const r = await run(['verify', '--live', '--inventory', fileURLToPath(new URL('../../inventories/s1.yaml', import.meta.url)), '--timeout', '5']);
    expect(r.code).toBe(64);
    expect(r.output).toContain('--timeout must be a number of milliseconds, at least 100, not "5"');
  });

  it('--timeout only with --live or --verify-live, checked before an apply sends anything', async () => {
    const s1 = fileURLToPath(new URL('../../inventories/s1.yaml', import.meta.url));
    expect(await run(['verify', '--inventory', s1, '--timeout', '2000'])).toMatchObject({ code: 64, output: expect.stringContaining('--timeout is for --live') });
    expect(await run(['apply', '--inventory', s1, '--yes', '--timeout', '2000'])).toMatchObject({ code: 64, output: expect.stringContaining('--timeout is for --verify-live') });
    expect(await run(['apply', '--inventory', s1, '--yes', '--verify-live', '--timeout', 'soon'])).toMatchObject({ code: 64, output: expect.stringContaining('--timeout must be a number of milliseconds') });
  });
});
