/**
 * Merging a closure's unpacked outputs into one tree: the plan (which file
 * of which package lands at which path, and what happens where two
 * packages disagree) and writing it out by hardlinks. Venvs, tarball and
 * OCI exports and the sandbox's root (sandbox/root.ts) are all made from
 * it, so they follow the same conflict rules.
 *
 * Packages come in order, each after its run-deps. Directories merge. A
 * path two packages provide identically (the same file content and mode,
 * the same symlink target) is no conflict. Any other path provided twice
 * is a conflict, settled by the strategy, Pandora's three (seeds/000):
 *
 *   error            (the default) refuse, naming the path and both packages
 *   prefer-existing  the package earlier in the order keeps the path
 *   prefer-new       the later package takes it
 *   namespaced       nobody keeps the path: every package providing it gets
 *                    its own copy beside it, at PATH@PACKAGE (bin/x@a,
 *                    bin/x@b). The copies stay in the same directory, so
 *                    they stay on PATH and their relative links still work.
 *
 * A conflict is settled for the whole path: when a directory and a file
 * clash, the loser's subtree goes with it.
 *
 * The contents are learnt by walking the unpacked outputs, not from the
 * archives' manifests: for 20 packages of 50 files the walk takes 3 ms and
 * reading the manifests (a gunzip each) 20 ms (test/bench/venv.ts), and
 * the walk needs nothing but the directories the output store keeps. A
 * file's content is only looked at when two packages provide its path.
 *
 * Synchronous on purpose: many small system calls in a row are much
 * faster than through the thread pool.
 */
import { errorClass, PeerpkgsError } from '../errors.ts';
const fs = process.getBuiltinModule('node:fs');
import { sameContent, removeTreeSync } from './files.ts';
import { temporaryName, forget } from './temporary.ts';
import * as path from 'node:path';

/** An unpacked package output (OutputStore's), by its package's name (a sandbox root's layer, by its directory). */
export interface Output {
  name: string;
  dir: string;
  sha256: string;
  /** The package's pkghash, where the export records it (an image's layer annotations). */
  pkghash?: string;
}

export const STRATEGIES = ['error', 'prefer-existing', 'prefer-new', 'namespaced'] as const;
export type Strategy = (typeof STRATEGIES)[number];

interface Base {
  /** Index into the outputs: the package that provides the entry. */
  pkg: number;
  /** Absolute path in that package's unpacked output. */
  src: string;
}
export interface DirNode extends Base {
  type: 'directory';
  mode: number;
  /** Every package providing this directory, in order (an image layer per package holds it for each). */
  providers: number[];
  children: Map<string, Node>;
}
export interface FileNode extends Base {
  type: 'file';
  /** Every package providing this very file, in order: namespacing gives each its copy. */
  providers: number[];
  /** Each provider's own copy, beside `providers`: an image layer takes its package's, hardlinks and all. */
  sources: string[];
}
export interface SymlinkNode extends Base {
  type: 'symlink';
  target: string;
  providers: number[];
  sources: string[];
}
export type Node = DirNode | FileNode | SymlinkNode;

/** A conflict the strategy settled, for the user to be told. */
export interface Settled {
  path: string;
  /** Package names: the earlier provider, then the later one. */
  packages: [string, string];
  /** What the tree holds now at `path`, or the namespaced paths. */
  kept: string;
}

export interface MergePlan {
  outputs: Output[];
  root: DirNode;
  settled: Settled[];
  /** Entries in the plan: directories, files and symlinks. */
  entries: number;
}

/** Two packages provide different things at one path and no strategy was chosen. */
export class MergeConflictError extends PeerpkgsError {
  readonly path: string;
  readonly packages: [string, string];
  constructor(rel: string, first: string, second: string, why: string) {
    super(
      `${first} and ${second} both provide ${rel} (${why}): choose --prefer-existing (keeps ${first}'s), ` +
        `--prefer-new (keeps ${second}'s) or --namespaced (keeps both, as ${rel}@${first} and ${rel}@${second})`,
    );
    this.path = rel;
    this.packages = [first, second];
  }
}

