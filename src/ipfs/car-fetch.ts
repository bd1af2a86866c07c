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
 * that sends a wrong block, or is of another root, is dropped and its
 * gateway not asked again; one that breaks off (cut short, malformed, a
 * section bigger than a block may be, silent for half the timeout) is
 * dropped with a warning and its gateway asked after the others. Either way
 * the rest is asked for a block at a time (the broker, which checks each).
 *
 * The CAR is read only as far as the reader asks, and at most `ahead`
 * bytes beyond: the reader asks for blocks in the file's order, which is
 * the CAR's for the leaves, but asks for a node's children a window ahead,
 * so an interior node further on is asked for before the CAR reaches it.
 * Such a block is not waited for: `get` answers undefined, and the caller
 * asks the network for it; when the CAR then brings it, it is dropped. The
 * bytes dropped count against the same bound, so a CAR of blocks nobody
 * asks for (a gateway sending one block over and over) is left waiting
 * after `ahead` bytes, not read to its end.
 */
import type { CID } from 'multiformats/cid';
import { CID as CIDClass, dagCbor, varint, Uint8ArrayList } from './deps-dag.ts';
import { IDENTITY, SHA256 } from './codes.ts';
import { IpfsError } from './errors.ts';

const { subtle } = process.getBuiltinModule('node:crypto').webcrypto;

/** The largest section read: a block as big as Helia takes (2 MiB), and its CID. */
const MAX_SECTION = 2 * 1024 * 1024 + 256;
/** The largest header: a version and a few roots. */
const MAX_HEADER = 64 * 1024;

/** A CAR whose header names other roots: an answer to another question. */
export class CarOfAnotherRoot extends IpfsError {}

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
    if (headerLength > MAX_HEADER) throw new IpfsError(`the CAR's header would be ${headerLength} bytes: not a CAR`);
    let header: { version?: unknown; roots?: unknown };
    try {
      header = dagCbor.decode(await section(headerLength));
    } catch (e) {
      throw new IpfsError(`the CAR's header is not dag-cbor: ${(e as Error).message}`);
    }
    const roots = Array.isArray(header.roots) ? header.roots.map((r) => CIDClass.asCID(r)) : [];
    if (header.version !== 1) throw new IpfsError(`the CAR is of version ${String(header.version)}, not 1`);
    if (!roots.some((r) => r?.equals(root))) throw new CarOfAnotherRoot(`a CAR that is not of ${root}`);
    for (;;) {
      const len = await length();
      if (len === undefined) return;
      if (len > MAX_SECTION) throw new IpfsError(`the CAR has a section of ${len} bytes, more than a block may have`);
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

/**
 * Whether `bytes` are the block `cid` names: its sha-256, or the bytes
 * themselves for an identity CID; null for a hash this code does not
 * compute (the tree makes sha-256 alone), which proves nothing either way.
 * The sha-256 is WebCrypto's, computed on libuv's threads: the main thread,
 * which a substitution's unpacking keeps busy, hashes none of the blocks.
 */
export async function blockMatches(cid: CID, bytes: Uint8Array): Promise<boolean | null> {
  const mh = cid.multihash;
  if (mh.code === IDENTITY) return Buffer.from(mh.digest).equals(bytes);
  if (mh.code !== SHA256) return null;
  return Buffer.from(await subtle.digest('SHA-256', bytes)).equals(mh.digest);
}

/** What a CarPrefetch hears of the gateway that sent the CAR. */
export interface CarEvents {
  /** a block that is not its CID's, or a CAR of another root: the gateway lied */
  wrong(what: string): void;
  /** the CAR broke off (cut short, malformed, too slow): why */
  failed(why: string): void;
}

export class CarPrefetch {
  private readonly blocks: AsyncIterator<CarBlock>;
  /** read from the CAR, not asked for yet, by CID */
  private readonly early = new Map<string, Uint8Array>();
  private earlyBytes = 0;
  /** bytes read from the CAR and dropped (taken already, a duplicate, a hash not checked) since a block was last handed out */
  private wasted = 0;
  /** handed out, or asked of the network instead: dropped if the CAR brings them */
  private readonly taken = new Set<string>();
  private reading: Promise<boolean> | null = null;
  private over = false;
  private readonly ahead: number;
  private readonly events: CarEvents;
  private readonly stop: () => void;

  /**
   * `blocks` is the CAR's (carBlocks) and `stop` closes its connection;
   * `ahead`, how many bytes may be read beyond what was asked for (held,
   * or dropped) before the CAR is left to wait.
   */
  constructor(blocks: AsyncIterable<CarBlock>, opts: { ahead: number; stop: () => void; events: CarEvents }) {
    this.blocks = blocks[Symbol.asyncIterator]();
    this.ahead = opts.ahead;
    this.stop = opts.stop;
    this.events = opts.events;
  }

  /** The block, checked, if the CAR brings it next (or brought it already); undefined: ask the network. Errors of the CAR end its use, and are not thrown. */
  async get(cid: CID): Promise<Uint8Array | undefined> {
    // an identity block is its CID; gateways send none
    if (cid.multihash.code === IDENTITY) return undefined;
    const key = cid.toString();
    // handed out before (or asked of the network): the blockstore has it, or will
    if (this.taken.has(key)) return undefined;
    for (;;) {
      const got = this.early.get(key);
      if (got) {
        this.early.delete(key);
        this.earlyBytes -= got.byteLength;
        this.wasted = 0;
        this.taken.add(key);
        return got;
      }
      if (this.over || this.earlyBytes + this.wasted >= this.ahead || !(await this.readOne())) {
        this.taken.add(key);
        return undefined;
      }
    }
  }

  /** Stops reading the CAR: its connection is closed, so a read waiting on it ends now. */
  async close(): Promise<void> {
    this.over = true;
    this.early.clear();
    this.earlyBytes = 0;
    this.stop();
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
        const matches = await blockMatches(cid, bytes);
        if (this.over) return false; // closed while the block was hashed
        if (matches === false) {
          this.over = true;
          this.events.wrong(`a block that is not ${cid}`);
          return false;
        }
        const key = cid.toString();
        if (matches === null || this.taken.has(key) || this.early.has(key)) this.wasted += bytes.byteLength;
        else {
          this.early.set(key, bytes);
          this.earlyBytes += bytes.byteLength;
        }
        return true;
      } catch (e) {
        if (!this.over) {
          this.over = true;
          if (e instanceof CarOfAnotherRoot) this.events.wrong(e.message);
          else this.events.failed((e as Error).message);
        }
        return false;
      } finally {
        this.reading = null;
      }
    })();
    return this.reading;
  }
}
