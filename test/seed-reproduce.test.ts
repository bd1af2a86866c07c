/**
 * `peerpkgs seed reproduce`: a seed rebuilt from the tree, and the tree
 * rebuilt with that seed, compared generation against generation.
 *
 * On a small tree (a busybox seed; its shell as the seed's one component)
 * it shows what a user sees at a fixpoint and where one is missed. On the
 * real tree it rebuilds the real seed, tcc, musl, busybox and make from the
 * Debian bootstrap seed (bootstrap/make-seed), twice: a few minutes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { scratch, write, run, REPO, type Run } from './helpers.ts';
import { makeSeedTarball, writeSeedPackage } from './seed.ts';
import { readManifest } from '../src/archive/manifest.ts';
import { copyTreeInputs } from '../src/seed/reproduce.ts';

/** Copies the seed's busybox and its links: a component that makes itself again. */
const SHELL = {
  '!pkg/shell/build': `#!/bin/sh
set -e
mkdir -p "$DESTDIR/bin" "$DESTDIR/usr"
cp /bin/busybox "$DESTDIR/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$DESTDIR/bin/$a"; done
ln -s ../bin "$DESTDIR/usr/bin"
`,
  'pkg/shell/build-deps': '../seed\n',
};

/** Records the top of the root it was built in: generation 1's seed has more (share/, etc/). */
const STAMP = {
  '!pkg/stamp/build': `#!/bin/sh
set -e
mkdir -p "$DESTDIR/share/stamp"
ls / >"$DESTDIR/share/stamp/root"
if [ -d /share ]; then : >"$DESTDIR/share/stamp/built-on-a-stamped-seed"; fi
`,
  'pkg/stamp/build-deps': '../seed\n',
};

describe('seed reproduce', function () {
  this.timeout(120_000);
  let dir: string;
  let home: string;
  let cleanup: () => void;
  const reproduce = (...args: string[]): Run => run(dir, 'peerpkgs', ['seed', 'reproduce', ...args], { PEERPKGS_HOME: home });

  beforeEach(async () => {
    ({ dir, cleanup } = scratch());
    home = path.join(dir, 'home');
    const www = path.join(dir, 'www');
    fs.mkdirSync(www);
    writeSeedPackage(path.join(dir, 'tree'), `file://${www}`, await makeSeedTarball(www));
    dir = path.join(dir, 'tree');
  });
  afterEach(() => cleanup());

  it('reaches a fixpoint when the seed it builds builds the same packages again', async () => {
    write(dir, SHELL);
    const out = path.join(dir, 'seed-1.tar.gz');
    const r = reproduce('--components', 'shell', '-o', out);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    // both generations' sha256, the same, for the component and the seed
    for (const name of ['shell', 'seed', 'seed \\(archive\\)']) {
      assert.match(r.stdout, new RegExp(`^${name} +identical\\n +generation 1 ([0-9a-f]{64})\\n +generation 2 \\1$`, 'm'));
    }
    assert.match(r.stdout, /^fixpoint: /m);
    assert.match(r.stderr, /generation 2: shell built by generation 1's seed/);
    // the seed: the component's files and the directories a sandbox mounts, as one package archive
    const manifest = await readManifest(out);
    const top = manifest.filter((e) => !e.path.includes('/')).map((e) => `${e.type} ${e.path}`);
    assert.deepEqual(top, ['directory bin', 'directory dev', 'directory etc', 'directory home', 'directory proc', 'directory tmp', 'directory usr']);
    // and it is in the distfile store, where a pkg/seed/fetch can name it
    const stored = /in the distfile store as ([0-9a-f]{64})/.exec(r.stdout)![1]!;
    assert.deepEqual(fs.readFileSync(path.join(home, 'distfiles', stored)), fs.readFileSync(out));
    // a fixpoint leaves no work directory behind
    assert.deepEqual(
      fs.readdirSync(home).filter((f) => f.startsWith('reproduce-')),
      [],
    );
  });

  it('names the files that differ between the generations, and exits 6', () => {
    write(dir, { ...SHELL, ...STAMP });
    const r = reproduce('-j2', '--components', 'shell,stamp');
    assert.equal(r.status, 6, r.stdout + r.stderr);
    assert.match(r.stdout, /^shell +identical$/m);
    // each file named, with what differs: a file only one generation has, where contents part
    assert.match(
      r.stdout,
      /^stamp +DIFFERENT\n +generation 1 [0-9a-f]{64}\n +generation 2 [0-9a-f]{64}\n +share\/stamp\/built-on-a-stamped-seed: only in generation 2\n +share\/stamp\/root: content: \d+ \/ \d+ bytes, \d+ bytes differ, the first at offset 0x[0-9a-f]+$/m,
    );
    assert.match(r.stdout, /^seed +DIFFERENT$/m);
    assert.match(r.stdout, /^ +share\/stamp\/root: content: /m);
    const kept = /^NOT reproduced: stamp differs between the generations; generation 2's tree is kept in (\S+)$/m.exec(r.stdout);
    assert.ok(kept, r.stdout);
    assert.ok(fs.existsSync(path.join(kept[1]!, 'pkg/stamp/.pkg.tar.gz')));
  });

  it("stops with the build's status when generation 1 cannot be built, leaving nothing behind", () => {
    write(dir, SHELL);
    fs.rmSync(path.join(dir, '../www/seed.tar.gz')); // the bootstrap seed is nowhere
    const r = reproduce('--components', 'shell');
    assert.equal(r.status, 5, r.stdout + r.stderr);
    assert.match(r.stderr, /seed reproduce: the build of shell in \S+ failed$/m);
    assert.deepEqual(
      fs.readdirSync(home).filter((f) => f.startsWith('reproduce-')),
      [],
    );
  });

  it('refuses a component the tree does not have, as a bad tree', () => {
    const r = reproduce('--components', 'nosuch');
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /pkg\/nosuch: no such package/);
  });

  it('refuses unknown arguments, and an -o it could not write, as usage errors, before building', () => {
    const r = reproduce('--frobnicate');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown option --frobnicate/);
    const o = reproduce('-o', 'no/such/dir/seed.tar.gz');
    assert.equal(o.status, 2);
    assert.match(o.stderr, /-o no\/such\/dir\/seed\.tar\.gz: no directory no\/such\/dir to write it in/);
    assert.ok(!fs.existsSync(home), 'nothing was built');
  });
});