/** A plan that cannot be carried out whatever the strategy (e.g. two packages of one name namespaced at one path). */
export class MergeError extends errorClass('MergeError') {}

export function isStrategy(s: string): s is Strategy {
  return (STRATEGIES as readonly string[]).includes(s);
}

/**
 * Plans the merge of `outputs` (each after its run-deps) into one tree;
 * `overrides` settles the paths it names its own way (a profile remembers
 * how each conflict was settled), `strategy` the others.
 */
export function planMerge(outputs: Output[], strategy: Strategy = 'error', overrides?: ReadonlyMap<string, Strategy>): MergePlan {
  const root: DirNode = { type: 'directory', pkg: -1, src: '', mode: 0o755, providers: [], children: new Map() };
  const plan: MergePlan = { outputs, root, settled: [], entries: 0 };
  const names = outputs.map((o) => o.name);
  // paths already namespaced: every later provider is namespaced too
  const namespaced = new Set<string>();

  /** Puts `fresh`, of package `pkg`, at `name` in `parent` (at `rel`). */
  const add = (pkg: number, parent: DirNode, rel: string, name: string, fresh: Node): void => {
    const p = rel ? `${rel}/${name}` : name;
    if (namespaced.has(p)) return addAs(pkg, parent, rel, `${name}@${names[pkg]}`, fresh);
    const there = parent.children.get(name);
    if (there === undefined) return place(pkg, parent, p, name, fresh);
    if (there.type === 'directory' && fresh.type === 'directory') return merge(pkg, there, fresh.src, p);
    const why = difference(there, fresh);
    if (why === null) {
      (there as FileNode | SymlinkNode).providers.push(pkg);
      (there as FileNode | SymlinkNode).sources.push(fresh.src);
      return;
    }
    const pair: [string, string] = [names[there.pkg]!, names[pkg]!];
    switch (overrides?.get(p) ?? strategy) {
      case 'error':
        throw new MergeConflictError(p, pair[0], pair[1], why);
      case 'prefer-existing':
        plan.settled.push({ path: p, packages: pair, kept: `${pair[0]}'s` });
        return;
      case 'prefer-new':
        plan.settled.push({ path: p, packages: pair, kept: `${pair[1]}'s` });
        return place(pkg, parent, p, name, fresh);
      case 'namespaced': {
        parent.children.delete(name);
        namespaced.add(p);
        // a directory several packages merged into goes whole to its first provider's name
        const earlier = there.type === 'directory' ? [there.pkg] : there.providers;
        earlier.forEach((e, k) => {
          const copy = there.type === 'directory' ? there : { ...there, pkg: e, src: there.sources[k]!, providers: [e], sources: [there.sources[k]!] };
          parent.children.set(`${name}@${names[e]}`, copy);
        });
        addAs(pkg, parent, rel, `${name}@${names[pkg]}`, fresh);
        plan.settled.push({ path: p, packages: pair, kept: [...earlier, pkg].map((i) => `${p}@${names[i]}`).join(', ') });
        return;
      }
    }
  };

  /** Puts a namespaced copy at `alias`, where only another package of the same name can be. */
  const addAs = (pkg: number, parent: DirNode, rel: string, alias: string, fresh: Node): void => {
    const p = rel ? `${rel}/${alias}` : alias;
    const there = parent.children.get(alias);
    if (there === undefined) return place(pkg, parent, p, alias, fresh);
    if (there.type === 'directory' && fresh.type === 'directory') return merge(pkg, there, fresh.src, p);
    if (difference(there, fresh) !== null) throw new MergeError(`cannot namespace a path as ${p}: two packages named ${names[pkg]} provide it differently`);
  };

  const place = (pkg: number, parent: DirNode, p: string, name: string, fresh: Node): void => {
    parent.children.set(name, fresh);
    if (fresh.type === 'directory') fill(pkg, fresh, fresh.src, p);
  };

  const merge = (pkg: number, into: DirNode, from: string, rel: string): void => {
    into.providers.push(pkg);
    fill(pkg, into, from, rel);
  };

  /** Adds the entries of package `pkg`'s directory `from` to `into`, which is at `rel` in the plan. */
  const fill = (pkg: number, into: DirNode, from: string, rel: string): void => {
    for (const d of fs.readdirSync(from, { withFileTypes: true })) {
      // a name read from a directory is never '', '.', '..' nor holds a
      // slash, and `from` is resolved: path.join would give the same path,
      // after normalising it character by character, once for every file
      const src = `${from}/${d.name}`;
      let node: Node;
      if (d.isDirectory()) node = { type: 'directory', pkg, src, mode: fs.lstatSync(src).mode & 0o7777, providers: [pkg], children: new Map() };
      else if (d.isFile()) node = { type: 'file', pkg, src, providers: [pkg], sources: [src] };
      else if (d.isSymbolicLink()) node = { type: 'symlink', pkg, src, target: fs.readlinkSync(src), providers: [pkg], sources: [src] };
      else throw new MergeError(`${src}: not a file, directory or symlink, which no package output holds`);
      add(pkg, into, rel, d.name, node);
    }
  };

  outputs.forEach((o, i) => fill(i, root, path.resolve(o.dir), ''));
  plan.entries = count(root) - 1;
  return plan;
}

