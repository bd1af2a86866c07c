/**
 * The sandbox's root filesystem: the unpacked outputs of a build closure
 * merged into one tree, which bwrap.ts mounts read-only at /.
 *
 * bwrap binds a directory over another but cannot merge two, and this
 * bubblewrap has no overlayfs. So a root is a real directory whose files
 * and symlinks are hardlinks into the unpacked outputs (copies across
 * filesystems), with directories recreated: the merge venvs and exports
 * make too (archive/merge.ts), under its conflict rules, where a path two
 * layers provide must be the same symlink or the same file, mode included.
 *
 * Linking thousands of files costs far more than starting bwrap, so a root
 * is made once per closure and kept under $PEERPKGS_HOME/roots/<key>, the
 * key hashing the layers' identities in order; a later build of the same
 * closure pays only for bwrap. A root is made under a temporary name and
 * renamed into place, so no build ever sees half a root and two processes
 * making the same one both succeed.
 *
 * Synchronous on purpose, as the merge is: many small system calls in a
 * row are several times faster than the same calls through the thread
 * pool, and a root is made once per closure.
 */
import { PeerpkgsError } from '../errors.ts';
const crypto = process.getBuiltinModule('node:crypto');
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { removeTreeSync } from '../archive/files.ts';
import { planMerge, writeMerged, MergeConflictError, type MergePlan, type Output } from '../archive/merge.ts';
import { MOUNT_POINTS } from './bwrap.ts';
import { homeLayout } from '../home.ts';
import { temporaryName, forget } from '../archive/temporary.ts';

/** An unpacked package output and what identifies its content (its sha256). */
export interface Layer {
  dir: string;
  id: string;
}

/** Two layers provide different things at one path. */
export class RootConflictError extends PeerpkgsError {
  readonly path: string;
  readonly layers: [Layer, Layer];
  constructor(rel: string, first: Layer, second: Layer) {
    super(`sandbox root: /${rel} is provided by both ${first.dir} (${first.id}) and ${second.dir} (${second.id})`);
    this.path = rel;
    this.layers = [first, second];
  }
}

// part of the key: a change to what a root holds must not reuse old roots
// (2: the merge of exports, whose modes compare setuid bits too and whose
// copies keep hardlinks)
const FORMAT = 'peerpkgs-root-2';

/**
 * A root is named by its layers' content and by which unpacked copy of
 * each it links to (the directory's device, inode and change time): an output unpacked
 * again (removed after damage, say) is a new copy, and a root that still
 * links the old copy's files is not reused for it.
 */
export function rootKey(layers: Layer[]): string {
  const ids = JSON.stringify([
    FORMAT,
    ...layers.map((l) => {
      // the inode alone may be the removed copy's, reused at once; the
      // change time is the new copy's own (its rename into place sets it)
      const st = fs.statSync(l.dir, { bigint: true });
      return `${l.id} ${st.dev} ${st.ino} ${st.ctimeNs}`;
    }),
  ]);
  return crypto.createHash('sha256').update(ids).digest('hex').slice(0, 32);
}

export function assembleRoot(home: string, layers: Layer[]): { root: string; reused: boolean; ms: number } {
  const t0 = performance.now();
  const roots = homeLayout.roots(home);
  const root = path.join(roots, rootKey(layers));
  const done = (reused: boolean) => ({ root, reused, ms: performance.now() - t0 });
  if (fs.existsSync(root)) return done(true);
  fs.mkdirSync(roots, { recursive: true });
  const plan = planRoot(layers);
  const tmp = temporaryName(root);
  fs.mkdirSync(tmp);
  try {
    // 0755 whatever the layers say: the root is mounted read-only anyway,
    // and a directory needs no chmod once it is filled
    writeMerged(plan, tmp, { dirMode: 0o755 });
    addMountPoints(tmp);
    fs.chmodSync(tmp, 0o755);
  } catch (e) {
    removeTreeSync(tmp);
    throw e;
  }
  try {
    fs.renameSync(tmp, root);
  } catch (e) {
    removeTreeSync(tmp);
    if (isCode(e, 'ENOTEMPTY', 'EEXIST')) return done(true); // another process made it first
    throw e;
  } finally {
    forget(tmp);
  }
  return done(false);
}

/** The merge of the layers, as exports merge a closure; a conflict is never settled, but refused. */
function planRoot(layers: Layer[]): MergePlan {
  // a layer is named by its directory, which a conflict names
  const outputs: Output[] = layers.map((l) => ({ name: l.dir, dir: l.dir, sha256: l.id }));
  try {
    return planMerge(outputs, 'error');
  } catch (e) {
    if (!(e instanceof MergeConflictError)) throw e;
    const layer = (dir: string) => layers.find((l) => l.dir === dir)!;
    throw new RootConflictError(e.path, layer(e.packages[0]), layer(e.packages[1]));
  }
}

/** false when the path already exists (a layer made it) */
function tryCreate(create: () => void): boolean {
  try {
    create();
    return true;
  } catch (e) {
    if (isCode(e, 'EEXIST')) return false;
    throw e;
  }
}

/** The directories and files bwrap mounts over must exist in a read-only
 * root. Each is a fresh inode of the root's own, never a layer's file. */
function addMountPoints(root: string): void {
  const ensureDir = (rel: string) => {
    let p = root;
    for (const part of rel.split('/')) {
      p = path.join(p, part);
      // a symlink here would point bwrap's mounts somewhere else
      if (!tryCreate(() => fs.mkdirSync(p, 0o755)) && !fs.lstatSync(p).isDirectory())
        throw new Error(`sandbox root: /${path.relative(root, p)} must be a directory (the sandbox mounts on it), but a layer provides something else`);
    }
  };
  for (const d of MOUNT_POINTS.dirs) ensureDir(d);
  for (const f of MOUNT_POINTS.files) {
    ensureDir(path.dirname(f));
    const p = path.join(root, f);
    if (!tryCreate(() => fs.writeFileSync(p, '', { flag: 'wx', mode: 0o644 })) && !fs.lstatSync(p).isFile())
      throw new Error(`sandbox root: /${f} must be a file (the sandbox mounts on it), but a layer provides something else`);
  }
}

function isCode(e: unknown, ...codes: string[]): boolean {
  return codes.includes((e as NodeJS.ErrnoException).code ?? '');
}
