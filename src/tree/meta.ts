/**
 * Package metadata, pkg/NAME/meta: one rec record of `version`, `license`
 * (an SPDX license expression), `homepage` and `description`, each
 * optional and given once. It says what a package is to the people and
 * tools that list it (`peerpkgs list`, SBOMs) and is no input of the
 * build: the pkghash does not read it, so a corrected description
 * rebuilds nothing.
 *
 * The one reader, used by the package model (a package with a bad meta
 * is a bad tree, found when it is loaded) and by everyone who shows it.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { at, display, TreeError } from './errors.ts';
import { parseRec } from './rec.ts';

export const META_FIELDS = ['version', 'license', 'homepage', 'description'] as const;
export type Meta = Partial<Record<(typeof META_FIELDS)[number], string>>;

/**
 * Whether `s` has the form of an SPDX license expression: ids (or
 * LicenseRef-s) joined by AND, OR and WITH, in parentheses or not. The ids
 * are not looked up: a license added to SPDX's list after this was
 * written is no error, `GPL v2` is.
 */
export function isLicenseExpression(s: string): boolean {
  let wantId = true;
  let depth = 0;
  for (const t of s.replace(/[()]/g, ' $& ').trim().split(/\s+/)) {
    if (t === '(' && wantId) depth++;
    else if (t === ')' && !wantId && depth > 0) depth--;
    else if (wantId && /^(DocumentRef-[A-Za-z0-9.-]+:)?[A-Za-z0-9.-]+\+?$/.test(t)) wantId = false;
    else if (!wantId && (t === 'AND' || t === 'OR' || t === 'WITH')) wantId = true;
    else return false;
  }
  return !wantId && depth === 0;
}

/** The meta of the package directory `dir`; {} when it has none. A mistake is a TreeError naming its line. */
export function readMeta(dir: string): Meta {
  const file = path.join(dir, 'meta');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new TreeError(`${display(file)}: ${(e as Error).message}`);
  }
  const records = parseRec(text, display(file));
  if (records.length > 1) throw at(file, records[1]!.line, 'a meta file holds one record');
  const meta: Meta = {};
  for (const f of records[0]?.fields ?? []) {
    const name = f.name as (typeof META_FIELDS)[number];
    if (!META_FIELDS.includes(name)) throw at(file, f.line, `unknown field '${f.name}'; a meta record has ${META_FIELDS.join(', ')}`);
    if (meta[name] !== undefined) throw at(file, f.line, `'${name}' is given twice`);
    const value = f.value.trim();
    if (!value) throw at(file, f.line, `'${name}' is empty`);
    if (name === 'license' && !isLicenseExpression(value)) {
      throw at(file, f.line, `license ${JSON.stringify(value)} is not an SPDX license expression (ids such as MIT or GPL-2.0-or-later, joined by AND, OR, WITH)`);
    }
    if (name === 'homepage' && !/^https?:\/\//.test(value)) throw at(file, f.line, `homepage ${JSON.stringify(value)} is not an http(s) url`);
    if ((name === 'version' || name === 'homepage') && /\s/.test(value)) throw at(file, f.line, `'${name}' holds no blanks, not ${JSON.stringify(value)}`);
    meta[name] = value;
  }
  return meta;
}
