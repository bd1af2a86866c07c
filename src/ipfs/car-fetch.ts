/**
 * A file's blocks from a trustless gateway in one CAR response rather than
 * one request a block: what `cat` (and so an ipfs:// substitution) reads
 * through a gateway (PKG_IPFS_GATEWAYS).
 *
 * Asked for a block at a time, a 1 GB file is 4,096 requests, each a round
 * trip that the gateway answers after one disk read. Asked for as a CAR
 * (`GET /ipfs/{root}?format=car&dag-scope=entity`, the specification's
 * depth-first order), the gateway streams the blocks as the reader takes
 * them. Nothing the gateway sends is trusted: each block is hashed against
 * the CID the CAR gives it, and is handed out only when the reader asks for
 * that CID, which it learnt from a block above it, itself checked; a CAR
 * that sends a wrong block is dropped, with a warning, and the blocks are
 * asked for one at a time again (the broker, which checks them too).
 *
 * The CAR is read only as far as the reader asks, and at most `ahead`
 * bytes beyond: the reader asks for blocks in the file's order, which is
 * the CAR's for the leaves, but asks for a node's children a window ahead,
 * so an interior node further on is asked for before the CAR reaches it.
 * Such a block is not waited for: `get` answers undefined, and the caller
 * asks the network for it; when the CAR then brings it, it is dropped.
 */
import type { CID } from 'multiformats/cid';
import { CID as CIDClass, dagCbor, varint, Uint8ArrayList } from './deps-dag.ts';
import { IDENTITY, SHA256 } from './codes.ts';
import { IpfsError } from './errors.ts';

const { createHash } = process.getBuiltinModule('node:crypto');

export interface CarBlock {
  cid: CID;
  bytes: Uint8Array;
}

/** The blocks of a CARv1 stream, as they arrive, after checking its header names `root`. Each block's bytes are a view, not a copy, where the stream allows. */
export async function* carBlocks(body: AsyncIterable<Uint8Array>, root: CID): AsyncGenerator<CarBlock> {
  const buf = new Uint8ArrayList();
  const it = body[Symbol.asyncIterator]();
  let ended = false;
  /** at least `n` bytes buffered, or false at the end of the stream */
  const fill = async (n: number): Promise<boolean> => {
    while (buf.byteLength < n) {
      if (ended) return false;
      const r = await it.next();
      if (r.done) ended = true;
      else buf.append(r.value);
    }
    return true;
  };
  /** a section's length (a varint), or undefined at a clean end */
  const length = async (): Promise<number | undefined> => {
    for (let n = 1; n <= 10; n++) {
      if (!(await fill(n))) {
        if (buf.byteLength === 0) return undefined;
        throw new IpfsError('the CAR ends inside a section length');
      }
      if ((buf.get(n - 1) & 0x80) === 0) {
        const [len] = varint.decode(buf.subarray(0, n));
        buf.consume(n);
        return len;
      }
    }
    throw new IpfsError('the CAR has a section length longer than 10 bytes');
  };
  const section = async (len: number): Promise<Uint8Array> => {
    if (!(await fill(len))) throw new IpfsError(`the CAR ends inside a section (${buf.byteLength} of ${len} bytes)`);
    const bytes = buf.subarray(0, len);
    buf.consume(len);
    return bytes;
  };
  try {
    const headerLength = await length();
    if (headerLength === undefined) throw new IpfsError('the CAR is empty');
    let header: { version?: unknown; roots?: unknown };
    try {
      header = dagCbor.decode(await section(headerLength));
    } catch (e) {
      throw new IpfsError(`the CAR's header is not dag-cbor: ${(e as Error).message}`);
    }
    const roots = Array.isArray(header.roots) ? header.roots.map((r) => CIDClass.asCID(r)) : [];
    if (header.version !== 1 || !roots.some((r) => r?.equals(root))) throw new IpfsError(`the CAR is not a version 1 CAR of ${root}`);
    for (;;) {
      const len = await length();
      if (len === undefined) return;
      const bytes = await section(len);
      let cid: CID;
      let rest: Uint8Array;
      try {
        [cid, rest] = CIDClass.decodeFirst(bytes);
      } catch (e) {
        throw new IpfsError(`the CAR has a section without a CID: ${(e as Error).message}`);
      }
      yield { cid, bytes: rest };
    }
  } finally {
    await it.return?.();
  }
}

/** Whether `bytes` are the block `cid` names: its sha-256 (the one hash the tree makes), or the bytes themselves for an identity CID. */
export function blockMatches(cid: CID, bytes: Uint8Array): boolean {
  const mh = cid.multihash;
  if (mh.code === IDENTITY) return Buffer.from(mh.digest).equals(bytes);
  if (mh.code !== SHA256) return false;
  return createHash('sha256').update(bytes).digest().equals(mh.digest);
}

export class CarPrefetch {
  private readonly blocks: AsyncIterator<CarBlock>;
  /** read from the CAR, not asked for yet, by CID */
  private readonly early = new Map<string, Uint8Array>();
  private earlyBytes = 0;
  /** handed out, or asked of the network instead: dropped if the CAR brings them */
  private readonly taken = new Set<string>();
  private reading: Promise<boolean> | null = null;
  private over = false;
  private readonly ahead: number;
  private readonly onWrong: (cid: CID) => void;

  /**
   * `blocks` is the CAR's (carBlocks), opened on the first `get`; `ahead`, how
   * many bytes of blocks not yet asked for may be held; `onWrong` hears of a
   * block that is not its CID's, after which the CAR is no longer read.
   */
  constructor(blocks: AsyncIterable<CarBlock>, opts: { ahead: number; onWrong: (cid: CID) => void }) {
    this.blocks = blocks[Symbol.asyncIterator]();
    this.ahead = opts.ahead;
    this.onWrong = opts.onWrong;
  }

  /** The block, checked, if the CAR brings it next (or brought it already); undefined: ask the network. Errors of the CAR end its use, and are not thrown. */
  async get(cid: CID): Promise<Uint8Array | undefined> {
    const key = cid.toString();
    for (;;) {
      const got = this.early.get(key);
      if (got) {
        this.early.delete(key);
        this.earlyBytes -= got.byteLength;
        this.taken.add(key);
        return got;
      }
      if (this.over || this.earlyBytes >= this.ahead) {
        this.taken.add(key);
        return undefined;
      }
      if (!(await this.readOne())) {
        this.taken.add(key);
        return undefined;
      }
    }
  }

  /** Stops reading the CAR (its connection closes). */
  async close(): Promise<void> {
    this.over = true;
    this.early.clear();
    this.earlyBytes = 0;
    await this.reading?.catch(() => {});
    await this.blocks.return?.().catch(() => {});
  }

  /** One more block from the CAR, kept unless taken already; false once the CAR is over. One read at a time, shared by every waiting `get`. */
  private readOne(): Promise<boolean> {
    this.reading ??= (async () => {
      try {
        const r = await this.blocks.next();
        if (r.done || this.over) {
          this.over = true;
          return false;
        }
        const { cid, bytes } = r.value;
        if (!blockMatches(cid, bytes)) {
          this.over = true;
          this.onWrong(cid);
          return false;
        }
        const key = cid.toString();
        if (!this.taken.has(key) && !this.early.has(key)) {
          this.early.set(key, bytes);
          this.earlyBytes += bytes.byteLength;
        }
        return true;
      } catch {
        // a gateway that fails mid-CAR: the rest comes a block at a time
        this.over = true;
        return false;
      } finally {
        this.reading = null;
      }
    })();
    return this.reading;
  }
}
