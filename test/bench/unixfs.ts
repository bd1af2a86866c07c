#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: the project's own UnixFS import and file read against
 * @helia/unixfs doing the same, on the same file and the same kind of
 * blockstore, in the same run, to decide which to use (issue "IPFS as a
 * real peer-to-peer network", point 5).
 *
 *   node test/bench/unixfs.ts [MB [REPS]]       (default 256 MB, 3 runs each; npm run bench:unixfs)
 *
 * Each step in a fresh process, interleaved, a sync before each, timed
 * around the call (not the process's start):
 *   - add, ours: addPath() into the block files, as `peerpkgs ipfs add`
 *     writes them (blockfiles.ts; leaves hashed and written without a copy);
 *   - add, @helia/unixfs: addByteStream() into blockstore-fs, as Helia
 *     stores blocks, with kubo's settings said in full (its defaults are
 *     1 MiB chunks, 1024 links a node and CIDv1, which a profile does not
 *     override); the same CID, checked;
 *   - add, @helia/unixfs into our block files: the importer's difference alone;
 *   - cat, ours: fileContent() over the blocks (file-content.ts), as
 *     `peerpkgs ipfs cat` reads a file;
 *   - cat, @helia/unixfs: cat() over the same blocks;
 *   - openssl dgst -sha256 of the file: the reference.
 * Run `npm run build` first.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { removeTreeSync } from '../../src/archive/files.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const dir = path.join(os.tmpdir(), 'bench-unixfs');
const dist = (m: string) => JSON.stringify(path.join(repo, 'dist/ipfs', m));

/** argv: MODE FILE BLOCKS [CID]; prints {s, cid} */
const STEP = `
const [mode, file, blocks, want] = process.argv.slice(1);
const fs = await import('node:fs');
const { base32upper } = await import('multiformats/bases/base32');
const { CID } = await import('multiformats/cid');
const { FsBlockstore } = await import('blockstore-fs');
const { withPacks } = await import(${dist('blockfiles.js')});
const { BlockPacks } = await import(${dist('packs.js')});
const packs = new BlockPacks(blocks + '/packs');
const ours = async () => withPacks(await store(), packs, blocks, base32upper);
const { addPath } = await import(${dist('unixfs.js')});
const { fileContent, wholeBlock } = await import(${dist('file-content.js')});
const helia = mode.endsWith('helia') || mode === 'add-helia-ourfiles' ? await import('@helia/unixfs') : null;
const dagPb = await import('@ipld/dag-pb');
const { UnixFS } = await import('ipfs-unixfs');
const store = async () => { const s = new FsBlockstore(blocks); await s.open(); return s; };
// @helia/unixfs's own defaults (1 MiB chunks, 1024 links, CIDv1) override a profile: kubo's settings are said in full
const { balanced } = await import('ipfs-unixfs-importer/layout');
const { fixedSize } = await import('ipfs-unixfs-importer/chunker');
const opts = { cidVersion: 0, rawLeaves: false, profile: 'unixfs-v0-2015', layout: balanced({ maxChildrenPerNode: 174 }), chunker: fixedSize({ chunkSize: 262144 }) };
let cid, bytes = 0;
const t0 = process.hrtime.bigint();
if (mode === 'add-ours') cid = await addPath(file, packs);
else if (mode === 'add-helia') cid = await helia.unixfs({ blockstore: await store() }).addByteStream(fs.createReadStream(file, { highWaterMark: 1 << 20 }), opts);
else if (mode === 'add-helia-ourfiles') cid = await helia.unixfs({ blockstore: await ours() }).addByteStream(fs.createReadStream(file, { highWaterMark: 1 << 20 }), opts);
else if (mode === 'cat-ours') {
  const s = await ours();
  const root = dagPb.decode(await wholeBlock(s.get(CID.parse(want))));
  for await (const c of fileContent({ dagPb, UnixFS }, root, (c, signal) => wholeBlock(s.get(c, { signal })), { window: 16 })) bytes += c.byteLength;
} else if (mode === 'cat-helia') {
  const s = await ours();
  for await (const c of helia.unixfs({ blockstore: s }).cat(CID.parse(want), { blockReadConcurrency: 16 })) bytes += c.byteLength;
}
await packs.close();
const s = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ s, cid: cid?.toString?.() ?? cid, bytes }));
`;

function settle(): void {
  spawnSync('sync');
}

function step(mode: string, file: string, blocks: string, cid = ''): { s: number; cid?: string; bytes: number } {
  settle();
  const r = spawnSync(process.execPath, ['--max-semi-space-size=16', '--input-type=module', '-e', STEP, mode, file, blocks, cid], {
    cwd: repo,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`${mode} failed (${r.status})`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { s: number; cid?: string; bytes: number };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const mb = Number(process.argv[2] ?? 256);
  const reps = Number(process.argv[3] ?? 3);
  if (!fs.existsSync(path.join(repo, 'dist/ipfs/file-content.js'))) throw new Error('run npm run build first');
  removeTreeSync(dir);
  fs.mkdirSync(dir, { recursive: true });
  console.log(`unixfs: a ${mb} MB file (random data), ${os.cpus().length} cores, node ${process.version}, load ${os.loadavg()[0]!.toFixed(2)}`);
  const file = path.join(dir, 'file');
  const chunk = Buffer.alloc(1 << 20);
  const fd = fs.openSync(file, 'w');
  for (let i = 0; i < mb; i++) fs.writeSync(fd, randomFillSync(chunk));
  fs.closeSync(fd);
  const size = mb * 2 ** 20;
  const t: Record<string, number[]> = { openssl: [], 'add-ours': [], 'add-helia': [], 'add-helia-ourfiles': [], 'cat-ours': [], 'cat-helia': [] };
  const kept = path.join(dir, 'kept');
  let cid = '';
  for (let rep = 0; rep < reps; rep++) {
    settle();
    const t0 = process.hrtime.bigint();
    if (spawnSync('openssl', ['dgst', '-sha256', file], { stdio: 'ignore' }).status !== 0) throw new Error('openssl failed');
    t.openssl!.push(Number(process.hrtime.bigint() - t0) / 1e9);
    for (const mode of ['add-ours', 'add-helia', 'add-helia-ourfiles']) {
      const blocks = path.join(dir, 'blocks');
      removeTreeSync(blocks);
      const r = step(mode, file, blocks);
      if (cid && r.cid !== cid) throw new Error(`${mode} made ${r.cid}, not ${cid}`);
      cid = r.cid!;
      t[mode]!.push(r.s);
      if (!fs.existsSync(kept)) fs.renameSync(blocks, kept);
    }
    for (const mode of ['cat-ours', 'cat-helia']) {
      const r = step(mode, file, kept, cid);
      if (r.bytes !== size) throw new Error(`${mode} read ${r.bytes} bytes, not ${size}`);
      t[mode]!.push(r.s);
    }
  }
  const row = (x: string, k: string) => {
    const m = median(t[k]!);
    console.log(x.padEnd(52) + `${m.toFixed(3)}s`.padStart(9) + `${(mb / m).toFixed(0)} MB/s`.padStart(12) + `   (${t[k]!.map((v) => v.toFixed(2)).join(' ')})`);
  };
  console.log(`CID ${cid}; median of ${reps} runs each (each run's time in brackets)\n`);
  row('openssl dgst -sha256 (the reference)', 'openssl');
  row('add, ours (into the block files)', 'add-ours');
  row('add, @helia/unixfs (into blockstore-fs)', 'add-helia');
  row('add, @helia/unixfs (into our block files)', 'add-helia-ourfiles');
  row('cat, ours (file-content.ts)', 'cat-ours');
  row('cat, @helia/unixfs', 'cat-helia');
  const m = (k: string) => median(t[k]!);
  console.log(
    `\nadd: ours ${(m('add-helia') / m('add-ours')).toFixed(2)}× the speed of @helia/unixfs; cat: ours ${(m('cat-helia') / m('cat-ours')).toFixed(2)}× the speed of @helia/unixfs`,
  );
  removeTreeSync(dir);
}

await main();
