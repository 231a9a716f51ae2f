import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isTemplateOnDisk, parseInventory } from '../inventory/load.js';
import { loadTemplates } from '../render/load-templates.js';
import { renderFleet } from '../render/render.js';
import { assemblePlan, planOfflineHost } from './plan.js';

const INVENTORIES = join(dirname(fileURLToPath(import.meta.url)), '../../inventories');

describe('offline plan: a seventh host in the wordpress group (S1)', () => {
  it('changes exactly the hosts whose rules name the group, plus the new host', () => {
    const file = join(INVENTORIES, 's1.yaml');
    const text = readFileSync(file, 'utf8').replace(
      'intents:',
      '  wordpress-3:\n    public: 203.0.113.16\n    private: 192.0.2.16\n    roles: [backend, wordpress]\nintents:',
    );
    const inv = parseInventory(text, 'inventories/s1.yaml', file, isTemplateOnDisk);
    const snapshot = join(INVENTORIES, 's1.rendered');
    const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : undefined);
    const plan = assemblePlan(
      'offline',
      'inventories/s1.yaml',
      renderFleet(inv, loadTemplates(inv)).map((r) =>
        planOfflineHost(r, { v4: read(join(snapshot, r.host, 'rules.v4')), v6: read(join(snapshot, r.host, 'rules.v6')) }),
      ),
    );
    const changed = plan.hosts.filter((h) => h.status === 'changes').map((h) => h.host);
    // haproxy-www names group.wordpress; the backends name peers.backend; tunnel-1 names neither.
    expect(changed).toEqual(['haproxy-www', 'mysql-1', 'mysql-2', 'wordpress-1', 'wordpress-2', 'wordpress-3']);
    expect(plan.hosts.find((h) => h.host === 'tunnel-1')!.status).toBe('in-sync');
    const haproxy = plan.hosts.find((h) => h.host === 'haproxy-www')!;
    expect(haproxy.diffs[0]!.patch).toContain('+-A OUTPUT -o eth1 -p tcp -d 192.0.2.16 --dport 80 -j ACCEPT');
    expect(haproxy.diffs[0]!.added).toBe(1);
    expect(haproxy.diffs[0]!.removed).toBe(0);
    expect(plan.hosts.find((h) => h.host === 'wordpress-3')!.notes).toContain('new host: no stored rules');
  });
});
