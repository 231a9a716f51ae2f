// The IO edge of rendering: read and parse the template files an inventory needs.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Inventory } from '../model/inventory.js';
import { templatePaths, type TemplateSet } from './render.js';
import { parseTemplate, type Template } from './template.js';

/**
 * Read every template the inventory's hosts use. v4 files must exist (the
 * inventory loader already said so); v6 files are optional. Nothing is thrown
 * here: a template's problems (a file that cannot be read, its syntax) travel
 * with it, and renderFleet reports them with every other template problem.
 */
export function loadTemplates(inv: Inventory): TemplateSet {
  const set: TemplateSet = new Map();
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
          if (family === 4) set.set(rel, unreadable(`${shown}/${rel}`, 'template file not found'));
          continue;
        }
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code ?? String(e);
          set.set(rel, unreadable(`${shown}/${rel}`, `cannot read the template (${code === 'EISDIR' ? 'a directory, not a file' : code})`));
          continue;
        }
        set.set(rel, parseTemplate(text, `${shown}/${rel}`).template);
      }
    }
  }
  return set;
}

/** A template that could not be read: it renders nothing and carries why. */
function unreadable(file: string, message: string): Template {
  return { file, preamble: [], sections: [], managementOff: false, problems: [{ file, line: 1, col: 1, path: '', message }] };
}