/** Why two entries at one path differ, or null when they are the same thing. */
function difference(a: Node, b: Node): string | null {
  if (a.type !== b.type) return `a ${a.type} and a ${b.type}`;
  if (a.type === 'symlink') return a.target === (b as SymlinkNode).target ? null : 'symlinks to different targets';
  if (a.type === 'directory') return null;
  const sa = fs.lstatSync(a.src);
  const sb = fs.lstatSync(b.src);
  if (sa.dev === sb.dev && sa.ino === sb.ino) return null;
  if ((sa.mode & 0o7777) !== (sb.mode & 0o7777)) return 'files with different modes';
  if (sa.size !== sb.size || !sameContent(a.src, b.src)) return 'files with different content';
  return null;
}

function count(n: Node): number {
  if (n.type !== 'directory') return 1;
  let c = 1;
  for (const child of n.children.values()) c += count(child);
  return c;
}

/** What a path of the plan holds, '' being the root; undefined if nothing. */
export function lookup(plan: MergePlan, rel: string): Node | undefined {
  let n: Node = plan.root;
  for (const part of rel.split('/').filter(Boolean)) {
    if (n.type !== 'directory') return undefined;
    const next = n.children.get(part);
    if (next === undefined) return undefined;
    n = next;
  }
  return n;
}

/**
 * The permission bits of each directory and file of the plan as its
 * package has them, by path: `modesOf(output)` gives an output's, by its
 * own paths (the output store's manifest), or null to take them from the
 * disk. The tree written holds the store's read-only modes, not these.
 */
export function packageModes(plan: MergePlan, modesOf: (o: Output) => ReadonlyMap<string, { mode: number }> | null): Map<string, number> {
  const modes = new Map<string, number>();
  const known = plan.outputs.map(modesOf);
  const visit = (dir: DirNode, at: string): void => {
    for (const [name, n] of dir.children) {
      const p = at ? `${at}/${name}` : name;
      if (n.type !== 'symlink') {
        const own = known[n.pkg]?.get(path.relative(plan.outputs[n.pkg]!.dir, n.src));
        if (own !== undefined) modes.set(p, own.mode);
      }
      if (n.type === 'directory') visit(n, p);
    }
  };
  visit(plan.root, '');
  return modes;
}

export interface Written {
  /** Files and symlinks made by hardlinks into the outputs. */
  linked: number;
  /** Files copied, because the outputs are on another filesystem or may not be linked. */
  copied: number;
}

