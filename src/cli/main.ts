#!/usr/bin/env node
// fleetfw command line: the process around runCli (program.ts, which tests run in-process).
import { ExitCode } from '../errors.js';
import { err } from './io.js';
import { runCli } from './program.js';

// A reader that closes early (`fleetfw verify | head -1`) ends the run quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? ExitCode.ok);
    throw e;
  });
}
process.on('SIGINT', () => {
  err('\nfleetfw: interrupted. Hosts inside their window revert by themselves unless already confirmed.');
  process.exit(ExitCode.interrupted);
});
process.exitCode = await runCli(process.argv);
