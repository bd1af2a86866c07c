/**
 * `peerpkgs verify`: the output store, and venvs, checked file by file
 * against the manifests the store keeps (type, mode, size, sha256, link
 * target); with --repair, the store's damaged files restored from the
 * archives they were unpacked from.
 *
 * The store's files are read-only, but their owner can still chmod and
 * write them, and venvs, sandbox roots and exports share them by hardlink:
 * one edit anywhere changes them all. So a damaged file's content is
 * written back into its own inode, which repairs every hardlink to it in
 * venvs and sandbox roots at once; a file that was replaced by another
 * inode, or removed, is put back under its name.
 */
const { createHash } = process.getBuiltinModule('node:crypto');
import type { Stats } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { namesIn, removeTree } from '../archive/files.ts';
import { serializeManifest, type ManifestEntry } from '../archive/manifest.ts';
import { archiveFile, recordedSha256, storedManifest } from './outputs.ts';

/** One path that is not as the manifest says: relative to the tree ('' for the tree itself). */
export interface Damage {
  path: string;
  what: string;
}

export interface OutputCheck {
  sha256: string;
  dir: string;
  /** The package's name, when the archive's path tells it (pkg/NAME/.pkg.tar.gz). */
  name: string | null;
  /** The archive it was unpacked from, as the store recorded it. */
  archive: string | null;
  damage: Damage[];
  /** Why the tree could not be checked at all. */
  unchecked?: string;
}

/** Hashes each inode once: a package's hardlinks and a venv's links into the store are one file. */
export class Hasher {
  private readonly known = new Map<string, Promise<string>>();
  of(abs: string, st: Stats): Promise<string> {
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    let h = this.known.get(key);
    if (h === undefined) {
      const hash = createHash('sha256');
      h = pipeline(fs.createReadStream(abs), hash).then(() => hash.digest('hex'));
      this.known.set(key, h);
    }
    return h;
  }
}

const octal = (m: number) => (m & 0o7777).toString(8).padStart(4, '0');
const kind = (st: Stats) => (st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'special file');

/**
 * What is wrong with `abs` as the manifest entry `e` (of `manifest`)
 * describes it, read-only; null if nothing.
 */
export async function problem(abs: string, e: ManifestEntry, manifest: ReadonlyMap<string, ManifestEntry>, hasher: Hasher): Promise<string | null> {
  const st = fs.lstatSync(abs, { throwIfNoEntry: false });
  if (st === undefined) return 'missing';
  const want = e.type === 'link' ? 'file' : e.type;
  if (kind(st) !== want) return `a ${kind(st)}, where the package has a ${want}`;
  if (e.type === 'symlink') {
    const target = fs.readlinkSync(abs);
    return target === e.target ? null : `a symlink to ${JSON.stringify(target)}, where the package's leads to ${JSON.stringify(e.target)}`;
  }
  const whys: string[] = [];
  const mode = e.mode & ~0o222;
  if ((st.mode & 0o7777) !== mode) whys.push(`mode ${octal(st.mode)}, should be ${octal(mode)}`);
  const content = e.type === 'link' ? manifest.get(e.target ?? '') : e;
  // (a hardlink to nothing has no content to check: extraction refuses those)
  if (want === 'file' && content?.sha256 !== undefined) {
    if (st.size !== content.size) whys.push(`its content changed (${st.size} bytes, the package's ${content.size})`);
    else {
      const sha = await hasher.of(abs, st);
      if (sha !== content.sha256) whys.push(`its content changed (sha256 ${sha.slice(0, 16)}…, the package's ${content.sha256.slice(0, 16)}…)`);
    }
  }
  return whys.length ? whys.join('; ') : null;
}

