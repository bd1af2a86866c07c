/**
 * Unpacked package outputs, kept under $PEERPKGS_HOME/outputs/<sha256>
 * where sha256 is the output's identity (the hash of its uncompressed
 * archive). A build's sandbox root is assembled from these, so a
 * dependency's tarball is extracted once, not once per build that uses it.
 *
 * The identity of `pkg/X/.pkg.tar.gz` is recorded beside it in
 * `.pkg.tar.gz.sha256` by the rule that packs it; for an archive made
 * otherwise (a seed's .do) it is learned by unpacking it. Which pkghash it
 * was built from is in the redo state, where the build recorded its inputs.
 *
 * A tree is read-only, directories included: venvs, sandbox roots and
 * exports share its files by hardlink. Beside it the store keeps the
 * archive's manifest, `<sha256>.manifest`, which `peerpkgs verify` checks
 * the tree against, and `<sha256>.archive`, the path of the archive it was
 * unpacked from, which `verify --repair` restores it from. Both are written
 * before the tree is renamed into place, so a tree in place has them (but
 * the manifest, for an archive without one), or was unpacked by an older
 * peerpkgs: they are added when it is next used.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
// extract.ts, identity.ts and pack.ts (tar, zlib, streams) are loaded when
// an archive is read: an install or export of outputs already unpacked,
// the common case, only looks at the store
import type { ExtractOptions } from '../archive/extract.ts';
import { homeLayout } from '../home.ts';
import { ArchiveError } from '../archive/errors.ts';
import { temporaryName, removeTemporary, removeTemporaryFile, withTemporaryFile } from '../archive/temporary.ts';
import { parseManifest, readManifest, serializeManifest, type ManifestEntry } from '../archive/manifest.ts';
import { findBase, STATE_DIR } from '../engine/engine.ts';
import { State, sameSig } from '../engine/state.ts';

export const SHA_SUFFIX = '.sha256';

export interface Unpacked {
  dir: string;
  sha256: string;
}

/**
 * The identity recorded beside an archive, if it is still the archive's:
 * the record names the file by size and inode (a rename keeps both; a new
 * archive from a cache or a rebuild has another inode).
 */
export function recordedSha256(archive: string): string | null {
  try {
    const [sha, size, ino] = fs
      .readFileSync(archive + SHA_SUFFIX, 'utf8')
      .trim()
      .split(' ');
    const st = fs.statSync(archive);
    if (Number(size) !== st.size || Number(ino) !== st.ino) return null;
    return /^[0-9a-f]{64}$/.test(sha ?? '') ? sha! : null;
  } catch {
    return null;
  }
}

/** Write the identity of `file` beside `name` (default: the file itself). */
export function recordSha256(file: string, sha256: string, name = file): void {
  const st = fs.statSync(file);
  withTemporaryFile(name + SHA_SUFFIX, (tmp) => {
    fs.writeFileSync(tmp, `${sha256} ${st.size} ${st.ino}\n`);
    fs.renameSync(tmp, name + SHA_SUFFIX);
  });
}

/**
 * The pkghash the build of `archive` (a package's .pkg.tar.gz) started from,
 * as the state of the tree holding it recorded: null when no record is of
 * this file as it stands (state lost or copied, the file replaced), so the
 * next build rebuilds it; '' when its rule used no pkghash (a seed's .do).
 */
export function builtFromPkghash(archive: string): string | null {
  const st = fs.statSync(archive, { throwIfNoEntry: false });
  if (!st) return null;
  const real = fs.realpathSync(archive);
  const base = fs.realpathSync(findBase(path.dirname(real)));
  const state = new State(path.join(base, STATE_DIR));
  state.load();
  const rec = state.targets.get(path.relative(base, real));
  if (!rec || !sameSig(st, rec.sig)) return null;
  const pkghash = path.relative(base, path.join(path.dirname(real), '.pkghash'));
  const dep = rec.deps.find((d) => d.k === 'c' && d.p === pkghash);
  return dep?.k === 'c' && dep.id.startsWith('s:') ? dep.id.slice(2) : '';
}

export class OutputStore {
  readonly dir: string;

  constructor(home: string) {
    this.dir = homeLayout.outputs(home);
  }

