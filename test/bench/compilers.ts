#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: the price of tcc and the gain of GCC, in one run.
 *
 *   npm run bench:compilers [-- MB]        (default 100)
 *
 * In a scratch copy of the tree (pkg/), with the user's $PEERPKGS_HOME so
 * that the GCC chain built before is taken from the store (built/), not
 * built again: xz, lua and zlib as the
 * tree builds them, with GCC 12 at -O2, and the same packages put back on
 * the seed's tcc (variants NAME-tcc whose build-deps are the seed's:
 * ON_TCC, the build-deps CI's real-tree test gives them). Each build is
 * timed alone, forced (bin/redo), its dependencies built first. Both
 * zlibs run zlib's own tests (make test), both xz theirs (make check).
 * Then each xz compresses and decompresses MB megabytes of text (a
 * dictionary's words, in a seeded random order: compressible as real data
 * is), in a venv, timed.
 *
 * Needs pkg/gcc built (bin/build-packages-ifchange -j2 ./pkg/gcc), which
 * takes hours the first time: the bench says so and stops rather than
 * start that build.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN, copyTree, onTcc } from '../helpers.ts';

const MB = Number(process.argv[2] ?? 100);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-compilers-'));
const tree = path.join(dir, 'tree');

function run(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer; out?: number } = {}): { seconds: number; stdout: Buffer } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? tree, input: opts.input, stdio: [opts.input ? 'pipe' : 'ignore', opts.out ?? 'pipe', 'pipe'], maxBuffer: 2 ** 31 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${String(r.stderr).slice(-3000)}`);
  return { seconds, stdout: r.stdout ?? Buffer.alloc(0) };
}

copyTree(tree);

// is GCC in the store? (built/PKGHASH.pkg.tar.gz: store/built.ts)
const info = spawnSync(path.join(BIN, 'peerpkgs'), ['info', './pkg/gcc'], { cwd: tree, encoding: 'utf8' });
const pkghash = /^pkghash: +([0-9a-f]{64})$/m.exec(info.stdout)?.[1];
const home = process.env.PEERPKGS_HOME ?? path.join(os.homedir(), '.cache/peerpkgs');
if (!pkghash || !fs.existsSync(path.join(home, 'built', `${pkghash}.pkg.tar.gz`))) {
  console.error(
    `bench:compilers: pkg/gcc is not in ${home}/built: build it first (bin/build-packages-ifchange -j2 ./pkg/gcc, hours the first time)${info.status ? `: ${info.stderr.trim()}` : ''}`,
  );
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(1);
}

for (const name of ['xz', 'lua', 'zlib']) onTcc(tree, name, `${name}-tcc`);

const build = (pkgs: string[]) => run(path.join(BIN, 'build-packages-ifchange'), ['-j2', ...pkgs.map((p) => `./pkg/${p}`)]);
const forced = (p: string) => run(path.join(BIN, 'redo'), ['-j2', `pkg/${p}/.pkg.tar.gz`]).seconds;

// dependencies first (GCC from the store), untimed
const pairs = [
  ['xz-tcc', 'xz'],
  ['lua-tcc', 'lua'],
  ['zlib-tcc', 'zlib'],
] as const;
build(pairs.flat());
const buildTimes = pairs.map(([t, g]) => [g, forced(t), forced(g)] as const);

// the data: words in a seeded random order
const words = fs.existsSync('/usr/share/dict/words')
  ? fs.readFileSync('/usr/share/dict/words', 'utf8').split('\n').filter(Boolean)
  : 'the quick brown fox jumps over a lazy dog with some more words for variety'.split(' ');
let seed = 1;
const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
const chunks: string[] = [];
let size = 0;
while (size < MB * 1e6) {
  const line = Array.from({ length: 12 }, () => words[Math.floor(rand() * words.length)]).join(' ') + '\n';
  chunks.push(line);
  size += line.length;
}
const data = Buffer.from(chunks.join('')).subarray(0, MB * 1e6);
const input = path.join(dir, 'data');
fs.writeFileSync(input, data);

function xzTimes(pkg: string): { compress: number; decompress: number; ratio: number } {
  const venv = path.join(dir, `venv-${pkg}`);
  run(path.join(BIN, 'venv'), ['-o', venv, `./pkg/${pkg}`]);
  const xz = path.join(venv, 'bin/venv-run');
  const packed = path.join(dir, `${pkg}.xz`);
  const c = run('sh', ['-c', `"${xz}" xz -T1 -c <"${input}" >"${packed}"`]);
  const d = run('sh', ['-c', `"${xz}" xz -T1 -dc <"${packed}" | cmp - "${input}"`]);
  return { compress: c.seconds, decompress: d.seconds, ratio: data.length / fs.statSync(packed).size };
}
const tccXz = xzTimes('xz-tcc');
const gccXz = xzTimes('xz');
fs.rmSync(dir, { recursive: true, force: true });

console.log(`compilers: ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}, ${MB} MB of text, node ${process.version}`);
console.log('');
const row = (a: string, b: string, c: string, d: string) => console.log(a.padEnd(30) + b.padStart(12) + c.padStart(14) + d.padStart(22));
row('', 'tcc', 'GCC 12 -O2', 'tcc / GCC (time)');
for (const [name, t, g] of buildTimes) row(`build pkg/${name} -j2`, `${t.toFixed(1)}s`, `${g.toFixed(1)}s`, `${(t / g).toFixed(2)}×`);
row(`xz -T1, compress ${MB} MB`, `${tccXz.compress.toFixed(2)}s`, `${gccXz.compress.toFixed(2)}s`, `${(tccXz.compress / gccXz.compress).toFixed(2)}×`);
row(`xz -T1, decompress`, `${tccXz.decompress.toFixed(2)}s`, `${gccXz.decompress.toFixed(2)}s`, `${(tccXz.decompress / gccXz.decompress).toFixed(2)}×`);
console.log('');
console.log(`compression ratio: tcc's xz ${tccXz.ratio.toFixed(2)}, GCC's ${gccXz.ratio.toFixed(2)} (the same format: they must agree)`);
console.log("Both zlibs ran zlib's own tests (make test) in their builds, both xz theirs (make check).");
