#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: an OCI image of an already built closure, beside a tarball of
 * the same closure, in the same run.
 *
 *   node test/bench/oci.ts [N]      (default 20 packages)
 *
 * The tree of test/bench/pkg-tree.ts (a seed plus N packages of 50 files,
 * each run-depending on the two before it) is built first, untimed, and
 * exported once so that the outputs are unpacked. Timed, alternately, the
 * median of 7 each: `peerpkgs export oci -o DIR ./pkg/pN` (an image layout),
 * `-o FILE.tar` (an oci-archive) and `peerpkgs export tarball -o FILE.tar.gz`;
 * then the same exports in this process, without Node's start and the
 * engine's no-op check.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writePkgTree } from './trees.ts';
import { median, workspace } from './measure.ts';
import { closureOutputs } from '../../src/export/closure.ts';
import { exportOci } from '../../src/export/oci.ts';
import { exportTarball } from '../../src/export/tarball.ts';

const N = Number(process.argv[2] ?? 20);
const { dir, tree, home, timed } = workspace('oci');
const size = (p: string): number => (fs.statSync(p).isDirectory() ? fs.readdirSync(p).reduce((n, e) => n + size(path.join(p, e)), 0) : fs.statSync(p).size);

writePkgTree(tree, N);
const target = `./pkg/p${N}`;
timed('build-packages-ifchange', ['./pkg/seed']);
timed('build-packages-ifchange', ['-j2', target]);
const layout = path.join(dir, 'image');
const archive = path.join(dir, 'image.tar');
const tarball = path.join(dir, 'closure.tar.gz');
timed('peerpkgs', ['export', 'tarball', '-o', tarball, target]); // unpacks the outputs once

const runs = { layout: [] as number[], archive: [] as number[], tarball: [] as number[] };
for (let i = 0; i < 7; i++) {
  runs.layout.push(timed('peerpkgs', ['export', 'oci', '-o', layout, target]));
  runs.archive.push(timed('peerpkgs', ['export', 'oci', '-o', archive, target]));
  runs.tarball.push(timed('peerpkgs', ['export', 'tarball', '-o', tarball, target]));
}
const noop = median(Array.from({ length: 7 }, () => timed('build-packages-ifchange', [target])));
process.chdir(tree);
const outputs = await closureOutputs([path.join(tree, 'pkg', `p${N}`)], home);
const inProcess = { layout: [] as number[], tarball: [] as number[] };
for (let i = 0; i < 7; i++) {
  let t0 = performance.now();
  await exportOci({ out: layout, packages: outputs });
  inProcess.layout.push((performance.now() - t0) / 1000);
  t0 = performance.now();
  await exportTarball({ out: tarball, packages: outputs });
  inProcess.tarball.push((performance.now() - t0) / 1000);
}
const blob = (digest: string) => JSON.parse(fs.readFileSync(path.join(layout, 'blobs/sha256', digest.slice(7)), 'utf8')) as Record<string, unknown>;
const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
const layers = (blob(index.manifests[0]!.digest).layers as unknown[]).length;
const sizes = { layout: size(layout), archive: size(archive), tarball: size(tarball) };
fs.rmSync(dir, { recursive: true, force: true });

const t = { layout: median(runs.layout), archive: median(runs.archive), tarball: median(runs.tarball) };
console.log(`oci: closure of ${layers} packages (a layer each) x 50 files, ${os.cpus().length} cores, node ${process.version}`);
console.log('');
const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`;
const kb = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
const row = (a: string, b: string, c: string, d: string) => console.log(a.padEnd(48) + b.padStart(10) + c.padStart(12) + d.padStart(12));
row('median of 7, everything built', 'time', 'size', 'vs tarball');
row(`peerpkgs export oci -o DIR ./pkg/p${N}`, ms(t.layout), kb(sizes.layout), `${(t.layout / t.tarball).toFixed(2)}x`);
row(`peerpkgs export oci -o FILE.tar ./pkg/p${N}`, ms(t.archive), kb(sizes.archive), `${(t.archive / t.tarball).toFixed(2)}x`);
row(`peerpkgs export tarball -o FILE.tar.gz ./pkg/p${N}`, ms(t.tarball), kb(sizes.tarball), '1.00x');
row(`  of each: build-packages-ifchange (no-op)`, ms(noop), '', '');
const own = { layout: median(inProcess.layout), tarball: median(inProcess.tarball) };
console.log('in this process (closure already read):');
row('  exportOci, an image layout', ms(own.layout), '', `${(own.layout / own.tarball).toFixed(2)}x`);
row('  exportTarball', ms(own.tarball), '', '1.00x');
