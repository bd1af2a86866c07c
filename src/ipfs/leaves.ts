/**
 * The leaves of an added file, hashed and written without copying: the
 * importer's `bufferImporter` (ipfs-unixfs-importer), which is where
 * adding a big file spends its time.
 *
 * The importer's own encodes each 256 KiB chunk into a new dag-pb block
 * (a copy), hashes it, and hands it to the blockstore. A dag-pb leaf is
 * the chunk between a prefix and a suffix that depend only on its length
 * (the protobuf field headers and the UnixFS type and size), so here the
 * hash is fed prefix, chunk and suffix in turn and the block file is
 * written from the three with one writev: the same bytes, hence the same
 * CID, with the chunk never copied. Raw leaves (CIDv1) are the chunk
 * itself. The prefix and suffix are taken from dag-pb's own encoder for
 * each chunk length met, so they are what the importer would have made.
 * Everything above the leaves (the balanced tree, directories) stays the
 * importer's.
 */
const { createHash } = process.getBuiltinModule('node:crypto');
import type { BufferImporter } from 'ipfs-unixfs-importer';
import type { CID } from 'multiformats/cid';
import { RAW, SHA256 } from './codes.ts';

/** where a leaf's bytes are in the file being added: what the filestore records instead of the block */
export interface LeafPlace {
  offset: number;
  length: number;
  kind: 'raw' | 'pb';
}

/** where leaves go: whole blocks as parts, written in order (blockfiles.ts), their places (filestore.ts), or nowhere when only hashing */
export interface LeafStore {
  /** the parts are the store's until this returns, or until the promise it returns settles: their buffers are used again */
  putParts(cid: CID, parts: Uint8Array[], place: LeafPlace): Promise<unknown> | unknown;
}

interface Mods {
  dagPb: typeof import('@ipld/dag-pb');
  UnixFS: typeof import('ipfs-unixfs').UnixFS;
  CID: typeof import('multiformats/cid').CID;
  Digest: typeof import('multiformats/hashes/digest');
}

export async function loadLeafMods(): Promise<Mods> {
  const { dagPb, UnixFS, CID, Digest } = await import('./deps-dag.ts');
  return { dagPb, UnixFS, CID, Digest };
}

function varint(out: number[], n: number): void {
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
}

/**
 * UnixFS's Data of a file node, as ipfs-unixfs marshals it, for what a
 * file added here has: Type (file), Data (its bytes, when there are any),
 * filesize, then blocksizes, one a child. Written here so that adding a
 * file need not load ipfs-unixfs (protons and all: ~30 ms of a command).
 */
export function fileData(data: Uint8Array | undefined, blockSizes: number[]): Uint8Array {
  const head: number[] = [0x08, 0x02];
  let size = blockSizes.reduce((a, b) => a + b, 0);
  if (data?.byteLength) {
    head.push(0x12);
    varint(head, data.byteLength);
    size += data.byteLength;
  }
  const tail: number[] = [0x18];
  varint(tail, size);
  for (const b of blockSizes) {
    tail.push(0x20);
    varint(tail, b);
  }
  const out = new Uint8Array(head.length + (data?.byteLength ?? 0) + tail.length);
  out.set(head, 0);
  if (data) out.set(data, head.length);
  out.set(tail, out.length - tail.length);
  return out;
}

/** dag-pb's encoding of a UnixFS file leaf of `n` bytes, around the bytes */
export function frame(m: Pick<Mods, 'dagPb'>, n: number): { prefix: Uint8Array; suffix: Uint8Array } {
  const enc = (fill: number) => m.dagPb.encode({ Data: fileData(new Uint8Array(n).fill(fill), []), Links: [] });
  const a = enc(0);
  const b = enc(1);
  let at = 0;
  while (at < a.length && a[at] === b[at]) at++;
  if (n === 0) at = a.length; // no data bytes to tell apart: an empty leaf is all header
  return { prefix: a.slice(0, at), suffix: a.slice(at + n) };
}

export function leafImporter(m: Mods, store: LeafStore, opts: { rawLeaves: boolean; cidVersion: 0 | 1 }): BufferImporter {
  const frames = new Map<number, { prefix: Uint8Array; suffix: Uint8Array }>();
  return async function* (file) {
    // each file's leaves come in the order of its bytes
    let offset = 0;
    for await (const chunk of file.content) {
      const place: LeafPlace = { offset, length: chunk.byteLength, kind: opts.rawLeaves ? 'raw' : 'pb' };
      offset += chunk.byteLength;
      yield async () => {
        let parts: Uint8Array[];
        let cid: CID;
        let unixfs: InstanceType<Mods['UnixFS']> | undefined;
        const h = createHash('sha256');
        if (opts.rawLeaves) {
          parts = [chunk];
          h.update(chunk);
          cid = m.CID.create(1, RAW, m.Digest.create(SHA256, h.digest()));
        } else {
          let f = frames.get(chunk.byteLength);
          if (!f) {
            f = frame(m, chunk.byteLength);
            frames.set(chunk.byteLength, f);
          }
          parts = [f.prefix, chunk, f.suffix];
          for (const p of parts) h.update(p);
          cid = m.CID.create(opts.cidVersion, m.dagPb.code, m.Digest.create(SHA256, h.digest()));
          // what the tree above needs of it: the type and the size
          unixfs = new m.UnixFS({ type: 'file', data: chunk });
        }
        await store.putParts(cid, parts, place);
        const size = parts.reduce((n, p) => n + p.byteLength, 0);
        // `block` is read by the importer only to give a single-leaf file a
        // mode or mtime, from the leaf's data; add stores neither
        return { cid, unixfs, size: BigInt(size), block: chunk };
      };
    }
  };
}
