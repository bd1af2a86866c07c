#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: a big package over IPFS between two nodes (separate
 * processes, loopback TCP), against the same package from a loopback nginx
 * cache, and adding a big file against hashing it, in the same run.
 *
 *   node test/bench/ipfs.ts [MB [REPS]]       (default 256 MB, 3 runs each; npm run bench:ipfs)
 *
 * Node A is `peerpkgs ipfs daemon` on its own PEERPKGS_HOME; the cache
 * directory (one signed package of MB random data, as bench/cache.ts makes
 * it) is added to it, pinned. Each run, interleaved, with a fresh home for
 * B each time (so no block is local) and a sync before each step:
 *   - add: `peerpkgs ipfs add` of the package's .tar.gz (the command, and
 *     the import alone in a process of its own), and the same with
 *     --only-hash (nothing stored), against sha256 of the same file by
 *     node:crypto in a fresh process;
 *   - ipfs substitute: substitute() with PKG_CACHE_URL=ipfs://CID in a
 *     child process whose node (B) dials A: its time includes starting B;
 *   - gateway substitute: the same, B not dialling A but fetching every
 *     block from A's trustless gateway (PKG_IPFS_GATEWAYS);
 *   - http substitute: the same call with the nginx URL;
 *   - ipfs get: `peerpkgs ipfs get CID/<pkghash>.tar.gz -o FILE` on a
 *     fresh B, the raw transfer.
 * Targets (issue "Peer-to-peer: IPFS…"): ipfs substitute ≥ 0.5× the HTTP
 * throughput; add ≥ 0.8× the hashing speed. Run `npm run build` first.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packDir } from '../../src/archive/pack.ts';
import { removeTreeSync } from '../../src/archive/files.ts';
import { generateKey } from '../../src/cache/keys.ts';
import { addToCache } from '../../src/cache/publish.ts';
import { startNginx } from '../nginx.ts';
import { substituteChild } from './substitute-child.ts';
import { median, settle, timed as run, REPO } from './measure.ts';

const repo = REPO;
const dir = path.join(os.tmpdir(), 'bench-ipfs');
const PKGHASH = 'c'.repeat(64);
const peerpkgs = path.join(repo, 'bin/peerpkgs');

const CHILD = substituteChild(repo, PKGHASH, { log: true });

const HASH = `
const { createHash } = await import('node:crypto');
const fs = await import('node:fs');
const t0 = process.hrtime.bigint();
const h = createHash('sha256');
for await (const c of fs.createReadStream(process.argv[1], { highWaterMark: 1 << 20 })) h.update(c);
h.digest('hex');
console.log(JSON.stringify({ s: Number(process.hrtime.bigint() - t0) / 1e9 }));
`;

/** addPath into a fresh block directory as ipfs add writes it (or, given '-', storing nothing as add --only-hash), timed around the call: the import itself, without starting a node. */
const ADD = `
const [file, blocks] = process.argv.slice(1);
const { addPath } = await import(${JSON.stringify(path.join(repo, 'dist/ipfs/unixfs.js'))});
const { blockFiles } = await import(${JSON.stringify(path.join(repo, 'dist/ipfs/blockfiles.js'))});
const { base32upper } = await import('multiformats/bases/base32');
const t0 = process.hrtime.bigint();
const store = blocks === '-' ? { put: async (c) => c, putParts: async (c) => c } : blockFiles(blocks, base32upper);
const cid = await addPath(file, store);
console.log(JSON.stringify({ s: Number(process.hrtime.bigint() - t0) / 1e9, cid }));
`;

/** the heap sizes bin/peerpkgs gives a build process with this PKG_CACHE_URL (read from it, so they cannot drift apart) */
function heapFlags(url: string): string[] {
  const wrapper = fs.readFileSync(peerpkgs, 'utf8');
  const ipfs = /heap='([^']+)'/.exec(wrapper)?.[1];
  const other = /^heap=(\S+)$/m.exec(wrapper)?.[1];
  if (!ipfs || !other) throw new Error(`${peerpkgs}: no heap sizes found`);
  return (/^(ipfs|ipns):/.test(url) ? ipfs : other).split(' ');
}

