/**
 * Packing DESTDIR into a package's output: a deterministic .tar.gz whose
 * first entry is the manifest (manifest.ts).
 *
 * The same tree gives the same bytes wherever and whenever it was built:
 * entries sorted bytewise by path, one fixed mtime, uid/gid 0 with no names,
 * permission bits only, no atime/ctime, and gzip at a fixed level with no
 * name or time in its header. The package's identity is the sha256 of the
 * uncompressed tar, so a change of compressor never changes it.
 *
 * The manifest carries every file's sha256 but must come first, so files
 * are hashed in a first streaming pass and written in a second, which
 * hashes them again to catch a file changed in between. Setuid bits and
 * special files have no place in a package and are refused.
 */
const { createHash } = process.getBuiltinModule('node:crypto');
import type { BigIntStats } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { PassThrough, Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as tarStream from 'tar-stream';
import { ArchiveError } from './errors.ts';
import { MANIFEST_NAME, serializeManifest, type ManifestEntry } from './manifest.ts';
import { Tree } from './extract.ts';
import { temporaryName, removeTemporary } from './temporary.ts';

export interface PackResult {
  /** Of the uncompressed tar: the package's identity. */
  sha256: string;
  /** Compressed bytes. */
  size: number;
  compressedSha256: string;
  /** Paths in the archive (files, directories and links), the manifest not counted. */
  files: number;
}

interface Item extends ManifestEntry {
  abs: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A name as a string, refusing bytes that would not survive the round trip. */
function decodeName(raw: Buffer, where: string): string {
  try {
    return utf8.decode(raw);
  } catch {
    throw new ArchiveError(`cannot pack ${where}${raw.toString('latin1')}: name is not UTF-8`);
  }
}

/** Every path below srcDir with its lstat, sorted bytewise so a directory precedes its contents. */
async function walk(srcDir: string): Promise<{ rel: string; st: BigIntStats }[]> {
  const found: { rel: string; st: BigIntStats; key: Buffer }[] = [];
  const visit = async (rel: string): Promise<void> => {
    for (const raw of await reachable(rel, () => fs.promises.readdir(path.join(srcDir, rel), { encoding: 'buffer' }))) {
      const name = decodeName(raw, rel ? rel + '/' : '');
      const p = rel ? `${rel}/${name}` : name;
      if (p === MANIFEST_NAME) throw new ArchiveError(`cannot pack ${p}: the name is reserved for the archive's manifest`);
      const st = await reachable(p, () => fs.promises.lstat(path.join(srcDir, p), { bigint: true }));
      found.push({ rel: p, st, key: Buffer.from(p) });
      if (st.isDirectory()) await visit(p);
    }
  };
  await visit('');
  return found.sort((a, b) => Buffer.compare(a.key, b.key));
}

/** `f()`, its path beyond what the system can name (PATH_MAX, or too many
 * levels) an ArchiveError: a package nothing could unpack either. */
async function reachable<T>(rel: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENAMETOOLONG' && code !== 'ELOOP') throw e;
    const shown = rel.length > 80 ? `${rel.slice(0, 80)}… (${rel.length} bytes, ${rel.split('/').length} levels)` : rel;
    throw new ArchiveError(`cannot pack ${shown}: path too long or too deep`);
  }
}

function special(st: BigIntStats): string {
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a fifo';
  if (st.isSocket()) return 'a socket';
  return 'of an unknown type';
}

/** The manifest entries of srcDir; file hashes are left for hashFile. */
async function collect(srcDir: string, relativeSymlinks: boolean, modes?: ReadonlyMap<string, number>): Promise<Item[]> {
  const firstLink = new Map<string, string>(); // dev:ino → the first path to it, in archive order
  const items: Item[] = [];
  for (const { rel, st } of await walk(srcDir)) {
    const abs = path.join(srcDir, rel);
    const mode = modes?.get(rel) ?? Number(st.mode) & 0o7777;
    if (st.isDirectory()) {
      items.push({ path: rel, abs, type: 'directory', mode: mode & 0o777, size: 0 });
    } else if (st.isSymbolicLink()) {
      let target = decodeName(await fs.promises.readlink(abs, { encoding: 'buffer' }), `${rel} -> `);
      // an absolute link in a DESTDIR means the package's root: made relative
      // it means the same wherever the tree is unpacked, and extraction
      // accepts it (it refuses links that lead out of the tree)
      if (relativeSymlinks && target.startsWith('/')) target = path.posix.relative('/' + path.posix.dirname(rel), target) || '.';
      items.push({ path: rel, abs, type: 'symlink', mode: 0o777, size: 0, target });
    } else if (st.isFile()) {
      if (mode & 0o7000) {
        throw new ArchiveError(`cannot pack ${rel}: mode ${mode.toString(8)} has a setuid, setgid or sticky bit, which a package may not carry`);
      }
      const inode = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? firstLink.get(inode) : undefined;
      if (first !== undefined) {
        items.push({ path: rel, abs, type: 'link', mode, size: 0, target: first });
      } else {
        if (st.nlink > 1n) firstLink.set(inode, rel);
        items.push({ path: rel, abs, type: 'file', mode, size: Number(st.size) });
      }
    } else {
      throw new ArchiveError(`cannot pack ${rel}: it is ${special(st)}; a package holds only files, directories and links`);
    }
  }
  if (relativeSymlinks) refuseEscapes(items);
  return items;
}

/** A package whose symlink leads out of it would build, and then fail in
 * every package that unpacks it: refused here, as extraction would. */
function refuseEscapes(items: Item[]): void {
  const tree = new Tree('');
  for (const i of items) tree.placed.set(i.path, i.type === 'symlink' ? { type: 'symlink', target: i.target! } : { type: 'file' });
  for (const i of items) {
    const escape = i.type === 'symlink' ? tree.escape(i.path, i.target!) : undefined;
    if (escape !== undefined) throw new ArchiveError(`cannot pack the symlink ${i.path} -> ${i.target}: ${escape}; a package's links must stay inside it`);
  }
}

/**
 * Files up to this size are read whole, not streamed: a read stream costs a
 * 64 KiB buffer and a pipeline each, which for a closure of small files
 * was most of an export's time, in the garbage collector.
 */
const SMALL = 1 << 16;

/** A small file's bytes, hashed into item.sha256 or checked against it as hashFile does. */
async function readSmall(item: Item): Promise<Buffer> {
  const buf = await fs.promises.readFile(item.abs);
  const sha256 = createHash('sha256').update(buf).digest('hex');
  if (item.sha256 === undefined && buf.length === item.size) item.sha256 = sha256;
  else if (buf.length !== item.size || sha256 !== item.sha256) throw new ArchiveError(`cannot pack ${item.path}: it changed while being packed`);
  return buf;
}

/**
 * Hashes a file, streamed, into item.sha256 and, if given, into a tar entry.
 * Run again on an item already hashed, it checks the file is unchanged, so
 * that the manifest describes exactly the bytes written.
 */
async function hashFile(item: Item, into: NodeJS.WritableStream = new Writable({ write: (_c, _e, done) => done() })): Promise<void> {
  const changed = () => new ArchiveError(`cannot pack ${item.path}: it changed while being packed`);
  const hash = createHash('sha256');
  let size = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(size > item.size ? changed() : null, chunk);
    },
    // Before the tar entry ends, which would fail with a vaguer message.
    flush: (done) => done(size < item.size ? changed() : null),
  });
  await pipeline(fs.createReadStream(item.abs), check, into);
  const sha256 = hash.digest('hex');
  if (item.sha256 === undefined) item.sha256 = sha256;
  else if (sha256 !== item.sha256) throw changed();
}

