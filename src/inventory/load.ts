// Read and validate the YAML inventory. Validation is complete before anything
// is returned: every problem is collected with its line:col and dotted path and
// thrown at once as an InputError. Only loadInventory touches the disk:
// parseInventory learns whether templates exist from the function it is given.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, isScalar, parseDocument } from 'yaml';
import { InputError } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import { assignNetworks, checkAddressesUnique, checkTemplates } from './cross-checks.js';
import { readIntent } from './intent-grammar.js';
import {
  byName,
  finishHost,
  readExternals,
  readHealth,
  readHost,
  readNetworks,
  readOperators,
  readOverridable,
  readSettings,
  readTemplatesDir,
} from './sections.js';
import type { TemplateExists } from './sections.js';
import { isChainPattern, quote } from './tokens.js';
import { Reader, describe } from './yaml-reader.js';
import type { Located, Where, YNode } from './yaml-reader.js';

export type { TemplateExists } from './sections.js';

const TOP_KEYS = ['version', 'templates', 'operators', 'networks', 'defaults', 'settings', 'preserve', 'externals', 'health', 'hosts', 'intents'];
const DEFAULTS_KEYS = ['base', 'interfaces', 'ssh', 'vars'];

/** Read and validate an inventory file; messages name it as `displayPath` (default: `file` as given). */
export function loadInventory(file: string, opts: { displayPath?: string } = {}): Inventory {
  const display = opts.displayPath ?? file;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new InputError([{ file: display, line: 1, col: 1, path: '', message: `cannot read the inventory (${code})` }]);
  }
  return parseInventory(text, display, path.resolve(file), isTemplateOnDisk);
}

/** The TemplateExists that asks the file system: what loadInventory passes. */
export function isTemplateOnDisk(absPath: string, kind: 'folder' | 'file'): boolean {
  if (kind === 'file') return existsSync(absPath);
  return existsSync(absPath) && statSync(absPath).isDirectory();
}

/**
 * Validate inventory text. `file` names the file in messages; `absPath` anchors
 * relative paths (templates); `templateExists` answers for the templates folder
 * and each role and base template, so this never touches the disk.
 */
export function parseInventory(text: string, file: string, absPath: string, templateExists: TemplateExists): Inventory {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: false, prettyErrors: true });
  const r = new Reader(file, lineCounter);
  if (doc.errors.length > 0) {
    // The tree after a syntax error is guesswork: report the syntax only.
    for (const e of doc.errors) {
      const at = e.linePos?.[0] ?? { line: 1, col: 1 };
      r.report({ path: '', ...at }, e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''));
    }
    throw r.error();
  }
  const inv = validate(r, doc.contents, absPath, templateExists);
  if (r.problems.length > 0 || !inv) throw r.error();
  return inv;
}

function validate(r: Reader, root: YNode, absPath: string, templateExists: TemplateExists): Inventory | undefined {
  if (!root || (isScalar(root) && root.value === null)) return void r.report(r.where(null, ''), 'the file is empty');
  const top = r.map(root, '', TOP_KEYS);
  if (!top) return undefined;
  const at = (key: string): Where => top.get(key)?.key ?? r.where(null, key);

  const version = top.get('version');
  if (!version) r.report(at('version'), 'missing "version" (expected version: 1)');
  else if (!isScalar(version.node) || version.node.value !== 1) {
    const v = version.node;
    const shown = isScalar(v) && typeof v.value === 'number' ? String(v.value) : describe(v);
    r.report(r.where(v, 'version'), `unsupported version ${shown} (expected 1)`);
  }

  const templatesDir = readTemplatesDir(r, top.get('templates'), absPath, templateExists);
  const operators = readOperators(r, top.get('operators'));
  const settings = readSettings(r, top.get('settings'));
  const pre = top.get('preserve');
  const preserve = (pre && r.tokens(pre.node, pre.path, isChainPattern)?.map((l) => l.value)) ?? [];

  const defaultsEntry = top.get('defaults');
  const defaultsMap = defaultsEntry && r.map(defaultsEntry.node, defaultsEntry.path, DEFAULTS_KEYS);
  const defaults = defaultsMap ? readOverridable(r, defaultsMap) : { interfaces: {}, ssh: {}, vars: {} };

  const hostsEntry = top.get('hosts');
  if (!hostsEntry) r.report(at('hosts'), 'missing "hosts"');
  const hostMap = hostsEntry && r.map(hostsEntry.node, hostsEntry.path, undefined, 'host name');
  const hosts = [...(hostMap ?? [])].map(([name, e]) => readHost(r, name, e));
  const hostByName = new Map(hosts.map((h) => [h.name, h]));

  // Groups: first place each is written, for template and name-clash checks.
  const groupSites = new Map<string, Located>();
  for (const h of hosts) for (const g of [...h.roles, ...h.groups]) if (!groupSites.has(g.value)) groupSites.set(g.value, g);
  const groupNames = new Set([...groupSites.keys(), 'all']);
  for (const h of hosts) if (groupNames.has(h.name)) r.report(h.at, `host name ${quote(h.name)} is also a group name`);

  const externals = readExternals(r, top.get('externals'), hostByName, groupSites);
  // A broken `hosts` was reported already: do not also call every bastion unknown.
  const networks = readNetworks(r, top.get('networks'), at('networks'), hostMap && hostByName);
  assignNetworks(r, hosts, networks);
  checkAddressesUnique(r, hosts);
  if (templatesDir) checkTemplates(r, templatesDir, hosts, defaults, templateExists);

  const names = new Set([...hostByName.keys(), ...groupNames, ...externals.map((x) => x.name)].sort());
  const intentsEntry = top.get('intents');
  const intentList = intentsEntry && r.list(intentsEntry.node, intentsEntry.path);
  const intents = intentList?.flatMap((e) => readIntent(r, e, names) ?? []) ?? [];
  const health = readHealth(r, top.get('health'), groupSites, hostByName);

  if (r.problems.length > 0 || !templatesDir) return undefined;
  return {
    file: absPath,
    templatesDir,
    operators,
    networks: networks.map(({ name, bastion, pos }) => ({ name, bastion, pos })),
    hosts: hosts.map((h) => finishHost(h, defaults, r)).sort(byName),
    externals,
    intents,
    preserve,
    health,
    settings,
  };
}