const timed = (cmd: string, args: string[], env: NodeJS.ProcessEnv) => run(cmd, args, { env: { ...process.env, ...env }, settle: true, showStderr: true });

function child(script: string, args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): { s: number; rssMB?: number } {
  settle();
  const r = spawnSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', script, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`child failed (${r.status})`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { s: number; rssMB?: number };
}

async function makePackage(mb: number): Promise<{ archive: string; sha256: string }> {
  const dest = path.join(dir, 'destdir');
  fs.mkdirSync(path.join(dest, 'share/big'), { recursive: true });
  const chunk = Buffer.alloc(1 << 20);
  for (let f = 0; f < 8; f++) {
    const fd = fs.openSync(path.join(dest, `share/big/data${f}.bin`), 'w');
    for (let i = 0; i < mb / 8; i++) fs.writeSync(fd, randomFillSync(chunk));
    fs.closeSync(fd);
  }
  const archive = path.join(dir, 'big.pkg.tar.gz');
  const packed = await packDir(dest, archive);
  fs.rmSync(dest, { recursive: true });
  return { archive, sha256: packed.sha256 };
}

async function startDaemon(home: string): Promise<{ addr: string; gateway: string; stop(): Promise<void> }> {
  const env = { ...process.env, PEERPKGS_HOME: home, PKG_IPFS_GATEWAY_LISTEN: '/ip4/127.0.0.1/tcp/0' };
  const p = spawn(peerpkgs, ['ipfs', 'daemon'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    p.stdout.on('data', (d) => {
      out += d;
      if (/^ready$/m.test(out)) resolve();
    });
    p.once('exit', (c) => reject(new Error(`the daemon exited (${c})`)));
  });
  const addr = /^listening: (\S+)$/m.exec(out)![1]!;
  return {
    addr,
    gateway: /^gateway: (\S+)$/m.exec(out)![1]!,
    stop: async () => {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await exited;
    },
  };
}

