#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: fetching a big distfile through the IPFS source mirror from a
 * peer on loopback, against fetching it from its url, in the same run.
 *
 *   node test/bench/mirror.ts [MB [REPS]]      (default 100 MB, 3 runs each)
 *
 * The distfile: MB of random data. Peer A is `peerpkgs ipfs daemon` in its
 * own process, holding the file (added with kubo's defaults, as
 * ipfs-pin-fetch-file adds it); the url is nginx on loopback. Timed, each the
 * median of REPS runs, interleaved, each after a sync, each into a fresh
 * PEERPKGS_HOME: `bin/do-fetch` through the mirror (a node started in the
 * process, dialling A, bitswap, sha256 checked into the store),
 * `PKG_MIRROR_IPFS=no bin/do-fetch` (the url), and `curl -s URL | sha256sum`
 * as the reference. The do-fetch times include Node's start and, for the
 * mirror, the node's. Run `npm run build` first.
 */
import { randomFillSync, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startNginx } from '../nginx.ts';
import { startDaemon } from '../ipfs-peer.ts';
import { BIN, userEnv } from '../helpers.ts';
import { median, timed as run } from './measure.ts';

const dir = path.join(os.tmpdir(), 'bench-mirror');

const timed = (cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd = dir) => run(cmd, args, { cwd, env: userEnv(env), settle: true });

async function main(): Promise<void> {
  const mb = Number(process.argv[2] ?? 100);
  const reps = Number(process.argv[3] ?? 3);
  fs.rmSync(dir, { recursive: true, force: true });
  const www = path.join(dir, 'www');
  fs.mkdirSync(www, { recursive: true });
  console.log(`mirror: a ${mb} MB distfile (random data), ${os.cpus().length} cores, node ${process.version}`);
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(1 << 20);
  const fd = fs.openSync(path.join(www, 'big.bin'), 'w');
  for (let i = 0; i < mb; i++) {
    randomFillSync(chunk);
    hash.update(chunk);
    fs.writeSync(fd, chunk);
  }
  fs.closeSync(fd);
  const sha = hash.digest('hex');

  const homeA = path.join(dir, 'a');
  const added = timed(path.join(BIN, 'peerpkgs'), ['ipfs', 'add', '--pin', path.join(www, 'big.bin')], { PEERPKGS_HOME: homeA });
  const cid = added.stdout.trim();
  console.log(`  peer A: ipfs add --pin ${mb} MB: ${added.s.toFixed(2)} s (${cid})`);
  const nginx = await startNginx(www);
  const a = await startDaemon(homeA);
  try {
    const tree = path.join(dir, 'tree');
    fs.mkdirSync(path.join(tree, 'pkg/big'), { recursive: true });
    fs.mkdirSync(path.join(tree, 'mirrors'));
    fs.writeFileSync(path.join(tree, 'pkg/big/fetch'), `url: ${nginx.url}/big.bin\nsha256: ${sha}\n`);
    fs.writeFileSync(path.join(tree, 'mirrors/ipfs.csv'), `sha256,cid,url\n${sha},${cid},${nginx.url}/big.bin\n`);
    const times = { mirror: [] as number[], url: [] as number[], curl: [] as number[] };
    for (let r = 0; r < reps; r++) {
      const home = (k: string) => path.join(dir, `home-${k}-${r}`);
      const m = timed(path.join(BIN, 'do-fetch'), ['pkg/big/fetch'], { PEERPKGS_HOME: home('m'), PKG_IPFS_PEERS: a.addr }, tree);
      if (!m.stderr.includes(`from ipfs://${cid}`)) throw new Error(`the mirror was not used:\n${m.stderr}`);
      times.mirror.push(m.s);
      times.url.push(timed(path.join(BIN, 'do-fetch'), ['pkg/big/fetch'], { PEERPKGS_HOME: home('u'), PKG_MIRROR_IPFS: 'no' }, tree).s);
      times.curl.push(timed('bash', ['-c', `set -eo pipefail; curl -sf ${nginx.url}/big.bin | sha256sum >/dev/null`], {}).s);
      for (const k of ['m', 'u']) fs.rmSync(home(k), { recursive: true, force: true });
    }
    const rate = (s: number) => `${(mb / s).toFixed(0)} MB/s`;
    const line = (name: string, xs: number[]) => console.log(`  ${name.padEnd(44)} ${median(xs).toFixed(2)} s  ${rate(median(xs))}`);
    line('do-fetch via the IPFS mirror (peer A)', times.mirror);
    line('do-fetch via the url (nginx), PKG_MIRROR_IPFS=no', times.url);
    line('reference: curl | sha256sum (nginx)', times.curl);
    console.log(`  mirror / curl: ${(median(times.mirror) / median(times.curl)).toFixed(1)}× the time`);
  } finally {
    await a.stop();
    await nginx.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
