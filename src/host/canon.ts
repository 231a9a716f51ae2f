// What "the same rules" means for hashes, as canon.awk writes it (see there): a
// read prints the live dumps and fleetfw's sets, and fleetfw hashes their canonical
// text itself, so that a plan of a host with nothing (or empty files) persisted
// starts no hashing process there. The host hashes the same text with sha256sum
// wherever it checks (prepare, outcome), and prints the hash itself when sha256sum
// runs anyway (persisted files) or the text holds bytes past ASCII, which fleetfw
// receives decoded and could not hash byte for byte. transaction.host.test.ts
// checks that both give the same hash.
import { createHash } from 'node:crypto';

const COUNTERS = /\[[0-9]*:[0-9]*\]$/;
const EMPTY_CHAIN = /^:[^ ]+ ACCEPT \[0:0\]$/;

/** One dump without comments and counters, a table left out while it holds only empty ACCEPT built-ins (canon.awk's rules). */
export function canonRules(lines: readonly string[]): string {
  let out = '';
  let held = '';
  for (const raw of lines) {
    if (raw.startsWith('#')) continue;
    const l = raw.replace(COUNTERS, '[0:0]');
    if (l.startsWith('*')) {
      held = l;
      continue;
    }
    if (held !== '') {
      if (l === 'COMMIT') {
        held = '';
        continue;
      }
      if (EMPTY_CHAIN.test(l)) {
        held += `\n${l}`;
        continue;
      }
      out += `${held}\n`;
      held = '';
    }
    out += `${l}\n`;
  }
  return held === '' ? out : `${out}${held}\n`;
}

/** The canonical text of a host's rules: both dumps' lines, then fleetfw's set lines as a read prints them (cut and sorted). */
export function canonText(v4: readonly string[], v6: readonly string[], sets: readonly string[]): string {
  const tail = sets.length > 0 ? `---\n${sets.map((l) => `${l}\n`).join('')}` : '';
  return `${canonRules(v4)}---\n${canonRules(v6)}${tail}`;
}

/** sha256 of canonText, hex: what the host's `sha256sum` of the same text prints. */
export function canonHash(v4: readonly string[], v6: readonly string[], sets: readonly string[]): string {
  return createHash('sha256').update(canonText(v4, v6, sets)).digest('hex');
}
