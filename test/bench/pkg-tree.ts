#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: a package tree built in sandboxes.
 *
 *   npm run bench:pkg-tree [-- N]      (default 20 packages)
 *
 * A seed (the host's busybox-static, as in example/pkg/seed) plus N
 * packages, each writing 50 files into $DESTDIR, each run-depending on the
 * two before it, all build-depending on the seed. Timed: the full build at
 * -j2, the no-op, and the rebuild after the leaf's build script changes.
 * Targets (issue "Package tree, source fetching and sandboxed builds"): full
 * ≤ 5 s, no-op ≤ 0.2 s; p2pkgs with apenwarr's redo takes 70 s (-j1) and
 * 0.46 s on this machine class (not runnable here: printed for reference).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writePkgTree } from './trees.ts';
import { median, workspace } from './measure.ts';

const N = Number(process.argv[2] ?? 20);
const { dir, tree, timed } = workspace('pkg-tree');

const build = (args: string[]): number => timed('build-packages-ifchange', args);

writePkgTree(tree, N);
const targets = [`./pkg/p${N}`];
// the seed is the host's busybox, packed once: not part of the tree's build
build(['./pkg/seed']);
const full = build(['-j2', ...targets]);
const noop = median([0, 1, 2, 3, 4].map(() => build(['-j2', ...targets])));
const ones: number[] = [];
for (let rep = 0; rep < 3; rep++) {
  fs.appendFileSync(path.join(tree, `pkg/p${N}/build`), `# change ${rep}\n`);
  ones.push(build(['-j2', ...targets]));
}
fs.rmSync(dir, { recursive: true, force: true });

console.log(`pkg-tree: seed + ${N} packages x 50 files, ${os.cpus().length} cores, node ${process.version}`);
console.log('');
const row = (a: string, b: string, c: string, d: string) => console.log(a.padEnd(28) + b.padStart(10) + c.padStart(12) + d.padStart(18));
row('', 'peerpkgs', 'target', 'p2pkgs (issue)');
row('full build -j2', `${full.toFixed(2)}s`, '≤ 5.00s', '70s at -j1');
row('no-op', `${noop.toFixed(3)}s`, '≤ 0.200s', '0.46s');
row('rebuild after leaf change', `${median(ones).toFixed(3)}s`, '', '');