/** Why this machine cannot make the bootstrap seed, or null. */
function unable(): string | null {
  for (const tool of ['apt-get', 'dpkg-deb', 'bwrap']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  return null;
}

describe('seed reproduce, the real seed', function () {
  // the bootstrap seed from Debian's archive, then tcc, musl, busybox and
  // make built twice with tcc: about 3 minutes on 2 cores
  this.timeout(20 * 60_000);
  let tmp: { dir: string; cleanup: () => void } | undefined;
  before(function () {
    const why = unable();
    // CI has what it takes: there, a missing tool is a failure
    if (why && process.env.CI !== 'true') {
      process.stderr.write(`      skipped: ${why} (the bootstrap seed is made from Debian packages)\n`);
      this.skip();
    }
    tmp = scratch();
  });
  after(() => tmp?.cleanup());

  it('rebuilds tcc, musl, busybox and make, and the seed of them, bit for bit', () => {
    const home = path.join(tmp!.dir, 'home');
    const seeded = run(REPO, '../bootstrap/make-seed', [], { PEERPKGS_HOME: home }, 5 * 60_000);
    assert.equal(seeded.status, 0, seeded.stderr);
    // the tree's packages, not what a build in the checkout left in it
    const tree = path.join(tmp!.dir, 'tree');
    copyTreeInputs(path.join(REPO, 'pkg'), path.join(tree, 'pkg'));
    const r = run(tree, 'peerpkgs', ['seed', 'reproduce', '-j2'], { PEERPKGS_HOME: home }, 19 * 60_000);
    assert.equal(r.status, 0, r.stdout + r.stderr.slice(-4000));
    for (const c of ['tcc', 'musl-tcc', 'busybox', 'make-tcc', 'seed']) assert.match(r.stdout, new RegExp(`^${c} +identical$`, 'm'));
    assert.match(r.stdout, /^fixpoint: /m);
  });
});
