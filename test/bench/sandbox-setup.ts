#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: what starting a build sandbox costs.
 *
 *   node test/bench/sandbox-setup.ts [FILES [MB [LAYERS]]]     (default 5000 files, 150 MB, 10 layers)
 *
 * The closure: a busybox layer (for /bin/true) and LAYERS unpacked outputs
 * sharing FILES files of MB in all. Timed, each the median of several runs:
 * making the root the first time (hardlinking every file), the set-up of a
 * build whose root is already made (assembleRoot finding it, then bwrap
 * running /bin/true), and as references bwrap running /bin/true on its own
 * and a plain spawn of /bin/true. Target (issue "Build sandbox"): set-up with
 * a made root ≤ 50 ms per build.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assembleRoot, type Layer } from '../../src/sandbox/root.ts';
import { runSandboxed } from '../../src/sandbox/bwrap.ts';

const FILES = Number(process.argv[2] ?? 5000);
const MB = Number(process.argv[3] ?? 150);
const LAYERS = Number(process.argv[4] ?? 10);
const dir = path.join(os.tmpdir(), 'bench-sandbox-setup');

function makeLayers(): Layer[] {
  fs.rmSync(dir, { recursive: true, force: true });
  const bb = path.join(dir, 'out/busybox');
  fs.mkdirSync(path.join(bb, 'bin'), { recursive: true });
  fs.copyFileSync('/usr/bin/busybox', path.join(bb, 'bin/busybox'));
  for (const a of ['sh', 'true']) fs.symlinkSync('busybox', path.join(bb, 'bin', a));
  const layers: Layer[] = [{ dir: bb, id: 'busybox' }];
  const size = Math.floor((MB * 1024 * 1024) / FILES);
  const data = Buffer.alloc(size, 'peerpkgs ');
  for (let l = 0; l < LAYERS; l++) {
    const out = path.join(dir, `out/pkg${l}`);
    for (let i = l; i < FILES; i += LAYERS) {
      const f = path.join(out, `usr/lib/pkg${l}/d${i % 20}/f${i}`);
      if (i < 20 * LAYERS) fs.mkdirSync(path.dirname(f), { recursive: true });
      fs.writeFileSync(f, data);
    }
    layers.push({ dir: out, id: `pkg${l}` });
  }
  return layers;
}

async function ms(f: () => unknown): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

async function median(runs: number, f: () => unknown): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(await ms(f));
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)]!;
}

function spawnTrue(): Promise<void> {
  return new Promise((resolve, reject) =>
    spawn('/bin/true', { stdio: 'ignore' })
      .on('error', reject)
      .on('close', () => resolve()),
  );
}

const layers = makeLayers();
const home = path.join(dir, 'home');
const work = path.join(dir, 'work');
const destdir = path.join(dir, 'destdir');
fs.mkdirSync(work);
fs.mkdirSync(destdir);

let round = 0;
const first = await median(5, () => {
  // a closure not seen before: each round, other identities
  const r = assembleRoot(
    home,
    layers.map((l) => ({ ...l, id: `${l.id}-${round++}` })),
  );
  if (r.reused) throw new Error('a new closure reused a root');
});
const { root } = assembleRoot(home, layers);
const sandboxTrue = async () => {
  const r = await runSandboxed({ root, work, destdir, argv: ['/bin/true'] });
  if (r.status !== 0) throw new Error(`bwrap /bin/true failed (${r.status})`);
};
await sandboxTrue(); // warm the page cache and the dynamic loader
const reused = await median(31, async () => {
  if (!assembleRoot(home, layers).reused) throw new Error('the root was not reused');
  await sandboxTrue();
});
const lookup = await median(31, () => assembleRoot(home, layers));
const bwrapAlone = await median(31, sandboxTrue);
const plain = await median(31, spawnTrue);
fs.rmSync(dir, { recursive: true, force: true });

console.log(`sandbox-setup: ${FILES} files, ${MB} MB in ${LAYERS} layers (+ busybox), ${os.cpus().length} cores, node ${process.version}`);
console.log('');
const row = (a: string, b: string, c = '') => console.log(a.padEnd(44) + b.padStart(10) + c.padStart(10));
const f = (x: number) => `${x.toFixed(1)}ms`;
row('', 'median', 'target');
row('first assembly of the root (hardlinks)', f(first));
row('set-up with the root made: lookup + bwrap', f(reused), '≤ 50ms');
row('  of which: root lookup', f(lookup));
row('  of which: bwrap … /bin/true', f(bwrapAlone));
row('reference: plain spawn of /bin/true', f(plain));
