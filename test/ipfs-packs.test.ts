/**
 * The blockstore's packs (src/ipfs/packs.ts): blocks appended to a few
 * large files, found again by another process, kept whole through a
 * crash, and rewritten by garbage collection.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CID } from 'multiformats/cid';
import * as Digest from 'multiformats/hashes/digest';
import { BlockPacks } from '../src/ipfs/packs.ts';
import { scratch } from './helpers.ts';

const RAW = 0x55;

function block(n: number, size = 1000): { cid: CID; bytes: Buffer } {
  const bytes = Buffer.alloc(size, n % 256);
  bytes.writeUInt32LE(n, 0);
  const cid = CID.createV1(RAW, Digest.create(0x12, createHash('sha256').update(bytes).digest()));
  return { cid, bytes };
}

const packFiles = (dir: string): string[] =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((n) => n.endsWith('.pack'))
        .sort()
    : [];

describe('ipfs packs', () => {
  let s: ReturnType<typeof scratch>;
  let dir: string;
  beforeEach(() => {
    s = scratch();
    dir = path.join(s.dir, 'packs');
  });
  afterEach(() => s.cleanup());

  it('appends blocks to one pack, reads them back, and another process finds them', async () => {
    const a = new BlockPacks(dir);
    const blocks = Array.from({ length: 20 }, (_, i) => block(i));
    await Promise.all(blocks.map((b) => a.put(b.cid, b.bytes)));
    await a.put(blocks[0]!.cid, blocks[0]!.bytes); // already there: not written again
    assert.equal(packFiles(dir).length, 1, 'one pack for the process');
    for (const b of blocks) assert.deepEqual(await a.get(b.cid), b.bytes);
    assert.equal(await a.get(block(99).cid), null);
    assert.equal(a.has(block(99).cid), false);
    await a.close();
    const size = fs.statSync(path.join(dir, packFiles(dir)[0]!)).size;
    assert.equal(size, 8 + 20 * (1 + 34 + 4 + 1000), 'each block once: its header and bytes after the magic');

    const b = new BlockPacks(dir);
    assert.equal(b.list().length, 20);
    for (const x of blocks) {
      assert.ok(b.has(x.cid));
      assert.deepEqual(await b.get(x.cid), x.bytes);
    }
    // a second writer writes a pack of its own
    const more = block(20);
    await b.putParts(more.cid, [more.bytes.subarray(0, 10), more.bytes.subarray(10)]);
    await b.close();
    assert.equal(packFiles(dir).length, 2);
    const c = new BlockPacks(dir);
    assert.deepEqual(await c.get(more.cid), more.bytes, 'a block given in parts reads back whole');
    await c.close();
  });

  it('finds what another writer appends while both are open, and a block put twice at once is written once', async () => {
    const a = new BlockPacks(dir);
    const b = new BlockPacks(dir);
    const x = block(7);
    await Promise.all([b.put(x.cid, x.bytes), b.put(x.cid, x.bytes)]);
    assert.equal(b.list().length, 1);
    // a miss looks again, at most once a second
    await new Promise((r) => setTimeout(r, 1100));
    assert.ok(a.has(x.cid), "the other writer's block, found by a scan on the miss");
    assert.deepEqual(await a.get(x.cid), x.bytes);
    await Promise.all([a.close(), b.close()]);
    assert.equal(fs.statSync(path.join(dir, packFiles(dir)[0]!)).size, 8 + 1 + 34 + 4 + 1000, 'written once');
  });

  it('a read under way while a rewrite moves its block reads it where it went', async () => {
    const blocks = Array.from({ length: 40 }, (_, i) => block(i, 50_000));
    const w = new BlockPacks(dir);
    for (const b of blocks) await w.put(b.cid, b.bytes);
    await w.close();
    const p = new BlockPacks(dir);
    const odd = (mh: Uint8Array) => Buffer.from(mh).equals(Buffer.from(blocks[1]!.cid.multihash.bytes)) || mh[5]! % 2 === 1;
    const reads = blocks.map((b) => p.get(b.cid));
    const dropped = await p.rewrite(odd);
    const got = await Promise.all(reads);
    // each read gives the block's bytes, or null if the rewrite dropped it before the read found it
    const gone = new Set(dropped.map((d) => Buffer.from(d.multihash).toString('hex')));
    for (const [i, b] of blocks.entries()) {
      if (got[i] === null) assert.ok(gone.has(Buffer.from(b.cid.multihash.bytes).toString('hex')));
      else assert.deepEqual(got[i], b.bytes);
    }
    assert.ok(dropped.length > 0 && dropped.length < 40);
    for (const b of blocks) {
      const kept = !gone.has(Buffer.from(b.cid.multihash.bytes).toString('hex'));
      assert.deepEqual(await p.get(b.cid), kept ? b.bytes : null);
    }
    await p.close();
  });

  it('keeps the whole records of a pack a crash cut short, and ignores a file that is not a pack', async () => {
    const a = new BlockPacks(dir);
    const blocks = Array.from({ length: 3 }, (_, i) => block(i));
    for (const b of blocks) await a.put(b.cid, b.bytes);
    await a.close();
    const file = path.join(dir, packFiles(dir)[0]!);
    fs.truncateSync(file, fs.statSync(file).size - 500); // the third block half written
    fs.writeFileSync(path.join(dir, 'junk.pack'), 'not a pack at all');
    const stderr = captureStderr();
    let b: BlockPacks;
    try {
      b = new BlockPacks(dir);
    } finally {
      stderr.restore();
    }
    assert.match(stderr.text, /junk\.pack: not a pack of blocks; ignored/);
    assert.equal(b.list().length, 2);
    assert.deepEqual(await b.get(blocks[1]!.cid), blocks[1]!.bytes);
    assert.equal(b.has(blocks[2]!.cid), false, 'a block cut short is not a block');
    await b.put(blocks[2]!.cid, blocks[2]!.bytes); // fetched again: into a pack of its own
    assert.deepEqual(await b.get(blocks[2]!.cid), blocks[2]!.bytes);
    await b.close();
  });

  it('reads a closed pack from the index left beside it, not record by record, unless that index is not of the pack as it is', async () => {
    const a = new BlockPacks(dir);
    const blocks = Array.from({ length: 20 }, (_, i) => block(i));
    for (const b of blocks) await a.put(b.cid, b.bytes);
    await a.close();
    const [name] = packFiles(dir);
    const file = path.join(dir, name!);
    assert.ok(fs.existsSync(file + '.idx'), 'the writer left the index of the pack it closed');
    // the first record's header spoilt: the headers give nothing now, the index all 20
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([0]), 0, 1, 8);
    const fromIndex = new BlockPacks(dir);
    assert.equal(fromIndex.list().length, 20);
    for (const b of blocks) assert.deepEqual(await fromIndex.get(b.cid), b.bytes);
    await fromIndex.close();
    // the pack grown by a byte: the index is not of it, and its headers are read
    fs.writeSync(fd, Buffer.from([0]), 0, 1, fs.fstatSync(fd).size);
    assert.equal(new BlockPacks(dir).list().length, 0, 'the index is passed over: the spoilt header stops the scan');
    fs.writeSync(fd, Buffer.from([34]), 0, 1, 8);
    fs.closeSync(fd);
    assert.equal(new BlockPacks(dir).list().length, 20, 'the headers, mended, give the blocks');
    // an index with a byte changed is passed over too
    fs.truncateSync(file, fs.statSync(file).size - 1);
    const idx = fs.readFileSync(file + '.idx');
    idx[30]! ^= 1;
    fs.writeFileSync(file + '.idx', idx);
    fs.writeFileSync(file, Buffer.concat([fs.readFileSync(file).subarray(0, 8), Buffer.from([0]), fs.readFileSync(file).subarray(9)]));
    assert.equal(new BlockPacks(dir).list().length, 0, 'a changed index is not read');
  });

  it("removes a pack's index with the pack, an index whose pack is gone, and the half-made index of a writer that died", async () => {
    const a = new BlockPacks(dir);
    const kept = block(1);
    await a.put(kept.cid, kept.bytes);
    await a.put(block(2).cid, block(2).bytes);
    await a.close();
    const [old] = packFiles(dir);
    fs.writeFileSync(path.join(dir, 'gone.pack.idx'), 'an index without its pack');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    fs.writeFileSync(path.join(dir, `${old}.idx.${dead}.tmp`), 'half made');
    fs.writeFileSync(path.join(dir, `${old}.idx.${process.pid}.tmp`), "a live writer's");
    const p = new BlockPacks(dir);
    assert.ok(!fs.existsSync(path.join(dir, 'gone.pack.idx')), 'the index without a pack is removed');
    assert.deepEqual(await p.rewrite((mh) => Buffer.from(mh).equals(kept.cid.multihash.bytes)), [
      { multihash: Buffer.from(block(2).cid.multihash.bytes), file: path.join(dir, old!), bytes: 1 + 34 + 4 + 1000 },
    ]);
    await p.close();
    const [now] = packFiles(dir);
    assert.notEqual(now, old);
    assert.deepEqual(
      fs.readdirSync(dir).sort(),
      [now!, `${now}.idx`, `${old}.idx.${process.pid}.tmp`].sort(),
      "the old pack and its index gone, the new one indexed, the dead writer's temporary swept",
    );
    const reread = new BlockPacks(dir);
    assert.deepEqual(await reread.get(kept.cid), kept.bytes);
    await reread.close();
  });

  it("seals the pack of a writer that died before closing it, and leaves a live writer's open", async () => {
    const a = new BlockPacks(dir);
    const blocks = Array.from({ length: 5 }, (_, i) => block(i));
    for (const b of blocks) await a.put(b.cid, b.bytes);
    await a.close();
    const [made] = packFiles(dir);
    fs.rmSync(path.join(dir, `${made}.idx`)); // as a killed writer leaves it: no index
    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    const orphan = made!.replace(/-\d+-/, `-${dead}-`);
    const live = made!.replace(/-\d+-/, `-${process.ppid}-`).replace(/\.pack$/, 'x.pack');
    fs.renameSync(path.join(dir, made!), path.join(dir, orphan));
    fs.copyFileSync(path.join(dir, orphan), path.join(dir, live));
    const p = new BlockPacks(dir);
    assert.equal(p.list().length, 5);
    assert.ok(fs.existsSync(path.join(dir, `${orphan}.idx`)), "the dead writer's pack is sealed");
    assert.ok(!fs.existsSync(path.join(dir, `${live}.idx`)), 'a live writer may still append to its own');
    // the index it wrote is read, not the headers: spoil the first header
    const fd = fs.openSync(path.join(dir, orphan), 'r+');
    fs.writeSync(fd, Buffer.from([0]), 0, 1, 8);
    fs.closeSync(fd);
    fs.rmSync(path.join(dir, live));
    const q = new BlockPacks(dir);
    for (const b of blocks) assert.deepEqual(await q.get(b.cid), b.bytes);
    await q.close();
  });

  it('rewrite keeps what it is told to: a pack untouched, a pack removed, a pack rewritten; a dry run changes nothing', async () => {
    const blocks = Array.from({ length: 9 }, (_, i) => block(i));
    const made: string[] = [];
    for (const group of [blocks.slice(0, 3), blocks.slice(3, 6), blocks.slice(6, 9)]) {
      const before = new Set(packFiles(dir));
      const p = new BlockPacks(dir);
      for (const b of group) await p.put(b.cid, b.bytes);
      await p.close();
      made.push(...packFiles(dir).filter((n) => !before.has(n)));
    }
    const [first, second, third] = made;
    // the first pack all kept, the second all dropped, the third one of three kept
    const hex = (mh: Uint8Array) => Buffer.from(mh).toString('hex');
    const keep = new Set([0, 1, 2, 8].map((i) => hex(blocks[i]!.cid.multihash.bytes)));
    const keepFn = (mh: Uint8Array) => keep.has(hex(mh));
    const p = new BlockPacks(dir);
    const sizes = () => packFiles(dir).map((n) => [n, fs.statSync(path.join(dir, n)).size]);
    const before = sizes();
    const would = await p.rewrite(keepFn, true);
    assert.equal(would.length, 5);
    assert.deepEqual(sizes(), before, 'a dry run changes no pack');
    const dropped = await p.rewrite(keepFn);
    assert.deepEqual(
      dropped.map((d) => d.bytes),
      Array(5).fill(1 + 34 + 4 + 1000),
    );
    assert.deepEqual(new Set(dropped.map((d) => path.basename(d.file))), new Set([second, third]));
    const after = packFiles(dir);
    assert.ok(after.includes(first!), 'a pack all of whose blocks stay is left as it is');
    assert.ok(!after.includes(second!) && !after.includes(third!), 'the dropped and the rewritten packs are gone');
    assert.equal(after.length, 2, 'the kept block of the third pack is in a new pack');
    await p.close();
    const q = new BlockPacks(dir);
    assert.equal(q.list().length, 4);
    for (const i of [0, 1, 2, 8]) assert.deepEqual(await q.get(blocks[i]!.cid), blocks[i]!.bytes);
    for (const i of [3, 4, 5, 6, 7]) assert.equal(q.has(blocks[i]!.cid), false);
    assert.deepEqual(await q.rewrite(() => true), [], 'nothing more to drop');
    assert.equal(packFiles(dir).length, 2, 'and nothing rewritten');
    await q.close();
  });

  it('drops a block held twice (a crash during a rewrite) from one of its packs', async () => {
    const b = block(1);
    const w = new BlockPacks(dir);
    await w.put(b.cid, b.bytes);
    await w.put(block(2).cid, block(2).bytes);
    await w.close();
    // a rewrite copied the pack's blocks, then stopped before removing it
    const [only] = packFiles(dir);
    fs.copyFileSync(path.join(dir, only!), path.join(dir, `zz-${only}`));
    const p = new BlockPacks(dir);
    assert.equal(p.list().length, 2);
    assert.deepEqual(await p.rewrite(() => true), []);
    assert.equal(packFiles(dir).length, 1, 'the copy the index does not point at is gone');
    assert.deepEqual(await p.get(b.cid), b.bytes);
    assert.deepEqual(await p.get(block(2).cid), block(2).bytes);
    await p.close();
  });
});

function captureStderr(): { text: string; restore(): void } {
  const write = process.stderr.write.bind(process.stderr);
  const out = {
    text: '',
    restore: () => void (process.stderr.write = write),
  };
  process.stderr.write = ((chunk: string | Uint8Array) => {
    out.text += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  return out;
}
