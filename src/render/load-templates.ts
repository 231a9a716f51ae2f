// The IO edge of rendering: read and parse the template files an inventory needs.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { InputError, type Problem } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import { templatePaths, type TemplateSet } from './render.js';
import { parseTemplate } from './template.js';

/**
 * Read every template the inventory's hosts use. v4 files must exist (the
 * inventory loader already said so); v6 files are optional.
 */
export function loadTemplates(inv: Inventory): TemplateSet {
  const set: TemplateSet = new Map();
  const problems: Problem[] = [];
  // Paths in messages and provenance are `templates/…`, stable across machines.
  const shown = basename(inv.templatesDir);
  // Each path is looked at once: most .v6 files do not exist, and every host names them.
  const seen = new Set<string>();
  for (const host of inv.hosts) {
    for (const family of [4, 6] as const) {
      for (const rel of templatePaths(host, family)) {
        if (seen.has(rel)) continue;
        seen.add(rel);
        const file = join(inv.templatesDir, rel);
        if (!existsSync(file)) {
          if (family === 4) problems.push({ file: `${shown}/${rel}`, line: 1, col: 1, path: '', message: 'template file not found' });
          continue;
        }
        const { template, problems: p } = parseTemplate(readFileSync(file, 'utf8'), `${shown}/${rel}`);
        problems.push(...p);
        set.set(rel, template);
      }
    }
  }
  if (problems.length > 0) throw new InputError(problems);
  return set;
}
