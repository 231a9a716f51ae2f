// `fleetfw verify --live`: the intents with real packets on the real fleet. Parses
// options, runs the proof (live-report.ts), prints its report.
import type { ExitCodeValue } from '../errors.js';
import { err, out } from './io.js';
import { loadFleet, openTransport, selectHosts } from './context.js';
import type { LiveOptions } from './apply-run.js';
import { parseFormat } from './core-commands.js';
import { LIVE_FORMAT, liveExitCode, printLive, runLive, timeoutOf } from './live-report.js';

export interface VerifyLiveOptions extends LiveOptions {
  format?: string;
  timeout?: string;
}

export async function cmdVerifyLive(opts: VerifyLiveOptions): Promise<ExitCodeValue> {
  const format = parseFormat(opts.format);
  // A bad --timeout is a usage error before anything connects.
  timeoutOf(opts.timeout);
  const fleet = loadFleet(opts);
  // --limit: only the pairs with a selected host at one end.
  const selected = new Set(selectHosts(fleet.inv, opts.limit).map((h) => h.name));
  const transport = await openTransport(fleet.inv, opts);
  let report;
  try {
    report = await runLive(fleet, transport, {
      ...opts,
      progress: format !== 'json',
      ...(opts.limit === undefined ? {} : { pairs: (from: string, to: string) => selected.has(from) || selected.has(to) }),
    });
  } finally {
    await transport.close();
  }
  if (format === 'json') out(JSON.stringify({ format: LIVE_FORMAT, version: 1, ...report }, null, 2));
  else printLive(report, format === 'markdown', opts.color);
  for (const h of report.hostErrors) err(`error: ${h.host}: ${h.error}`);
  return liveExitCode(report);
}
