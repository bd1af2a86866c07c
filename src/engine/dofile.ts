/**
 * Finding the rule that makes a target: a .do file, searched for as redo
 * documents, or a built-in rule registered through the engine API.
 *
 * For dir/NAME the candidates are dir/NAME.do, then dir/default.EXT.do for
 * each extension of NAME from the longest to the shortest, then
 * dir/default.do; then the same default files in each parent directory up
 * to the root. Built-in rules are consulted after the target's own directory
 * and before its parents, so a package directory's .do overrides them but a
 * stray default.do higher up does not.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import type { Rule } from './rules.ts';

export interface DoFile {
  kind: 'do';
  dofile: string; // absolute path of the .do file
  dir: string; // directory the .do runs in
  arg1: string; // target relative to dir
  arg2: string; // arg1 without the extension the default.do matched
}

export interface BuiltinMatch {
  kind: 'builtin';
  rule: Rule;
}

export type Found = DoFile | BuiltinMatch;

export interface Candidate {
  dofile: string;
  dir: string;
  arg1: string;
  arg2: string;
}

/** Every .do file that could make `abs`, in the order they are tried. */
export function* candidates(abs: string): Generator<Candidate & { ownDir: boolean }> {
  const dir = path.dirname(abs);
  const name = path.basename(abs);
  yield { dofile: path.join(dir, name + '.do'), dir, arg1: name, arg2: name, ownDir: true };
  const parts = name.split('.');
  let d = dir;
  let sub = '';
  for (;;) {
    for (let i = 1; i <= parts.length; i++) {
      const base = parts.slice(0, i).join('.');
      const ext = parts.slice(i).join('.');
      const dofile = path.join(d, ext ? `default.${ext}.do` : 'default.do');
      yield {
        dofile,
        dir: d,
        arg1: sub ? `${sub}/${name}` : name,
        arg2: sub ? `${sub}/${base}` : base,
        ownDir: sub === '',
      };
    }
    const parent = path.dirname(d);
    if (parent === d) return;
    sub = sub ? `${path.basename(d)}/${sub}` : path.basename(d);
    d = parent;
  }
}

export interface Lookup {
  found: Found | null;
  /** candidates tried before the one found, absolute: ifcreate deps */
  missing: string[];
}

function isFile(p: string): boolean {
  const st = fs.statSync(p, { throwIfNoEntry: false });
  return st !== undefined && !st.isDirectory();
}

export function findRule(abs: string, rules: readonly Rule[], relToBase: string): Lookup {
  const missing: string[] = [];
  let builtinsTried = rules.length === 0;
  for (const c of candidates(abs)) {
    if (!c.ownDir && !builtinsTried) {
      builtinsTried = true;
      for (const rule of rules) if (rule.matches(relToBase, abs)) return { found: { kind: 'builtin', rule }, missing };
    }
    if (isFile(c.dofile)) {
      if (c.ownDir && !builtinsTried) {
        // a built-in rule that may not be overridden here wins over the .do
        const rule = rules.find((r) => r.matches(relToBase, abs));
        if (rule?.overridable && !rule.overridable(relToBase, abs)) return { found: { kind: 'builtin', rule }, missing };
      }
      return { found: { kind: 'do', dofile: c.dofile, dir: c.dir, arg1: c.arg1, arg2: c.arg2 }, missing };
    }
    missing.push(c.dofile);
  }
  return { found: null, missing };
}
