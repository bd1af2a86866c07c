/**
 * Reading a gateway's CAR (src/ipfs/car-fetch.ts) without a network: the
 * CARs are written by the daemon's own writer (car.ts) or cut and forged
 * from it. What a reader of a file through a gateway relies on: a block is
 * handed out only under the CID asked for and only if it hashes to it, a
 * CAR is read only so far ahead of the reader, and whatever goes wrong
 * leaves the reader to ask for its blocks otherwise.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { carBlocks, CarPrefetch, CarOfAnotherRoot, type CarBlock } from '../src/ipfs/car-fetch.ts';
import { carHeader, sectionPrefix } from '../src/ipfs/car.ts';
import { CID, Digest } from '../src/ipfs/deps-dag.ts';

const RAW = 0x55;
const block = (text: string): CarBlock => {
  const bytes = Buffer.from(text);
  return { cid: CID.createV1(RAW, Digest.create(0x12, createHash('sha256').update(bytes).digest())), bytes };
};
const car = (root: CID, blocks: CarBlock[]): Buffer => Buffer.concat([carHeader(root), ...blocks.flatMap((b) => [sectionPrefix(b.cid, b.bytes.byteLength), b.bytes])]);
/** the CAR as a stream of `size`-byte chunks, as a socket gives it */
async function* chunks(data: Uint8Array, size = 7): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}
const all = async (it: AsyncIterable<CarBlock>) => {
  const out: string[] = [];
  for await (const b of it) out.push(`${b.cid} ${Buffer.from(b.bytes).toString()}`);
  return out;
};

describe('reading a CAR from a gateway', () => {
  const a = block('a block');
  const b = block('another block');
  const c = block('a third');

  it('reads the blocks of a CAR whatever its chunks, each under its CID', async () => {
    for (const size of [1, 7, 1000]) {
      assert.deepEqual(
        await all(carBlocks(chunks(car(a.cid, [a, b, c]), size), a.cid)),
        [a, b, c].map((x) => `${x.cid} ${Buffer.from(x.bytes).toString()}`),
      );
    }
  });

  it('refuses a CAR of another root, one cut short, and a section bigger than a block', async () => {
    await assert.rejects(all(carBlocks(chunks(car(b.cid, [b])), a.cid)), (e: Error) => e instanceof CarOfAnotherRoot && e.message === `a CAR that is not of ${a.cid}`);
    const whole = car(a.cid, [a, b]);
    await assert.rejects(all(carBlocks(chunks(whole.subarray(0, whole.length - 3)), a.cid)), /^IpfsError: the CAR ends inside a section \(\d+ of \d+ bytes\)$/);
    // a section length of 3 MiB, then nothing
    const big = Buffer.concat([carHeader(a.cid), Buffer.from([0x80, 0x80, 0xc0, 0x01])]);
    await assert.rejects(all(carBlocks(chunks(big), a.cid)), /the CAR has a section of 3145728 bytes, more than a block may have/);
    await assert.rejects(all(carBlocks(chunks(Buffer.from('<html>no CAR here</html>')), a.cid)), /not a CAR|not dag-cbor/);
  });

  /** a CarPrefetch over `blocks`, counting what it reads and what it hears */
  const prefetch = (blocks: Iterable<CarBlock>, ahead = 64) => {
    const seen = { read: 0, wrong: [] as string[], failed: [] as string[], stopped: 0 };
    async function* gen() {
      for (const x of blocks) {
        seen.read++;
        yield x;
      }
    }
    const p = new CarPrefetch(gen(), {
      ahead,
      stop: () => seen.stopped++,
      events: { wrong: (w) => seen.wrong.push(w), failed: (w) => seen.failed.push(w) },
    });
    return { p, seen };
  };

  it('hands each block out once, under the CID asked for, and reads only as far as it must', async () => {
    const { p, seen } = prefetch([a, b, c]);
    assert.equal(Buffer.from((await p.get(b.cid))!).toString(), 'another block');
    assert.equal(seen.read, 2, 'a is read on the way to b, and kept');
    assert.equal(Buffer.from((await p.get(a.cid))!).toString(), 'a block');
    assert.equal(seen.read, 2);
    assert.equal(await p.get(a.cid), undefined, 'handed out before: the blockstore has it');
    assert.equal(Buffer.from((await p.get(c.cid))!).toString(), 'a third');
    assert.equal(await p.get(block('not in the CAR').cid), undefined, 'the CAR is over');
    await p.close();
    assert.equal(seen.stopped, 1);
  });

  it('leaves a block the CAR has not reached to the network once it holds `ahead` bytes, and drops it when it comes', async () => {
    const { p, seen } = prefetch([a, b, c], 20);
    assert.equal(await p.get(c.cid), undefined, 'a and b (20 bytes) are as far ahead as it reads');
    assert.equal(seen.read, 2);
    assert.ok(await p.get(a.cid));
    assert.ok(await p.get(b.cid));
    assert.equal(await p.get(c.cid), undefined, 'asked of the network already');
    await p.close();
  });

  it('stops reading a CAR of blocks nobody asks for (one block over and over) after `ahead` bytes', async () => {
    const { p, seen } = prefetch(
      (function* () {
        yield a;
        for (;;) yield b;
      })(),
      100,
    );
    assert.ok(await p.get(b.cid));
    assert.equal(await p.get(c.cid), undefined);
    assert.ok(seen.read < 20, `${seen.read} blocks read`);
    await p.close();
  });

  it('takes a wrong block for a lie: nothing more is read, and the rest comes from the network', async () => {
    const forged = { cid: c.cid, bytes: Buffer.from('not the third') };
    const { p, seen } = prefetch([a, forged, b]);
    assert.ok(await p.get(a.cid));
    assert.equal(await p.get(c.cid), undefined);
    assert.deepEqual(seen.wrong, [`a block that is not ${c.cid}`]);
    assert.equal(await p.get(b.cid), undefined, 'the CAR is not read after a lie');
    assert.equal(seen.read, 2);
    await p.close();
  });

  it('hears of a CAR that breaks off, and of one of another root, once', async () => {
    const broken = prefetch(
      (function* () {
        yield a;
        throw new Error('connection reset');
      })(),
    );
    assert.ok(await broken.p.get(a.cid));
    assert.equal(await broken.p.get(b.cid), undefined);
    assert.equal(await broken.p.get(c.cid), undefined);
    assert.deepEqual(broken.seen.failed, ['connection reset']);
    const heard: string[] = [];
    const other = new CarPrefetch(carBlocks(chunks(car(b.cid, [b])), a.cid), {
      ahead: 64,
      stop: () => {},
      events: { wrong: (w) => heard.push(`wrong: ${w}`), failed: (w) => heard.push(`failed: ${w}`) },
    });
    assert.equal(await other.get(b.cid), undefined);
    assert.deepEqual(heard, [`wrong: a CAR that is not of ${a.cid}`]);
  });
});
