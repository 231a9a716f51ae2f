// The host script as the package ships it: src/host/fleetfw-host.sh with its awk
// programs and shell programs put in (src/host/assemble.ts, compiled by tsc just
// before), written to dist/host/fleetfw-host.sh. hostScript() reads that file in the
// built CLI; a checkout without it assembles the source when it runs.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assembleHostScriptFile } from '../dist/host/assemble.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const script = assembleHostScriptFile(join(root, 'src/host/fleetfw-host.sh'));
writeFileSync(join(root, 'dist/host/fleetfw-host.sh'), script, { mode: 0o644 });
