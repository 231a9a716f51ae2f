// The reachability diff of an offline plan, on S1 against its stored render: a
// seventh WordPress host shows exactly the flows it adds; a MySQL rule widened to
// a CIDR is flagged as wider than any group; a removed role shows the flows lost.
// Golden files (fixtures/reach/) hold the text, markdown and JSON of the seventh
// host; `UPDATE_GOLDEN=1` rewrites them after a reviewed change.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { run } from './fixtures/run-cli.js';
import { htmlOf, REMOVED_ROLE, s1Copy, SEVENTH, type S1Edit } from './fixtures/s1-edits.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const GOLDEN = join(HERE, 'fixtures/reach');
const scratch = mkdtempSync(join(tmpdir(), 'fleetfw-reach-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** S1's templates, inventory and stored render, with edits. */
const s1 = (name: string, edit: S1Edit = {}): string => s1Copy(join(scratch, name), edit);

/** The reachability section of a text plan. */
function reachSection(output: string): string {
  const start = output.indexOf('Reachability:');
  const end = output.indexOf('\nPlan: ', start);
  return output.slice(start, end).trimEnd();
}

function golden(name: string, actual: string): void {
  const file = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN || !existsSync(file)) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, actual);
  }
  expect(actual).toBe(readFileSync(file, 'utf8'));
}

