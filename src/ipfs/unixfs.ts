/**
 * UnixFS over a blockstore: files and directories in, bytes and listings
 * out, with the DAG kubo builds for the same bytes and settings, so that a
 * CID printed here is the one kubo prints.
 *
 * kubo's defaults (its "legacy-cid-v0" profile, ipfs-unixfs-importer's
 * 'unixfs-v0-2015'): CIDv0, fixed 256 KiB chunks, a balanced DAG of at
 * most 174 links a node, dag-pb leaves, a single-chunk file is its leaf,
 * directories sharded (HAMT) past 256 KiB of links. `--cid-version 1`
 * implies raw leaves, as in kubo. A directory is added as `ipfs add -r`
 * does: names starting with '.' are left out unless `hidden`, empty
 * directories are kept, symlinks are stored as symlinks (not followed);
 * other special files are refused. No mode or mtime is stored.
 *
 * Blocks are hashed by multiformats' sha256, which in Node is node:crypto.
 */
import type { Stats } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import type { ImportCandidate, ImporterOptions } from 'ipfs-unixfs-importer';
import type { UnixFSEntry } from 'ipfs-unixfs-exporter';
import type { Blockstore } from 'interface-blockstore';
import type { AddOptions, Entry } from './client.ts';
import { IpfsError } from './errors.ts';
import { leafImporter, loadLeafMods, type LeafStore } from './leaves.ts';
import type { FileDagOptions, ReadAt } from './file-dag.ts';

/** a blockstore, or block files that also take a leaf as parts (blockfiles.ts; leaves are then written the fast way, leaves.ts) */
type WritableStorage = Pick<Blockstore, 'put'> & Partial<LeafStore>;

const hasLeafStore = (s: WritableStorage): s is WritableStorage & LeafStore => typeof s.putParts === 'function';

/** kubo's layout of a file for these options: the importer's profile, or file-dag.ts's options */
function layout(o: AddOptions): FileDagOptions {
  const cidVersion = o.cidVersion ?? 0;
  if (cidVersion !== 0 && cidVersion !== 1) throw new IpfsError(`--cid-version must be 0 or 1, not ${String(cidVersion)}`);
  if (o.chunkSize !== undefined && (!Number.isInteger(o.chunkSize) || o.chunkSize < 1 || o.chunkSize > 1 << 20)) {
    throw new IpfsError(`chunk size must be 1 to 1048576 bytes, not ${o.chunkSize}`);
  }
  return { cidVersion, rawLeaves: o.rawLeaves ?? cidVersion === 1, chunkSize: o.chunkSize ?? 262144, maxChildren: 174 };
}

async function importerOptions(o: AddOptions, store: WritableStorage): Promise<ImporterOptions> {
  const { cidVersion, rawLeaves } = layout(o);
  const opts: ImporterOptions = {
    profile: 'unixfs-v0-2015',
    cidVersion,
    rawLeaves,
    wrapWithDirectory: false,
  };
  if (o.chunkSize !== undefined) {
    const { fixedSize } = await import('./deps-more.ts');
    opts.chunker = fixedSize({ chunkSize: o.chunkSize });
  }
  if (store.putParts) {
    const leafStore = { putParts: store.putParts.bind(store) };
    opts.bufferImporter = leafImporter(await loadLeafMods(), leafStore, { rawLeaves: opts.rawLeaves!, cidVersion });
  }
  return opts;
}

/** The candidates of a directory, depth first, as `ipfs add -r` would take them. */
async function* walk(dir: string, rel: string, hidden: boolean): AsyncGenerator<ImportCandidate> {
  const names = (await fs.promises.readdir(dir)).sort();
  let any = false;
  for (const name of names) {
    if (!hidden && name.startsWith('.')) continue;
    any = true;
    const p = path.join(dir, name);
    const r = `${rel}/${name}`;
    const st = await fs.promises.lstat(p);
    if (st.isDirectory()) yield* walk(p, r, hidden);
    else if (st.isFile()) yield { path: r, content: fs.createReadStream(p, { highWaterMark: 1 << 20 }) };
    else if (st.isSymbolicLink()) yield { path: r, link: await fs.promises.readlink(p) };
    else throw new IpfsError(`${p}: not a file, directory or symlink; cannot add it`);
  }
  if (!any) yield { path: rel };
}

/** A file's DAG without the importer (file-dag.ts), into a store that takes leaves as parts; `read` gives its `size` bytes. */
async function addLean(read: ReadAt, size: number, store: WritableStorage & LeafStore, o: AddOptions): Promise<string> {
  const opts = layout(o);
  const { addFileDag, loadDagMods } = await import('./file-dag.ts');
  return (await addFileDag(await loadDagMods(), read, size, store, opts)).toString();
}

/** Adds a file or directory; returns the root CID. */
export async function addPath(file: string, blockstore: WritableStorage, o: AddOptions = {}): Promise<string> {
  let st: Stats;
  try {
    st = await fs.promises.stat(file);
  } catch (e) {
    throw new IpfsError(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (e as Error).message}`);
  }
  if (st.isFile() && hasLeafStore(blockstore)) {
    const fd = fs.openSync(file, 'r');
    try {
      return await addLean((into, at, n, pos) => fs.readSync(fd, into, at, n, pos), fs.fstatSync(fd).size, blockstore, o);
    } finally {
      fs.closeSync(fd);
    }
  }
  const { importer } = await import('./deps-more.ts');
  const opts = await importerOptions(o, blockstore);
  if (st.isFile()) {
    const r = await importer.importByteStream(fs.createReadStream(file, { highWaterMark: 1 << 20 }), blockstore, opts);
    return r.cid.toString();
  }
  if (!st.isDirectory()) throw new IpfsError(`${file}: not a file or directory`);
  const top = 'root';
  let root: string | null = null;
  for await (const entry of importer.importer(walk(file, top, o.hidden ?? false), blockstore, opts)) {
    if (entry.path === top) root = entry.cid.toString();
  }
  if (!root) throw new IpfsError(`${file}: the importer made no root directory`);
  return root;
}

export async function addBytes(data: AsyncIterable<Uint8Array> | Uint8Array, blockstore: WritableStorage, o: AddOptions = {}): Promise<string> {
  if (data instanceof Uint8Array && hasLeafStore(blockstore)) {
    const bytes = data;
    return addLean((into, at, n, pos) => (into.set(bytes.subarray(pos, pos + n), at), Math.min(n, bytes.byteLength - pos)), bytes.byteLength, blockstore, o);
  }
  const { importer } = await import('./deps-more.ts');
  const opts = await importerOptions(o, blockstore);
  const r = data instanceof Uint8Array ? await importer.importBytes(data, blockstore, opts) : await importer.importByteStream(data, blockstore, opts);
  return r.cid.toString();
}

export function entryType(e: UnixFSEntry): Entry['type'] {
  if (e.type === 'directory') return 'dir';
  if (e.type === 'file' && e.unixfs.type === 'symlink') return 'symlink';
  return 'file';
}

export function toEntry(e: UnixFSEntry): Entry {
  const type = entryType(e);
  const entry: Entry = { name: e.name, cid: e.cid.toString(), size: type === 'file' ? Number(e.size) : 0, type };
  if (type === 'symlink' && e.type === 'file') entry.target = new TextDecoder().decode(e.unixfs.data ?? new Uint8Array());
  return entry;
}