/**
 * Writes the plan into the existing, empty directory `into`: directories
 * made with the first provider's mode, files and symlinks hardlinked to
 * the unpacked outputs or, where that fails, copied and recreated.
 *
 * Paths sharing an inode in an output (a package's own hardlinks) share
 * one in the tree too, copied or not, so that an export of the tree does
 * not depend on the filesystem it was written on.
 *
 * `readOnly` takes the write bits off the directories and the copies (the
 * hardlinks are the output store's, read-only already). `dirMode` makes
 * every directory with that mode instead of its package's.
 */
export function writeMerged(plan: MergePlan, into: string, opts: { readOnly?: boolean; dirMode?: number } = {}): Written {
  const mask = opts.readOnly ? ~0o222 : ~0;
  const w: Written = { linked: 0, copied: 0 };
  const copies = new Map<string, string>(); // dev:ino of a copied source → its copy
  // packages whose files gave EXDEV: the rest of theirs will fail alike, but
  // another package's output may be on this filesystem
  const far = new Set<number>();
  const dirModes: Array<[string, number]> = [];

  /** A hardlink to `src`, of package `pkg`, unless linking fails as it may on another filesystem. */
  const link = (pkg: number, src: string, dst: string): boolean => {
    if (far.has(pkg)) return false;
    try {
      fs.linkSync(src, dst);
      w.linked++;
      return true;
    } catch (e) {
      // another filesystem, a file we may not link (protected_hardlinks),
      // or too many links: a copy does as well, only slower
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EXDEV') far.add(pkg);
      else if (code !== 'EPERM' && code !== 'EMLINK') throw e;
      return false;
    }
  };

  /** `src` at `dst`: a hardlink or, where none can be made, a copy (one per inode, linked for its other names). */
  const linkOrCopy = (pkg: number, src: string, dst: string): void => {
    if (link(pkg, src, dst)) return;
    const st = fs.statSync(src);
    const key = `${st.dev}:${st.ino}`;
    const first = st.nlink > 1 ? copies.get(key) : undefined;
    if (first !== undefined) {
      fs.linkSync(first, dst);
      return;
    }
    fs.copyFileSync(src, dst, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE);
    fs.chmodSync(dst, st.mode & 0o7777 & mask);
    if (st.nlink > 1) copies.set(key, dst);
    w.copied++;
  };

  const write = (dir: DirNode, at: string): void => {
    for (const [name, n] of dir.children) {
      const dst = `${at}/${name}`; // as fill() makes src
      if (n.type === 'directory') {
        if (opts.dirMode !== undefined) fs.mkdirSync(dst, opts.dirMode);
        else {
          fs.mkdirSync(dst, 0o700); // its own mode once it is filled: it may be read-only
          dirModes.push([dst, n.mode]);
        }
        write(n, dst);
      } else if (n.type === 'symlink') {
        // link(2) does not follow a symlink but links it, and costs a tenth
        // of making a new one: no inode to allocate (busybox has 400)
        if (!link(n.pkg, n.src, dst)) fs.symlinkSync(n.target, dst);
      } else {
        linkOrCopy(n.pkg, n.src, dst);
      }
    }
  };
  write(plan.root, path.resolve(into));
  // deepest first, so that a read-only directory is made so after its contents
  for (let i = dirModes.length - 1; i >= 0; i--) fs.chmodSync(dirModes[i]![0], dirModes[i]![1] & mask);
  return w;
}

/**
 * Renames the finished `tmp` to `dir`, moving an older `dir` aside first
 * and removing it once `tmp` is in place; true if there was one. A failure
 * leaves the older `dir` as it was.
 */
export function replaceDir(tmp: string, dir: string): boolean {
  try {
    fs.renameSync(tmp, dir);
    return false;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
  }
  // beside it, not into another directory: moving a directory to another
  // parent needs write permission on it, and a venv has none
  const old = temporaryName(dir);
  fs.renameSync(dir, old);
  try {
    fs.renameSync(tmp, dir);
  } catch (e) {
    fs.renameSync(old, dir);
    forget(old);
    throw e;
  }
  removeTreeSync(old);
  forget(old);
  return true;
}
