/**
 * The blockstore's packs: blocks appended to a few large files rather
 * than written one file a block.
 *
 *   $PEERPKGS_HOME/ipfs/packs/<time>-<pid>-<random>.pack
 *
 * A pack is the eight bytes `PKGPACK1`, then records, each
 * `<multihash length: 1 byte> <multihash> <data length: u32 LE> <data>`.
 * Creating a file costs the kernel more than writing 256 KiB into one
 * (on ext4 here: 1,024 block files of 256 KiB in 504-544 ms, the same
 * bytes appended to one file in 43-48 ms), and adding or fetching a file
 * made a file of every 256 KiB of it.
 *
 * Each process appends to a pack of its own, never to another's, so two
 * processes on one home never write the same file (one BlockPacks a
 * directory in a process); a pack is closed at PACK_LIMIT and the next put
 * starts another. Records are written in the order their places were
 * taken, one write at a time (those queued meanwhile together, in one
 * writev), so a pack only grows by whole records, and a
 * record is found in this process once its write is done. A write that
 * fails ends the pack: the puts queued after it fail too. The index
 * (multihash → pack, offset, length) is read from the packs' record
 * headers, which a scan walks from one to the next: at start, and again on
 * a miss (at most once a second), which finds what other processes have
 * appended since. A scan stops at the first header that is not whole or
 * not a multihash, or whose data runs past the end of the file: a record
 * still being written, or the last one a crash cut short, is not a block.
 * A pack its writer closed is sealed: nothing is appended to it again, and
 * the writer leaves its index beside it (`NAME.pack.idx`: the pack's size,
 * each record's multihash, place and length, and their sha-256), read in
 * one go instead of a read a record (the 1,032 records of a 256 MB add,
 * page cache dropped: 17-20 ms against 102-120 ms, at every start of a
 * node), and never scanned again. An
 * index that is not whole, or not of the pack's present size, is ignored
 * and the headers are read. The pack of a writer that died before closing
 * it (the pid in its name is no process's) is sealed by the next process
 * that reads its headers.
 * Nothing is ever changed in place: `rewrite` (garbage collection) copies
 * the records it keeps into the current pack and syncs it to disk before
 * it removes the old one, so a crash (or a power cut) between the two
 * leaves a block twice, never none; the copy the index does not point at
 * is dropped by the next rewrite. A read of a pack a rewrite removes
 * meanwhile reads the block where it went.
 */
const fs = process.getBuiltinModule('node:fs');
const { createHash } = process.getBuiltinModule('node:crypto');
import * as path from 'node:path';
import type { CID } from 'multiformats/cid';
import { isAlive } from '../engine/locks.ts';

const MAGIC = Buffer.from('PKGPACK1');
/** a sealed pack's index: NAME.pack.idx */
const IDX_MAGIC = Buffer.from('PKGIDX01');
const IDX = '.idx';
/** a pack is closed once it holds this much; the next put starts another */
export const PACK_LIMIT = 64 * 2 ** 20;
/** the longest multihash a record can hold (its length is one byte) */
const MAX_MULTIHASH = 255;
/** the most buffers one writev takes (Linux's IOV_MAX is 1024) */
const MAX_IOV = 1000;
/** how often a miss may scan the packs again for what other processes appended */
const RESCAN_MS = 1000;

interface Pack {
  file: string;
  /** where the scan stopped: the end of the last whole record */
  scanned: number;
  /** for reads, opened on the first */
  reader?: Promise<import('node:fs/promises').FileHandle>;
  /** reads under way: a pack a rewrite removed is closed after the last */
  reads: number;
  /** removed by a rewrite: its blocks are elsewhere now, or gone */
  removed?: boolean;
  /** closed by its writer: nothing is appended to it any more (its index says what it holds) */
  sealed?: boolean;
}

