/**
 * A package author's loop, through bin/ as a user runs it: `peerpkgs
 * shell` into a failed build's files or a fresh work directory, in the
 * build's own sandbox; `peerpkgs why` after a change; and a build closure
 * that has no shell to run the build. On the busybox seed (test/seed.ts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN, scratch, write, run, userEnv, type Run } from './helpers.ts';
import { seededTrees, writeSeedPackage, simplePackage } from './seed.ts';

describe("the package author's commands", function () {
  this.timeout(120_000);
  const t = seededTrees();

  const build = (...args: string[]): Run => run(t.dir, 'build-packages-ifchange', args, { PEERPKGS_HOME: t.home });
  const peerpkgs = (...args: string[]): Run => run(t.dir, 'peerpkgs', args, { PEERPKGS_HOME: t.home });
  const pkg = (name: string, script: string, extra: Record<string, string> = {}) => ({
    [`!pkg/${name}/build`]: `#!/bin/sh\nset -e\n${script}\n`,
    [`pkg/${name}/build-deps`]: '../seed\n',
    ...extra,
  });
  /** Work directories under the home's build/ whose name starts with NAME. */
  const workDirs = (name: string) => (fs.existsSync(path.join(t.home, 'build')) ? fs.readdirSync(path.join(t.home, 'build')).filter((n) => n.startsWith(`${name}.`)) : []);

  describe('peerpkgs shell', () => {
    it('runs a command in the files of the last failed build, and exits with its status', () => {
      write(t.dir, pkg('broken', 'echo "half done" >progress\nmkdir -p $DESTDIR/bin && echo partial >$DESTDIR/bin/tool\nexit 3'));
      const b = build('./pkg/broken');
      assert.equal(b.status, 3, b.stderr);
      assert.match(b.stderr, /broken: build failed \(exit 3\); its files are kept in \S+ until it is built again \(peerpkgs shell pkg\/broken enters them\)/);

      const cat = peerpkgs('shell', './pkg/broken', '--', 'cat', 'progress', '/destdir/bin/tool');
      assert.equal(cat.status, 0, cat.stderr);
      assert.equal(cat.stdout, 'half done\npartial\n');
      const failing = peerpkgs('shell', './pkg/broken', '--', 'sh', '-c', 'test -f progress && exit 42');
      assert.equal(failing.status, 42, failing.stderr);
      assert.equal(peerpkgs('shell', './pkg/broken', '--', 'no-such-command').status, 127);

      // once the package builds, its failure's files go, and a shell starts afresh
      write(t.dir, pkg('broken', 'mkdir -p $DESTDIR'));
      assert.equal(build('./pkg/broken').status, 0);
      assert.deepEqual(workDirs('broken'), []);
      const after = peerpkgs('shell', './pkg/broken', '--', 'ls');
      assert.equal(after.stdout, 'build\n');
    });

    it('finds the failed build of its own tree, not of a package of the same name in another', () => {
      const other = scratch();
      try {
        writeSeedPackage(other.dir, t.www.url, t.seedSha);
        write(other.dir, pkg('twin', 'echo other tree >mark\nexit 1'));
        write(t.dir, pkg('twin', 'echo this tree >mark\nexit 1'));
        assert.equal(build('./pkg/twin').status, 1);
        assert.equal(run(other.dir, 'build-packages-ifchange', ['./pkg/twin'], { PEERPKGS_HOME: t.home }).status, 1);
        assert.equal(peerpkgs('shell', './pkg/twin', '--', 'cat', 'mark').stdout, 'this tree\n');
        assert.equal(workDirs('twin').length, 2, "the other tree's build did not sweep this one's");
      } finally {
        other.cleanup();
      }
    });

    it('on a package never built: a fresh directory with its sources and files/, nothing run, removed after', () => {
      const source = 'a source\n';
      fs.writeFileSync(path.join(t.wwwDir, 'src.txt'), source);
      write(
        t.dir,
        pkg('fresh', 'touch ran\nmkdir -p $DESTDIR', {
          'pkg/fresh/fetch': `url: ${t.www.url}/src.txt\nsha256: ${crypto.createHash('sha256').update(source).digest('hex')}\n`,
          'pkg/fresh/files/patches/fix.patch': 'a patch\n',
        }),
      );
      const r = peerpkgs('shell', './pkg/fresh', '--', 'sh', '-c', 'find . /destdir | sort; cat src.txt patches/fix.patch');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, '.\n./build\n./patches\n./patches/fix.patch\n./src.txt\n/destdir\na source\na patch\n');
      assert.deepEqual(workDirs('fresh'), []);
      assert.ok(!fs.existsSync(path.join(t.dir, 'pkg/fresh/.pkg.tar.gz')), 'the package itself is not built');
    });

    it('builds the build-deps first, as a build would', () => {
      write(t.dir, simplePackage('tool', 'from the tool'));
      write(t.dir, pkg('user', 'mkdir -p $DESTDIR', { 'pkg/user/build-deps': '../seed\n../tool\n' }));
      const r = peerpkgs('shell', './pkg/user', '--', 'tool');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'from the tool\n');
      assert.ok(fs.existsSync(path.join(t.dir, 'pkg/tool/.pkg.tar.gz')));
    });

    it('sees what the build sees: environment, user, host, working directory and jobserver', () => {
      const probe = 'env | sort; id -u; hostname; pwd; test -e /proc/self/fd/7 && test -e /proc/self/fd/8 && echo jobserver fds; umask';
      write(t.dir, pkg('env', `mkdir -p $DESTDIR\n(${probe}) >$DESTDIR/seen`));
      assert.equal(build('-j2', './pkg/env').status, 0);
      const inBuild = spawnSync('tar', ['-xzOf', path.join(t.dir, 'pkg/env/.pkg.tar.gz'), 'seen'], { encoding: 'utf8' }).stdout;
      assert.match(inBuild, /^MAKEFLAGS=-j2 --jobserver-auth=7,8$/m);
      assert.match(inBuild, /^jobserver fds$/m);
      const inShell = peerpkgs('shell', '-j2', './pkg/env', '--', 'sh', '-c', probe);
      assert.equal(inShell.status, 0, inShell.stderr);
      assert.equal(inShell.stdout, inBuild);
    });

    it("without a command, runs an interactive shell on the caller's stdin", () => {
      write(t.dir, pkg('i', 'mkdir -p $DESTDIR'));
      const r = spawnSync(path.join(BIN, 'peerpkgs'), ['shell', './pkg/i'], {
        cwd: t.dir,
        env: userEnv({ PEERPKGS_HOME: t.home }),
        input: 'echo "in $(pwd) as $(id -u)"\nexit 5\n',
        encoding: 'utf8',
      });
      assert.equal(r.status, 5, r.stderr);
      assert.match(r.stdout, /in \/home\/build as 1000$/m); // after the prompt
      assert.match(r.stderr, /shell: pkg\/i: in a fresh directory/);
    });

    it('on a terminal, the interactive shell has it, with job control (^C stops its command, not the shell)', function () {
      if (spawnSync('script', ['--version']).error) {
        if (process.env.CI === 'true') throw new Error('script(1) is missing: CI must have util-linux');
        console.log('      skipped: script(1) is missing (CI=true never skips this)');
        return this.skip();
      }
      write(t.dir, pkg('tty', 'mkdir -p $DESTDIR'));
      const cmd = `${path.join(BIN, 'peerpkgs')} shell ./pkg/tty`;
      // the terminal echoes the input: what the shell prints is told apart by $((...))
      const r = spawnSync('script', ['-qec', cmd, '/dev/null'], {
        cwd: t.dir,
        env: userEnv({ PEERPKGS_HOME: t.home }),
        encoding: 'utf8',
        input: 'set -o | grep monitor; test -t 0 && test -t 1 && echo "terminal $((6*7))"; exit 3\n',
      });
      assert.equal(r.status, 3, r.stdout + r.stderr);
      assert.match(r.stdout, /^monitor\s+on\r?$/m);
      assert.match(r.stdout, /^terminal 42\r?$/m);
    });

    it('refuses a bad command line with usage and bad-tree statuses, and answers --help', () => {
      assert.equal(peerpkgs('shell').status, 2);
      assert.equal(peerpkgs('shell', './pkg/seed', './pkg/seed').status, 2);
      const seed = peerpkgs('shell', './pkg/seed');
      assert.equal(seed.status, 2);
      assert.match(seed.stderr, /pkg\/seed is made by its \.pkg\.tar\.gz\.do on the host, not built in a sandbox/);
      fs.mkdirSync(path.join(t.dir, 'pkg/none'));
      assert.equal(peerpkgs('shell', './pkg/none').status, 4);
      const help = peerpkgs('shell', '--help');
      assert.equal(help.status, 0);
      assert.match(help.stdout, /^usage: peerpkgs shell \[-j N\] PKGDIR \[-- CMD\.\.\.\]/);
    });
  });

  describe('peerpkgs why', () => {
    it('names the dependency whose build script changed, and its changed line', () => {
      write(t.dir, simplePackage('a', 'a'));
      write(t.dir, simplePackage('b', 'b', { 'pkg/b/run-deps': '../a\n' }));
      assert.equal(build('./pkg/b').status, 0);
      const before = fs.readFileSync(path.join(t.dir, 'pkg/a/build'));
      fs.appendFileSync(path.join(t.dir, 'pkg/a/build'), '# a comment is a change\n');
      const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
      const r = peerpkgs('why', './pkg/b');
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.split('\n');
      assert.match(lines[0]!, /^pkg\/b would be rebuilt: its pkghash was [0-9a-f]{64} when built \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\), and is now [0-9a-f]{64}$/);
      assert.match(lines[1]!, /^ {2}- run-dep "a" [0-9a-f]{64}$/);
      assert.match(lines[2]!, /^ {2}\+ run-dep "a" [0-9a-f]{64}$/);
      assert.equal(lines[3], `      - script "build" 100755 ${sha(before)}`);
      assert.equal(lines[4], `      + script "build" 100755 ${sha(fs.readFileSync(path.join(t.dir, 'pkg/a/build')))}`);
      assert.equal(lines.length, 6, r.stdout);
    });

    it('follows changes down through dependencies of dependencies, saying a pair seen once "as above"', () => {
      write(t.dir, simplePackage('a', 'a'));
      write(t.dir, simplePackage('b', 'b', { 'pkg/b/run-deps': '../a\n' }));
      write(t.dir, simplePackage('c', 'c', { 'pkg/c/run-deps': '../b\n' }));
      assert.equal(build('./pkg/c').status, 0);
      fs.appendFileSync(path.join(t.dir, 'pkg/a/build'), '# changed\n');
      // another seed tarball: every package builds on the seed
      write(t.dir, { 'pkg/seed/fetch': `url: ${t.www.url}/seed.tar.gz\nsha256: ${'0'.repeat(64)}\n` });
      const r = peerpkgs('why', './pkg/c');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(
        r.stdout.replace(/[0-9a-f]{64}/g, 'H').replace(/\(\d{4}-[^)]*\)/, '(DATE)'),
        [
          'pkg/c would be rebuilt: its pkghash was H when built (DATE), and is now H',
          '  - build-dep "seed" H',
          '  + build-dep "seed" H',
          '      - fetch "seed.tar.gz" H',
          '      + fetch "seed.tar.gz" H',
          '  - run-dep "b" H',
          '  + run-dep "b" H',
          '      - build-dep "seed" H',
          '      + build-dep "seed" H',
          '          (as above)',
          '      - run-dep "a" H',
          '      + run-dep "a" H',
          '          - script "build" 100755 H',
          '          + script "build" 100755 H',
          '          - build-dep "seed" H',
          '          + build-dep "seed" H',
          '              (as above)',
          '',
        ].join('\n'),
      );
    });

    it('says an unchanged package would not be rebuilt, and a new one was never built', () => {
      write(t.dir, simplePackage('a', 'a'));
      write(t.dir, simplePackage('n', 'n'));
      assert.equal(build('./pkg/a').status, 0);
      const hash = fs.readFileSync(path.join(t.dir, 'pkg/a/.pkghash'), 'utf8').trim();
      const r = peerpkgs('why', './pkg/a', './pkg/n');
      assert.equal(r.status, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(`^pkg/a would not be rebuilt: pkghash ${hash} unchanged since \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC\npkg/n would be built: never built`),
      );
    });

    it('refuses a path that is not a package (exit 4) and no path (exit 2)', () => {
      assert.equal(peerpkgs('why').status, 2);
      const r = peerpkgs('why', './pkg/nothing');
      assert.equal(r.status, 4);
      assert.match(r.stderr, /pkg\/nothing: not a package directory/);
    });
  });

  describe('a build closure with no shell', () => {
    it('empty build-deps: a bad tree, said before bwrap runs, by build and shell', () => {
      write(t.dir, { '!pkg/e/build': '#!/bin/sh\nmkdir -p $DESTDIR\n' });
      for (const r of [build('./pkg/e'), peerpkgs('shell', './pkg/e', '--', 'true')]) {
        assert.equal(r.status, 4, r.stderr);
        assert.match(r.stderr, /e has no build-deps, so its sandbox has no \/bin\/sh to run the build: add \.\.\/seed to pkg\/e\/build-deps/);
        assert.doesNotMatch(r.stderr, /bwrap|execvp/);
      }
    });

    it('build-deps whose closure has no /bin/sh: a bad tree naming them', () => {
      write(t.dir, pkg('data', 'mkdir -p $DESTDIR/share && echo x >$DESTDIR/share/x'));
      write(t.dir, { '!pkg/p/build': '#!/bin/sh\nmkdir -p $DESTDIR\n', 'pkg/p/build-deps': '../data\n' });
      const r = build('./pkg/p');
      assert.equal(r.status, 4, r.stderr);
      assert.match(r.stderr, /p: its build closure \(data\) has no \/bin\/sh to run the build: add \.\.\/seed to pkg\/p\/build-deps/);
      assert.doesNotMatch(r.stderr, /bwrap|execvp/);
    });
  });
});
