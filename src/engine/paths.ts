/**
 * Target and path resolution: where the state of a tree lives (its base,
 * holding .redo) and how a path given from some directory becomes the
 * base-relative name a target is known by, and back.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { BuildError } from './job.ts';

export const STATE_DIR = '.redo';

/** Find the directory holding .redo, from `start` upward; else `start`. */
export function findBase(start: string): string {
  for (let d = start; ;) {
    if (fs.statSync(path.join(d, STATE_DIR), { throwIfNoEntry: false })?.isDirectory()) return d;
    const up = path.dirname(d);
    if (up === d) return start;
    d = up;
  }
}

/** Names of targets below one base. Directories' physical paths are
 * remembered for the run (forget() drops them). */
export class Paths {
  readonly base: string;
  private readonly basePrefix: string;
  private readonly realDirs = new Map<string, string>();

  /** `base` must be a physical path (symlinks resolved) */
  constructor(base: string) {
    this.base = base;
    this.basePrefix = base === '/' ? '/' : base + '/';
  }

  rel(abs: string): string {
    const r = path.relative(this.base, abs);
    return r === '' ? '.' : r;
  }

  abs(rel: string): string {
    // rel is normalised already: joining is enough, and cheaper than resolve
    return rel === '.' ? this.base : rel.startsWith('../') || rel === '..' ? path.resolve(this.base, rel) : this.basePrefix + rel;
  }

  forget(): void {
    this.realDirs.clear();
  }

  /** Base-relative path of `arg` given relative to `cwd`. The common case,
   * a plain name below the base, is sliced rather than resolved. */
  relFrom(cwd: string, arg: string): string {
    if (arg === '') throw new BuildError('an empty target name', 2);
    if (arg.includes('\n')) throw new BuildError(`${JSON.stringify(arg)}: target names cannot contain a newline`, 2);
    const rcwd = this.realDir(cwd);
    let abs: string;
    if (!arg.includes('/') && arg !== '.' && arg !== '..') {
      abs = rcwd === '/' ? '/' + arg : rcwd + '/' + arg;
    } else {
      // `..` is resolved physically, as the shell's cd -P would: through a
      // symlinked directory it leads to the link target's parent
      const joined = arg[0] === '/' ? arg : rcwd + '/' + arg;
      const trimmed = joined.replace(/\/+$/, '') || '/';
      const slash = trimmed.lastIndexOf('/');
      const name = trimmed.slice(slash + 1);
      const dir = this.realDir(trimmed.slice(0, slash) || '/');
      abs = name === '..' ? path.dirname(dir) : name === '.' || name === '' ? dir : dir === '/' ? '/' + name : dir + '/' + name;
    }
    return abs.startsWith(this.basePrefix) ? abs.slice(this.basePrefix.length) : this.rel(abs);
  }

  /** The physical path of a directory (symlinks resolved), remembered for the run. */
  private realDir(d: string): string {
    const known = this.realDirs.get(d);
    if (known !== undefined) return known;
    let real: string;
    try {
      // realpath(3): plain fs.realpathSync drops `x/..` by name first
      real = fs.realpathSync.native(d);
      this.realDirs.set(d, real);
    } catch {
      // not there (yet): resolve what exists, the rest by name
      const parent = path.dirname(d);
      if (parent === d) return d;
      const name = path.basename(d);
      const rp = this.realDir(parent);
      real = name === '..' ? path.dirname(rp) : name === '.' ? rp : path.join(rp, name);
    }
    return real;
  }
}
