#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: the real tree (pkg/), built from source on the bootstrap seed.
 *
 *   npm run bench:real-tree
 *
 * Times bootstrap/make-seed (downloading the .debs, then again from the
 * distfile store), bootstrap/import-sources, and the sandboxed build of each
 * package alone at -j2 (its dependencies built first, untimed), with the
 * seed's tcc. Reference, measured in the same run: the same source tarball
 * configured and built the same way on this machine with its gcc, outside
 * any sandbox (packages that link against zlib only where the host has
 * zlib.h). Needs what the real-tree test needs: apt, dpkg-deb, bwrap.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { copyTree, onTcc, ON_TCC } from '../helpers.ts';
import { benchEnv, timed as run, REPO } from './measure.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-real-tree-'));
const home = path.join(dir, 'home');
const env = benchEnv(home);

const timed = (cmd: string, args: string[], cwd = dir, extra: NodeJS.ProcessEnv = env): number => run(cmd, args, { cwd, env: extra }).s;

/** The host build of each package: its commands after unpacking (cwd: the source dir). */
const hostBuild: Record<string, { script: string; zlib?: boolean }> = {
  zlib: { script: './configure --static && make -j2' },
  lua: { script: 'make -j2 posix' },
  pngcheck: { script: 'gcc -O2 -Wall -DUSE_ZLIB -o pngcheck pngcheck.c -lz', zlib: true },
  pigz: { script: 'make -j2 pigz CFLAGS=-O2', zlib: true },
  xz: { script: './configure --disable-shared --disable-nls --disable-doc --disable-scripts && make -j2' },
  make: { script: 'mkdir -p doc && printf "all install:\\n" >doc/Makefile.in && ./configure --disable-nls --without-guile && ./build.sh' },
};
const packages = Object.keys(hostBuild);
const hostZlib = fs.existsSync('/usr/include/zlib.h');
const hostGcc = spawnSync('sh', ['-c', 'command -v gcc']).status === 0;

function hostTime(name: string): number | null {
  const b = hostBuild[name]!;
  if (!hostGcc || (b.zlib && !hostZlib)) return null;
  const fetch = fs.readFileSync(path.join(dir, 'pkg', name, 'fetch'), 'utf8');
  const sha = /^sha256:\s*([0-9a-f]{64})/m.exec(fetch)![1]!;
  const src = path.join(dir, 'host', name);
  fs.mkdirSync(src, { recursive: true });
  spawnSync('tar', ['-xf', path.join(home, 'distfiles', sha), '-C', src, '--strip-components=1']);
  return timed('sh', ['-c', b.script], src, { ...process.env, CC: 'gcc', CFLAGS: '-O2' });
}

copyTree(dir);
// on the seed's tcc, as CI's real-tree test builds them (the tree builds them with GCC: bench:compilers)
for (const name of Object.keys(ON_TCC)) onTcc(dir, name);
const seedFirst = timed(path.join(REPO, 'bootstrap/make-seed'), []);
const seedAgain = timed(path.join(REPO, 'bootstrap/make-seed'), []);
const imported = timed(
  path.join(REPO, 'bootstrap/import-sources'),
  packages.map((p) => `./pkg/${p}`),
);
timed('build-packages-ifchange', ['-j2', './pkg/seed', './pkg/untar-v7']);
const rows: [string, number, number | null][] = [];
for (const name of packages) {
  const deps = fs
    .readFileSync(path.join(dir, 'pkg', name, 'build-deps'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('../'));
  timed('build-packages-ifchange', ['-j2', ...deps.map((d) => `./pkg/${d.slice(3)}`)]);
  rows.push([name, timed('build-packages-ifchange', ['-j2', `./pkg/${name}`]), hostTime(name)]);
}
fs.rmSync(dir, { recursive: true, force: true });

console.log(`real-tree: ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}, node ${process.version}`);
console.log('');
const row = (a: string, b: string, c: string) => console.log(a.padEnd(40) + b.padStart(12) + c.padStart(22));
row('', 'peerpkgs', 'host gcc, no sandbox');
row('make-seed, downloading the .debs', `${seedFirst.toFixed(1)}s`, '');
row('make-seed, .debs in the store', `${seedAgain.toFixed(1)}s`, '');
row('import-sources', `${imported.toFixed(1)}s`, '');
for (const [name, ours, host] of rows) row(`build pkg/${name} -j2`, `${ours.toFixed(1)}s`, host === null ? '-' : `${host.toFixed(1)}s`);
