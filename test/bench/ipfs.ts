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
 *     --only-hash (nothing stored) and --nocopy (the leaves left in the
 *     file: the filestore), against `openssl dgst -sha256` of the same file.
 *     The command runs after an untimed add whose home is removed, as the
 *     import runs after the command's: each finds the pages the one before
 *     freed, rather than a page cache full of what the run wrote before;
 *   - ipfs substitute: substitute() with PKG_CACHE_URL=ipfs://CID in a
 *     child process whose node (B) dials A: its time includes starting B.
 *     A serves a gateway and announces it, so B reads the file's CAR from
 *     it over plain HTTP, as any node on A's address would;
 *   - libp2p substitute: the same with PKG_IPFS_PEER_GATEWAYS=no: the CAR
 *     over a libp2p stream (Noise, Yamux), as from a peer with no gateway;
 *   - gateway substitute: the same, B not dialling A but fetching the
 *     blocks from A's trustless gateway (PKG_IPFS_GATEWAYS): the root
 *     block, then the file in one CAR;
 *   - http substitute: the same call with the nginx URL;
 *   - ipfs get: `peerpkgs ipfs get CID/<pkghash>.tar.gz -o FILE` on a
 *     fresh B, the raw transfer.
 * The peak RSS of each substitute process is printed beside HTTP's. Then
 * the DHT lookup (dhtLookup below): a file only a node two hops away
 * holds, against the same file from that node named directly.
 * Targets (issue "IPFS as a real peer-to-peer network"): ipfs substitute
 * ≥ 0.6× the HTTP throughput; add ≥ 0.5× openssl's hashing speed as a whole
 * command (≥ 0.8× with --only-hash); peak RSS ≤ 150 MB for a 1 GB package.
 * Run `npm run build` first.
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

/** addPath into a fresh block directory as ipfs add writes it (or, given '-', storing nothing as add --only-hash), timed around the call: the import itself, without starting a node. */
const ADD = `
const [file, blocks] = process.argv.slice(1);
const { addPath } = await import(${JSON.stringify(path.join(repo, 'dist/ipfs/unixfs.js'))});
const { BlockPacks } = await import(${JSON.stringify(path.join(repo, 'dist/ipfs/packs.js'))});
const { base32upper } = await import('multiformats/bases/base32');
const t0 = process.hrtime.bigint();
const store = blocks === '-' ? { put: async (c) => c, putParts: async (c) => c } : new BlockPacks(blocks);
const cid = await addPath(file, store);
await store.close?.();
console.log(JSON.stringify({ s: Number(process.hrtime.bigint() - t0) / 1e9, cid }));
`;

/** the heap sizes and malloc settings bin/peerpkgs gives a build process with this PKG_CACHE_URL (read from it, so they cannot drift apart) */
function wrapperSettings(url: string): { nodeArgs: string[]; env: NodeJS.ProcessEnv } {
  const wrapper = fs.readFileSync(peerpkgs, 'utf8');
  const ipfs = /heap='([^']+)'/.exec(wrapper)?.[1];
  const other = /^heap=(\S+)$/m.exec(wrapper)?.[1];
  const malloc = /^\s*malloc=(\S+)$/m.exec(wrapper)?.[1];
  if (!ipfs || !other || !malloc) throw new Error(`${peerpkgs}: no heap sizes or malloc settings found`);
  if (!/^(ipfs|ipns):/.test(url)) return { nodeArgs: other.split(' '), env: {} };
  return { nodeArgs: ipfs.split(' '), env: { GLIBC_TUNABLES: malloc } };
}

const timed = (cmd: string, args: string[], env: NodeJS.ProcessEnv) => run(cmd, args, { env: { ...process.env, ...env }, settle: true, showStderr: true });