interface Writer {
  pack: Pack;
  fh: Promise<import('node:fs/promises').FileHandle>;
  /** where the next record goes */
  end: number;
  /** records waiting to be written, in the order of their places */
  queue: Array<{ views: Uint8Array[]; bytes: number; resolve(): void; reject(e: Error): void }>;
  /** the writes under way, while there are any (flush) */
  flushing: Promise<void> | null;
  /** where the next write goes: the end of what is written */
  written: number;
  /** the error of a write that failed: the ones after it fail too */
  broken?: Error;
  writing: Set<Promise<void>>;
}

interface Place {
  pack: Pack;
  /** where the block's data starts */
  at: number;
  length: number;
  /** where its record starts */
  record: number;
}

/** a block of the index: its key (the multihash as latin1) and where it is */
interface Indexed {
  key: string;
  place: Place;
}

/** One block of a pack, as `list` and `rewrite` give it. */
export interface PackedBlock {
  multihash: Uint8Array;
  file: string;
  /** the bytes its record takes in the pack */
  bytes: number;
}

/** the bytes a block's record takes in its pack */
const recordBytes = (key: string, p: { length: number }): number => 1 + key.length + 4 + p.length;

/** a block's key in the index: its multihash's bytes as a latin1 string */
export const keyOf = (multihash: Uint8Array): string => Buffer.from(multihash.buffer, multihash.byteOffset, multihash.byteLength).toString('latin1');

/** whether `mh` is one multihash: an unsigned-varint code and length, then that many bytes of digest */
function isMultihash(mh: Uint8Array): boolean {
  let i = 0;
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; i < mh.length && shift < 63; shift += 7) {
      const b = mh[i++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return v;
    }
    return -1;
  };
  if (varint() < 0) return false;
  const len = varint();
  return len >= 0 && i + len === mh.length;
}

export class BlockPacks {
  readonly dir: string;
  private readonly index = new Map<string, Place>();
  private readonly packs = new Map<string, Pack>();
  /** puts under way, by multihash: a second put of the same block waits for the first */
  private readonly pending = new Map<string, Promise<void>>();
  private writer: Writer | null = null;
  /** writers closed at PACK_LIMIT, still finishing their writes */
  private readonly closing = new Set<Promise<void>>();
  private lastScan = 0;

  constructor(dir: string) {
    this.dir = dir;
    this.scan();
  }

  /** Reads every pack's records from where the last scan stopped: packs new since, and records appended since. */
  private scan(): void {
    this.lastScan = Date.now();
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    const present = new Set(names);
    for (const name of names) {
      if (name.endsWith('.pack' + IDX) && !present.has(name.slice(0, -IDX.length))) {
        // the index of a pack a rewrite removed (it removes the index first; a crash between)
        fs.rmSync(path.join(this.dir, name), { force: true });
        continue;
      }
      if (!name.endsWith('.pack')) continue;
      let pack = this.packs.get(name);
      if (!pack) this.packs.set(name, (pack = { file: path.join(this.dir, name), scanned: 0, reads: 0 }));
      if (pack.sealed || pack === this.writer?.pack) continue;
      if (present.has(name + IDX) && this.readIndex(pack)) continue;
      this.scanPack(pack);
      this.sealOrphan(pack);
    }
  }

  /**
   * Seals a pack whose writer died before closing it (a crash, a kill):
   * nobody appends to it again, so its index is written here, and its
   * headers are not read again by this process nor by the next. The
   * writer is known by the pid in the pack's name; a pid that is alive
   * (the writer, or another process that took its number) leaves it as it is.
   */
  private sealOrphan(pack: Pack): void {
    const pid = /^[0-9a-z]+-(\d+)-[0-9a-z]+\.pack$/.exec(path.basename(pack.file))?.[1];
    if (!pid || Number(pid) === process.pid || isAlive(Number(pid))) return;
    let size: number;
    try {
      size = fs.statSync(pack.file).size;
    } catch {
      return; // removed meanwhile
    }
    this.seal(pack, size); // not sealed: only slower, its headers are read again next time
  }

