/**
 * Building a package tree as a user does: bin/build-packages-ifchange on a
 * tree whose seed is Debian's busybox-static, fetched from a local busybox
 * httpd, with every build in a real bwrap sandbox.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN, scratch, write, read, exists, run, userEnv, type Run } from './helpers.ts';
import { seededTrees, simplePackage } from './seed.ts';
import { readManifest } from '../src/archive/manifest.ts';
import { startNginx } from './nginx.ts';

describe('package tree', function () {
  this.timeout(120_000);
  const t = seededTrees();
  let dir: string;
  let www: { url: string; stop(): Promise<void> };
  let seedSha: string;
  let home: string;
  let wwwDir: string;
  beforeEach(() => ({ dir, www, seedSha, home, wwwDir } = t));

  const build = (...args: string[]): Run => run(dir, 'build-packages-ifchange', args, { PEERPKGS_HOME: home });
  const peerpkgs = (...args: string[]): Run => run(dir, 'peerpkgs', args, { PEERPKGS_HOME: home });
  // the progress line of each package built (pkgrules/progress.ts)
  const built = (r: Run) => [...r.stderr.matchAll(/^\[[\d/ :]+\] (\S+): built\b/gm)].map((m) => `${m[1]}/.pkg.tar.gz`).sort();

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
    assert.deepEqual(
      links.map((e) => `${e.path} -> ${e.target}`),
      ['opt/l/bin/cc -> gcc', 'opt/l/root -> ../..'],
    );
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
    assert.deepEqual(built(r), ['pkg/seed/.pkg.tar.gz'], "the seed's own .do reruns; nothing built on it does");
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

  it('new-package --url fetches each URL into the distfile store, and writes its fetch record and a build that unpacks it', async () => {
    const srv = path.join(dir, 'srv');
    write(srv, { 'src/hello-2.1/configure': '#!/bin/sh\n' });
    execFileSync('tar', ['-C', path.join(srv, 'src'), '--format=gnu', '-czf', path.join(srv, 'hello-2.1.tar.gz'), 'hello-2.1']);
    write(srv, { 'fix+1.patch': '--- a\n+++ b\n' });
    const nginx = await startNginx(srv);
    try {
      // the tree's base packages: the template's build-deps are those of them it has
      write(dir, simplePackage('unpack', 'unpack'));
      const tarball = fs.readFileSync(path.join(srv, 'hello-2.1.tar.gz'));
      const sha = (b: Buffer | string) => crypto.createHash('sha256').update(b).digest('hex');
      const urls = [`${nginx.url}/hello-2.1.tar.gz`, `${nginx.url}/fix%2B1.patch`];
      const r = run(dir, 'new-package', ['./pkg/hello', '--url', urls[0]!, '--url', urls[1]!], { PEERPKGS_HOME: home });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(
        read(dir, 'pkg/hello/fetch'),
        `url: ${urls[0]}\nsha256: ${sha(tarball)}\nsize: ${tarball.length}\n\n` + `url: ${urls[1]}\nsha256: ${sha('--- a\n+++ b\n')}\nsize: 12\nfile: fix+1.patch\n`,
      );
      const script = read(dir, 'pkg/hello/build');
      assert.match(script, /^#!\/bin\/sh\n(#.*\n)*set -eux\nunpack hello-2\.1\.tar\.gz\nrm hello-2\.1\.tar\.gz\ncd hello-2\.1\n/);
      assert.match(script, /\.\/configure --prefix=\/usr /);
      assert.match(script, /^make install DESTDIR="\$DESTDIR"$/m);
      assert.equal(read(dir, 'pkg/hello/build-deps'), '../seed\n../unpack\n');
      assert.ok(fs.readFileSync(path.join(home, 'distfiles', sha(tarball))).equals(tarball), 'in the distfile store');
      // the package's sources are in the store: fetching them asks no server
      const requests = fs.readFileSync(nginx.accessLog, 'utf8');
      assert.equal(run(dir, 'do-fetch', ['./pkg/hello'], { PEERPKGS_HOME: home }).status, 0);
      assert.equal(fs.readFileSync(nginx.accessLog, 'utf8'), requests);

      const missing = run(dir, 'new-package', ['./pkg/gone', '--url', `${nginx.url}/gone-1.0.tar.gz`], { PEERPKGS_HOME: home });
      assert.equal(missing.status, 5, missing.stderr);
      assert.match(missing.stderr, /could not fetch gone-1\.0\.tar\.gz:\n {2}http:\/\/.*\/gone-1\.0\.tar\.gz: .*404/);
      assert.deepEqual(fs.readdirSync(path.join(dir, 'pkg')).sort(), ['hello', 'seed', 'unpack'], 'a package whose source failed is not left behind');
      assert.equal(run(dir, 'new-package', ['./pkg/x', '--url', 'not a url']).status, 2);
    } finally {
      await nginx.stop();
    }
  });

  it("new-package without --url writes a build in the tree's conventions, which builds", () => {
    const r = run(dir, 'new-package', ['./pkg/hello'], { PEERPKGS_HOME: home });
    assert.equal(r.status, 0, r.stderr);
    const script = read(dir, 'pkg/hello/build');
    assert.match(script, /^set -eux$/m);
    assert.match(script, /^mkdir -p "\$DESTDIR\/usr\/bin"$/m);
    assert.doesNotMatch(script, /DESTDIR\/bin/);
    assert.equal(build('./pkg/hello').status, 0);
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

  describe('state', () => {
    /** What a `cp -r`, `rsync` without -t or `tar x` leaves: the mtime's mark gone. */
    const touchOutputs = () => {
      const now = Math.floor(Date.now() / 1000);
      for (const p of fs.readdirSync(path.join(dir, 'pkg')))
        for (const t of ['.pkghash', '.closure', '.bclosure', '.pkg.tar.gz']) {
          const f = path.join(dir, 'pkg', p, t);
          if (fs.existsSync(f)) fs.utimesSync(f, now, now);
        }
    };
    const contentOf = (pkg: string) => execFileSync('tar', ['-xzOf', path.join(dir, 'pkg', pkg, '.pkg.tar.gz'), `bin/${pkg}`], { encoding: 'utf8' });

    it('rebuilds a changed package whose state was lost and whose outputs lost their mark', () => {
      write(dir, simplePackage('a', 'old a'));
      assert.equal(build('./pkg/a').status, 0);
      write(dir, simplePackage('a', 'new a'));
      fs.rmSync(path.join(dir, '.redo'), { recursive: true });
      touchOutputs();
      const r = build('./pkg/a');
      assert.equal(r.status, 0, r.stderr);
      assert.match(contentOf('a'), /echo new a/);
      assert.deepEqual(built(build('./pkg/a')), [], 'and then it is up to date');
    });

    it('rebuilds a package output changed by hand: only the rules write it', () => {
      write(dir, simplePackage('a', 'a'));
      assert.equal(build('./pkg/a').status, 0);
      fs.copyFileSync(path.join(dir, 'pkg/seed/.pkg.tar.gz'), path.join(dir, 'pkg/a/.pkg.tar.gz'));
      const r = build('./pkg/a');
      // made again: taken from the store, where its build put it
      assert.match(r.stderr, /^\[[\d/ :]+\] pkg\/a: substituted from this store, built before$/m);
      assert.match(contentOf('a'), /echo a/);
    });

    it('rebuilds a changed package whose record was torn off the journal by a crash', () => {
      write(dir, simplePackage('a', 'a'));
      assert.equal(build('./pkg/a').status, 0);
      write(dir, simplePackage('a', 'a again'));
      assert.equal(build('./pkg/a').status, 0);
      // the newest journal cut inside the package's record: the older
      // record (of the first build) is what the state now says
      const journal = path.join(dir, '.redo/journal');
      const newest = path.join(journal, fs.readdirSync(journal).sort().at(-1)!);
      const text = fs.readFileSync(newest, 'utf8');
      const at = text.lastIndexOf('"t":"pkg/a/.pkg.tar.gz"');
      assert.ok(at > 0, text);
      fs.writeFileSync(newest, text.slice(0, at));
      write(dir, simplePackage('a', 'a at last'));
      touchOutputs();
      const r = build('./pkg/a');
      assert.equal(r.status, 0, r.stderr);
      assert.match(contentOf('a'), /echo a at last/);
    });

    it('peerpkgs info says when the output was built from another pkghash, or is not known to be built from this one', () => {
      write(dir, simplePackage('a', 'a'));
      assert.equal(build('./pkg/a').status, 0);
      const info = () => peerpkgs('info', './pkg/a').stdout;
      assert.doesNotMatch(info(), /out of date|no record/);
      const old = /^pkghash: +(\S+)$/m.exec(info())![1]!;
      write(dir, simplePackage('a', 'changed'));
      assert.match(info(), new RegExp(`^ +out of date: built from pkghash ${old}, not the current one`, 'm'));
      fs.rmSync(path.join(dir, '.redo'), { recursive: true });
      assert.match(info(), /^ +out of date: no record of the build that made it/m);
      assert.equal(build('./pkg/a').status, 0);
      assert.doesNotMatch(info(), /out of date|no record/);
    });

    it('redo-ood lists what a build would rebuild: nothing after a build, a changed package and its dependents, never a deleted one', () => {
      write(dir, simplePackage('a', 'a'));
      write(dir, simplePackage('b', 'b', { 'pkg/b/run-deps': '../a\n' }));
      write(dir, simplePackage('c', 'c'));
      write(dir, simplePackage('d', 'd'));
      assert.equal(build('./pkg/b', './pkg/c', './pkg/d').status, 0);
      const ood = () => run(dir, 'redo-ood', [], { PEERPKGS_HOME: home });
      assert.equal(ood().stdout, '');
      assert.equal(ood().status, 0);
      fs.appendFileSync(path.join(dir, 'pkg/a/build'), '# a comment is a change\n');
      fs.rmSync(path.join(dir, 'pkg/d'), { recursive: true });
      // (.closure and .bclosure are made only when asked for)
      const targets = (p: string) => ['.pkg.tar.gz', '.pkghash'].map((t) => `pkg/${p}/${t}`);
      assert.equal(ood().stdout, [...targets('a'), ...targets('b')].join('\n') + '\n');
      assert.match(run(path.join(dir, 'pkg/b'), 'redo-ood', [], { PEERPKGS_HOME: home }).stdout, /^\.\.\/a\/\.pkghash\n\.pkg\.tar\.gz\n/m, 'relative to the current directory');
      const r = build('./pkg/b', './pkg/c');
      assert.deepEqual(built(r), ['pkg/a/.pkg.tar.gz', 'pkg/b/.pkg.tar.gz'], 'the build agrees');
      assert.equal(ood().stdout, '');
    });
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
        for (const p of ['a', 'b', 'seed'])
          fs.cpSync(path.join(dir, 'pkg', p), path.join(other.dir, 'pkg', p), {
            recursive: true,
            filter: (f) => !['.pkg.tar.gz', '.pkg.tar.gz.sha256', '.pkghash'].includes(path.basename(f)),
          });
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
        // (a third machine: the second has them in its store now)
        fs.rmSync(path.join(other.dir, '.redo'), { recursive: true });
        for (const p of ['a', 'b']) fs.rmSync(path.join(other.dir, 'pkg', p, '.pkg.tar.gz'));
        const refused = run(other.dir, 'build-packages-ifchange', ['./pkg/b'], { ...env, PEERPKGS_HOME: path.join(other.dir, 'home-3'), PKG_TRUSTED_KEYS: '' });
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
        for (const [line, where] of [
          [rel, 1],
          [path.join(other.dir, 'pkg/x'), 2],
        ] as const) {
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

    it("prints a build's own lines with their control characters escaped, tabs kept", () => {
      write(dir, {
        '!pkg/a/build': '#!/bin/sh\nprintf "\\033]0;pwned\\007\\033]52;c;cm0K\\007\\033[2J\\tcol\\n"\nmkdir -p "$DESTDIR"\n',
        'pkg/a/build-deps': '../seed\n',
      });
      const r = build('-v', './pkg/a');
      assert.equal(r.status, 0, r.stderr);
      // eslint-disable-next-line no-control-regex -- what must not be printed
      assert.doesNotMatch(r.stderr, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
      assert.match(r.stderr, /\\u001b\]0;pwned\\u0007\\u001b\]52;c;cm0K\\u0007\\u001b\[2J\tcol\n/);
    });

    it("gives a files/ entry the mode the pkghash counts (0755 or 0644), whatever the checkout's umask", () => {
      write(dir, {
        '!pkg/m/build': '#!/bin/sh\nset -e\nmkdir -p "$DESTDIR"\nstat -c %a conf tool > "$DESTDIR/modes"\n',
        'pkg/m/build-deps': '../seed\n',
        'pkg/m/files/conf': 'x\n',
        'pkg/m/files/tool': 'y\n',
      });
      const outputs: string[] = [];
      for (const [conf, tool] of [
        [0o644, 0o755],
        [0o600, 0o700],
      ]) {
        fs.chmodSync(path.join(dir, 'pkg/m/files/conf'), conf);
        fs.chmodSync(path.join(dir, 'pkg/m/files/tool'), tool);
        // redo builds again whatever the records say: the pkghash is the same
        const r = run(dir, 'redo', ['pkg/m/.pkg.tar.gz'], { PEERPKGS_HOME: home });
        assert.equal(r.status, 0, r.stderr);
        outputs.push(fs.readFileSync(path.join(dir, 'pkg/m/.pkg.tar.gz.sha256'), 'utf8'));
        const modes = spawnSync('tar', ['xzOf', path.join(dir, 'pkg/m/.pkg.tar.gz'), '--wildcards', '*modes'], { encoding: 'utf8' }).stdout;
        assert.equal(modes, '644\n755\n');
      }
      assert.equal(outputs[0], outputs[1]);
    });

    it('not a package directory (exit 4)', () => {
      fs.mkdirSync(path.join(dir, 'pkg/empty'));
      const r = build('./pkg/empty');
      assert.equal(r.status, 4);
      assert.match(r.stderr, /pkg\/empty: not a package directory/);
    });
  });

  describe('fetching sources', () => {
    it("fetches a package's sources into the store and verifies them", () => {
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
      // it prints the file's record, to which only the urls are added
      assert.match(add.stdout, /^# local\.txt\nsha256: [0-9a-f]{64}\nsize: 15\n$/);
      write(dir, { 'pkg/off/fetch': `${add.stdout}url: http://127.0.0.1:9/unreachable/local.txt\n` });
      const r = run(path.join(dir, 'pkg/off'), 'do-fetch', ['-o', '.', 'fetch'], { PEERPKGS_HOME: home });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(dir, 'pkg/off/local.txt'), 'offline source\n');
    });

    it('puts the sources into the -o directory, making it when it is not there, and refuses a file', () => {
      const file = path.join(dir, 'local.txt');
      fs.writeFileSync(file, 'to a new directory\n');
      const sha = /^sha256: (\S+)$/m.exec(peerpkgs('distfiles', 'add', file).stdout)![1]!;
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

    it("a connection to a server on the host's loopback", async () => {
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

    it("reading the host's home, /etc or the tree outside the package", () => {
      const marker = path.join(os.homedir(), `.peerpkgs-test-marker-${process.pid}`);
      fs.writeFileSync(marker, 'secret');
      try {
        write(dir, { 'outside.txt': 'secret' });
        write(
          dir,
          sandboxed(
            'peek',
            [
              `test ! -e ${marker} || exit 11`,
              `test ! -e ${path.join(dir, 'outside.txt')} || exit 12`,
              'test ! -e ../../outside.txt || exit 13',
              'test ! -e /etc/hostname || exit 14',
              'test ! -e /etc/shadow || exit 15',
              'mkdir -p $DESTDIR; echo ok >$DESTDIR/ok',
            ].join('\n'),
          ),
        );
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

  describe('the trust boundary', () => {
    const sha256 = (b: Buffer | string) => crypto.createHash('sha256').update(b).digest('hex');
    /** A source on the web server, fetched by pkg/NAME as `file`. */
    const source = (name: string, file: string, bytes: string) => {
      fs.writeFileSync(path.join(wwwDir, file), bytes);
      return { [`pkg/${name}/fetch`]: `url: ${www.url}/${file}\nsha256: ${sha256(bytes)}\n` };
    };
    const pkg = (name: string, script: string, extra: Record<string, string> = {}) => ({
      [`!pkg/${name}/build`]: `#!/bin/sh\n${script}\n`,
      [`pkg/${name}/build-deps`]: '../seed\n',
      ...extra,
    });

    it('a .do file runs only in a seed: any other package with one is a bad tree, and the .do never runs', () => {
      const marker = path.join(dir, 'ran-on-the-host');
      const evil = `touch ${marker}\ntar czf "$3" -T /dev/null\n`;
      const trees: Record<string, Record<string, string>> = {
        // a package with dependencies, a build script, or a .do of another name
        do1: { 'pkg/do1/build-deps': '../seed\n', 'pkg/do1/.pkg.tar.gz.do': evil },
        do2: { ...pkg('do2', 'mkdir -p $DESTDIR'), 'pkg/do2/.pkg.tar.gz.do': evil },
        do3: { ...pkg('do3', 'mkdir -p $DESTDIR'), 'pkg/do3/default.do': evil },
        do4: { ...pkg('do4', 'mkdir -p $DESTDIR'), 'pkg/do4/.pkghash.do': `touch ${marker}\necho x` },
      };
      for (const [name, files] of Object.entries(trees)) {
        write(dir, files);
        const r = build(`./pkg/${name}`);
        assert.equal(r.status, 4, `${name}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`pkg/${name}/[^:]*\\.do: only a seed .* may have a \\.do file`), name);
        assert.ok(!fs.existsSync(marker), `${name}: its .do ran on the host`);
      }
    });

    it('an output unpacked again after damage is what later builds see, not a cached root that links the damaged copy', () => {
      write(dir, {
        ...pkg('rd', 'mkdir -p $DESTDIR/share && echo good >$DESTDIR/share/data'),
        ...pkg('rx', 'mkdir -p $DESTDIR && cat /share/data >$DESTDIR/seen', { 'pkg/rx/build-deps': '../seed\n../rd\n' }),
      });
      assert.equal(build('./pkg/rx').status, 0);
      const out = path.join(home, 'outputs', fs.readFileSync(path.join(dir, 'pkg/rd/.pkg.tar.gz.sha256'), 'utf8').split(' ')[0]!);
      fs.chmodSync(path.join(out, 'share/data'), 0o644);
      fs.writeFileSync(path.join(out, 'share/data'), 'BAD\n'); // an edit through a venv, say
      run(dir, 'peerpkgs', ['verify'], { PEERPKGS_HOME: home });
      execFileSync('sh', ['-c', `chmod -R u+w ${out} && rm -rf ${out}`]); // removed, for the next build to unpack it again
      fs.appendFileSync(path.join(dir, 'pkg/rx/build'), 'echo again >>$DESTDIR/seen\n');
      const r = build('./pkg/rx');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(execFileSync('tar', ['-xzOf', path.join(dir, 'pkg/rx/.pkg.tar.gz'), 'seen'], { encoding: 'utf8' }), 'good\nagain\n');
    });

    it('a build cannot change a source in the distfile store', () => {
      const bytes = 'the source as published\n';
      // and may do what builds do with their own copy: change it, remove it
      write(dir, pkg('w', 'set -e\ncat src.txt\nchmod u+w src.txt\necho changed >src.txt\necho more >>src.txt\nrm src.txt\nmkdir -p $DESTDIR', source('w', 'src.txt', bytes)));
      const r = build('./pkg/w');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(fs.readFileSync(path.join(home, 'distfiles', sha256(bytes)), 'utf8'), bytes);
    });

    it('a distfile whose bytes were changed in the store is fetched again, even with its size and mtime kept', () => {
      const bytes = 'a source to damage\n';
      write(dir, pkg('d', 'mkdir -p $DESTDIR; sha256sum src2.txt >$DESTDIR/sum', source('d', 'src2.txt', bytes)));
      assert.equal(build('./pkg/d').status, 0);
      const stored = path.join(home, 'distfiles', sha256(bytes));
      const before = fs.statSync(stored);
      fs.chmodSync(stored, 0o644);
      fs.writeFileSync(stored, 'A' + bytes.slice(1));
      fs.chmodSync(stored, 0o444);
      fs.utimesSync(stored, before.atime, before.mtime);
      // built again (redo: forced), not taken from the store
      const r = run(dir, 'redo', ['pkg/d/.pkg.tar.gz'], { PEERPKGS_HOME: home });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /src2\.txt: the distfile store's copy had wrong bytes \(sha256 [0-9a-f]{64}\): removed it, fetching it again/);
      assert.equal(fs.readFileSync(stored, 'utf8'), bytes);
    });

    it('a fetch record named `build` is a bad-tree error naming both places', () => {
      write(dir, pkg('fb', 'true', { 'pkg/fb/fetch': `url: ${www.url}/seed.tar.gz\nsha256: ${seedSha}\nfile: build\n` }));
      const r = build('./pkg/fb');
      assert.equal(r.status, 4, r.stderr);
      assert.match(r.stderr, /pkg\/fb\/fetch:1: file 'build' is also the build script pkg\/fb\/build/);
    });

    it('a file in files/ with the name of a fetched source is a bad-tree error naming both places', () => {
      write(dir, pkg('ff', 'true', { 'pkg/ff/fetch': `url: ${www.url}/seed.tar.gz\nsha256: ${seedSha}\n`, 'pkg/ff/files/seed.tar.gz': 'not the seed' }));
      assert.equal(build('./pkg/seed').status, 0, 'the seed is in the distfile store');
      const r = build('./pkg/ff');
      assert.equal(r.status, 4, r.stderr);
      assert.match(r.stderr, /pkg\/ff\/files\/seed\.tar\.gz: seed\.tar\.gz is also fetched by pkg\/ff\/fetch:1/);
      assert.equal(sha256(fs.readFileSync(path.join(home, 'distfiles', seedSha))), seedSha);
    });

    it("a build gets /dev/null and one pipe, never the engine's stderr (a 0600 log file)", () => {
      const log = path.join(dir, 'build.log');
      fs.writeFileSync(log, "the user's log\n", { mode: 0o600 });
      write(
        dir,
        pkg(
          'fds',
          [
            'ls -l /proc/self/fd',
            'for n in 1 2; do test -f /proc/self/fd/$n && echo "fd $n is a file"; chmod 666 /proc/self/fd/$n; : >/proc/self/fd/$n; done',
            'echo fds-done; mkdir -p $DESTDIR',
          ].join('\n'),
        ),
      );
      const fd = fs.openSync(log, 'a');
      const r = spawnSync(path.join(BIN, 'build-packages-ifchange'), ['-v', './pkg/fds'], {
        cwd: dir,
        env: userEnv({ PEERPKGS_HOME: home }),
        stdio: ['ignore', 'pipe', fd],
        encoding: 'utf8',
      });
      fs.closeSync(fd);
      const text = read(dir, 'build.log');
      assert.equal(r.status, 0, text);
      assert.equal(fs.statSync(log).mode & 0o777, 0o600);
      assert.ok(text.startsWith("the user's log\n"), text);
      assert.match(text, /^pkg\/fds\| fds-done$/m, "with -v the build's lines are copied to the engine's stderr");
      assert.doesNotMatch(text, /is a file/);
      const links = new Map([...text.matchAll(/ (\d+) -> (.*)$/gm)].map((m) => [Number(m[1]), m[2]!]));
      assert.equal(links.get(0), '/dev/null');
      assert.equal(links.get(1), links.get(2));
      assert.doesNotMatch(links.get(1)!, /build\.log/);
      for (const [n, target] of links) if (n > 2) assert.equal(target, '/dev/null', `fd ${n}`);
    });

    it('a build under a terminal does not get the terminal', function () {
      if (spawnSync('script', ['--version']).error) {
        if (process.env.CI === 'true') throw new Error('script(1) is missing: CI must have util-linux');
        console.log('      skipped: script(1) is missing (CI=true never skips this)');
        return this.skip();
      }
      write(dir, pkg('tty', 'for n in 0 1 2; do test -t $n && echo "fd $n is a terminal"; done; echo tty-done; mkdir -p $DESTDIR'));
      const cmd = `${path.join(BIN, 'build-packages-ifchange')} -v ./pkg/tty`;
      const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: dir, env: userEnv({ PEERPKGS_HOME: home }), encoding: 'utf8', input: '' });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /tty-done/);
      assert.doesNotMatch(r.stdout, /is a terminal/);
    });

    it('a build that fills /tmp fails with a message saying its limit and how to raise it', () => {
      write(dir, pkg('tmp', 'set -e\nhead -c 500000 /dev/zero >/tmp/fits\ncat /dev/zero >/tmp/big\nmkdir -p $DESTDIR'));
      write(dir, pkg('shm', 'set -e\ncat /dev/zero >/dev/shm/big\nmkdir -p $DESTDIR'));
      write(dir, pkg('dev', 'set -e\nhead -c 1000 /dev/zero >/dev/big\nmkdir -p $DESTDIR'));
      const env = { PEERPKGS_HOME: home, PKG_SANDBOX_TMP_SIZE: '1M' };
      for (const p of ['tmp', 'shm']) {
        const r = run(dir, 'build-packages-ifchange', [`./pkg/${p}`], env);
        assert.equal(r.status, 1, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(
            `${p}: build failed \\(exit 1\\); it ran out of space in /tmp or /dev/shm, which hold at most 1M each: raise the limit with PKG_SANDBOX_TMP_SIZE=2M; its files are kept in`,
          ),
        );
      }
      const dev = run(dir, 'build-packages-ifchange', ['./pkg/dev'], env);
      assert.equal(dev.status, 1, dev.stderr);
      assert.match(dev.stderr, /Read-only file system/);
    });

    it('a package whose DESTDIR holds a symlink leading out of it is refused when packed', () => {
      write(dir, pkg('out', 'mkdir -p $DESTDIR/bin; ln -s ../../etc/passwd $DESTDIR/bin/passwd'));
      const r = build('./pkg/out');
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /cannot pack the symlink bin\/passwd -> \.\.\/\.\.\/etc\/passwd: it leads outside the archive/);
      assert.equal(exists(dir, 'pkg/out/.pkg.tar.gz'), false);
    });

    it('a build leaving read-only directories is cleaned up after, for a user who is not root', function () {
      // root removes read-only directories anyway: the build must run as someone else
      const asUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
      const probe = spawnSync(asUser[0] ?? 'bwrap', [...asUser.slice(1), ...(asUser.length ? ['bwrap'] : []), '--unshare-user', '--ro-bind', '/', '/', 'true'], {
        encoding: 'utf8',
      });
      if (probe.status !== 0) {
        const why = `an unprivileged user cannot run bwrap here (${(probe.error?.message ?? probe.stderr).trim()})`;
        if (process.env.CI === 'true') throw new Error(`${why}; CI must`);
        console.log(`      skipped: ${why} (CI=true never skips this)`);
        return this.skip();
      }
      const mine = path.join(dir, 'unprivileged');
      fs.chmodSync(dir, 0o755);
      fs.cpSync(path.join(dir, 'pkg/seed'), path.join(mine, 'pkg/seed'), { recursive: true });
      write(
        mine,
        pkg(
          'ro',
          'set -e\nmkdir -p sub/deep $DESTDIR/share/ro/deep\necho x >sub/deep/f\necho y >$DESTDIR/share/ro/deep/f\nchmod 555 sub/deep sub $DESTDIR/share/ro/deep $DESTDIR/share/ro',
        ),
      );
      if (asUser.length) spawnSync('chown', ['-R', '65534:65534', mine]);
      const userHome = path.join(mine, 'home');
      const r = spawnSync(
        asUser[0] ?? path.join(BIN, 'build-packages-ifchange'),
        [...asUser.slice(1), ...(asUser.length ? [path.join(BIN, 'build-packages-ifchange')] : []), './pkg/ro'],
        {
          cwd: mine,
          env: userEnv({ PEERPKGS_HOME: userHome, HOME: mine }),
          encoding: 'utf8',
        },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.deepEqual(fs.readdirSync(path.join(userHome, 'build')), []);
    });
  });
});
