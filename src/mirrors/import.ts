/**
 * Reading p2pkgs' mirror database, `mirrors/ipfs`: rec records of type
 * ipfs_source with `sha256`, `cid` and `source_url` (older files say
 * `url`), so a tree moving over from p2pkgs keeps every mirror it had.
 * The rec parser is the tree's own (tree/rec.ts); each record is checked
 * as a row of our database would be, and a bad one is named by file:line.
 */
const fs = process.getBuiltinModule('node:fs');
import { parseRec } from '../tree/rec.ts';
import { TreeError, at, display } from '../tree/errors.ts';
import { recordProblem, type MirrorRecord } from './db.ts';

const URL_FIELDS = new Set(['source_url', 'url']);

export function parseP2pkgsMirrors(text: string, file: string): MirrorRecord[] {
  return parseRec(text, display(file)).map((rec) => {
    const one = (names: Set<string>, label: string) => {
      const fields = rec.fields.filter((f) => names.has(f.name));
      if (fields.length === 0) throw at(file, rec.line, `record has no ${label}`);
      if (fields.length > 1) throw at(file, fields[1]!.line, `record has more than one ${label}`);
      return fields[0]!;
    };
    for (const f of rec.fields) {
      if (f.name !== 'sha256' && f.name !== 'cid' && !URL_FIELDS.has(f.name)) {
        throw at(file, f.line, `unknown field '${f.name}'; a mirror record has sha256, cid and source_url`);
      }
    }
    const sha256 = one(new Set(['sha256']), 'sha256');
    const cid = one(new Set(['cid']), 'cid');
    const url = one(URL_FIELDS, 'source_url');
    const r = { sha256: sha256.value.trim(), cid: cid.value.trim(), url: url.value.trim() };
    const problem = recordProblem(r);
    if (problem) throw at(file, { sha256, cid, url }[problem.field].line, problem.message);
    return r;
  });
}

export function readP2pkgsMirrors(file: string): MirrorRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new TreeError(`${display(file)}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  return parseP2pkgsMirrors(text, file);
}
