#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: the price of tcc and the gain of GCC, in one run.
 *
 *   npm run bench:compilers [-- MB]        (default 100)
 *
 * In a scratch copy of the tree (pkg/), with the user's $PEERPKGS_HOME so
 * that the GCC chain built before is taken from the store (built/), not
 * built again: xz, lua and zlib as the tree builds them, with the seed's
 * tcc, and the same sources built by pkg/gcc at -O2 (variant packages
 * NAME-gcc whose build-deps are ../busybox ../make ../gcc instead of the
 * seed). Each build is timed alone, forced (bin/redo), its dependencies
 * built first. zlib-gcc runs zlib's own tests (make test) in its build.
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

const REPO = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(REPO, 'bin');
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

const OUTPUTS = /^\.(redo|pkghash|b?closure|pkg\.tar\.gz(?!\.do))/;
fs.cpSync(path.join(REPO, 'pkg'), path.join(tree, 'pkg'), { recursive: true, filter: (f) => !OUTPUTS.test(path.basename(f)) });

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

/** The variant of `name` built by GCC: its fetch, files and build script, with `extra` added to the build. */
function variant(name: string, deps: string[], edit: (script: string) => string): string {
  const to = path.join(tree, 'pkg', `${name}-gcc`);
  fs.cpSync(path.join(tree, 'pkg', name), to, { recursive: true });
  fs.writeFileSync(path.join(to, 'build-deps'), ['../busybox', '../make', '../gcc', ...deps].join('\n') + '\n');
  fs.writeFileSync(path.join(to, 'build'), edit(fs.readFileSync(path.join(to, 'build'), 'utf8')), { mode: 0o755 });
  return `${name}-gcc`;
}
// the tarball is xz's, unpacked by the tree's xz (busybox has no xz) and untar-v7
variant('xz', ['../xz', '../untar-v7'], (s) => s);
variant('lua', [], (s) => s);
// zlib's own tests, in the build
variant('zlib', [], (s) => s.replace(/^make$/m, 'make\nmake test'));
if (!fs.readFileSync(path.join(tree, 'pkg/zlib-gcc/build'), 'utf8').includes('make test')) throw new Error('pkg/zlib/build changed: no line `make` to add `make test` after');

const build = (pkgs: string[]) => run(path.join(BIN, 'build-packages-ifchange'), ['-j2', ...pkgs.map((p) => `./pkg/${p}`)]);
const forced = (p: string) => run(path.join(BIN, 'redo'), ['-j2', `pkg/${p}/.pkg.tar.gz`]).seconds;

// dependencies first (GCC from the store), untimed
const pairs = [
  ['xz', 'xz-gcc'],
  ['lua', 'lua-gcc'],
  ['zlib', 'zlib-gcc'],
] as const;
build(pairs.flat());
const buildTimes = pairs.map(([t, g]) => [t, forced(t), forced(g)] as const);

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
const tccXz = xzTimes('xz');
const gccXz = xzTimes('xz-gcc');
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
console.log("zlib-gcc ran zlib's own tests (make test) in its build.");