/** Every path below `dir`, relative, parents first. */
export function walk(dir: string, rel = '', into: string[] = []): string[] {
  for (const d of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${d.name}` : d.name;
    into.push(p);
    if (d.isDirectory()) walk(dir, p, into);
  }
  return into;
}

/** The package a store's archive path names, if it is a package's: pkg/NAME/.pkg.tar.gz. */
function packageName(archive: string | null): string | null {
  return archive !== null && path.basename(archive) === '.pkg.tar.gz' ? path.basename(path.dirname(archive)) : null;
}

/** The trees of the output store (`<home>/outputs`), by sha256. */
export function storedOutputs(outputsDir: string): string[] {
  return namesIn(outputsDir)
    .filter((n) => /^[0-9a-f]{64}$/.test(n))
    .sort();
}

/** Checks the output `outputsDir/<sha256>` against its stored manifest. */
export async function checkOutput(outputsDir: string, sha256: string): Promise<OutputCheck> {
  const dir = path.join(outputsDir, sha256);
  let archive: string | null = null;
  try {
    archive = fs.readFileSync(archiveFile(dir), 'utf8').trim() || null;
  } catch {
    // unpacked by an older peerpkgs, or from an archive without a manifest
  }
  const check: OutputCheck = { sha256, dir, name: packageName(archive), archive, damage: [] };
  const manifest = storedManifest(dir);
  if (manifest === null) {
    check.unchecked = 'the store has no manifest for it (its archive had none, or an older peerpkgs unpacked it and no build has used it since)';
    return check;
  }
  const hasher = new Hasher();
  const top = fs.statSync(dir);
  if (top.mode & 0o222) check.damage.push({ path: '', what: `mode ${octal(top.mode)}, should have no write bits` });
  for (const e of manifest.values()) {
    const why = await problem(path.join(dir, e.path), e, manifest, hasher);
    if (why !== null) check.damage.push({ path: e.path, what: why });
  }
  for (const p of walk(dir)) if (!manifest.has(p)) check.damage.push({ path: p, what: 'not in the package' });
  return check;
}

/** The most uncompressed tar bytes a manifest's entries take: each
 * entry's content in 512-byte blocks, its header and a long name's extended
 * headers, the manifest itself, and the end blocks. */
function tarBound(manifest: Map<string, ManifestEntry>): number {
  let n = 20 * 512 + 2 * serializeManifest([...manifest.values()]).length + 4 * 512;
  for (const e of manifest.values()) n += Math.ceil(e.size / 512) * 512 + 4 * 512 + 2 * (e.path.length + (e.target?.length ?? 0));
  return n;
}

/**
 * Restores the damaged paths of `check` from the output's archive. Returns
 * null when done, or why it could not be.
 */
export async function repairOutput(check: OutputCheck): Promise<string | null> {
  if (check.archive === null || !fs.existsSync(check.archive)) {
    return `its archive ${check.archive === null ? '(unknown: the store did not record it)' : `${check.archive} is gone`}; rebuild the package, or remove ${check.dir} for the next build to unpack it again`;
  }
  const manifest = storedManifest(check.dir)!;
  // the archive may have been rebuilt into another output, of any size:
  // known to be this one before anything is written, and held to its size
  const bound = { maxBytes: tarBound(manifest), maxWhat: 'the size its manifest gives' };
  const notThis = (why: string) => `its archive ${check.archive} is no longer this output (${why}); rebuild the package`;
  const recorded = recordedSha256(check.archive);
  if (recorded !== null && recorded !== check.sha256) return notThis(`it is output ${recorded}`);
  if (recorded === null) {
    try {
      const { uncompressedSha256 } = await import('./identity.ts');
      const sha = await uncompressedSha256(check.archive, bound);
      if (sha !== check.sha256) return notThis(`it is output ${sha}`);
    } catch (e) {
      return notThis((e as Error).message);
    }
  }
  const from = path.join(path.dirname(check.dir), `.repair-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    try {
      const { extract } = await import('../archive/extract.ts');
      await extract(check.archive, from, { expectSha256: check.sha256, ...bound });
    } catch (e) {
      return notThis((e as Error).message);
    }
    const dirModes: Array<[string, number]> = [];
    // parents before their contents: a missing directory is made before what goes in it
    for (const d of [...check.damage].sort((a, b) => a.path.length - b.path.length)) {
      const abs = path.join(check.dir, d.path);
      const e = d.path === '' ? undefined : manifest.get(d.path);
      if (d.path === '') continue; // the tree's own mode, set last
      if (e === undefined) {
        // (gone already when it was in an added directory)
        if (fs.lstatSync(abs, { throwIfNoEntry: false }) !== undefined) await writable(path.dirname(abs), () => removeTree(abs));
        continue;
      }
      const st = fs.lstatSync(abs, { throwIfNoEntry: false });
      const want = e.type === 'link' ? 'file' : e.type;
      if (st !== undefined && kind(st) === want && want === 'file') {
        // the same inode, so that venvs and sandbox roots linked to it are repaired too
        fs.chmodSync(abs, 0o600);
        fs.copyFileSync(path.join(from, d.path), abs);
        fs.chmodSync(abs, e.mode & ~0o222);
      } else if (st !== undefined && kind(st) === want && want === 'directory') {
        dirModes.push([abs, e.mode & ~0o222]);
      } else {
        await writable(path.dirname(abs), async () => {
          if (st !== undefined) await removeTree(abs);
          if (e.type === 'directory') {
            fs.mkdirSync(abs, 0o700);
            dirModes.push([abs, e.mode & ~0o222]);
          } else if (e.type === 'symlink') {
            fs.symlinkSync(e.target ?? '', abs);
          } else if (e.type === 'link') {
            fs.linkSync(path.join(check.dir, e.target ?? ''), abs);
          } else {
            fs.copyFileSync(path.join(from, d.path), abs, fs.constants.COPYFILE_EXCL);
            fs.chmodSync(abs, e.mode & ~0o222);
          }
        });
      }
    }
    for (const [dir, mode] of dirModes.reverse()) fs.chmodSync(dir, mode);
    fs.chmodSync(check.dir, 0o555);
    return null;
  } finally {
    await removeTree(from);
  }
}

/** Runs `f` with `dir` writable for a moment, as a read-only tree's directory is not. */
async function writable(dir: string, f: () => Promise<void> | void): Promise<void> {
  const mode = fs.statSync(dir).mode & 0o7777;
  fs.chmodSync(dir, mode | 0o700);
  try {
    await f();
  } finally {
    fs.chmodSync(dir, mode);
  }
}