  path(sha256: string): string {
    return path.join(this.dir, sha256);
  }

  /** The unpacked tree of `archive`, extracting it if not there yet. */
  async unpacked(archive: string): Promise<Unpacked> {
    const recorded = recordedSha256(archive);
    // no record (a seed made by its .do, or a stale one): hashing the
    // uncompressed stream finds an unpacked copy ten times faster than
    // extracting it again (12 ms against 135 ms for a busybox seed)
    const known = recorded ?? (await (await import('./identity.ts')).uncompressedSha256(archive));
    const dir = this.path(known);
    if (fs.existsSync(dir)) {
      if (!recorded) recordSha256(archive, known);
      // unpacked by an older peerpkgs, which kept no record of its origin
      if (!fs.existsSync(archiveFile(dir))) await recordOrigin(dir, await manifestOf(archive), archive);
      return { dir, sha256: known };
    }
    const u = await unpackOutput(this.dir, archive, known, archive);
    recordSha256(archive, u.sha256);
    return u;
  }
}

/** The store's copy of an output's manifest, beside its tree `dir`. */
export function manifestFile(dir: string): string {
  return `${dir}.manifest`;
}

/** The manifest kept beside the tree `dir`, by path; null if none was (an archive without one). */
export function storedManifest(dir: string): Map<string, ManifestEntry> | null {
  let text: string;
  try {
    text = fs.readFileSync(manifestFile(dir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  return new Map(parseManifest(text).map((e) => [e.path, e]));
}

/** The store's record of the archive an output was unpacked from, beside its tree `dir`. */
export function archiveFile(dir: string): string {
  return `${dir}.archive`;
}

/**
 * Unpacks `source` (an archive, or its bytes streaming in from a cache)
 * into outputsDir/<sha256>, read-only, unless it is there already, and
 * records its manifest and `archive`, where the archive is (or will be).
 * What a failure leaves is removed.
 */
export async function unpackOutput(
  outputsDir: string,
  source: string | NodeJS.ReadableStream,
  expectSha256: string,
  archive: string,
  bound: Pick<ExtractOptions, 'maxBytes' | 'maxWhat'> = {},
): Promise<Unpacked> {
  fs.mkdirSync(outputsDir, { recursive: true });
  const tmp = temporaryName(path.join(outputsDir, 'unpack'));
  try {
    const [{ extract }, { treeManifest }] = await Promise.all([import('../archive/extract.ts'), import('../archive/pack.ts')]);
    const { sha256, manifest } = await extract(source, tmp, { expectSha256, readOnly: true, ...bound });
    const dest = path.join(outputsDir, sha256);
    if (!fs.existsSync(dest)) {
      // an archive without a manifest (a plain tar) gets the store's own, of what was placed
      await recordOrigin(dest, manifest ?? (await treeManifest(tmp)), archive);
      try {
        fs.renameSync(tmp, dest);
      } catch (e) {
        // another process unpacked it meanwhile
        if (!['ENOTEMPTY', 'EEXIST'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
      }
    }
    return { dir: dest, sha256 };
  } finally {
    await removeTemporary(tmp); // all of it on an error, nothing after the rename
  }
}

/** The manifest's text of a peerpkgs archive; undefined for another tarball (a seed packed otherwise). */
async function manifestOf(archive: string): Promise<string | undefined> {
  try {
    return serializeManifest(await readManifest(archive));
  } catch (e) {
    if (e instanceof ArchiveError) return undefined;
    throw e;
  }
}

/**
 * Writes the manifest, if the archive has one, and the archive's path
 * beside the tree `dir`, each under a temporary name first; the path last,
 * as it tells that the record is complete.
 */
async function recordOrigin(dir: string, manifest: string | undefined, archive: string): Promise<void> {
  const records: Array<[string, string]> = [[archiveFile(dir), `${path.resolve(archive)}\n`]];
  if (manifest !== undefined) records.unshift([manifestFile(dir), manifest]);
  for (const [file, text] of records) {
    // one process may unpack an output for two builds at once
    const tmp = temporaryName(file);
    try {
      await fs.promises.writeFile(tmp, text, { mode: 0o444 });
      await fs.promises.rename(tmp, file);
    } finally {
      removeTemporaryFile(tmp);
    }
  }
}
