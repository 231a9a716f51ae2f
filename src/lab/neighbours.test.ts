import { describe, expect, it } from 'vitest';
import { STATIC_NEIGHBOURS_FROM, staticNeighbours } from './build.js';
import type { LabHostSpec } from './spec.js';

const host = (i: number, bastion = false): LabHostSpec =>
  ({ name: `h${i}`, private6: `2001:db8:1::${(i + 1).toString(16)}`, interfaces: { public: 'eth0', private: 'eth1' }, bastion, user: 'root', sshPort: 22 }) as LabHostSpec;

describe('staticNeighbours', () => {
  it('a small lab learns its neighbours as real hosts do', () => {
    expect(staticNeighbours([host(0, true), host(1), host(2)]).size).toBe(0);
  });

  it('past the threshold, the bastion and each host know each other, nobody else, permanently', () => {
    const hosts = Array.from({ length: STATIC_NEIGHBOURS_FROM + 1 }, (_, i) => host(i, i === 0));
    const n = staticNeighbours(hosts);
    expect(n.get('h0')).toHaveLength(STATIC_NEIGHBOURS_FROM);
    expect(n.get('h0')![0]).toBe('neigh replace 2001:db8:1::2 lladdr 02:f1:00:00:01:01 dev eth1 nud permanent');
    expect(n.get('h200')).toEqual(['neigh replace 2001:db8:1::1 lladdr 02:f1:00:00:00:01 dev eth1 nud permanent']);
    expect(n.get('h0')![199]).toMatch(/^neigh replace 2001:db8:1::c9 lladdr 02:f1:00:00:c8:01 /);
  });
});
