// Every rendered example rule set loads in the real iptables-restore -t (root, network namespace).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadInventory } from '../inventory/load.js';
import { loadTemplates } from './load-templates.js';
import { renderFleet } from './render.js';

const INVENTORIES = join(dirname(fileURLToPath(import.meta.url)), '../../inventories');

function renderExample(file: string) {
  const inv = loadInventory(join(INVENTORIES, file));
  return renderFleet(inv, loadTemplates(inv));
}

describe('real iptables-restore -t accepts every rendered rule set', () => {
  it('loads each example host in a throwaway network namespace', () => {
    // Root and ip netns are required: this test fails, it does not skip.
    expect(process.getuid?.(), 'must run as root').toBe(0);
    const ns = `ffwr${randomBytes(3).toString('hex')}`;
    execFileSync('ip', ['netns', 'add', ns]);
    try {
      let checked = 0;
      for (const file of readdirSync(INVENTORIES).filter((f) => f.endsWith('.yaml') && f !== 'bad.yaml')) {
        for (const host of renderExample(file)) {
          for (const [tool, key] of [['iptables-restore', 'v4'], ['ip6tables-restore', 'v6']] as const) {
            const r = spawnSync('ip', ['netns', 'exec', ns, tool, '-t'], { input: host[key].text, encoding: 'utf8' });
            expect(r.status, `${file} ${host.host} rules.${key}: ${r.stderr}`).toBe(0);
            checked++;
          }
        }
      }
      expect(checked).toBeGreaterThanOrEqual(2 * 11);
    } finally {
      execFileSync('ip', ['netns', 'del', ns]);
    }
  });
});