function child(script: string, args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): { s: number; rssMB?: number } {
  settle();
  const r = spawnSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', script, ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
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

async function startDaemon(home: string, extra: NodeJS.ProcessEnv = {}): Promise<{ addr: string; gateway: string; stop(): Promise<void> }> {
  const env = { ...process.env, PEERPKGS_HOME: home, PKG_IPFS_GATEWAY_LISTEN: '/ip4/127.0.0.1/tcp/0', ...extra };
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
  const times = {
    add: [] as number[],
    importer: [] as number[],
    onlyHash: [] as number[],
    onlyHashCmd: [] as number[],
    nocopy: [] as number[],
    hash: [] as number[],
    ipfs: [] as number[],
    libp2p: [] as number[],
    gateway: [] as number[],
    http: [] as number[],
    get: [] as number[],
  };
  const rss = { ipfs: 0, libp2p: 0, gateway: 0, http: 0 };
  try {
    const cid = timed(peerpkgs, ['ipfs', 'add', '--pin', cacheDir], { PEERPKGS_HOME: homeA }).stdout.trim();
    const homeB = path.join(dir, 'b');
    const work = path.join(dir, 'work');
    // the import in a process of its own gets the malloc settings `peerpkgs ipfs add` runs with
    const addEnv = wrapperSettings('ipfs://').env;
    for (let rep = 0; rep < reps; rep++) {
      // adding: into a fresh repo each time, where no daemon runs: the command writes the blocks itself.
      // Each add that writes blocks runs where the one before it wrote as much and was removed, so
      // that it finds the pages that freed: the first big write after the substitutions (or after A
      // added the cache) otherwise pays for the kernel's reclaim of a full page cache (1 GB: 3.3 s
      // against 1.5-1.7 s, most of it system time), a cost of the run's order, not of the add
      const homeAdd = path.join(dir, 'add');
      fs.rmSync(homeAdd, { recursive: true, force: true });
      timed(peerpkgs, ['ipfs', 'add', file], { PEERPKGS_HOME: homeAdd });
      fs.rmSync(homeAdd, { recursive: true, force: true });
      times.add.push(timed(peerpkgs, ['ipfs', 'add', file], { PEERPKGS_HOME: homeAdd }).s);
      fs.rmSync(homeAdd, { recursive: true, force: true });
      times.importer.push(child(ADD, [file, path.join(homeAdd, 'blocks')], addEnv).s);
      fs.rmSync(homeAdd, { recursive: true, force: true });
      times.onlyHash.push(child(ADD, [file, '-'], addEnv).s);
      times.onlyHashCmd.push(timed(peerpkgs, ['ipfs', 'add', '-n', file], { PEERPKGS_HOME: homeAdd }).s);
      fs.rmSync(homeAdd, { recursive: true, force: true });
      times.nocopy.push(timed(peerpkgs, ['ipfs', 'add', '--nocopy', file], { PEERPKGS_HOME: homeAdd }).s);
      fs.rmSync(homeAdd, { recursive: true, force: true });
      times.hash.push(timed('openssl', ['dgst', '-sha256', file], {}).s);

      const routes = [
        ['ipfs', `ipfs://${cid}`, { PKG_IPFS_PEERS: a.addr }],
        ['libp2p', `ipfs://${cid}`, { PKG_IPFS_PEERS: a.addr, PKG_IPFS_PEER_GATEWAYS: 'no' }],
        ['gateway', `ipfs://${cid}`, { PKG_IPFS_GATEWAYS: a.gateway }],
        ['http', nginx.url, {}],
      ] as const;
      // each run starts with another route, so that none always comes first after the adds
      // (whose writes can leave the kernel reclaiming pages for the next writer)
      for (const [kind, url, route] of [...routes.slice(rep % routes.length), ...routes.slice(0, rep % routes.length)]) {
        removeTreeSync(homeB);
        removeTreeSync(work); // unpacked outputs are read-only
        fs.mkdirSync(homeB, { recursive: true });
        fs.copyFileSync(path.join(home, 'trusted-keys'), path.join(homeB, 'trusted-keys'));
        const { nodeArgs, env } = wrapperSettings(url);
        const r = child(CHILD, [url, homeB, work], { PEERPKGS_HOME: homeB, ...env, ...route }, nodeArgs);
        if (!fs.existsSync(path.join(work, 'outputs', sha256, 'share/big/data0.bin'))) throw new Error(`${kind}: substitute unpacked nothing`);
        times[kind].push(r.s);
        rss[kind] = Math.max(rss[kind], r.rssMB ?? 0);
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
  const dht = await dhtLookup(reps);
  const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)])) as Record<keyof typeof times, number>;
  const rate = (s: number) => `${(size / 2 ** 20 / s).toFixed(0)} MB/s`;
  const row = (x: string, t: number, xs: number[]) =>
    console.log(x.padEnd(44) + `${t.toFixed(3)}s`.padStart(9) + rate(t).padStart(12) + `   (${xs.map((v) => v.toFixed(2)).join(' ')})`);
  console.log(`archive ${(size / 2 ** 20).toFixed(0)} MB; median of ${reps} runs each (each run's time in brackets)\n`);
  console.log(''.padEnd(44) + 'time'.padStart(9) + 'throughput'.padStart(12));
  row('openssl dgst -sha256 of the file', m.hash, times.hash);
  row('add: the import (into the block files)', m.importer, times.importer);
  row('add: peerpkgs ipfs add (the command, no daemon)', m.add, times.add);
  row('add --only-hash: the import (stores nothing)', m.onlyHash, times.onlyHash);
  row('add --only-hash: peerpkgs ipfs add -n', m.onlyHashCmd, times.onlyHashCmd);
  row('add --nocopy: peerpkgs ipfs add --nocopy', m.nocopy, times.nocopy);
  row('substitute from http:// (nginx)', m.http, times.http);
  row('substitute from ipfs:// (node B <- daemon A)', m.ipfs, times.ipfs);
  row('  the same over libp2p alone (no peer gateway)', m.libp2p, times.libp2p);
  row("substitute from ipfs:// (B <- A's gateway)", m.gateway, times.gateway);
  row('peerpkgs ipfs get (node B <- daemon A)', m.get, times.get);
  console.log('');
  console.log(
    `ipfs substitute against http: ${(m.http / m.ipfs).toFixed(2)}× (target ≥ 0.60); over libp2p alone: ${(m.http / m.libp2p).toFixed(2)}×; through the gateway: ${(m.http / m.gateway).toFixed(2)}×`,
  );
  console.log(`add against openssl: ${(m.hash / m.importer).toFixed(2)}× the import, ${(m.hash / m.add).toFixed(2)}× the command (target ≥ 0.50)`);
  console.log(`add --only-hash against openssl: ${(m.hash / m.onlyHash).toFixed(2)}× the import, ${(m.hash / m.onlyHashCmd).toFixed(2)}× the command (target ≥ 0.80)`);
  console.log(`add --nocopy (the filestore) against openssl: ${(m.hash / m.nocopy).toFixed(2)}× the command (target ≥ 0.80)`);
  console.log(
    `peak RSS of the substitute process: ${rss.ipfs.toFixed(0)} MB ipfs (B <- A), ${rss.libp2p.toFixed(0)} MB over libp2p alone, ${rss.gateway.toFixed(0)} MB through the gateway, ${rss.http.toFixed(0)} MB http (target ≤ 150 MB for 1 GB)`,
  );
  console.log(
    `DHT: ipfs get of a 1 MB file only a node two hops away holds, C knowing only the hub B: ${dht.viaDht.toFixed(3)}s; ` +
      `the same from the holder named directly: ${dht.direct.toFixed(3)}s; the lookup costs ${(dht.viaDht - dht.direct).toFixed(3)}s (medians of ${reps}: ${dht.runs})`,
  );
  removeTreeSync(dir);
}

