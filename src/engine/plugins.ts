/**
 * Built-in rules from outside the engine: $REDO_RULES lists JavaScript
 * modules (colon-separated paths), each exporting `rules: Rule[]`. This is
 * how a tree brings its own rules to a plain `redo` run.
 */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Rule } from './rules.ts';

export async function loadRules(spec = process.env.REDO_RULES): Promise<Rule[]> {
  const rules: Rule[] = [];
  for (const mod of (spec ?? '').split(':').filter(Boolean)) {
    const m = (await import(pathToFileURL(path.resolve(mod)).href)) as { rules?: Rule[] };
    if (!Array.isArray(m.rules)) throw new Error(`${mod}: exports no \`rules\` array (from REDO_RULES)`);
    rules.push(...m.rules);
  }
  return rules;
}