async function main(): Promise<void> {
  const mb = Number(process.argv[2] ?? 256);
  const reps = Number(process.argv[3] ?? 3);
  if (!fs.existsSync(path.join(repo, 'dist/ipfs/node.js'))) throw new Error('run npm run build first');
  removeTreeSync(dir);
  fs.mkdirSync(dir, { recursive: true });
  const home = path.join(dir, 'trust');
  const key = generateKey(home, 'bench');
  fs.writeFileSync(path.join(home, 'trusted-keys'), `${key.publicKey} bench\n`);
  console.log(`ipfs: a ${mb} MB package (random data), ${os.cpus().length} cores, node ${process.version}, load ${os.loadavg()[0]!.toFixed(2)}; packing it…`);
  const { archive, sha256 } = await makePackage(mb);
  const cacheDir = path.join(dir, 'cache');
  await addToCache({ dir: cacheDir, packages: [{ pkghash: PKGHASH, name: 'big', archive, sha256, closure: [] }], signKey: key });
  const file = path.join(cacheDir, `${PKGHASH}.tar.gz`);
  const size = fs.statSync(file).size;
  fs.rmSync(archive);

  const homeA = path.join(dir, 'a');
  const a = await startDaemon(homeA);
  const nginx = await startNginx(cacheDir);
  const times = { add: [] as number[], importer: [] as number[], onlyHash: [] as number[], onlyHashCmd: [] as number[], hash: [] as number[], ipfs: [] as number[], gateway: [] as number[], http: [] as number[], get: [] as number[] };
  let rss = 0;
  try {
    const cid = timed(peerpkgs, ['ipfs', 'add', '--pin', cacheDir], { PEERPKGS_HOME: homeA }).stdout.trim();
    const homeB = path.join(dir, 'b');
    const work = path.join(dir, 'work');
    for (let rep = 0; rep < reps; rep++) {
      // adding: into a fresh repo each time, where no daemon runs: the command starts a node of its own
      const homeAdd = path.join(dir, 'add');
      fs.rmSync(homeAdd, { recursive: true, force: true });
      times.add.push(timed(peerpkgs, ['ipfs', 'add', file], { PEERPKGS_HOME: homeAdd }).s);
      fs.rmSync(homeAdd, { recursive: true, force: true });
      times.importer.push(child(ADD, [file, path.join(homeAdd, 'blocks')]).s);
      fs.rmSync(homeAdd, { recursive: true, force: true });
      times.onlyHash.push(child(ADD, [file, '-']).s);
      times.onlyHashCmd.push(timed(peerpkgs, ['ipfs', 'add', '-n', file], { PEERPKGS_HOME: homeAdd }).s);
      times.hash.push(child(HASH, [file]).s);

      for (const [kind, url, route] of [
        ['ipfs', `ipfs://${cid}`, { PKG_IPFS_PEERS: a.addr }],
        ['gateway', `ipfs://${cid}`, { PKG_IPFS_GATEWAYS: a.gateway }],
        ['http', nginx.url, {}],
      ] as const) {
        removeTreeSync(homeB);
        removeTreeSync(work); // unpacked outputs are read-only
        fs.mkdirSync(homeB, { recursive: true });
        fs.copyFileSync(path.join(home, 'trusted-keys'), path.join(homeB, 'trusted-keys'));
        const r = child(CHILD, [url, homeB, work], { PEERPKGS_HOME: homeB, ...route }, heapFlags(url));
        if (!fs.existsSync(path.join(work, 'outputs', sha256, 'share/big/data0.bin'))) throw new Error(`${kind}: substitute unpacked nothing`);
        times[kind].push(r.s);
        rss = kind === 'ipfs' ? Math.max(rss, r.rssMB ?? 0) : rss;
      }

      removeTreeSync(homeB);
      const got = path.join(dir, 'got');
      fs.rmSync(got, { force: true });
      times.get.push(timed(peerpkgs, ['ipfs', 'get', `${cid}/${PKGHASH}.tar.gz`, '-o', got], { PEERPKGS_HOME: homeB, PKG_IPFS_PEERS: a.addr }).s);
      if (fs.statSync(got).size !== size) throw new Error('ipfs get: wrong size');
      fs.rmSync(got, { force: true });
    }
  } finally {
    await nginx.stop();
    await a.stop();
  }
  const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)])) as Record<keyof typeof times, number>;
  const rate = (s: number) => `${(size / 2 ** 20 / s).toFixed(0)} MB/s`;
  const row = (x: string, t: number, xs: number[]) => console.log(x.padEnd(44) + `${t.toFixed(3)}s`.padStart(9) + rate(t).padStart(12) + `   (${xs.map((v) => v.toFixed(2)).join(' ')})`);
  console.log(`archive ${(size / 2 ** 20).toFixed(0)} MB; median of ${reps} runs each (each run's time in brackets)\n`);
  console.log(''.padEnd(44) + 'time'.padStart(9) + 'throughput'.padStart(12));
  row('sha256 of the file (node:crypto)', m.hash, times.hash);
  row('add: the import (into the block files)', m.importer, times.importer);
  row('add: peerpkgs ipfs add (starts a node)', m.add, times.add);
  row('add --only-hash: the import (stores nothing)', m.onlyHash, times.onlyHash);
  row('add --only-hash: peerpkgs ipfs add -n', m.onlyHashCmd, times.onlyHashCmd);
  row('substitute from http:// (nginx)', m.http, times.http);
  row('substitute from ipfs:// (node B <- daemon A)', m.ipfs, times.ipfs);
  row("substitute from ipfs:// (B <- A's gateway)", m.gateway, times.gateway);
  row('peerpkgs ipfs get (node B <- daemon A)', m.get, times.get);
  console.log('');
  console.log(`ipfs substitute against http: ${(m.http / m.ipfs).toFixed(2)}× (target ≥ 0.50); through the gateway: ${(m.http / m.gateway).toFixed(2)}×`);
  console.log(`add against sha256: ${(m.hash / m.importer).toFixed(2)}× the import, ${(m.hash / m.add).toFixed(2)}× the command (target ≥ 0.80)`);
  console.log(`add --only-hash against sha256: ${(m.hash / m.onlyHash).toFixed(2)}× the import, ${(m.hash / m.onlyHashCmd).toFixed(2)}× the command`);
  console.log(`peak RSS of the ipfs substitute process: ${rss.toFixed(0)} MB`);
  removeTreeSync(dir);
}

await main();