  /**
   * Writes the index of `pack`, `size` bytes that nothing is appended to
   * any more, from what the index holds of it, and marks it sealed; the
   * error when it could not be written. A temporary name first: a reader
   * sees the whole index or none (a crash's leftover goes at the next
   * rewrite).
   */
  private seal(pack: Pack, size: number): Error | null {
    const records = [...this.index].filter(([, p]) => p.pack === pack).map(([key, p]) => ({ mh: Buffer.from(key, 'latin1'), record: p.record, length: p.length }));
    const tmp = `${pack.file}${IDX}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, indexBytes(size, records));
      fs.renameSync(tmp, pack.file + IDX);
      pack.sealed = true;
      return null;
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      return e as Error;
    }
  }

  /** Reads a sealed pack's index into the index; false when there is none that is whole and of the pack as it is (its headers are read then). */
  private readIndex(pack: Pack): boolean {
    let idx: Buffer;
    let size: number;
    try {
      idx = fs.readFileSync(pack.file + IDX);
      size = fs.statSync(pack.file).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    const body = idx.subarray(0, Math.max(0, idx.length - 32));
    if (idx.length < IDX_MAGIC.length + 12 + 32 || !idx.subarray(0, IDX_MAGIC.length).equals(IDX_MAGIC)) return false;
    if (!createHash('sha256').update(body).digest().equals(idx.subarray(body.length))) return false;
    if (Number(body.readBigUInt64LE(IDX_MAGIC.length)) !== size) return false;
    const places: Array<[string, Place]> = [];
    let at = IDX_MAGIC.length + 12;
    for (let n = body.readUInt32LE(IDX_MAGIC.length + 8); n > 0; n--) {
      const mhLength = body[at] ?? 0;
      if (at + 1 + mhLength + 8 > body.length) return false;
      const mh = body.subarray(at + 1, at + 1 + mhLength);
      const record = body.readUInt32LE(at + 1 + mhLength);
      const length = body.readUInt32LE(at + 5 + mhLength);
      const dataAt = record + 1 + mhLength + 4;
      if (!isMultihash(mh) || record < MAGIC.length || dataAt + length > size) return false;
      places.push([keyOf(mh), { pack, at: dataAt, length, record }]);
      at += 1 + mhLength + 8;
    }
    if (at !== body.length) return false;
    for (const [key, place] of places) this.index.set(key, place);
    pack.scanned = size;
    pack.sealed = true;
    return true;
  }

  /** Leaves the index of `w`'s pack beside it, now that it is closed; a pack a failed write ended gets none (its headers say what it holds). */
  private writeIndex(w: Writer): void {
    if (w.broken || w.written !== w.end) return;
    const e = this.seal(w.pack, w.end);
    // only slower: the next process reads the headers
    if (e) process.stderr.write(`ipfs: warning: ${w.pack.file}${IDX}: not written (${e.message}); the pack's headers will be read instead\n`);
  }

