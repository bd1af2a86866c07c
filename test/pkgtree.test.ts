/**
 * Building a package tree as a user does: bin/build-packages-ifchange on a
 * tree whose seed is Debian's busybox-static, fetched from a local busybox
 * httpd, with every build in a real bwrap sandbox.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { scratch, write, read, exists, run, busyboxHttpd, type Run } from './helpers.ts';
import { makeSeedTarball, writeSeedPackage, simplePackage } from './seed.ts';
import { readManifest } from '../src/archive/manifest.ts';
import { startNginx } from './nginx.ts';

describe('package tree', function () {
  this.timeout(120_000);
  let dir: string;
  let cleanup: () => void;
  let www: { url: string; stop(): Promise<void> };
  let seedSha: string;
  let home: string;

  let shared: { dir: string; cleanup: () => void };
  before(async () => {
    const w = (shared = scratch());
    const wwwDir = path.join(w.dir, 'www');
    fs.mkdirSync(wwwDir);
    seedSha = await makeSeedTarball(wwwDir);
    www = await busyboxHttpd(wwwDir);
    // one distfile store and output store for the whole file, as a user has
    home = path.join(w.dir, 'home');
  });
  after(async () => {
    await www.stop();
    shared.cleanup();
  });
  beforeEach(() => {
    ({ dir, cleanup } = scratch());
    writeSeedPackage(dir, www.url, seedSha);
  });
  afterEach(() => cleanup());

  const build = (...args: string[]): Run => run(dir, 'build-packages-ifchange', args, { PEERPKGS_HOME: home });
  const peerpkgs = (...args: string[]): Run => run(dir, 'peerpkgs', args, { PEERPKGS_HOME: home });
  const built = (r: Run) => [...r.stderr.matchAll(/^redo +(\S+\/\.pkg\.tar\.gz)$/gm)].map((m) => m[1]).sort();

  it('builds a package and its dependencies, each once, and then nothing', async () => {
    write(dir, simplePackage('a', 'hello from a'));
    write(dir, simplePackage('b', 'hello from b', { 'pkg/b/run-deps': '../a\n' }));
    const r = build('-j2', './pkg/b');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(built(r), ['pkg/a/.pkg.tar.gz', 'pkg/b/.pkg.tar.gz', 'pkg/seed/.pkg.tar.gz']);
    const manifest = await readManifest(path.join(dir, 'pkg/b/.pkg.tar.gz'));
    assert.deepEqual(
      manifest.map((e) => `${e.type} ${e.path}`),
      ['directory bin', 'file bin/b'],
    );
    assert.match(read(dir, 'pkg/b/.pkg.tar.gz.sha256'), /^[0-9a-f]{64} /);
    const again = build('./pkg/b');
    assert.equal(again.status, 0);
    assert.deepEqual(built(again), [], again.stderr);
  });

  it('makes absolute symlinks in DESTDIR relative, so the output unpacks and serves a build', async () => {
    // m build-depends on l and on the seed, which l builds on too: both
    // are asked for in one run (a shared dependency, built once)
    write(dir, {
      '!pkg/l/build': '#!/bin/sh\nmkdir -p $DESTDIR/opt/l/bin\necho x >$DESTDIR/opt/l/bin/gcc\nln -s /opt/l/bin/gcc $DESTDIR/opt/l/bin/cc\nln -s / $DESTDIR/opt/l/root\n',
      'pkg/l/build-deps': '../seed\n',
      '!pkg/m/build': '#!/bin/sh\nmkdir -p $DESTDIR/share\ncat /opt/l/bin/cc >$DESTDIR/share/via-link\n',
      'pkg/m/build-deps': '../l\n../seed\n',
    });
    const r = build('-j1', './pkg/m');
    assert.equal(r.status, 0, r.stderr);
    const links = (await readManifest(path.join(dir, 'pkg/l/.pkg.tar.gz'))).filter((e) => e.type === 'symlink');
    assert.deepEqual(links.map((e) => `${e.path} -> ${e.target}`), ['opt/l/bin/cc -> gcc', 'opt/l/root -> ../..']);
    const m = await readManifest(path.join(dir, 'pkg/m/.pkg.tar.gz'));
    assert.equal(m.find((e) => e.path === 'share/via-link')?.size, 2);
  });

  it('rebuilds what a change reaches and nothing else', () => {
    write(dir, simplePackage('a', 'a'));
    write(dir, simplePackage('b', 'b', { 'pkg/b/run-deps': '../a\n' }));
    write(dir, simplePackage('c', 'c'));
    assert.equal(build('./pkg/b', './pkg/c').status, 0);
    fs.appendFileSync(path.join(dir, 'pkg/a/build'), '# a comment is a change\n');
    const r = build('./pkg/b', './pkg/c');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(built(r), ['pkg/a/.pkg.tar.gz', 'pkg/b/.pkg.tar.gz']);
  });

  it('adding a mirror to a fetch file rebuilds nothing', () => {
    write(dir, simplePackage('a', 'a'));
    assert.equal(build('./pkg/a').status, 0);
    const fetch = read(dir, 'pkg/seed/fetch');
    write(dir, { 'pkg/seed/fetch': `url: http://127.0.0.1:9/mirror/seed.tar.gz\n${fetch}` });
    const r = build('./pkg/a');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(built(r), ['pkg/seed/.pkg.tar.gz'], 'the seed\'s own .do reruns; nothing built on it does');
  });

  it('builds the same output twice (peerpkgs check)', () => {
    write(dir, simplePackage('a', 'a'));
    const r = peerpkgs('check', './pkg/a');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^pkg\/a: reproducible, output sha256 [0-9a-f]{64}$/m);
  });

  it('names the files that differ between two builds', () => {
    write(dir, {
      '!pkg/t/build': '#!/bin/sh\nmkdir -p $DESTDIR/share\ncat /proc/sys/kernel/random/uuid >$DESTDIR/share/stamp\necho same >$DESTDIR/share/same\n',
      'pkg/t/build-deps': '../seed\n',
    });
    const r = peerpkgs('check', './pkg/t');
    assert.equal(r.status, 6, r.stderr);
    assert.match(r.stdout, /NOT reproducible/);
    assert.match(r.stdout, /differs: share\/stamp/);
    assert.doesNotMatch(r.stdout, /share\/same/);
  });

  it('scaffolds a package with new-package, which then builds', () => {
    const r = run(dir, 'new-package', ['./pkg/hello'], { PEERPKGS_HOME: home });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(read(dir, 'pkg/hello/build-deps'), '../seed\n');
    assert.equal(build('./pkg/hello').status, 0);
    assert.equal(run(dir, 'new-package', ['./pkg/hello']).status, 2, 'refuses an existing directory');
  });

  it('prints the dependency graph and package info', () => {
    write(dir, simplePackage('a', 'a'));
    write(dir, simplePackage('b', 'b', { 'pkg/b/run-deps': '../a\n' }));
    const g = peerpkgs('graph', './pkg/b');
    assert.equal(g.stdout, 'pkg/b\n  build: pkg/seed\n  run: pkg/a\n    build: pkg/seed (see above)\n');
    const info = peerpkgs('info', './pkg/b');
    assert.match(info.stdout, /^pkghash: +[0-9a-f]{64}$/m);
    assert.match(info.stdout, /^closure: +pkg\/a$/m);
    assert.match(info.stdout, /^output: +not built$/m);
  });

  describe('binary caches', () => {
    it('publishes signed packages that another machine substitutes instead of building', async () => {
      write(dir, simplePackage('a', 'a'));
      write(dir, simplePackage('b', 'b', { 'pkg/b/run-deps': '../a\n' }));
      assert.equal(peerpkgs('key', 'generate', 'team').status, 0);
      const cacheDir = path.join(dir, 'cache');
      const pub = run(dir, 'add-to-package-cache', ['-o', cacheDir, '--sign-key', 'team', './pkg/b'], { PEERPKGS_HOME: home });
      assert.equal(pub.status, 0, pub.stderr);
      const nginx = await startNginx(cacheDir);
      // another machine: a fresh home and a fresh copy of the tree
      const other = scratch();
      try {
        for (const p of ['a', 'b', 'seed']) fs.cpSync(path.join(dir, 'pkg', p), path.join(other.dir, 'pkg', p), { recursive: true, filter: (f) => !['.pkg.tar.gz', '.pkg.tar.gz.sha256', '.pkghash'].includes(path.basename(f)) });
        const env = {
          PEERPKGS_HOME: path.join(other.dir, 'home'),
          PKG_CACHE_URL: nginx.url,
          PKG_TRUSTED_KEYS: path.join(home, 'keys/team.pub'),
          PKG_FORCE_BINARY: 'yes',
        };
        const r = run(other.dir, 'build-packages-ifchange', ['./pkg/b'], env);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stderr, /b: substituted from http:\/\/127\.0\.0\.1:\d+/);
        assert.match(r.stderr, /a: substituted from/);
        assert.doesNotMatch(r.stderr, /sandbox root/, 'nothing was built');
        assert.equal(read(other.dir, 'pkg/b/.pkg.tar.gz.sha256').split(' ')[0], read(dir, 'pkg/b/.pkg.tar.gz.sha256').split(' ')[0]);
        // signed by a key this machine does not trust: refused, and with
        // PKG_FORCE_BINARY=yes that is an error naming the package
        fs.rmSync(path.join(other.dir, '.redo'), { recursive: true });
        for (const p of ['a', 'b']) fs.rmSync(path.join(other.dir, 'pkg', p, '.pkg.tar.gz'));
        const refused = run(other.dir, 'build-packages-ifchange', ['./pkg/b'], { ...env, PKG_TRUSTED_KEYS: '' });
        assert.notEqual(refused.status, 0);
        assert.match(refused.stderr, /no cache has a usable binary package/);
        assert.match(refused.stderr, /ed25519:[0-9a-f]{16}/);
      } finally {
        other.cleanup();
        await nginx.stop();
      }
    });
  });

  describe('errors name the file and line', () => {
    it('a dependency cycle', () => {
      write(dir, simplePackage('a', 'a', { 'pkg/a/run-deps': '../b\n' }));
      write(dir, simplePackage('b', 'b', { 'pkg/b/run-deps': '# a comment\n../a\n' }));
      const r = build('./pkg/a');
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /dependency cycle: pkg\/a -> pkg\/b -> pkg\/a/);
    });

    it('a missing dependency directory', () => {
      write(dir, simplePackage('a', 'a', { 'pkg/a/run-deps': '\n../nothere\n' }));
      const r = build('./pkg/a');
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /pkg\/a\/run-deps:2: \.\.\/nothere: no such package directory/);
    });

    it('a malformed fetch file', () => {
      write(dir, simplePackage('a', 'a', { 'pkg/a/fetch': 'url: http://x/y.tar.gz\nsha256: 1234\n' }));
      const r = build('./pkg/a');
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /pkg\/a\/fetch:2: .*sha256/);
    });

    it('a dependency that leaves the tree (exit 4), leaving that tree as it was', () => {
      const other = scratch();
      try {
        write(other.dir, simplePackage('x', 'x', { 'pkg/x/build-deps': '' }));
        const rel = path.relative(path.join(dir, 'pkg/a'), path.join(other.dir, 'pkg/x'));
        for (const [line, where] of [[rel, 1], [path.join(other.dir, 'pkg/x'), 2]] as const) {
          write(dir, simplePackage('a', 'a', { 'pkg/a/run-deps': `${'\n'.repeat(where - 1)}${line}\n` }));
          const r = build('./pkg/a');
          assert.equal(r.status, 4, r.stderr);
          assert.match(r.stderr, new RegExp(`pkg/a/run-deps:${where}: ${line.replace(/[.]/g, '\\.')}: leaves the package tree ${dir}`));
          assert.equal(peerpkgs('graph', './pkg/a').status, 4);
        }
        assert.deepEqual(fs.readdirSync(path.join(other.dir, 'pkg/x')).sort(), ['build', 'build-deps']);
      } finally {
        other.cleanup();
      }
    });

    it('prints names from the tree with their control characters escaped', () => {
      // clears the screen and sets the window title, were it printed as it is
      const evil = '../\x1b[2J\x1b]0;pwned\x07x';
      write(dir, simplePackage('a', 'a', { 'pkg/a/build-deps': `../seed\n${evil}\n` }));
      for (const r of [build('./pkg/a'), peerpkgs('graph', './pkg/a'), peerpkgs('info', './pkg/a')]) {
        assert.equal(r.status, 4, r.stderr);
        // eslint-disable-next-line no-control-regex -- what must not be printed
        assert.doesNotMatch(r.stderr + r.stdout, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
        assert.match(r.stderr, /pkg\/a\/build-deps:2: \.\.\/\\u001b\[2J\\u001b\]0;pwned\\u0007x: no such package directory/);
      }
    });

    it('not a package directory (exit 4)', () => {
      fs.mkdirSync(path.join(dir, 'pkg/empty'));
      const r = build('./pkg/empty');
      assert.equal(r.status, 4);
      assert.match(r.stderr, /pkg\/empty: not a package directory/);
    });
  });

  describe('fetching sources', () => {
    it('fetches a package\'s sources into the store and verifies them', () => {
      write(dir, {
        '!pkg/src/build': '#!/bin/sh\nmkdir -p $DESTDIR/share\ncp seed.tar.gz $DESTDIR/share/copy\n',
        'pkg/src/build-deps': '../seed\n',
        'pkg/src/fetch': `url: ${www.url}/seed.tar.gz\nsha256: ${seedSha}\n`,
      });
      const r = build('./pkg/src');
      assert.equal(r.status, 0, r.stderr);
      assert.ok(fs.existsSync(path.join(home, 'distfiles', seedSha)));
    });

    it('lists every source tried when none has the file', () => {
      const wrong = 'a'.repeat(64);
      write(dir, { 'pkg/f/fetch': `url: ${www.url}/seed.tar.gz\nurl: ${www.url}/missing.tar.gz\nsha256: ${wrong}\nfile: f.tar.gz\n` });
      const r = run(path.join(dir, 'pkg/f'), 'do-fetch', ['fetch'], { PEERPKGS_HOME: home });
      assert.equal(r.status, 5);
      assert.match(r.stderr, /seed\.tar\.gz: sha256 mismatch/);
      assert.match(r.stderr, /missing\.tar\.gz: HTTP 404/);
      assert.match(r.stderr, /peerpkgs distfiles add/);
    });

    it('works offline from files added with `peerpkgs distfiles add`', () => {
      const file = path.join(dir, 'local.txt');
      fs.writeFileSync(file, 'offline source\n');
      const add = peerpkgs('distfiles', 'add', file);
      assert.equal(add.status, 0, add.stderr);
      const sha = add.stdout.split(' ')[0]!;
      write(dir, { 'pkg/off/fetch': `url: http://127.0.0.1:9/unreachable/local.txt\nsha256: ${sha}\n` });
      const r = run(path.join(dir, 'pkg/off'), 'do-fetch', ['-o', '.', 'fetch'], { PEERPKGS_HOME: home });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(dir, 'pkg/off/local.txt'), 'offline source\n');
    });

    it('puts the sources into the -o directory, making it when it is not there, and refuses a file', () => {
      const file = path.join(dir, 'local.txt');
      fs.writeFileSync(file, 'to a new directory\n');
      const sha = peerpkgs('distfiles', 'add', file).stdout.split(' ')[0]!;
      write(dir, { 'pkg/o/fetch': `url: http://127.0.0.1:9/unreachable/local.txt\nsha256: ${sha}\n`, 'plain-file': 'x\n' });
      const r = run(path.join(dir, 'pkg/o'), 'do-fetch', ['-o', 'new/sub', 'fetch'], { PEERPKGS_HOME: home });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(dir, 'pkg/o/new/sub/local.txt'), 'to a new directory\n');
      const bad = run(path.join(dir, 'pkg/o'), 'do-fetch', ['-o', '../../plain-file', 'fetch'], { PEERPKGS_HOME: home });
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /-o \.\.\/\.\.\/plain-file: not a directory/);
      assert.equal(read(dir, 'plain-file'), 'x\n');
    });
  });

  describe('the sandbox refuses', () => {
    const sandboxed = (name: string, script: string) => ({
      [`!pkg/${name}/build`]: `#!/bin/sh\n${script}\n`,
      [`pkg/${name}/build-deps`]: '../seed\n',
    });

    it('a connection to a server on the host\'s loopback', async () => {
      let connections = 0;
      const server = http.createServer((_q, s) => s.end('hi')).on('connection', () => connections++);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as { port: number }).port;
      try {
        write(dir, sandboxed('net', `wget -q -O $DESTDIR/got http://127.0.0.1:${port}/ || exit 3`));
        const r = build('./pkg/net');
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /net: build failed \(exit 3\)/);
        assert.equal(connections, 0);
      } finally {
        server.close();
      }
    });

    it('reading the host\'s home, /etc or the tree outside the package', () => {
      const marker = path.join(os.homedir(), `.peerpkgs-test-marker-${process.pid}`);
      fs.writeFileSync(marker, 'secret');
      try {
        write(dir, { 'outside.txt': 'secret' });
        write(dir, sandboxed('peek', [
          `test ! -e ${marker} || exit 11`,
          `test ! -e ${path.join(dir, 'outside.txt')} || exit 12`,
          'test ! -e ../../outside.txt || exit 13',
          'test ! -e /etc/hostname || exit 14',
          'test ! -e /etc/shadow || exit 15',
          'mkdir -p $DESTDIR; echo ok >$DESTDIR/ok',
        ].join('\n')));
        const r = build('./pkg/peek');
        assert.equal(r.status, 0, r.stderr);
      } finally {
        fs.rmSync(marker, { force: true });
      }
    });

    it('writes outside /home/build, /destdir and /tmp', () => {
      write(dir, sandboxed('w', 'for d in / /bin /usr /etc /home; do touch $d/x 2>/dev/null && exit 21; done\ntouch /tmp/ok /home/build/ok $DESTDIR/ok'));
      const r = build('./pkg/w');
      assert.equal(r.status, 0, r.stderr);
    });

    it('setuid bits in DESTDIR, naming the file', () => {
      write(dir, sandboxed('suid', 'mkdir -p $DESTDIR/bin; cp /bin/busybox $DESTDIR/bin/su; chmod 4755 $DESTDIR/bin/su'));
      const r = build('./pkg/suid');
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /bin\/su/);
      assert.equal(exists(dir, 'pkg/suid/.pkg.tar.gz'), false);
    });

    it('device files in DESTDIR', () => {
      write(dir, sandboxed('dev', 'mkdir -p $DESTDIR; mkfifo $DESTDIR/fifo'));
      const r = build('./pkg/dev');
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /fifo/);
    });
  });
});
