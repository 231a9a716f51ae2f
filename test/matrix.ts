// The probe matrix lives in src/lab/prove.ts (the demo proves S1 with it too).
export { failedRows, probeIntents, type ProbeRow } from '../src/lab/prove.js';
