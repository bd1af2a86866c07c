#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: what handing a source to a build costs, and checking it first.
 *
 *   node test/bench/source-handover.ts [MB [RUNS]]     (default 100 MB, 11 runs)
 *
 * A distfile of MB megabytes in a distfile store, handed to a sandbox that
 * runs /bin/true, each the median of RUNS runs (taken in turn) of the
 * hand-over into an empty work directory, then bwrap. The hand-over is a
 * copy (a reflink where the filesystem has them), what builds use; beside
 * it, as the reference from the same run, the hardlink builds used before,
 * which let a build write to the store. Then what the store's check before
 * use costs: a stat that matches the recorded signature, and the full
 * rehash when it does not.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assembleRoot } from '../../src/sandbox/root.ts';
import { runSandboxed } from '../../src/sandbox/bwrap.ts';
import { DistfileStore } from '../../src/fetch/store.ts';

const MB = Number(process.argv[2] ?? 100);
const RUNS = Number(process.argv[3] ?? 11);
const dir = path.join(os.tmpdir(), 'bench-source-handover');

/** Medians of each of `fs`, run in turn RUNS times, so that a busy moment
 * of the machine weighs on all alike; the work directory is emptied and
 * the disk synced, untimed, before each. */
async function medians(...fns: Array<() => Promise<unknown>>): Promise<number[]> {
  const xs: number[][] = fns.map(() => []);
  for (let i = 0; i < RUNS; i++) {
    for (const [j, f] of fns.entries()) {
      fs.rmSync(work, { recursive: true, force: true });
      fs.mkdirSync(work);
      execFileSync('sync'); // the last copy's writeback is not the next one's cost
      const t0 = performance.now();
      await f();
      xs[j]!.push(performance.now() - t0);
    }
  }
  return xs.map((x) => x.sort((a, b) => a - b)[Math.floor(x.length / 2)]!);
}

fs.rmSync(dir, { recursive: true, force: true });
const bb = path.join(dir, 'out/busybox');
fs.mkdirSync(path.join(bb, 'bin'), { recursive: true });
fs.copyFileSync('/usr/bin/busybox', path.join(bb, 'bin/busybox'));
for (const a of ['sh', 'true']) fs.symlinkSync('busybox', path.join(bb, 'bin', a));
const home = path.join(dir, 'home');
const { root } = assembleRoot(home, [{ dir: bb, id: 'busybox' }]);

// incompressible bytes, so that no filesystem makes the copy cheap by accident
const source = path.join(dir, 'src.tar.gz');
const chunk = Buffer.alloc(1 << 20);
const fd = fs.openSync(source, 'w');
for (let i = 0; i < MB; i++) fs.writeSync(fd, (await import('node:crypto')).randomFillSync(chunk));
fs.closeSync(fd);
const store = new DistfileStore(home);
const sha = path.basename(await store.add(source));
const stored = store.path(sha);
fs.rmSync(source);

const work = path.join(dir, 'work');
const destdir = path.join(dir, 'destdir');
fs.mkdirSync(destdir);

async function handover(how: 'link' | 'copy'): Promise<void> {
  const into = path.join(work, 'src.tar.gz');
  if (how === 'link') fs.linkSync(stored, into);
  else await fs.promises.copyFile(stored, into, fs.constants.COPYFILE_FICLONE);
  const r = await runSandboxed({ root, work, destdir, argv: ['/bin/true'], onLine: () => {} });
  if (r.status !== 0) throw new Error(`bwrap /bin/true failed (${r.status})`);
}

fs.mkdirSync(work);
await handover('copy'); // warm the page cache and bwrap
const [copy, link] = await medians(
  () => handover('copy'),
  () => handover('link'),
);
const [signature, rehash] = await medians(
  async () => {
    if ((await store.verify(sha)) !== 'ok') throw new Error('the distfile did not verify');
  },
  async () => {
    fs.rmSync(path.join(home, 'distfiles.verified', sha));
    if ((await store.verify(sha)) !== 'ok') throw new Error('the distfile did not verify');
  },
);
fs.rmSync(dir, { recursive: true, force: true });

console.log(`source-handover: a ${MB} MB distfile, medians of ${RUNS}, ${os.cpus().length} cores, node ${process.version}`);
console.log('');
const row = (a: string, b: string) => console.log(a.padEnd(66) + b.padStart(10));
const f = (x: number) => `${x.toFixed(x < 1 ? 2 : 1)}ms`;
row('work directory + hand-over + bwrap /bin/true:', '');
row('  copy (used)', f(copy));
row('  reference: hardlink (before; the build could write the store)', f(link));
row('check before use: stat matches the recorded signature', f(signature));
row('check before use: full rehash (the stat changed)', f(rehash));
