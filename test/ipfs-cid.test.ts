/**
 * `ipfs add` makes the CIDs kubo makes for the same bytes and settings.
 * Every expected CID below is kubo's (go-ipfs') recorded output, with the
 * place it was recorded; the contents are rebuilt here byte for byte.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addBytes, addPath } from '../src/ipfs/unixfs.ts';
import type { AddOptions } from '../src/ipfs/client.ts';
import { scratch, write } from './helpers.ts';

// only the CID is of interest here: a blockstore that keeps nothing, and
// takes leaves as parts as the block files do (so leaves are made as by add)
const nowhere = { put: async <T>(cid: T) => cid, putParts: async <T>(cid: T) => cid };

const cidOf = (data: string | Uint8Array, o: AddOptions = {}) => addBytes(typeof data === 'string' ? Buffer.from(data) : data, nowhere, o);

describe('ipfs add: CIDs as kubo makes them', () => {
  describe('CIDv0, kubo defaults (256 KiB chunks, 174 links a node, dag-pb leaves)', () => {
    it('an empty file', async () => {
      // kubo test/sharness/t0040-add-and-cat.sh, "zero length file has correct hash"
      assert.equal(await cidOf(''), 'QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH');
    });
    it('one-chunk files', async () => {
      // kubo README ("ipfs add hello" of `echo "hello world"`)
      assert.equal(await cidOf('hello world\n'), 'QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o');
      // kubo test/cli/add_test.go, shortStringCidV0
      assert.equal(await cidOf('hello world'), 'Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD');
      // kubo test/sharness/t0040-add-and-cat.sh, "ipfs add output looks good"
      assert.equal(await cidOf('Hello Worlds!\n'), 'QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH');
      // kubo test/sharness/t0114-gateway-subdomains/README.md, CIDv0 of `echo hello`
      assert.equal(await cidOf('hello\n'), 'QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN');
    });
    it('a file of five 256 KiB chunks (1,310,710 zero bytes)', async () => {
      // go-ipfs' CID recorded in ethereum/solidity test/libsolutil/IpfsHash.cpp (test_large)
      assert.equal(await cidOf(new Uint8Array(1310710)), 'QmNg7BJo8gEMDK8yGQbHEwPtycesnE6FUULX5iVd5TAL9f');
    });
    it('the largest one-chunk file (256 KiB - 1 zero bytes)', async () => {
      // go-ipfs' CID recorded in ethereum/solidity test/libsolutil/IpfsHash.cpp (test_largest_unchunked)
      assert.equal(await cidOf(new Uint8Array(262143)), 'QmbNDspMkzkMFKyS3eCJGedG7GWRQHSCzJCZLjxP7wyVAx');
    });
    it('a file of more than 174 chunks: a two-level balanced DAG (chunker size-1)', async () => {
      // go-ipfs 0.5 `ipfs add --chunker=size-1`, recorded in rs-ipfs/rust-ipfs unixfs/src/file/adder.rs (three_layers):
      // 239 chunks, the root linking a node of 174 leaves and one of 65
      const lorem =
        'Lorem ipsum dolor sit amet, sit enim montes aliquam. Cras non lorem, ' +
        'rhoncus condimentum, irure et ante. Pulvinar suscipit odio ante, et tellus a enim, ' +
        'wisi ipsum, vel rhoncus eget faucibus varius, luctus turpis nibh vel odio nulla pede.';
      assert.ok(lorem.length > 174 && lorem.length < 2 * 174);
      assert.equal(await cidOf(lorem, { chunkSize: 1 }), 'QmRQ6NZNUs4JrCT2y7tmCC1wUhjqYuTssB8VXbbN3rMffg');
    });
    it('--raw-leaves: an empty file is one raw block', async () => {
      // kubo test/sharness/t0040-add-and-cat.sh, "add zero length file with raw-leaves"
      assert.equal(await cidOf('', { rawLeaves: true }), 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku');
    });
  });

  describe('CIDv1 (raw leaves, as --cid-version 1 implies)', () => {
    it('one-chunk files', async () => {
      // kubo test/cli/add_test.go, shortStringCidV1 and shortStringCidV1NoRawLeaves
      assert.equal(await cidOf('hello world', { cidVersion: 1 }), 'bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e');
      assert.equal(await cidOf('hello world', { cidVersion: 1, rawLeaves: false }), 'bafybeihykld7uyxzogax6vgyvag42y7464eywpf55gxi5qpoisibh3c5wa');
      // kubo test/sharness/t0114-gateway-subdomains/README.md, CIDv1 of `echo hello`
      assert.equal(await cidOf('hello\n', { cidVersion: 1 }), 'bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am');
      // kubo 0.18.1, test/sharness/t0124-gateway-ipns-record/README.md, FILE_CID of `echo "Hello IPFS"`
      assert.equal(await cidOf('Hello IPFS\n', { cidVersion: 1 }), 'bafkreidfdrlkeq4m4xnxuyx6iae76fdm4wgl5d4xzsb77ixhyqwumhz244');
    });
  });

  describe('directories, as `ipfs add -r`', () => {
    let s: ReturnType<typeof scratch>;
    beforeEach(() => (s = scratch()));
    afterEach(() => s.cleanup());

    it('an empty directory', async () => {
      // the empty UnixFS directory every kubo repo has (ipfs object new unixfs-dir)
      fs.mkdirSync(path.join(s.dir, 'empty'));
      assert.equal(await addPath(path.join(s.dir, 'empty'), nowhere), 'QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn');
    });
    it('a tree, CIDv0', async () => {
      // kubo test/sharness/t0040-add-and-cat.sh, "ipfs add -r . output looks good"
      write(s.dir, { 'd/hey': 'Hey\n', 'd/hello/world': 'World\n' });
      assert.equal(await addPath(path.join(s.dir, 'd'), nowhere), 'QmZQWnfcqJ6hNkkPvrY9Q5X39GP3jUnUbAV4AbmbbR3Cb1');
    });
    it('hidden files are left out unless asked for', async () => {
      write(s.dir, { 'd/hey': 'Hey\n', 'd/hello/world': 'World\n', 'd/.tmp-x': 'half-written', 'd/hello/.hidden': 'x' });
      assert.equal(await addPath(path.join(s.dir, 'd'), nowhere), 'QmZQWnfcqJ6hNkkPvrY9Q5X39GP3jUnUbAV4AbmbbR3Cb1');
      assert.notEqual(await addPath(path.join(s.dir, 'd'), nowhere, { hidden: true }), 'QmZQWnfcqJ6hNkkPvrY9Q5X39GP3jUnUbAV4AbmbbR3Cb1');
    });
    it('a tree, CIDv1', async () => {
      // kubo 0.18.1, test/sharness/t0114-gateway-subdomains/README.md: DIR_CID of testdirlisting
      write(s.dir, {
        'testdirlisting/hello': 'hello\n',
        'testdirlisting/ipfs/ipns/bar': 'text-file-content\n',
        'testdirlisting/api/file.txt': 'I am a txt file\n',
        'testdirlisting/ipfs/file.txt': 'I am a txt file\n',
      });
      assert.equal(await addPath(path.join(s.dir, 'testdirlisting'), nowhere, { cidVersion: 1 }), 'bafybeiht6dtwk3les7vqm6ibpvz6qpohidvlshsfyr7l5mpysdw2vmbbhe');
    });
    it('a tree with UTF-8 names, CIDv1', async () => {
      // kubo 0.18.1, test/sharness/t0123-gateway-json-cbor/README.md: DIR_CID of rootDir
      write(s.dir, {
        'rootDir/ą/ę/t.json': '{ "test": "i am a plain json file" }\n',
        'rootDir/ą/ę/file-źł.txt': 'I am a txt file on path with utf8\n',
        'rootDir/api/file.txt': 'I am a txt file in confusing /api dir\n',
        'rootDir/ipfs/file.txt': 'I am a txt file in confusing /ipfs dir\n',
        'rootDir/ipns/file.txt': 'I am a txt file in confusing /ipns dir\n',
      });
      assert.equal(await addPath(path.join(s.dir, 'rootDir'), nowhere, { cidVersion: 1 }), 'bafybeiafyvqlazbbbtjnn6how5d6h6l6rxbqc4qgpbmteaiskjrffmyy4a');
    });
  });
});

describe('ipfs add: a file added without the importer is the DAG the importer makes', () => {
  // the same blocks, byte for byte: every block each put, by CID
  const importerBlocks = async (data: Uint8Array, o: AddOptions) => {
    const blocks = new Map<string, string>();
    // no putParts: addBytes hands this store to ipfs-unixfs-importer, leaves and all
    const store = { put: async <T extends { toString(): string }>(cid: T, bytes: Uint8Array) => (blocks.set(cid.toString(), Buffer.from(bytes).toString('hex')), cid) };
    const root = await addBytes(toStream(data), store, o);
    return { root, blocks };
  };
  const leanBlocks = async (data: Uint8Array, o: AddOptions) => {
    const blocks = new Map<string, string>();
    const store = {
      put: async <T extends { toString(): string }>(cid: T, bytes: Uint8Array) => (blocks.set(cid.toString(), Buffer.from(bytes).toString('hex')), cid),
      putParts: async <T extends { toString(): string }>(cid: T, parts: Uint8Array[]) => (blocks.set(cid.toString(), Buffer.concat(parts).toString('hex')), cid),
    };
    const root = await addBytes(data, store, o);
    return { root, blocks };
  };
  async function* toStream(data: Uint8Array) {
    for (let i = 0; i < data.byteLength; i += 1000) yield data.subarray(i, i + 1000);
  }
  const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 8)) & 0xff);

  for (const [what, o] of [
    ['CIDv0', {}],
    ['CIDv0 with raw leaves', { rawLeaves: true }],
    ['CIDv1', { cidVersion: 1 }],
    ['CIDv1 with dag-pb leaves', { cidVersion: 1, rawLeaves: false }],
  ] as [string, AddOptions][]) {
    it(`${what}: empty, one chunk, a chunk and a byte, 174 and 175 chunks, three levels`, async () => {
      for (const [n, chunkSize] of [
        [0, 16],
        [1, 16],
        [16, 16],
        [17, 16],
        [174 * 16, 16],
        [174 * 16 + 1, 16],
        [174 * 174 + 1, 1],
      ] as const) {
        const data = bytes(n);
        const want = await importerBlocks(data, { ...o, chunkSize });
        const got = await leanBlocks(data, { ...o, chunkSize });
        assert.equal(got.root, want.root, `${n} bytes in chunks of ${chunkSize}`);
        assert.deepEqual(got.blocks, want.blocks, `${n} bytes in chunks of ${chunkSize}: the blocks`);
      }
    });
  }

  it('a file that ends before the size it had when the add began is an error, not a shorter DAG', async () => {
    const { addFileDag, loadDagMods } = await import('../src/ipfs/file-dag.ts');
    const data = bytes(100);
    // the file as read after a truncation to 40 bytes
    const read = (into: Uint8Array, at: number, n: number, pos: number) => {
      const got = data.subarray(pos, Math.min(pos + n, 40));
      into.set(got, at);
      return got.byteLength;
    };
    await assert.rejects(addFileDag(await loadDagMods(), read, 100, nowhere, { cidVersion: 0, rawLeaves: false, chunkSize: 16, maxChildren: 174 }), {
      name: 'IpfsError',
      message: 'the file ended at 40 bytes, before the 100 it had when the add began',
    });
  });

  it('a file on disk: the root the importer makes of its bytes', async () => {
    const s = scratch();
    try {
      const file = path.join(s.dir, 'f');
      const data = bytes(3 * 262144 + 5);
      fs.writeFileSync(file, data);
      assert.equal(await addPath(file, nowhere), (await importerBlocks(data, {})).root);
    } finally {
      s.cleanup();
    }
  });
});