describe('the reachability diff of a plan', () => {
  it('S1 against its own stored render: nothing opened or closed', async () => {
    const r = await run(['plan', '--offline', '-i', s1('same')]);
    expect(r.code, r.output).toBe(0);
    expect(r.output).toContain('Reachability: no flow opened or closed.');
  });

  it('a seventh WordPress host: exactly the flows it adds (text, markdown, JSON golden files)', async () => {
    const inv = s1('seventh', { inventory: SEVENTH });
    const text = await run(['plan', '--offline', '-i', inv]);
    expect(text.code, text.output).toBe(2);
    const section = reachSection(text.output);
    // The new host with the backends (GlusterFS and MySQL go through the backend whitelist), HAProxy to it,
    // its management path, and the public services a new machine can now reach; nothing else.
    expect(section.split('\n').filter((l) => /^ {2}[-+?] /.test(l)).slice(0, 6)).toEqual([
      '  + wordpress-3 -> backend:*/tcp  (management path)',
      '  + wordpress-3 -> tunnel-1:22/tcp  (via public; management path)',
      '  + backend -> wordpress-3:*/tcp  (management path)',
      '  + tunnel-1 -> wordpress-3:22/tcp  (management path)',
      '  + wordpress-3 -> haproxy-www:80/tcp  (via public)',
      '  + haproxy-www -> wordpress-3:80/tcp',
    ]);
    golden('seventh-host.txt', `${section}\n`);

    const md = await run(['plan', '--offline', '-i', inv, '--format', 'markdown']);
    const head = md.output.slice(md.output.indexOf('### fleetfw plan'), md.output.indexOf('| host | status'));
    expect(head.indexOf('#### Reachability')).toBeLessThan(head.indexOf('```diff'));
    golden('seventh-host.md', head.replace(/`[^`]*s1\.yaml`/, '`s1.yaml`'));

    const json = await run(['plan', '--offline', '-i', inv, '--format', 'json']);
    const doc = JSON.parse(json.output.slice(json.output.indexOf('{'))) as { reachability: { format: string; version: number; lines: unknown[]; uncovered: unknown[]; notes: string[] } };
    expect(doc.reachability).toMatchObject({ format: 'fleetfw-reachability', version: 1, notes: [] });
    golden('seventh-host.json', `${JSON.stringify(doc.reachability, null, 2)}\n`);

    const html = await run(['plan', '--offline', '-i', inv, '--format', 'html']);
    expect(html.code, html.output).toBe(2);
    golden('seventh-host.html', htmlOf(html.output).replace(/(fleetfw plan: )[^<]*s1\.yaml/g, '$1s1.yaml'));
  });

  it('HTML: the matrix highlights exactly the cells the seventh host changes, and the page refers to nothing outside itself', async () => {
    const page = htmlOf((await run(['plan', '--offline', '-i', s1('html-seventh', { inventory: SEVENTH }), '--format', 'html'])).output);
    // No address, link, script, stylesheet, font or image from anywhere: it is opened from disk.
    expect(page).not.toMatch(/https?:|\/\/[a-z]|src=|href=|url\(|@import|<link|<script|<img|<iframe/i);
    const rows = [...page.matchAll(/<tr><th scope="row"[^>]*>([^<]+)<small>[^<]*<\/small><\/th>(.*?)<\/tr>/gs)].map((m) => [m[1], [...m[2]!.matchAll(/<td class="cell (\w+)/g)].map((c) => c[1])]);
    expect(Object.fromEntries(rows)).toEqual({
      // Columns: backend, bastion, haproxy, mysql, wordpress.
      'any other address (public)': ['none', 'same', 'same', 'none', 'none'],
      'any other address (private)': ['none', 'none', 'none', 'none', 'none'],
      internet: ['none', 'same', 'same', 'none', 'none'],
      intruder: ['none', 'none', 'none', 'none', 'none'],
      backend: ['open', 'open', 'open', 'open', 'open'],
      bastion: ['open', 'na', 'same', 'same', 'open'],
      haproxy: ['open', 'same', 'na', 'none', 'open'],
      mysql: ['open', 'same', 'same', 'same', 'open'],
      wordpress: ['open', 'open', 'open', 'open', 'open'],
    });
  });

  it('HTML: a removed role closes exactly the cells of the flows it allowed', async () => {
    const page = htmlOf((await run(['plan', '--offline', '-i', s1('html-removed', { inventory: REMOVED_ROLE }), '--format', 'html'])).output);
    const changed = [...page.matchAll(/<td class="cell (open|close|unknown|mixed)" title="([^"\n]*)/g)].map((m) => `${m[1]} ${m[2]}`);
    // Groups are the inventory's (after the change): wordpress-2 is no longer in wordpress, so the cell
    // haproxy → wordpress holds wordpress-1 alone, unchanged; haproxy → backend loses wordpress-2's port 80.
    expect(changed).toEqual(['close haproxy → backend']);
    expect(page).toContain('<li class="close">- haproxy-www -&gt; wordpress-2:80/tcp</li>');
  });

  it('a MySQL rule widened to the private network is flagged as wider than any group', async () => {
    const inv = s1('wider', { templates: { 'roles/mysql.v4': (t) => `${t}*filter\n-A INPUT -i {{ self.if.private }} -p tcp -s 192.0.2.0/24 --dport 3306 -j ACCEPT\nCOMMIT\n` } });
    const r = await run(['plan', '--offline', '-i', inv]);
    const lines = reachSection(r.output).split('\n');
    expect(lines).toContain('  + other addresses in 192.0.2.0/24 -> mysql:3306/tcp  (wider than any group)');
    // The hosts and externals it newly lets in by name; haproxy-www's own rules keep it out.
    expect(lines).toContain('  + tunnel-1 -> mysql:3306/tcp');
    expect(lines).toContain('  + intruder -> mysql:3306/tcp');
    expect(lines.some((l) => l.includes('haproxy-www -> mysql'))).toBe(false);
    // The intent `intruder -> all:3306 deny` no longer holds: a failed check, as in a live plan.
    expect(r.code).toBe(4);
    expect(r.output).toContain('error: mysql-1: intent "intruder -> all:3306 deny" fails for intruder -> mysql-1: allow');
  });

  it('a removed role: the flows it allowed are lost, and nothing else changes', async () => {
    const inv = s1('removed', { inventory: REMOVED_ROLE });
    const r = await run(['plan', '--offline', '-i', inv]);
    expect(reachSection(r.output)).toBe('Reachability: 0 opened, 1 closed; 0 opened flows no intent covers.\n  - haproxy-www -> wordpress-2:80/tcp');
  });

  it('an anti-spoofing rule (addrtype LOCAL) does not hide a port opened to the internet; deny intents cover nothing', async () => {
    const inv = s1('spoof', {
      templates: { 'roles/mysql.v4': (t) => `${t}*filter\n-A INPUT -m addrtype --src-type LOCAL ! -i lo -j DROP\n-A INPUT -i {{ self.if.public }} -p tcp --dport 3306 -j ACCEPT\nCOMMIT\n` },
    });
    const r = await run(['plan', '--offline', '-i', inv]);
    const section = reachSection(r.output);
    expect(section).toContain('  + internet -> mysql:3306/tcp  (newly exposed to the internet)');
    // `internet -> mysql:3306 deny` names the flow, but does not cover it: it fails.
    expect(section.slice(section.indexOf('Not covered by any intent:'))).toContain('  + internet -> mysql:3306/tcp  (newly exposed to the internet)');
    expect(r.code).toBe(4);
  });

  it('--limit: hosts left out keep their stored rules on both sides; a new one left out is not there yet, its address is anyone\'s', async () => {
    const r = await run(['plan', '--offline', '-i', s1('limit', { inventory: SEVENTH }), '--limit', 'mysql-1']);
    expect(reachSection(r.output)).toBe(
      'Reachability: 1 opened, 0 closed; 1 opened flow no intent covers.\n  + other addresses in 192.0.2.16/32 -> mysql-1:*/tcp  (management path; wider than any group)\nNot covered by any intent:\n  + other addresses in 192.0.2.16/32 -> mysql-1:*/tcp  (management path; wider than any group)',
    );
  });

  it('--require-intents fails a plan that opens a flow no intent mentions, and only then', async () => {
    const seventh = await run(['plan', '--offline', '-i', s1('require-seventh', { inventory: SEVENTH }), '--require-intents']);
    expect(seventh.code, seventh.output).toBe(4);
    expect(seventh.output).toMatch(/error: fleet: 4 opened flows no intent covers \(--require-intents\): \+ wordpress-3 -> backend:\*\/tcp/);
    const removed = await run(['plan', '--offline', '-i', s1('require-removed', { inventory: REMOVED_ROLE }), '--require-intents']);
    expect(removed.code, removed.output).toBe(2);
  });
});