// Added to a mode, they keep tar-stream from taking a mode of 0 for "unset"; the header keeps only the low 12 bits.
const typeBits = { file: fs.constants.S_IFREG, directory: fs.constants.S_IFDIR, symlink: fs.constants.S_IFLNK, link: fs.constants.S_IFREG };

function header(e: ManifestEntry, mtime: Date): Partial<tarStream.Header> & { name: string } {
  return {
    name: e.path,
    type: e.type,
    mode: typeBits[e.type] | e.mode,
    size: e.type === 'file' ? e.size : 0,
    linkname: e.target ?? '',
    mtime,
    uid: 0,
    gid: 0,
    uname: '',
    gname: '',
  };
}

async function writeEntries(tar: tarStream.Pack, items: Item[], manifest: Buffer | null, mtime: Date): Promise<void> {
  if (manifest !== null) {
    const manifestEntry: ManifestEntry = { path: MANIFEST_NAME, type: 'file', mode: 0o644, size: manifest.length };
    await new Promise<void>((resolve, reject) => tar.entry(header(manifestEntry, mtime), manifest, (e) => (e ? reject(e) : resolve())));
  }
  for (const item of items) {
    if (item.type === 'file' && item.size <= SMALL) {
      const buf = await readSmall(item);
      await new Promise<void>((resolve, reject) => tar.entry(header(item, mtime), buf, (e) => (e ? reject(e) : resolve())));
    } else if (item.type === 'file') await hashFile(item, tar.entry(header(item, mtime)) as unknown as NodeJS.WritableStream);
    else await new Promise<void>((resolve, reject) => tar.entry(header(item, mtime), (e) => (e ? reject(e) : resolve())));
  }
  tar.finalize();
}

