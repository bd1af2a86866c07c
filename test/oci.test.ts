/**
 * OCI image export, as a user makes and uses one: `peerpkgs export oci` on
 * a tree built on the busybox seed, read by the distribution's skopeo and
 * umoci, and a program of the unpacked image run under a real bwrap.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { scratch, write, read, run, busyboxHttpd, type Run } from './helpers.ts';
import { makeSeedTarball, writeSeedPackage, binPackage } from './seed.ts';

const pkg = binPackage;

/** A program of the distribution, e.g. skopeo. */
function tool(cmd: string, args: string[], cwd: string): Run {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { status: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('export oci', function () {
  this.timeout(120_000);
  let work: string;
  let cleanup: () => void;
  let www: { url: string; stop(): Promise<void> };
  let seedSha: string;
  let tree: string;
  let home: string;

  /** a (run-dep: seed), b (run-dep: a); c, d and e clash on bin/x or agree on share/common. */
  function writeTree(at: string): void {
    writeSeedPackage(at, www.url, seedSha);
    write(at, pkg('a', { runDeps: ['seed'] }));
    write(at, pkg('b', { runDeps: ['a'] }));
    write(at, pkg('c', { runDeps: ['seed'], files: { 'bin/x': '#!/bin/sh\necho x from c\n', 'share/common': 'shared\n' } }));
    write(at, pkg('d', { runDeps: ['seed'], files: { 'bin/x': '#!/bin/sh\necho x from d\n', 'share/common': 'shared\n' } }));
    // e: c's share/common again, and a hardlink of it
    write(at, pkg('e', { runDeps: ['seed'], files: { 'share/common': 'shared\n' } }));
    fs.appendFileSync(path.join(at, 'pkg/e/build'), 'ln "$DESTDIR/share/common" "$DESTDIR/share/also"\n');
    // m1, m2: nothing of their own, only run-deps: two empty layers
    write(at, { '!pkg/m1/build': '#!/bin/sh\n', 'pkg/m1/build-deps': '../seed\n', 'pkg/m1/run-deps': '../a\n' });
    write(at, { '!pkg/m2/build': '#!/bin/sh\n', 'pkg/m2/build-deps': '../seed\n', 'pkg/m2/run-deps': '../m1\n' });
    // wh: a name that means a whiteout in a layer
    write(at, pkg('wh', { files: { 'share/.wh.common': 'not a whiteout\n' } }));
  }

  before(async function () {
    for (const t of ['skopeo', 'umoci', 'bwrap']) {
      if (spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0) throw new Error(`${t} is not installed (bootstrap/setup installs it)`);
    }
    ({ dir: work, cleanup } = scratch());
    const wwwDir = path.join(work, 'www');
    fs.mkdirSync(wwwDir);
    seedSha = await makeSeedTarball(wwwDir);
    www = await busyboxHttpd(wwwDir);
    home = path.join(work, 'home');
    tree = path.join(work, 'tree');
    writeTree(tree);
    const r = run(tree, 'build-packages-ifchange', ['-j2', './pkg/b', './pkg/c', './pkg/d', './pkg/e', './pkg/wh', './pkg/m2'], { PEERPKGS_HOME: home });
    assert.equal(r.status, 0, r.stderr);
  });
  after(async () => {
    await www?.stop();
    cleanup?.();
  });

  const peerpkgs = (...args: string[]): Run => run(tree, 'peerpkgs', args, { PEERPKGS_HOME: home });
  const fresh = (name: string) => {
    const d = path.join(work, name);
    fs.rmSync(d, { recursive: true, force: true });
    return d;
  };
  /** Exports, checks it worked, and returns the manifest digest it printed. */
  const exportOk = (...args: string[]): string => {
    const r = peerpkgs('export', 'oci', ...args);
    assert.equal(r.status, 0, r.stderr);
    const m = /^(sha256:[0-9a-f]{64}) {2}\S+\n$/.exec(r.stdout);
    assert.ok(m, r.stdout);
    return m[1]!;
  };
  const inspect = (ref: string, ...flags: string[]): unknown => {
    const r = tool('skopeo', ['inspect', ...flags, ref], work);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout);
  };
  /** The image's root as umoci unpacks it. */
  const unpack = (image: string, name: string): string => {
    const bundle = fresh(name);
    const r = tool('umoci', ['unpack', '--rootless', '--image', image, bundle], work);
    assert.equal(r.status, 0, r.stderr);
    return path.join(bundle, 'rootfs');
  };
  /** Runs `sh -c script` with `rootfs` as the whole root, as a container would (the image has no /proc or /dev to mount on). */
  const inRoot = (rootfs: string, script: string): Run =>
    tool('bwrap', ['--ro-bind', rootfs, '/', '--unshare-all', '--clearenv', '--setenv', 'PATH', '/usr/bin:/bin', '/bin/sh', '-c', script], work);
  /** Temporary names an export may have left beside `p` and in the output store. */
  const leftovers = (p: string) => [
    ...fs.readdirSync(path.dirname(p)).filter((n) => n.startsWith(`.${path.basename(p)}.`)),
    ...fs.readdirSync(path.join(home, 'outputs')).filter((n) => n.startsWith('.oci-layer-')),
  ];

  describe('an image of b', () => {
    let img: string;
    let digest: string;
    before(() => {
      img = fresh('img-b');
      digest = exportOk('-o', img, '--tag', 'demo/b:1.0', '--entrypoint', '/bin/sh', '--cmd', '-c', '--cmd', 'b', '--env', 'GREETING=hi', './pkg/b');
    });

    it('is an image layout skopeo reads, whose manifest has the digest printed', () => {
      assert.equal(read(img, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      const raw = tool('skopeo', ['inspect', '--raw', `oci:${img}:1.0`], work);
      assert.equal(raw.status, 0, raw.stderr);
      assert.equal(`sha256:${sha256(raw.stdout)}`, digest);
      const seen = inspect(`oci:${img}`) as { Digest: string; Layers: string[]; Env: string[]; Created: string; Os: string };
      assert.equal(seen.Digest, digest);
      assert.equal(seen.Layers.length, 3);
      assert.equal(seen.Os, 'linux');
      const index = JSON.parse(read(img, 'index.json')) as { manifests: { annotations: Record<string, string> }[] };
      assert.deepEqual(index.manifests[0]!.annotations, { 'org.opencontainers.image.ref.name': '1.0', 'io.containerd.image.name': 'demo/b:1.0' });
    });

    it('has a layer per package, in closure order, annotated with its name, pkghash and output', () => {
      const m = inspect(`oci:${img}:1.0`, '--raw') as { layers: { mediaType: string; digest: string; annotations: Record<string, string> }[] };
      assert.deepEqual(
        m.layers.map((l) => l.annotations['org.peerpkgs.package.name']),
        ['seed', 'a', 'b'],
      );
      for (const l of m.layers) {
        assert.equal(l.mediaType, 'application/vnd.oci.image.layer.v1.tar');
        const name = l.annotations['org.peerpkgs.package.name']!;
        const info = peerpkgs('info', `./pkg/${name}`);
        assert.match(info.stdout, new RegExp(`pkghash: +${l.annotations['org.peerpkgs.pkghash']}\n`), name);
        assert.match(info.stdout, new RegExp(`sha256 ${l.annotations['org.peerpkgs.output.sha256']}\n`), name);
        // the blob is what its digest says
        assert.equal(`sha256:${sha256(fs.readFileSync(path.join(img, 'blobs/sha256', l.digest.slice(7))))}`, l.digest);
      }
    });

    it('configures PATH, the environment, Entrypoint and Cmd, with no host data and a fixed date', () => {
      const c = inspect(`oci:${img}:1.0`, '--config') as { created: string; config: Record<string, unknown>; rootfs: { diff_ids: string[] } };
      assert.equal(c.created, '1970-01-01T00:00:00Z');
      assert.deepEqual(c.config, { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'GREETING=hi'], Entrypoint: ['/bin/sh'], Cmd: ['-c', 'b'] });
      assert.equal(c.rootfs.diff_ids.length, 3);
      const text = fs
        .readdirSync(path.join(img, 'blobs/sha256'))
        .map((b) => fs.readFileSync(path.join(img, 'blobs/sha256', b), 'latin1'))
        .join('');
      for (const host of [work, home, process.env.HOME ?? '/root', process.env.USER ?? 'root']) {
        if (host.length > 4) assert.ok(!text.includes(host), `${host} in the image`);
      }
    });

    it('unpacks with umoci, and its programs run from the unpacked root', () => {
      const rootfs = unpack(`${img}:1.0`, 'bundle-b');
      const r = inRoot(rootfs, 'b; a; echo $PATH');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'hello from b\nhello from a\n/usr/bin:/bin\n');
    });

    it('copies with skopeo to a docker-archive', () => {
      const out = path.join(work, 'b.docker.tar');
      fs.rmSync(out, { force: true });
      const r = tool('skopeo', ['copy', `oci:${img}:1.0`, `docker-archive:${out}:demo/b:1.0`], work);
      assert.equal(r.status, 0, r.stderr);
      const listed = tool('tar', ['-tf', out], work);
      assert.match(listed.stdout, /^manifest\.json$/m);
    });

    it('shares its layers with an image of a package it depends on', () => {
      const a = fresh('img-a');
      exportOk('-o', a, './pkg/a');
      const la = (inspect(`oci:${a}:latest`, '--raw') as { layers: { digest: string }[] }).layers.map((l) => l.digest);
      const lb = (inspect(`oci:${img}:1.0`, '--raw') as { layers: { digest: string }[] }).layers.map((l) => l.digest);
      assert.deepEqual(lb.slice(0, 2), la);
    });

    it('is the same image, digest for digest, from another tree in another place and another PEERPKGS_HOME, as an oci-archive too', () => {
      const tree2 = path.join(work, 'elsewhere', 'tree2');
      const home2 = path.join(work, 'elsewhere', 'home2');
      writeTree(tree2);
      const b = run(tree2, 'build-packages-ifchange', ['./pkg/b'], { PEERPKGS_HOME: home2 });
      assert.equal(b.status, 0, b.stderr);
      const archive = path.join(work, 'elsewhere', 'b.tar');
      const args = ['export', 'oci', '-o', archive, '--tag', 'demo/b:1.0', '--entrypoint', '/bin/sh', '--cmd', '-c', '--cmd', 'b', '--env', 'GREETING=hi', './pkg/b'];
      const r = run(tree2, 'peerpkgs', args, { PEERPKGS_HOME: home2 });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${digest}  ${archive}\n`);
      const raw = tool('skopeo', ['inspect', '--raw', `oci-archive:${archive}:1.0`], work);
      assert.equal(raw.status, 0, raw.stderr);
      assert.equal(`sha256:${sha256(raw.stdout)}`, digest);
      // and again: the archive's bytes too
      const again = path.join(work, 'elsewhere', 'again.tar');
      assert.equal(run(tree2, 'peerpkgs', [...args.slice(0, 3), again, ...args.slice(4)], { PEERPKGS_HOME: home2 }).status, 0);
      assert.equal(sha256(fs.readFileSync(again)), sha256(fs.readFileSync(archive)));
    });
  });

  it('gives packages with nothing of their own an empty layer each, which skopeo and umoci take', () => {
    const img = fresh('img-m2');
    exportOk('-o', img, './pkg/m2');
    const m = inspect(`oci:${img}:latest`, '--raw') as { layers: { digest: string; size: number; annotations: Record<string, string> }[] };
    assert.deepEqual(
      m.layers.map((l) => l.annotations['org.peerpkgs.package.name']),
      ['seed', 'a', 'm1', 'm2'],
    );
    assert.equal(m.layers[2]!.digest, m.layers[3]!.digest);
    assert.equal(m.layers[3]!.size, 1024, 'a tar of nothing: its two zero blocks');
    const out = path.join(work, 'm2.docker.tar');
    fs.rmSync(out, { force: true });
    const r = tool('skopeo', ['copy', `oci:${img}:latest`, `docker-archive:${out}:m2:latest`], work);
    assert.equal(r.status, 0, r.stderr);
    const x = inRoot(unpack(`${img}:latest`, 'bundle-m2'), 'a');
    assert.equal(x.stdout, 'hello from a\n');
  });

  describe('conflicts', () => {
    it('refuses a path two packages provide differently, and leaves nothing behind', () => {
      const img = fresh('img-cd');
      const r = peerpkgs('export', 'oci', '-o', img, './pkg/c', './pkg/d');
      assert.equal(r.status, 1);
      assert.match(r.stderr, /c and d both provide bin\/x \(files with different content\): choose --prefer-existing/);
      assert.equal(fs.existsSync(img), false);
      assert.deepEqual(leftovers(img), []);
    });

    // found at wh's layer, after e's is written: the half-made image goes too
    it('refuses a path an image layer would take for a whiteout, and leaves nothing behind', () => {
      const img = fresh('img-wh');
      const r = peerpkgs('export', 'oci', '-o', img, './pkg/e', './pkg/wh');
      assert.equal(r.status, 1);
      assert.match(r.stderr, /wh provides share\/\.wh\.common: an image layer cannot hold it/);
      assert.equal(fs.existsSync(img), false);
      assert.deepEqual(leftovers(img), []);
    });

    // Each layer holds what the merge chose: with the packages' own outputs as
    // layers, d's bin/x, on top, would win under --prefer-existing too, and
    // bin/x would stay beside the namespaced copies.
    const cases: [string, string][] = [
      ['--prefer-existing', 'x from c'],
      ['--prefer-new', 'x from d'],
    ];
    for (const [flag, says] of cases) {
      it(`${flag}: the image shows the merge's choice`, () => {
        const img = fresh(`img-cd${flag}`);
        const r = peerpkgs('export', 'oci', '-o', img, flag, './pkg/c', './pkg/d');
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stderr, /bin\/x: c and d differ/);
        const rootfs = unpack(`${img}:latest`, `bundle-cd${flag}`);
        const x = inRoot(rootfs, 'x; cat /share/common');
        assert.equal(x.stdout, `${says}\nshared\n`);
      });
    }

    it('a file two packages provide alike leaves each package its own layer, hardlinks and all', () => {
      const layersOf = (...pkgs: string[]) => {
        const img = fresh('img-shared');
        exportOk('-o', img, ...pkgs);
        const m = inspect(`oci:${img}:latest`, '--raw') as { layers: { digest: string; annotations: Record<string, string> }[] };
        return new Map(m.layers.map((l) => [l.annotations['org.peerpkgs.package.name'], l.digest]));
      };
      const alone = layersOf('./pkg/e');
      const withC = layersOf('./pkg/c', './pkg/e');
      assert.equal(withC.get('e'), alone.get('e'));
      const rootfs = unpack(`${path.join(work, 'img-shared')}:latest`, 'bundle-ce');
      const [common, also] = ['share/common', 'share/also'].map((f) => fs.statSync(path.join(rootfs, f)));
      assert.equal(common!.ino, also!.ino);
    });

    it('--namespaced: both copies and no bin/x', () => {
      const img = fresh('img-cd-ns');
      const r = peerpkgs('export', 'oci', '-o', img, '--namespaced', './pkg/c', './pkg/d');
      assert.equal(r.status, 0, r.stderr);
      const rootfs = unpack(`${img}:latest`, 'bundle-cd-ns');
      const x = inRoot(rootfs, 'test ! -e /bin/x && x@c && x@d');
      assert.equal(x.status, 0, x.stderr);
      assert.equal(x.stdout, 'x from c\nx from d\n');
    });
  });

  describe('the output path', () => {
    it('replaces an older image layout, not a directory that is something else', () => {
      const img = fresh('img-replace');
      exportOk('-o', img, './pkg/a');
      const d = exportOk('-o', img, './pkg/b');
      assert.equal(`sha256:${sha256(tool('skopeo', ['inspect', '--raw', `oci:${img}:latest`], work).stdout)}`, d);
      assert.deepEqual(leftovers(img), []);
      const mine = fresh('not-an-image');
      write(mine, { 'keep.txt': 'mine\n' });
      const r = peerpkgs('export', 'oci', '-o', mine, './pkg/a');
      assert.equal(r.status, 1);
      assert.match(r.stderr, /exists and is not an OCI image layout/);
      assert.equal(read(mine, 'keep.txt'), 'mine\n');
    });

    it('says what is wrong with a bad option, with exit 2', () => {
      for (const args of [['-o', 'x', '--env', 'NOEQUALS', './pkg/a'], ['-o', 'x', '--tag', 'a:b:!', './pkg/a'], ['./pkg/a'], ['-o', 'x', '--cmd']]) {
        const r = peerpkgs('export', 'oci', ...args);
        assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      }
    });
  });
});
