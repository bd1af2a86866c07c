#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: substituting a big package from an HTTP cache, against the
 * shell doing part of the same work, in the same run.
 *
 *   node test/bench/cache.ts [MB [REPS]]       (default 200 MB, 3 runs each)
 *
 * The package: MB of random (incompressible) data in a few files, packed
 * as a build packs it and published, signed, into a cache directory served
 * by nginx on loopback. Timed, each the median of REPS runs, interleaved,
 * each after a sync (so that none pays for the writeback of another):
 * substitute() (download, check size and both sha256s, keep the archive,
 * unpack it into outputs/), `curl -s URL | sha256sum` (download and hash
 * only) and `curl -s URL | tar xz -C DIR` (download and unpack only).
 * substitute() runs in a child process, on the compiled code in dist/ as
 * bin/ does (run `npm run build` first), so that its peak RSS is its own;
 * its time is the call's, without Node's start (some 40 ms), which a build
 * pays once for all its packages.
 * Targets (issue "Binary package caches"): speed ≥ 0.8× the slower of the
 * two pipelines; peak memory under 100 MB, whatever the package's size.
 */
import { spawnSync } from 'node:child_process';
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
import { median, settle, REPO } from './measure.ts';

const repo = REPO;
const dir = path.join(os.tmpdir(), 'bench-cache');
const PKGHASH = 'b'.repeat(64);

interface ChildResult {
  s: number;
  rssMB: number;
}

const CHILD = substituteChild(repo, PKGHASH, { log: false });

function sh(script: string): number {
  settle();
  const t0 = process.hrtime.bigint();
  const r = spawnSync('bash', ['-c', `set -eo pipefail; ${script}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${script} failed (${r.status})`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function makePackage(mb: number): Promise<string> {
  const dest = path.join(dir, 'destdir');
  fs.mkdirSync(path.join(dest, 'share/big'), { recursive: true });
  fs.mkdirSync(path.join(dest, 'bin'));
  fs.writeFileSync(path.join(dest, 'bin/big'), '#!/bin/sh\necho big\n', { mode: 0o755 });
  const files = 8;
  const chunk = Buffer.alloc(1 << 20);
  for (let f = 0; f < files; f++) {
    const fd = fs.openSync(path.join(dest, `share/big/data${f}.bin`), 'w');
    for (let i = 0; i < mb / files; i++) fs.writeSync(fd, randomFillSync(chunk));
    fs.closeSync(fd);
  }
  const archive = path.join(dir, 'big.pkg.tar.gz');
  const packed = await packDir(dest, archive);
  fs.rmSync(dest, { recursive: true });
  return packed.sha256;
}

async function main(): Promise<void> {
  const mb = Number(process.argv[2] ?? 200);
  const reps = Number(process.argv[3] ?? 3);
  if (spawnSync('curl', ['--version']).error) throw new Error('curl is needed for the comparison: apt-get install curl');
  const stale = ['backends', 'keys', 'info', 'substitute'].find((m) => {
    const built = fs.statSync(path.join(repo, `dist/cache/${m}.js`), { throwIfNoEntry: false });
    return !built || built.mtimeMs < fs.statSync(path.join(repo, `src/cache/${m}.ts`)).mtimeMs;
  });
  if (stale) throw new Error(`dist/cache/${stale}.js is missing or older than its source: run npm run build first`);
  removeTreeSync(dir);
  fs.mkdirSync(dir, { recursive: true });
  const home = path.join(dir, 'home');
  const key = generateKey(home, 'bench');
  fs.writeFileSync(path.join(home, 'trusted-keys'), `${key.publicKey} bench\n`);
  console.log(`cache: a ${mb} MB package (random data), ${os.cpus().length} cores, node ${process.version}; packing it…`);
  const sha256 = await makePackage(mb);
  const cacheDir = path.join(dir, 'cache');
  await addToCache({ dir: cacheDir, packages: [{ pkghash: PKGHASH, name: 'big', archive: path.join(dir, 'big.pkg.tar.gz'), sha256, closure: [] }], signKey: key });
  fs.rmSync(path.join(dir, 'big.pkg.tar.gz'));
  const size = fs.statSync(path.join(cacheDir, `${PKGHASH}.tar.gz`)).size;
  const nginx = await startNginx(cacheDir);
  const url = `${nginx.url}/${PKGHASH}.tar.gz`;
  const times = { sub: [] as number[], sha: [] as number[], tar: [] as number[] };
  let rss = 0;
  try {
    for (let rep = 0; rep < reps; rep++) {
      const work = path.join(dir, 'work');
      removeTreeSync(work); // unpacked outputs are read-only
      settle();
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD, nginx.url, home, work], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      if (r.status !== 0) throw new Error(`substitute failed (${r.status})`);
      const got = JSON.parse(r.stdout) as ChildResult;
      if (!fs.existsSync(path.join(work, 'outputs', sha256, 'share/big/data0.bin'))) throw new Error('substitute unpacked nothing');
      times.sub.push(got.s);
      rss = Math.max(rss, got.rssMB);
      removeTreeSync(work); // unpacked outputs are read-only

      times.sha.push(sh(`curl -s ${url} | sha256sum >/dev/null`));

      const into = path.join(dir, 'tar');
      fs.rmSync(into, { recursive: true, force: true });
      fs.mkdirSync(into);
      times.tar.push(sh(`curl -s ${url} | tar xz -C ${into}`));
      fs.rmSync(into, { recursive: true, force: true });
    }
  } finally {
    await nginx.stop();
  }
  const [sub, sha, tar] = [median(times.sub), median(times.sha), median(times.tar)];
  const slower = Math.max(sha, tar);
  const rate = (s: number) => `${(size / 2 ** 20 / s).toFixed(0)} MB/s`;
  const row = (a: string, b: string, c: string, d = '') => console.log(a.padEnd(36) + b.padStart(8) + c.padStart(12) + d);
  console.log(`archive ${(size / 2 ** 20).toFixed(0)} MB compressed; median of ${reps} runs each (each run's time in brackets)\n`);
  row('', 'time', 'throughput');
  const all = (xs: number[]) => `   (${xs.map((x) => x.toFixed(2)).join(' ')})`;
  row('curl | sha256sum', `${sha.toFixed(3)}s`, rate(sha), all(times.sha));
  row('curl | tar xz', `${tar.toFixed(3)}s`, rate(tar), all(times.tar));
  row('substitute (download+verify+unpack)', `${sub.toFixed(3)}s`, rate(sub), all(times.sub));
  console.log('');
  console.log(`speed against the slower pipeline: ${(slower / sub).toFixed(2)}× (target ≥ 0.80)`);
  console.log(`peak RSS of the substitute process: ${rss.toFixed(0)} MB (target < 100 MB)`);
  removeTreeSync(dir);
}

await main();