/** `items` with their files' sha256s filled in. */
async function hashed(items: Item[]): Promise<Item[]> {
  for (const item of items) if (item.type === 'file') await (item.size <= SMALL ? readSmall(item) : hashFile(item));
  return items;
}

/**
 * The manifest text of the tree at `dir`, as packing it would write it: for
 * a tree unpacked from an archive that had none (a seed packed by plain
 * tar), so that the output store can check it like any other.
 */
export async function treeManifest(dir: string): Promise<string> {
  return serializeManifest(await hashed(await collect(dir, false)));
}

export interface PackOptions {
  /** Seconds, e.g. SOURCE_DATE_EPOCH, given to every entry; 0 by default. */
  mtime?: number;
  relativeSymlinks?: boolean;
  /**
   * false: a plain tar of the tree alone, neither led by the manifest nor
   * gzipped (an OCI image's layers and archive, export/oci.ts); `size` and
   * `compressedSha256` are then the tar's own.
   */
  peerpkgsArchive?: boolean;
  /** permission bits of the paths named, in place of their own */
  modes?: ReadonlyMap<string, number>;
}

/**
 * Packs the contents of srcDir into outPath (a .tar.gz, or a plain tar
 * without the manifest: PackOptions.peerpkgsArchive), replacing it only
 * once the archive is complete. `modes` gives the permission bits of the
 * paths it names, in place of their own (a tree of hardlinks into the
 * read-only output store carries the packages' modes this way).
 */
export async function packDir(srcDir: string, outPath: string, opts: PackOptions = {}): Promise<PackResult> {
  if (opts.mtime !== undefined && !(Number.isSafeInteger(opts.mtime) && opts.mtime >= 0)) {
    throw new TypeError(`packDir: mtime must be whole seconds since 1970, not ${opts.mtime}`);
  }
  const items = await hashed(await collect(srcDir, opts.relativeSymlinks === true, opts.modes));
  const archive = opts.peerpkgsArchive !== false;
  const manifest = archive ? Buffer.from(serializeManifest(items)) : null;
  const mtime = new Date((opts.mtime ?? 0) * 1000);

  const tmp = temporaryName(outPath);
  const tar = tarStream.pack();
  const tarHash = createHash('sha256');
  const gzHash = createHash('sha256');
  let size = 0;
  try {
    await Promise.all([
      pipeline(
        tar as unknown as Readable, // a streamx stream, which Node's pipeline takes
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            tarHash.update(chunk);
            yield chunk;
          }
        },
        archive ? zlib.createGzip({ level: 6 }) : new PassThrough(),
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            gzHash.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        fs.createWriteStream(tmp),
      ),
      writeEntries(tar, items, manifest, mtime).catch((e: unknown) => {
        tar.destroy(e as Error);
        throw e;
      }),
    ]);
    await fs.promises.rename(tmp, outPath);
  } finally {
    await removeTemporary(tmp); // all of it on an error, nothing after the rename
  }
  return { sha256: tarHash.digest('hex'), size, compressedSha256: gzHash.digest('hex'), files: items.length };
}
