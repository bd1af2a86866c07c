#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: profiles and gc on an already built closure.
 *
 *   node test/bench/store.ts [N]      (default 20 packages)
 *
 * The tree of test/bench/pkg-tree.ts (a seed plus N packages of 50 files,
 * each run-depending on the two before it) is built first, untimed. Timed
 * (median of 7 unless said), each beside its reference measured in this run:
 *
 * - `peerpkgs install ./pkg/pN` into a new profile each time (a whole
 *   first generation: build check, closure, merge, manifest, switch),
 *   beside `bin/venv -o DIR ./pkg/pN` of the same closure;
 * - `peerpkgs rollback` from generation 3 to 2, beside Node's start and
 *   `peerpkgs --help`;
 * - `peerpkgs gc` of a home holding 1,000 unreferenced outputs of 50 files
 *   each (median of 3, made afresh each time), beside `rm -rf` of the same.
 *
 * Targets (issue 14): install ≤ 100 ms, rollback ≤ 50 ms, gc ≤ 2 s.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { builtPkgTree } from './trees.ts';
import { benchEnv, median, workspace, REPO } from './measure.ts';

const N = Number(process.argv[2] ?? 20);
const { dir, tree, env, timed } = workspace('store');

const venvDir = path.join(dir, 'venv');
const target = builtPkgTree(tree, env, N, venvDir);

const node = path.join(REPO, 'node_modules/node/bin/node');
const letters = (i: number) => String.fromCharCode(97 + i);

// two generations besides: the closure, then the closure without pN
timed('peerpkgs', ['install', target]);
timed('peerpkgs', ['install', `./pkg/p${N - 1}`]);
timed('peerpkgs', ['remove', `p${N}`]);

// each figure beside its reference in turn, so that both see the same load
const runs = { venv: [] as number[], install: [] as number[], nodeStart: [] as number[], help: [] as number[], rollback: [] as number[] };
for (let i = 0; i < 7; i++) {
  runs.venv.push(timed('venv', ['-o', venvDir, target]));
  runs.install.push(timed('peerpkgs', ['install', '--profile', `bench${letters(i)}`, target]));
  runs.nodeStart.push(timed(node, ['-e', '0']));
  runs.help.push(timed('peerpkgs', ['--help']));
  timed('peerpkgs', ['switch-generation', '3']);
  runs.rollback.push(timed('peerpkgs', ['rollback']));
}
const [venv, install, nodeStart, help, rollback] = Object.values(runs).map(median) as [number, number, number, number, number];

/** A home holding `n` unpacked outputs of 50 files each, read-only as the store keeps them, none referenced. */
function garbageHome(n: number): string {
  const h = fs.mkdtempSync(path.join(dir, 'gc-home-'));
  const outputs = path.join(h, 'outputs');
  fs.mkdirSync(outputs);
  for (let i = 0; i < n; i++) {
    const sha = createHash('sha256').update(`${h} ${i}`).digest('hex');
    const o = path.join(outputs, sha);
    const share = path.join(o, 'share', `o${i}`);
    fs.mkdirSync(share, { recursive: true });
    for (let f = 1; f <= 50; f++) fs.writeFileSync(path.join(share, String(f)), `output ${i} file ${f}\n`, { mode: 0o444 });
    for (const d of [share, path.dirname(share), o]) fs.chmodSync(d, 0o555);
    fs.writeFileSync(`${o}.manifest`, 'manifest\n', { mode: 0o444 });
    fs.writeFileSync(`${o}.archive`, '/nowhere/.pkg.tar.gz\n', { mode: 0o444 });
  }
  return h;
}
const OUTPUTS = 1000;
const gcRuns: number[] = [];
const rmRuns: number[] = [];
for (let i = 0; i < 3; i++) {
  gcRuns.push(timed('peerpkgs', ['gc'], benchEnv(garbageHome(OUTPUTS))));
  const h = garbageHome(OUTPUTS);
  rmRuns.push(timed('sh', ['-c', `chmod -R u+w "${h}" && rm -rf "${h}"`]));
}
const [gc, rm] = [median(gcRuns), median(rmRuns)];
fs.chmodSync(venvDir, 0o755);
spawnSync('sh', ['-c', `chmod -R u+w "${dir}" && rm -rf "${dir}"`]);

console.log(`store: closure of ${N + 1} packages x 50 files, ${os.cpus().length} cores, node ${process.version}`);
console.log('');
const ms = (s: number) => `${(s * 1000).toFixed(1)} ms`;
const row = (a: string, b: string, c = '', d = '') => console.log(a.padEnd(46) + b.padStart(11) + c.padStart(12) + d.padStart(12));
row('', 'peerpkgs', 'target', 'reference');
row(`install ./pkg/p${N} (a new profile's generation)`, ms(install), '≤ 100 ms', ms(venv));
console.log(`    reference: bin/venv -o DIR ./pkg/p${N}, the same closure`);
row('rollback (generation 3 -> 2)', ms(rollback), '≤ 50 ms', ms(nodeStart));
console.log(`    reference: node -e 0; peerpkgs --help (Node and the CLI starting) ${ms(help)}`);
row(`gc of ${OUTPUTS} unreferenced outputs`, ms(gc), '≤ 2000 ms', ms(rm));
console.log('    reference: chmod -R u+w && rm -rf of the same outputs');
