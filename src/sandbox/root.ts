/**
 * The sandbox's root filesystem: the unpacked outputs of a build closure
 * merged into one tree, which bwrap.ts mounts read-only at /.
 *
 * bwrap binds a directory over another but cannot merge two, and this
 * bubblewrap has no overlayfs. So a root is a real directory whose files are
 * hardlinks into the unpacked outputs (copies across filesystems), with
 * directories and symlinks recreated. Linking thousands of files costs far
 * more than starting bwrap, so a root is made once per closure and kept
 * under $PEERPKGS_HOME/roots/<key>, the key hashing the layers' identities
 * in order; a later build of the same closure pays only for bwrap. A root is
 * made under a temporary name and renamed into place, so no build ever sees
 * half a root and two processes making the same one both succeed.
 *
 * Synchronous on purpose: many small system calls in a row are several
 * times faster than the same calls through the thread pool, and a root is
 * made once per closure.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { sameContent } from '../archive/files.ts';
import * as path from 'node:path';
import { MOUNT_POINTS } from './bwrap.ts';
import { temporaryName, forget } from '../archive/temporary.ts';

/** An unpacked package output and what identifies its content (its sha256). */
export interface Layer {
  dir: string;
  id: string;
}

/** Two layers provide different things at one path. */
export class RootConflictError extends Error {
  readonly path: string;
  readonly layers: [Layer, Layer];
  constructor(rel: string, first: Layer, second: Layer) {
    super(`sandbox root: /${rel} is provided by both ${first.dir} (${first.id}) and ${second.dir} (${second.id})`);
    this.name = 'RootConflictError';
    this.path = rel;
    this.layers = [first, second];
  }
}

// part of the key: a change to what a root holds must not reuse old roots
const FORMAT = 'peerpkgs-root-1';

export function rootKey(layers: Layer[]): string {
  const ids = JSON.stringify([FORMAT, ...layers.map((l) => l.id)]);
  return crypto.createHash('sha256').update(ids).digest('hex').slice(0, 32);
}

export function assembleRoot(home: string, layers: Layer[]): { root: string; reused: boolean; ms: number } {
  const t0 = performance.now();
  const roots = path.join(home, 'roots');
  const root = path.join(roots, rootKey(layers));
  const done = (reused: boolean) => ({ root, reused, ms: performance.now() - t0 });
  if (fs.existsSync(root)) return done(true);
  fs.mkdirSync(roots, { recursive: true });
  const tmp = temporaryName(root);
  fs.mkdirSync(tmp);
  try {
    layers.forEach((layer, i) => merge(layer, layers.slice(0, i), tmp, ''));
    addMountPoints(tmp);
    fs.chmodSync(tmp, 0o755);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  try {
    fs.renameSync(tmp, root);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (isCode(e, 'ENOTEMPTY', 'EEXIST')) return done(true); // another process made it first
    throw e;
  } finally {
    forget(tmp);
  }
  return done(false);
}

/** Adds the part of `layer` under `rel` to the root `into`; `earlier` are
 * the layers already there, to name in a conflict. */
function merge(layer: Layer, earlier: Layer[], into: string, rel: string): void {
  for (const entry of fs.readdirSync(path.join(layer.dir, rel), { withFileTypes: true })) {
    const r = path.join(rel, entry.name);
    const src = path.join(layer.dir, r);
    const dst = path.join(into, r);
    const conflict = () => new RootConflictError(r, earlier.find((l) => lexists(path.join(l.dir, r))) ?? earlier[0]!, layer);
    if (entry.isDirectory()) {
      // 0755 whatever the layer says: a read-only mode would stop the next
      // layer merging into it, and the root is mounted read-only anyway
      if (!tryCreate(() => fs.mkdirSync(dst, 0o755)) && !fs.lstatSync(dst).isDirectory()) throw conflict();
      merge(layer, earlier, into, r);
    } else if (entry.isSymbolicLink()) {
      const target = fs.readlinkSync(src);
      if (!tryCreate(() => fs.symlinkSync(target, dst)) && !sameSymlink(dst, target)) throw conflict();
    } else if (entry.isFile()) {
      if (!tryCreate(() => linkOrCopy(src, dst)) && !sameFile(src, dst)) throw conflict();
    } else {
      throw new Error(`sandbox root: ${src} is not a file, directory or symlink`);
    }
  }
}

/** false when the path already exists (an earlier layer made it) */
function tryCreate(create: () => void): boolean {
  try {
    create();
    return true;
  } catch (e) {
    if (isCode(e, 'EEXIST')) return false;
    throw e;
  }
}

function linkOrCopy(src: string, dst: string): void {
  try {
    fs.linkSync(src, dst);
  } catch (e) {
    // another filesystem, a file we may not link (protected_hardlinks), or
    // too many links: a copy does as well, only slower
    if (!isCode(e, 'EXDEV', 'EPERM', 'EMLINK')) throw e;
    fs.copyFileSync(src, dst, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE);
  }
}

function sameSymlink(p: string, target: string): boolean {
  return fs.lstatSync(p).isSymbolicLink() && fs.readlinkSync(p) === target;
}

function sameFile(a: string, b: string): boolean {
  const sa = fs.lstatSync(a);
  const sb = fs.lstatSync(b);
  if (!sb.isFile() || sa.size !== sb.size || (sa.mode & 0o777) !== (sb.mode & 0o777)) return false;
  return (sa.dev === sb.dev && sa.ino === sb.ino) || sameContent(a, b);
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

function lexists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function isCode(e: unknown, ...codes: string[]): boolean {
  return codes.includes((e as NodeJS.ErrnoException).code ?? '');
}