  private scanPack(pack: Pack): void {
    let fd: number;
    try {
      fd = fs.openSync(pack.file, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // removed by a rewrite meanwhile
      throw e;
    }
    try {
      const size = fs.fstatSync(fd).size;
      const head = Buffer.allocUnsafe(1 + MAX_MULTIHASH + 4);
      let at = pack.scanned;
      if (at === 0) {
        if (size < MAGIC.length) return;
        fs.readSync(fd, head, 0, MAGIC.length, 0);
        if (!head.subarray(0, MAGIC.length).equals(MAGIC)) {
          process.stderr.write(`ipfs: warning: ${pack.file}: not a pack of blocks; ignored\n`);
          pack.scanned = size;
          return;
        }
        at = MAGIC.length;
      }
      while (at < size) {
        const got = fs.readSync(fd, head, 0, head.length, at);
        const mhLength = head[0]!;
        if (mhLength === 0 || got < 1 + mhLength + 4) break;
        const mh = head.subarray(1, 1 + mhLength);
        if (!isMultihash(mh)) break;
        const length = head.readUInt32LE(1 + mhLength);
        const dataAt = at + 1 + mhLength + 4;
        if (dataAt + length > size) break;
        this.index.set(keyOf(mh), { pack, at: dataAt, length, record: at });
        at = dataAt + length;
      }
      pack.scanned = at;
    } finally {
      fs.closeSync(fd);
    }
  }

  private find(multihash: Uint8Array): Place | undefined {
    const key = keyOf(multihash);
    let place = this.index.get(key);
    if (!place && Date.now() - this.lastScan >= RESCAN_MS) {
      this.scan();
      place = this.index.get(key);
    }
    return place;
  }

  has(cid: CID): boolean {
    return this.find(cid.multihash.bytes) !== undefined;
  }

  /** The block of `cid`, in one read into a buffer of its own; null when no pack holds it. */
  get(cid: CID): Promise<Uint8Array | null> {
    return this.read(cid.multihash.bytes);
  }

  /** The block whose multihash is `mh`, as get gives it. */
  async read(mh: Uint8Array): Promise<Buffer | null> {
    const key = keyOf(mh);
    await this.pending.get(key)?.catch(() => {}); // a put that failed: a miss
    for (;;) {
      const place = this.find(mh);
      if (!place) return null;
      const { pack } = place;
      pack.reads++;
      try {
        const block = Buffer.allocUnsafe(place.length);
        const fh = await (pack.reader ??= fs.promises.open(pack.file, 'r'));
        const { bytesRead } = await fh.read(block, 0, place.length, place.at);
        if (bytesRead !== place.length) throw new Error(`${pack.file}: a block at ${place.at} is cut short`);
        return block;
      } catch (e) {
        // a rewrite moved it meanwhile: read it where it is now
        if (pack.removed || this.index.get(key) !== place) continue;
        throw e;
      } finally {
        if (--pack.reads === 0 && pack.removed) void closeReader(pack);
      }
    }
  }

  put(cid: CID, bytes: Uint8Array): Promise<CID> {
    return this.putParts(cid, [bytes]);
  }

  /** Appends the block of `cid`, given as parts (leaves.ts), without joining them; a block already here is not written again. */
  async putParts(cid: CID, parts: Uint8Array[]): Promise<CID> {
    await this.store(cid.multihash.bytes, parts);
    return cid;
  }

  private async store(mh: Uint8Array, parts: Uint8Array[]): Promise<void> {
    const key = keyOf(mh);
    const pending = this.pending.get(key);
    if (pending) return pending;
    if (this.index.has(key)) return;
    const write = this.append(mh, parts).finally(() => this.pending.delete(key));
    this.pending.set(key, write);
    return write;
  }

  private async append(mh: Uint8Array, parts: Uint8Array[]): Promise<void> {
    if (mh.length > MAX_MULTIHASH) throw new Error(`a multihash of ${mh.length} bytes is too long to store`);
    const length = parts.reduce((k, p) => k + p.byteLength, 0);
    const head = Buffer.allocUnsafe(1 + mh.length + 4);
    head[0] = mh.length;
    head.set(mh, 1);
    head.writeUInt32LE(length, 1 + mh.length);
    // the place is taken now, before any await; the records are written in
    // the order of their places, those queued meanwhile together in one
    // writev, one write at a time, so that the pack only ever grows by whole
    // records: a scan (here or in another process) never finds a header
    // whose bytes are not all written, nor a gap before a later record
    const w = this.currentWriter();
    const record = w.end;
    w.end += head.length + length;
    const done = new Promise<void>((resolve, reject) => w.queue.push({ views: [head, ...parts], bytes: head.length + length, resolve, reject }));
    w.flushing ??= this.flush(w);
    w.writing.add(done);
    try {
      await done;
    } finally {
      w.writing.delete(done);
    }
    this.index.set(keyOf(mh), { pack: w.pack, at: record + head.length, length, record });
  }

  /** Writes `w`'s queued records, each batch in one writev at the end of what is written; a failure fails the batch and every record after it. */
  private async flush(w: Writer): Promise<void> {
    try {
      const fh = await w.fh.catch((e: Error) => {
        w.broken ??= e;
        return null;
      });
      while (w.queue.length) {
        let n = 0;
        for (let iov = 0; n < w.queue.length && iov + w.queue[n]!.views.length <= MAX_IOV; n++) iov += w.queue[n]!.views.length;
        const batch = w.queue.splice(0, Math.max(n, 1));
        try {
          if (w.broken || !fh) throw w.broken ?? new Error('no pack to write to');
          let views = batch.flatMap((r) => r.views);
          let left = batch.reduce((k, r) => k + r.bytes, 0);
          while (left > 0) {
            const { bytesWritten } = await fh.writev(views, w.written);
            left -= bytesWritten;
            w.written += bytesWritten;
            views = skip(views, bytesWritten);
          }
          for (const r of batch) r.resolve();
        } catch (e) {
          // what follows a record not written whole is not written at all: the next put starts a new pack
          w.broken ??= e as Error;
          for (const r of batch) r.reject(e as Error);
          if (this.writer === w) void this.closeWriter(w);
        }
      }
    } finally {
      w.flushing = null;
    }
  }

  private currentWriter(): Writer {
    if (this.writer && this.writer.end < PACK_LIMIT) return this.writer;
    if (this.writer) {
      const closing = this.closeWriter(this.writer);
      this.closing.add(closing);
      void closing.finally(() => this.closing.delete(closing));
    }
    const name = `${Date.now().toString(36)}-${process.pid}-${Math.random().toString(36).slice(2, 8)}.pack`;
    const pack: Pack = { file: path.join(this.dir, name), scanned: 0, reads: 0 };
    this.packs.set(name, pack);
    const fh = (async () => {
      await fs.promises.mkdir(this.dir, { recursive: true });
      const h = await fs.promises.open(pack.file, 'wx');
      await h.write(MAGIC, 0, MAGIC.length, 0);
      return h;
    })();
    fh.catch(() => {}); // the puts waiting on it see the error
    this.writer = { pack, fh, end: MAGIC.length, queue: [], flushing: null, written: MAGIC.length, writing: new Set() };
    return this.writer;
  }

  private async closeWriter(w: Writer): Promise<void> {
    if (this.writer === w) this.writer = null;
    await Promise.allSettled(w.writing);
    w.pack.scanned = w.end;
    await (await w.fh.catch(() => null))?.close();
    this.writeIndex(w);
  }

  /** Waits for the puts under way and closes the files. */
  async close(): Promise<void> {
    if (this.writer) await this.closeWriter(this.writer);
    await Promise.all(this.closing);
    for (const pack of this.packs.values()) await closeReader(pack);
  }

  /** The current pack's bytes, and its name in the directory, on disk. */
  private async syncWriter(): Promise<void> {
    const w = this.writer;
    if (!w) return;
    await Promise.allSettled(w.writing);
    if (w.broken) throw w.broken;
    await (await w.fh).datasync();
    const dir = await fs.promises.open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /** Every block the packs hold, once each. */
  list(): PackedBlock[] {
    this.scan();
    return [...this.index.entries()].map(([key, p]) => ({ multihash: Buffer.from(key, 'latin1'), file: p.pack.file, bytes: recordBytes(key, p) }));
  }

  /**
   * Keeps the blocks `keep` says to keep and drops the rest: a pack all of
   * whose blocks stay is left as it is, one none of whose blocks stay is
   * removed, and of any other the blocks kept are copied into the current
   * pack before it is removed. Records the index does not point at (a
   * block held twice) are dropped too. Unless `dryRun`; either way, the
   * blocks dropped are returned. The caller keeps other processes from
   * adding meanwhile (the gc's exclusive lock).
   */
  async rewrite(keep: (multihash: Uint8Array) => boolean | Promise<boolean>, dryRun = false): Promise<PackedBlock[]> {
    if (this.writer) await this.closeWriter(this.writer);
    this.scan();
    // the indexes that writers which have died left half made
    if (!dryRun) for (const name of fs.readdirSync(this.dir)) if (deadWritersTemporary(name)) fs.rmSync(path.join(this.dir, name), { force: true });
    const byPack = new Map<Pack, Indexed[]>();
    for (const pack of this.packs.values()) byPack.set(pack, []);
    for (const [key, place] of this.index) byPack.get(place.pack)!.push({ key, place });
    const dropped: PackedBlock[] = [];
    const plans: Array<{ pack: Pack; blocks: Indexed[]; kept: Indexed[] }> = [];
    for (const [pack, blocks] of byPack) {
      const kept: typeof blocks = [];
      for (const b of blocks) {
        const multihash = Buffer.from(b.key, 'latin1');
        if (await keep(multihash)) kept.push(b);
        else dropped.push({ multihash, file: pack.file, bytes: recordBytes(b.key, b.place) });
      }
      const size = fs.statSync(pack.file, { throwIfNoEntry: false })?.size ?? 0;
      const keptBytes = kept.reduce((k, b) => k + recordBytes(b.key, b.place), 0);
      if (!(kept.length === blocks.length && MAGIC.length + keptBytes === size)) plans.push({ pack, blocks, kept });
    }
    if (dryRun) return dropped;
    // the packs with nothing to keep first: removing them frees space, copying takes it
    plans.sort((a, b) => a.kept.length - b.kept.length);
    for (const { pack, blocks, kept } of plans) {
      for (const b of kept) {
        const mh = Buffer.from(b.key, 'latin1');
        const bytes = await this.read(mh);
        this.index.delete(b.key); // so that it is written again, into the current pack
        try {
          await this.store(mh, [bytes!]);
        } catch (e) {
          this.index.set(b.key, b.place);
          throw e;
        }
      }
      // the copies on disk before the pack that held them goes, power cut or not
      if (kept.length) await this.syncWriter();
      for (const b of blocks) if (this.index.get(b.key)?.pack === pack) this.index.delete(b.key);
      pack.removed = true;
      if (pack.reads === 0) await closeReader(pack);
      fs.rmSync(pack.file + IDX, { force: true });
      fs.rmSync(pack.file, { force: true });
      this.packs.delete(path.basename(pack.file));
    }
    if (this.writer) await this.closeWriter(this.writer);
    return dropped;
  }
}

/** A sealed pack's index: its magic, the pack's size, the records' count, each record (multihash length, multihash, place, data length), then the sha-256 of all that. */
function indexBytes(packSize: number, records: Array<{ mh: Uint8Array; record: number; length: number }>): Buffer {
  const head = Buffer.alloc(IDX_MAGIC.length + 12);
  IDX_MAGIC.copy(head);
  head.writeBigUInt64LE(BigInt(packSize), IDX_MAGIC.length);
  head.writeUInt32LE(records.length, IDX_MAGIC.length + 8);
  const parts: Buffer[] = [head];
  for (const r of records) {
    const e = Buffer.allocUnsafe(1 + r.mh.length + 8);
    e[0] = r.mh.length;
    e.set(r.mh, 1);
    e.writeUInt32LE(r.record, 1 + r.mh.length);
    e.writeUInt32LE(r.length, 5 + r.mh.length);
    parts.push(e);
  }
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p);
  parts.push(hash.digest());
  return Buffer.concat(parts);
}

/** Whether `name` is an index being written (NAME.pack.idx.PID.tmp) by a process that is no more. */
function deadWritersTemporary(name: string): boolean {
  const m = /\.pack\.idx\.(\d+)\.tmp$/.exec(name);
  return m !== null && !isAlive(Number(m[1]));
}

/** Closes `pack`'s read handle, if it has one. */
async function closeReader(pack: Pack): Promise<void> {
  const reader = pack.reader;
  pack.reader = undefined;
  await (await reader?.catch(() => null))?.close();
}

/** `parts` without their first `k` bytes (after a short write) */
function skip(parts: Uint8Array[], k: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const p of parts) {
    if (k >= p.byteLength) k -= p.byteLength;
    else {
      out.push(k ? p.subarray(k) : p);
      k = 0;
    }
  }
  return out;
}
