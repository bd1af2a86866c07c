/**
 * A file's DAG built without ipfs-unixfs-importer: what `ipfs add FILE`
 * does, with the same blocks and so the same CIDs.
 *
 * Adding a file is hashing its leaves; profiled, the command spent more
 * CPU loading the importer and ipfs-unixfs (some 50 ms: protons, the
 * chunker's lists, the HAMT code a file never uses) and collecting the
 * garbage of its byte stream than hashing 64 MB. Here each leaf is read
 * from the file straight into the buffer of its block (a dag-pb leaf
 * between its prefix and suffix, leaves.ts), hashed on libuv's threads
 * (WebCrypto's digest runs there, so the other core hashes while this one
 * reads the next leaves), and handed to the store in order; the balanced
 * tree above is built as the
 * importer's 'balanced' layout builds it: leaves in groups of at most
 * `maxChildren` under a parent, then the parents so, until one node is
 * left; a file of one leaf is that leaf. A parent's UnixFS data is
 * written by leaves.ts's fileData, its node encoded by dag-pb itself.
 *
 * Only files with kubo's layouts come here (fixed-size chunks, balanced,
 * no mode or mtime): directories and anything else go to the importer.
 * test/ipfs-cid.test.ts holds both to kubo's recorded CIDs and to each other.
 */
const { createHash, webcrypto } = process.getBuiltinModule('node:crypto');
import type { CID } from 'multiformats/cid';
import { IpfsError } from './errors.ts';
import { fileData, frame, type LeafStore } from './leaves.ts';
import { RAW, SHA256 } from './codes.ts';

export interface FileDagOptions {
  cidVersion: 0 | 1;
  rawLeaves: boolean;
  chunkSize: number;
  /** links a node at most: 174 in kubo's layout */
  maxChildren: number;
}

/** where the bytes come from: `length` bytes at `position` into `into` at `at`; returns how many were read */
export type ReadAt = (into: Uint8Array, at: number, length: number, position: number) => number;

export interface DagStore extends LeafStore {
  put(cid: CID, bytes: Uint8Array): Promise<unknown> | unknown;
}

export interface DagMods {
  CID: typeof import('multiformats/cid').CID;
  Digest: typeof import('multiformats/hashes/digest');
  dagPb: typeof import('@ipld/dag-pb');
}

export async function loadDagMods(): Promise<DagMods> {
  const { CID, Digest, dagPb } = await import('./deps-dag.ts');
  return { CID, Digest, dagPb };
}

/** a node of the tree as its parent links it: Tsize is the block and all below it, fileSize the file bytes under it */
interface Linked {
  cid: CID;
  tsize: number;
  fileSize: number;
}

/** a store's writes waiting at once: each holds a block's buffer */
const IN_FLIGHT = 16;
/** leaves being hashed at once */
const HASHING = 8;
const subtle = webcrypto.subtle;

/** Builds and stores the DAG of the `size` bytes `read` gives; returns its root CID. */
export async function addFileDag(m: DagMods, read: ReadAt, size: number, store: DagStore, o: FileDagOptions): Promise<CID> {
  const frames = new Map<number, { prefix: Uint8Array; suffix: Uint8Array }>();
  const pending = new Set<Promise<unknown>>();
  let failed: unknown = null;
  // blocks the store is done with, for the next leaves (all but the last
  // are one size): fresh buffers cost a page fault every 4 KiB, more than
  // reading into them
  const free: Buffer[] = [];
  const take = (length: number) => {
    const b = free.pop();
    return b?.byteLength === length ? b : Buffer.allocUnsafe(length);
  };
  const track = (r: Promise<unknown> | unknown, done: () => void = () => {}): Promise<void> | void => {
    if (!(r instanceof Promise)) return done();
    const p = r.then(
      () => {
        pending.delete(p);
        done();
      },
      (e: unknown) => {
        pending.delete(p);
        failed ??= e;
      },
    );
    pending.add(p);
    if (pending.size >= IN_FLIGHT) return Promise.race(pending).then(() => undefined);
  };
  const check = () => {
    if (failed) throw failed instanceof Error ? failed : new Error(String(failed));
  };

  const leaves: Linked[] = [];
  // leaves read but not yet named: their hashes are computed meanwhile
  const ahead: { block: Buffer; offset: number; n: number; digest: Promise<ArrayBuffer> }[] = [];
  const name = async (leaf: (typeof ahead)[number]) => {
    const digest = m.Digest.create(SHA256, new Uint8Array(await leaf.digest));
    const cid = o.rawLeaves ? m.CID.create(1, RAW, digest) : m.CID.create(o.cidVersion, m.dagPb.code, digest);
    leaves.push({ cid, tsize: leaf.block.byteLength, fileSize: leaf.n });
    const place = { offset: leaf.offset, length: leaf.n, kind: o.rawLeaves ? ('raw' as const) : ('pb' as const) };
    await track(store.putParts(cid, [leaf.block], place), () => free.push(leaf.block));
    check();
  };
  // an empty file is one empty leaf, as the importer's chunker gives it
  for (let offset = 0, first = true; offset < size || first; offset += o.chunkSize, first = false) {
    const n = Math.min(o.chunkSize, size - offset);
    let f = o.rawLeaves ? { prefix: new Uint8Array(0), suffix: new Uint8Array(0) } : frames.get(n);
    if (!f) frames.set(n, (f = frame(m, n)));
    const block = take(f.prefix.byteLength + n + f.suffix.byteLength);
    block.set(f.prefix, 0);
    block.set(f.suffix, f.prefix.byteLength + n);
    for (let got = 0; got < n;) {
      const k = read(block, f.prefix.byteLength + got, n - got, offset + got);
      if (k === 0) throw new IpfsError(`the file ended at ${offset + got} bytes, before the ${size} it had when the add began`);
      got += k;
    }
    // on libuv's threads, so that both cores hash while this one reads
    const digest = subtle.digest('SHA-256', block);
    digest.catch(() => {}); // awaited in turn by name()
    ahead.push({ block, offset, n, digest });
    if (ahead.length >= HASHING) await name(ahead.shift()!);
  }
  while (ahead.length) await name(ahead.shift()!);

  let level = leaves;
  while (level.length > 1) {
    const up: Linked[] = [];
    for (let i = 0; i < level.length; i += o.maxChildren) {
      const children = level.slice(i, i + o.maxChildren);
      const Data = fileData(
        undefined,
        children.map((c) => c.fileSize),
      );
      const Links = children.map((c) => ({ Hash: c.cid, Name: '', Tsize: c.tsize }));
      const block = m.dagPb.encode(m.dagPb.prepare({ Data, Links }));
      const cid = m.CID.create(o.cidVersion, m.dagPb.code, m.Digest.create(SHA256, createHash('sha256').update(block).digest()));
      up.push({ cid, tsize: block.byteLength + children.reduce((a, c) => a + c.tsize, 0), fileSize: children.reduce((a, c) => a + c.fileSize, 0) });
      await track(store.put(cid, block));
      check();
    }
    level = up;
  }
  await Promise.all(pending);
  check();
  return level[0]!.cid;
}
