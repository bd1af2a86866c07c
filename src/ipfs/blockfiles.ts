/**
 * The blockstore as Helia sees it: blocks are written into packs
 * (packs.ts), and read from the packs, then from blockstore-fs's block
 * files (one file a block: what the store held before packs, still read
 * and collected), then from the filestore (a leaf of a file added with
 * nocopy, filestore.ts).
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import type { CID } from 'multiformats/cid';
import type { Filestore } from './filestore.ts';
import { keyOf, type BlockPacks } from './packs.ts';

type Base32 = typeof import('multiformats/bases/base32').base32upper;

/** where blockstore-fs keeps the block of `cid` under `dir` (its next-to-last sharding) */
function blockPath(dir: string, base32upper: Base32, cid: CID): string {
  const name = base32upper.encode(cid.multihash.bytes);
  return path.join(dir, name.slice(-2), `${name}.data`);
}

type Bytes = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

async function whole(val: Bytes): Promise<Uint8Array> {
  if (val instanceof Uint8Array) return val;
  const parts: Uint8Array[] = [];
  for await (const p of val) parts.push(p);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/**
 * `store` (a blockstore-fs on `dir`) whose put and putMany append to the
 * packs: blocks arriving from peers are stored as added ones are. A get
 * reads the block in one read into one buffer: blockstore-fs's streamed a
 * block file in 64 KiB pieces, which bitswap's sender then joined one
 * piece at a time (it-to-buffer), copying a 256 KiB block some 2.5 times
 * over. `has` and `get` ask the packs, the block files and the filestore
 * in turn; a delete drops a block from both stores. Everything else
 * (listing) is blockstore-fs's own.
 */
export function withPacks<T extends object>(store: T, packs: BlockPacks, dir: string, base32upper: Base32, filestore?: Filestore): T {
  // a home made since the packs has no block files: not looked for, each miss cost a failed access(2) and its exception
  const files = listBlockFiles(dir, base32upper, 1).length > 0;
  const put = async (cid: CID, val: Bytes) => packs.put(cid, await whole(val));
  async function* putMany(source: Iterable<{ cid: CID; bytes: Bytes }> | AsyncIterable<{ cid: CID; bytes: Bytes }>): AsyncGenerator<CID> {
    for await (const { cid, bytes } of source) yield await put(cid, bytes);
  }
  const fromFile = async (cid: CID, signal?: AbortSignal): Promise<Uint8Array | null> => {
    if (!files) return null;
    try {
      return await fs.promises.readFile(blockPath(dir, base32upper, cid), { signal });
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e;
      return null;
    }
  };
  async function* get(cid: CID, options?: { signal?: AbortSignal }): AsyncGenerator<Uint8Array> {
    options?.signal?.throwIfAborted();
    // a leaf of a file added with nocopy is in that file
    const block = (await packs.get(cid)) ?? (await fromFile(cid, options?.signal)) ?? (await filestore?.get(cid));
    // the error blockstore-fs gives, which Helia and the exporter recognise by name
    if (!block) throw Object.assign(new Error(`${cid}: not in the blockstore`), { name: 'NotFoundError' });
    yield block;
  }
  const base = store as unknown as { has(c: CID, o?: object): Promise<boolean>; delete(c: CID, o?: object): Promise<void> };
  const has = async (cid: CID, options?: object): Promise<boolean> => packs.has(cid) || filestore?.has(cid) || (files && base.has(cid, options));
  // (Helia's own gc deletes, which peerpkgs does not use: `peerpkgs gc` rewrites the packs once, node.ts)
  const drop = async (cids: CID[], options?: object): Promise<void> => {
    const gone = new Set(cids.map((c) => keyOf(c.multihash.bytes)));
    await packs.rewrite((mh) => !gone.has(keyOf(mh)));
    for (const c of cids) await base.delete(c, options);
  };
  const del = (cid: CID, options?: object) => drop([cid], options);
  async function* deleteMany(source: Iterable<CID> | AsyncIterable<CID>, options?: object): AsyncGenerator<CID> {
    const cids: CID[] = [];
    for await (const c of source) cids.push(c);
    await drop(cids, options);
    yield* cids;
  }
  return new Proxy(store, {
    get(target, key) {
      if (key === 'put') return put;
      if (key === 'putMany') return putMany;
      if (key === 'get') return get;
      if (key === 'has') return has;
      if (key === 'delete') return del;
      if (key === 'deleteMany') return deleteMany;
      const v = Reflect.get(target, key, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** A block file of the store: its path, the multihash its name encodes, and the bytes it takes on disk. */
export interface BlockFile {
  file: string;
  multihash: Uint8Array;
  diskBytes: number;
}

/**
 * Every block file under `dir`, read from the names alone (listing the
 * blockstore would read every block), or the first `atMost` of them. A
 * name that does not decode is not a block of ours and is not listed.
 */
export function listBlockFiles(dir: string, base32upper: Base32, atMost = Infinity): BlockFile[] {
  const out: BlockFile[] = [];
  const entries = (d: string) => {
    try {
      return fs.readdirSync(d, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  };
  for (const sub of entries(dir)) {
    if (!sub.isDirectory()) continue;
    for (const f of entries(path.join(dir, sub.name))) {
      if (!f.isFile() || !f.name.endsWith('.data')) continue;
      let multihash: Uint8Array;
      try {
        multihash = base32upper.decode(f.name.slice(0, -'.data'.length));
      } catch {
        continue;
      }
      const file = path.join(dir, sub.name, f.name);
      const st = fs.statSync(file, { throwIfNoEntry: false });
      if (st) out.push({ file, multihash, diskBytes: st.blocks * 512 });
      if (out.length >= atMost) return out;
    }
  }
  return out;
}