/**
 * The DHT lookup: hub B and holder D are daemons on the DHT, D knowing B;
 * D adds a file (1 MB of random data) and announces it. C, a fresh command
 * node on the DHT that knows only B, gets it: B does not have it, so C
 * asks the DHT who does and dials D. The reference is the same get from
 * a fresh C that names D itself. Each in a fresh home, so nothing is cached.
 */
async function dhtLookup(reps: number): Promise<{ viaDht: number; direct: number; runs: string }> {
  const DHT = { PKG_IPFS_DHT: 'yes' };
  const hub = await startDaemon(path.join(dir, 'dht-b'), DHT);
  const holder = await startDaemon(path.join(dir, 'dht-d'), { ...DHT, PKG_IPFS_PEERS: hub.addr });
  const viaDht: number[] = [];
  const direct: number[] = [];
  try {
    const f = path.join(dir, 'dht-file');
    fs.writeFileSync(f, randomFillSync(Buffer.alloc(1 << 20)));
    const cid = timed(peerpkgs, ['ipfs', 'add', f], { PEERPKGS_HOME: path.join(dir, 'dht-d') }).stdout.trim();
    const c = path.join(dir, 'dht-c');
    for (let rep = 0; rep < reps; rep++) {
      for (const [into, env] of [
        [viaDht, { ...DHT, PKG_IPFS_PEERS: hub.addr }],
        [direct, { PKG_IPFS_PEERS: holder.addr }],
      ] as const) {
        removeTreeSync(c);
        const out = path.join(dir, 'dht-got');
        fs.rmSync(out, { force: true });
        into.push(timed(peerpkgs, ['ipfs', 'get', cid, '-o', out], { PEERPKGS_HOME: c, PKG_IPFS_TIMEOUT: '60', ...env }).s);
        if (fs.statSync(out).size !== 1 << 20) throw new Error('dht: get brought the wrong size');
      }
    }
  } finally {
    await holder.stop();
    await hub.stop();
  }
  return { viaDht: median(viaDht), direct: median(direct), runs: `${viaDht.map((v) => v.toFixed(2)).join(' ')} | ${direct.map((v) => v.toFixed(2)).join(' ')}` };
}

await main();
