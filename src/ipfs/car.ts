/**
 * What a CAR (CARv1, https://ipld.io/specs/transport/car/carv1/) of a DAG
 * holds, as the trustless gateway sends it (gateway.ts): the header, and
 * the blocks under a root in depth-first order for a `dag-scope`.
 *
 * The walk reads one block at a time through `load` and holds only the
 * links of the blocks above the current one, so a CAR of any size is
 * streamed in bounded memory. Duplicates are sent each time the walk meets
 * them (`dups=y`): remembering what was sent would grow with the DAG.
 * Links are known for dag-pb, raw and dag-cbor blocks; a block of another
 * codec is sent without what it links to. Identity CIDs are never sent
 * (their bytes are in the CID).
 */
import { CID, dagCbor, dagPb, UnixFS, varint } from './deps-dag.ts';
import { RAW, DAG_PB, DAG_CBOR, IDENTITY } from './codes.ts';

export type DagScope = 'block' | 'entity' | 'all';

export function isIdentity(cid: CID): boolean {
  return cid.multihash.code === IDENTITY;
}

function withLength(bytes: Uint8Array, extra = 0): Uint8Array {
  const n = bytes.byteLength + extra;
  const out = new Uint8Array(varint.encodingLength(n) + bytes.byteLength);
  varint.encodeTo(n, out);
  out.set(bytes, out.byteLength - bytes.byteLength);
  return out;
}

/** The CARv1 header naming `root`. */
export function carHeader(root: CID): Uint8Array {
  return withLength(dagCbor.encode({ version: 1, roots: [root] }));
}

/** What comes before a block's bytes in a CAR: the section's length and the CID. */
export function sectionPrefix(cid: CID, blockLength: number): Uint8Array {
  return withLength(cid.bytes, blockLength);
}

/** Every CID in a dag-cbor value. */
function* cborLinks(value: unknown): Generator<CID> {
  const cid = CID.asCID(value);
  if (cid) {
    yield cid;
    return;
  }
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return;
  for (const v of Array.isArray(value) ? value : Object.values(value)) yield* cborLinks(v);
}

/**
 * What a block links to within `scope`. For UnixFS (`entity`): a file's
 * chunks, a sharded directory's sub-shards, nothing of a plain directory
 * (its listing is the block); anything not UnixFS is its block alone.
 */
function links(cid: CID, bytes: Uint8Array, scope: DagScope): CID[] {
  if (scope === 'block' || cid.code === RAW) return [];
  if (cid.code === DAG_CBOR) return scope === 'all' ? [...cborLinks(dagCbor.decode(bytes))] : [];
  if (cid.code !== DAG_PB) return [];
  const node = dagPb.decode(bytes);
  if (scope === 'all') return node.Links.map((l) => l.Hash);
  let data: UnixFS;
  try {
    if (!node.Data) return [];
    data = UnixFS.unmarshal(node.Data);
  } catch {
    return []; // dag-pb that is not UnixFS: no entity beyond the block
  }
  if (data.type === 'file' || data.type === 'raw') return node.Links.map((l) => l.Hash);
  if (data.type === 'hamt-sharded-directory' && data.fanout) {
    // a sub-shard's link name is its bucket's prefix alone; an entry's has its name after it
    const prefix = (data.fanout - 1n).toString(16).length;
    return node.Links.filter((l) => (l.Name ?? '').length === prefix).map((l) => l.Hash);
  }
  return [];
}

/** The blocks of the DAG under `root` within `scope`, depth first, each read by `load` when its turn comes. */
export async function* dagBlocks(root: CID, scope: DagScope, load: (cid: CID) => Promise<Uint8Array>): AsyncGenerator<{ cid: CID; bytes: Uint8Array }> {
  if (isIdentity(root)) return;
  const bytes = await load(root);
  const children = links(root, bytes, scope);
  yield { cid: root, bytes };
  for (const child of children) yield* dagBlocks(child, scope, load);
}
