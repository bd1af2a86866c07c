/**
 * What a package author sees of a build: the progress lines on stderr
 * (plain without a terminal, a live status line with one), the tail of a
 * failed build's log with the commands that look into it, -v, and the
 * logs kept under $PEERPKGS_HOME/logs that `peerpkgs log` prints. Real
 * builds in real sandboxes, driven through bin/.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { BIN, scratch, write, run, userEnv, type Run } from './helpers.ts';
import { seededTrees, simplePackage } from './seed.ts';
import { startNginx } from './nginx.ts';
import { formatBytes } from '../src/fetch/progress.ts';

/* eslint-disable no-control-regex -- what must not be printed */
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;
/* eslint-enable no-control-regex */

describe('build logs and progress', function () {
  this.timeout(120_000);
  const tree = seededTrees();
  let dir: string;
  let home: string;
  beforeEach(() => {
    dir = tree.dir;
    // a home a test: the logs each test counts are its own
    home = path.join(dir, 'home');
  });

  const build = (args: string[], env: NodeJS.ProcessEnv = {}): Run => run(dir, 'build-packages-ifchange', args, { PEERPKGS_HOME: home, ...env });
  const peerpkgs = (args: string[], env: NodeJS.ProcessEnv = {}): Run => run(dir, 'peerpkgs', args, { PEERPKGS_HOME: home, ...env });
  /** A package whose build prints `out N` for N in 1..lines (one with an escape), then exits with `status`. */
  const noisy = (name: string, lines: number, status = 0) =>
    write(dir, {
      [`!pkg/${name}/build`]: `#!/bin/sh\ni=1; while [ $i -le ${lines} ]; do echo "out $i"; i=$((i+1)); done\nprintf 'esc \\033[2J end\\n' >&2\nmkdir -p "$DESTDIR/bin"\nexit ${status}\n`,
      [`pkg/${name}/build-deps`]: '../seed\n',
    });
  const logsOf = (name: string): string[] => {
    const root = path.join(home, 'logs');
    const d = fs.existsSync(root) ? fs.readdirSync(root).find((n) => n.startsWith(`${name}-`)) : undefined;
    // the logs and `last`; `package` names whose they are (for gc)
    return d
      ? fs
          .readdirSync(path.join(root, d))
          .filter((n) => n !== 'package')
          .sort()
      : [];
  };

  it("keeps a failed build's log, shows its last lines and the commands, and peerpkgs log prints all of it", () => {
    noisy('bad', 30, 3);
    const r = build(['./pkg/bad']);
    assert.equal(r.status, 3, r.stderr);
    assert.doesNotMatch(r.stderr, CONTROL, 'no control codes without a terminal');
    assert.match(r.stderr, /^\[0\/2 \d+:\d\d\] pkg\/seed: building\n(?:fetch.*\n)*\[1\/2 \d+:\d\d\] pkg\/seed: built in \d+\.\ds$/m, "a seed's .do is a package build too");
    assert.match(r.stderr, /^\[1\/2 \d+:\d\d\] pkg\/bad: building$/m);
    assert.match(r.stderr, /^\[\d\/2 \d+:\d\d\] pkg\/bad: failed \(exit 3\) after \d+\.\ds$/m);
    // the last 20 lines only, escaped, the build's lines streamed nowhere else
    assert.match(r.stderr, /^ {2}\| out 12\n(?: {2}\| out \d+\n){18} {2}\| esc \\u001b\[2J end$/m);
    assert.doesNotMatch(r.stderr, /out 11$/m);
    assert.match(r.stderr, /^ {2}peerpkgs log \.\/pkg\/bad /m);
    assert.match(r.stderr, /^ {2}peerpkgs shell \.\/pkg\/bad /m);
    assert.match(r.stderr, /^1 package built, 1 failed in \d/m);

    const logs = logsOf('bad');
    assert.equal(logs.length, 3, logs.join(' '));
    assert.match(logs[0]!, /^\d{8}T\d{9}Z-failed\.log\.gz$/);
    assert.equal(logs[1], logs[0]!.replace('.log.gz', '.times.gz'), 'its times beside it');
    assert.equal(logs[2], 'last');
    const shown = peerpkgs(['log', './pkg/bad']);
    assert.equal(shown.status, 0, shown.stderr);
    const all = Array.from({ length: 30 }, (_, i) => `out ${i + 1}\n`).join('') + 'esc \x1b[2J end\n';
    assert.equal(shown.stdout, all, 'the raw bytes, all of them');
    // from inside the package's directory too
    assert.equal(run(path.join(dir, 'pkg/bad'), 'peerpkgs', ['log', '.'], { PEERPKGS_HOME: home }).stdout, all);
  });

  it('a package whose dependency failed says so in one line, and is counted apart', () => {
    noisy('bad', 1, 3);
    write(dir, simplePackage('top', 'top', { 'pkg/top/build-deps': '../seed\n../bad\n' }));
    const r = build(['./pkg/top']);
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /^\[3\/3 [\d:]+\] pkg\/top: not built: pkg\/bad failed$/m);
    assert.equal(r.stderr.match(/peerpkgs log/g)?.length, 1, 'the commands for the failed build alone');
    assert.match(r.stderr, /^1 package built, 1 failed, 1 not built in /m);
  });

  it("keeps a successful build's log; --list names each kept log and how its build ended", () => {
    noisy('a', 3);
    assert.equal(build(['./pkg/a']).status, 0);
    const shown = peerpkgs(['log', './pkg/a']);
    assert.equal(shown.status, 0, shown.stderr);
    assert.match(shown.stdout, /^out 1\nout 2\nout 3\n/);
    const list = peerpkgs(['log', '--list', './pkg/a']);
    assert.match(list.stdout, /^\d{4}-\d\d-\d\dT[\d:.]+Z {2}ok {6}\S+-ok\.log\.gz\n$/);
    const file = list.stdout.trim().split(/\s+/).at(-1)!;
    assert.match(zlib.gunzipSync(fs.readFileSync(file)).toString(), /^out 1\n/, 'gzip-compressed');
  });

  it('--times puts when each line came beside it, and --phases adds a build up by what its steps do', () => {
    // a configure and a make that take the time they are told: each step's share is known from below
    write(dir, {
      '!pkg/steps/build': '#!/bin/sh\nset -eux\n./configure --prefix=/usr\nCFLAGS=-O2 ./make -j2\n./make check\n./make install DESTDIR="$DESTDIR"\n',
      'pkg/steps/build-deps': '../seed\n',
      '!pkg/steps/files/configure': '#!/bin/sh\nsleep 0.2\necho configured\n',
      '!pkg/steps/files/make':
        '#!/bin/sh\ncase $1 in\ncheck) sleep 0.6; echo "all 3 tests passed" ;;\ninstall) mkdir -p "${2#DESTDIR=}/share"; echo made >"${2#DESTDIR=}/share/made" ;;\n*) sleep 0.4 ;;\nesac\n',
    });
    const b = build(['./pkg/steps']);
    assert.equal(b.status, 0, b.stderr);

    const timed = peerpkgs(['log', '--times', './pkg/steps']);
    assert.equal(timed.status, 0, timed.stderr);
    const rows = timed.stdout.trimEnd().split('\n');
    const lines = rows.map((r) => /^ *(\d+\.\d{3}) {2}(.*)$/.exec(r));
    assert.ok(
      lines.every((m) => m),
      timed.stdout,
    );
    assert.deepEqual(
      lines.map((m) => m![2]),
      peerpkgs(['log', './pkg/steps']).stdout.trimEnd().split('\n'),
      'the same lines as without --times',
    );
    // in whole milliseconds, as the log gives them: 0.288 - 0.088 is 0.19999… in floating point.
    // A line's time is when the engine read it from the pipe: one read late (the engine
    // busy, or not scheduled) shortens the gap after it, so each gap may fall short of its
    // step's sleep by SLACK; a line given to the wrong step would be 200 ms or more off
    const SLACK = 50;
    const at = (text: string) => Math.round(Number(lines.find((m) => m![2] === text)![1]) * 1000);
    assert.ok(at('+ CFLAGS=-O2 ./make -j2') - at("+ ./configure '--prefix=/usr'") >= 200 - SLACK, timed.stdout);
    assert.ok(at('+ ./make check') - at('+ CFLAGS=-O2 ./make -j2') >= 400 - SLACK, timed.stdout);

    const phases = peerpkgs(['log', '--phases', '--json', './pkg/steps', './pkg/seed']);
    assert.equal(phases.status, 0, phases.stderr);
    const j = JSON.parse(phases.stdout) as { packages: Array<{ package: string; ms: Record<string, number> }>; notLogged: string[] };
    assert.deepEqual(j.notLogged, ['pkg/seed'], "a seed's .do keeps no log");
    const ms = j.packages[0]!.ms;
    assert.equal(j.packages[0]!.package, 'pkg/steps');
    assert.ok(ms.configure! >= 200 - SLACK && ms.compile! >= 400 - SLACK && ms.test! >= 600 - SLACK, JSON.stringify(ms));
    const parts = ['sandbox', 'sources', 'unpack', 'configure', 'compile', 'test', 'install', 'other', 'pack'].map((k) => ms[k]!);
    assert.ok(Math.abs(parts.reduce((a, b) => a + b) - ms.total!) <= parts.length, `the columns add up to the total: ${JSON.stringify(ms)}`);

    const table = peerpkgs(['log', '--phases', './pkg/steps']);
    assert.match(table.stdout, /^ +total s +sandbox +sources +unpack +configure +compile +test +install +other +pack\npkg\/steps +(\d+\.\d +){9}\d+\.\d\nshare +100%/);
    const none = peerpkgs(['log', '--phases', './pkg/seed']);
    assert.equal(none.status, 11, none.stderr);
    assert.match(none.stderr, /no build of it is logged with its times/);
  });

  it('keeps PKG_LOG_KEEP logs a package, the newest, and refuses a count that is no count', () => {
    noisy('a', 1);
    const env = { PKG_LOG_KEEP: '2' };
    for (let i = 0; i < 3; i++) {
      // redo builds it again whatever is up to date
      const r = run(dir, 'redo', ['pkg/a/.pkg.tar.gz'], { PEERPKGS_HOME: home, ...env });
      assert.equal(r.status, 0, r.stderr);
    }
    const logs = logsOf('a');
    assert.equal(logs.filter((n) => n.endsWith('-ok.log.gz')).length, 2, logs.join(' '));
    assert.equal(logs.filter((n) => n.endsWith('-ok.times.gz')).length, 2, `the times of the logs that went go too: ${logs.join(' ')}`);
    const list = peerpkgs(['log', '--list', './pkg/a'], env).stdout.trim().split('\n');
    assert.equal(list.length, 2);
    assert.equal(
      fs.readlinkSync(
        path.join(
          home,
          'logs',
          fs.readdirSync(path.join(home, 'logs')).find((n) => n.startsWith('a-'))!,
          'last',
        ),
      ),
      path.basename(list[1]!.split(/\s+/).at(-1)!),
      'last names the newest',
    );
    for (const bad of ['0', 'many', '-1']) {
      const r = build(['./pkg/a'], { PKG_LOG_KEEP: bad });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /PKG_LOG_KEEP=.*: expected a whole number of at least 1/);
    }
  });

  it('a build killed mid-way leaves no half log as the last one, and the next build sweeps it', async () => {
    write(dir, {
      '!pkg/a/build': '#!/bin/sh\necho started\nsleep 60\nmkdir -p "$DESTDIR"\n',
      'pkg/a/build-deps': '../seed\n',
    });
    // its own process group, so that the kill reaches the sandbox too
    const p = spawn(path.join(BIN, 'build-packages-ifchange'), ['./pkg/a'], { cwd: dir, env: userEnv({ PEERPKGS_HOME: home }), detached: true, stdio: 'ignore' });
    const exited = new Promise((r) => p.on('close', r));
    const temporaries = () => logsOf('a').filter((n) => n.includes('.tmp-'));
    // the log is opened as the build begins; the link naming the package is
    // made under a temporary name just before, and is no sign of the log
    const halfLogs = () => temporaries().filter((n) => n.startsWith('.log.gz.tmp-'));
    for (let i = 0; halfLogs().length === 0; i++) {
      assert.ok(i < 600, 'the build never began');
      await new Promise((r) => setTimeout(r, 50));
    }
    process.kill(-p.pid!, 'SIGKILL');
    await exited;
    assert.deepEqual(temporaries(), halfLogs(), 'nothing but the half log is left under a temporary name');
    assert.equal(halfLogs().length, 1, 'the half log, under its temporary name');
    assert.equal(peerpkgs(['log', './pkg/a']).status, 11, 'is no log of a build');
    write(dir, { '!pkg/a/build': '#!/bin/sh\necho again\nmkdir -p "$DESTDIR"\n' });
    assert.equal(build(['./pkg/a']).status, 0);
    assert.deepEqual(temporaries(), [], 'swept, its owner dead');
    assert.equal(peerpkgs(['log', './pkg/a']).stdout, 'again\n');
  });

  it('says in one line, exit 11, that no build of a package is logged', () => {
    write(dir, simplePackage('never', 'x'));
    const r = peerpkgs(['log', './pkg/never']);
    assert.equal(r.status, 11, r.stderr);
    assert.equal(r.stderr, 'peerpkgs: pkg/never: no build of it is logged (not built here yet, substituted from a cache, or a seed taken by its .do)\n');
    assert.match(peerpkgs(['log', '--help']).stdout, /^usage: peerpkgs log \[--list \| --times\] PKGDIR\n {7}peerpkgs log --phases \[--json\] PKGDIR\.\.\.\n/);
    for (const bad of [[], ['./pkg/never', './pkg/seed'], ['--frob', './pkg/never']]) {
      const u = peerpkgs(['log', ...bad]);
      assert.equal(u.status, 2, u.stderr);
      assert.match(u.stderr, /\(see peerpkgs log --help\)\n$/);
    }
    assert.equal(peerpkgs(['log', './pkg/nothere']).status, 4, 'not a package directory: a bad tree');
  });

  it('shows one line a package as it begins and ends, and the plural right', () => {
    write(dir, simplePackage('a', 'a'));
    write(dir, simplePackage('b', 'b', { 'pkg/b/run-deps': '../a\n' }));
    const r = build(['-j2', './pkg/b']);
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, CONTROL);
    for (const p of ['a', 'b']) {
      assert.equal(r.stderr.match(new RegExp(`^\\[\\d/3 \\d+:\\d\\d\\] pkg/${p}: building$`, 'gm'))?.length, 1, r.stderr);
      assert.equal(r.stderr.match(new RegExp(`^\\[\\d/3 \\d+:\\d\\d\\] pkg/${p}: built in \\d+\\.\\ds$`, 'gm'))?.length, 1, r.stderr);
    }
    assert.match(r.stderr, /^\[3\/3 [\d:]+\] pkg\/b: built in/m, 'the last line counts all');
    assert.match(r.stderr, /^3 packages built in /m);
    write(dir, simplePackage('b', 'b2', { 'pkg/b/run-deps': '../a\n' }));
    const again = build(['./pkg/b']);
    assert.match(again.stderr, /^1 package built, 2 up to date in /m);
    assert.equal(build(['./pkg/b']).stderr, '', 'nothing to do, nothing said');
  });

  it("-v shows every build's lines after its package's name", () => {
    noisy('a', 2);
    noisy('b', 2);
    const r = build(['-v', '-j2', './pkg/a', './pkg/b']);
    assert.equal(r.status, 0, r.stderr);
    for (const p of ['a', 'b']) {
      // in the order they came, the lines of builds running at once interleaved
      const lines = r.stderr.split('\n').filter((l) => l.startsWith(`pkg/${p}| `));
      assert.deepEqual(lines.slice(0, 2), [`pkg/${p}| out 1`, `pkg/${p}| out 2`], r.stderr);
      assert.match(r.stderr, new RegExp(`^pkg/${p}\\| esc \\\\u001b\\[2J end$`, 'm'));
      assert.match(r.stderr, new RegExp(`^pkg/${p}: 1 file, output [0-9a-f]{16}…$`, 'm'), "the rules' notes");
    }
    assert.doesNotMatch(build(['./pkg/a']).stderr, /out 1/);
  });

  it('a substituted package gets one line; on a terminal, its archive coming is in the status line', async function () {
    write(dir, simplePackage('a', 'a'));
    assert.equal(peerpkgs(['key', 'generate', 'me']).status, 0);
    const cacheDir = path.join(dir, 'cache');
    assert.equal(run(dir, 'add-to-package-cache', ['-o', cacheDir, '--sign-key', 'me', './pkg/a'], { PEERPKGS_HOME: home }).status, 0);
    const nginx = await startNginx(cacheDir);
    const other = scratch();
    try {
      // the tree without what was built in it, in a checkout of its own
      const checkout = (to: string) => {
        for (const p of ['a', 'seed'])
          fs.cpSync(path.join(dir, 'pkg', p), path.join(to, 'pkg', p), { recursive: true, filter: (f) => !/\.pkg\.tar\.gz(\.sha256)?$|\.pkghash$/.test(f) });
      };
      checkout(other.dir);
      const env = { PEERPKGS_HOME: path.join(other.dir, 'home'), PKG_CACHE_URL: nginx.url, PKG_TRUSTED_KEYS: path.join(home, 'keys/me.pub'), PKG_FORCE_BINARY: 'yes' };
      const r = run(other.dir, 'build-packages-ifchange', ['./pkg/a'], env);
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stderr.split('\n').filter((l) => l.includes('pkg/a'));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /^\[1\/2 [\d:]+\] pkg\/a: substituted from http:\/\/127\.0\.0\.1:\d+ \(signed by ed25519:[0-9a-f]{16}\)$/);
      assert.match(r.stderr, /^1 package substituted in /m);

      if (spawnSync('script', ['--version']).error) {
        if (process.env.CI === 'true') throw new Error('script(1) is missing: CI must have util-linux');
        return this.skip();
      }
      const size = formatBytes(fs.statSync(path.join(dir, 'pkg/a/.pkg.tar.gz')).size);
      const second = path.join(other.dir, 'second');
      checkout(second);
      const tty = spawnSync('script', ['-qfec', `${path.join(BIN, 'build-packages-ifchange')} ./pkg/a`, '/dev/null'], {
        cwd: second,
        env: userEnv({ ...env, PEERPKGS_HOME: path.join(second, 'home') }),
        encoding: 'utf8',
        input: '',
      });
      assert.equal(tty.status, 0, tty.stdout + tty.stderr);
      /* eslint-disable no-control-regex -- the terminal's codes are the point */
      assert.match(tty.stdout, new RegExp(`\\r\\[0/2 [\\d:]+\\] fetching pkg/a [\\d.]+ (B|KiB)/${size.replace('.', '\\.')}\\x1b\\[K`), 'the status line');
      assert.match(tty.stdout, /\r\x1b\[K\[1\/2 [\d:]+\] pkg\/a: substituted from /, 'the line that stays clears it first');
      /* eslint-enable no-control-regex */
    } finally {
      await nginx.stop();
      other.cleanup();
    }
  });

  it('on a terminal, draws a status line in place of what builds now', function () {
    if (spawnSync('script', ['--version']).error) {
      if (process.env.CI === 'true') throw new Error('script(1) is missing: CI must have util-linux');
      return this.skip();
    }
    const source = crypto.randomBytes(100_000);
    fs.writeFileSync(path.join(tree.wwwDir, `src-${process.pid}.bin`), source);
    write(dir, {
      '!pkg/slow/build': '#!/bin/sh\necho slow-line\nsleep 2\nmkdir -p "$DESTDIR"\n',
      'pkg/slow/build-deps': '../seed\n',
      'pkg/slow/fetch': `url: ${tree.www.url}/src-${process.pid}.bin\nsha256: ${crypto.createHash('sha256').update(source).digest('hex')}\n`,
    });
    const cmd = `${path.join(BIN, 'build-packages-ifchange')} ./pkg/slow`;
    const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], { cwd: dir, env: userEnv({ PEERPKGS_HOME: home }), encoding: 'utf8', input: '' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    /* eslint-disable no-control-regex -- the terminal's codes are the point */
    assert.match(r.stdout, /\r\[1\/2 [\d:]+\] building pkg\/slow \d+\.\ds\x1b\[K/, 'the status line');
    assert.match(r.stdout, /\r\x1b\[K\[2\/2 [\d:]+\] pkg\/slow: built in/, 'a line that stays clears it first');
    /* eslint-enable no-control-regex */
    assert.doesNotMatch(r.stdout, /slow-line/, 'build lines go to the log only');
    assert.match(r.stdout, /^fetching src-\d+\.bin \(97\.7 KiB\) from http:\S+\r\nfetched src-\d+\.bin: /m, 'a download in plain lines, under no second status line');
  });
});

describe('what a build step does, by its shell trace', () => {
  it('counts each traced command of a real build script by what it does', async () => {
    const { stepOf } = await import('../src/store/log-phases.ts');
    const cases: Array<[string, string]> = [
      ['tar -xJf binutils_2.40.orig.tar.xz', 'unpack'],
      ['patch -p1 -i ../musl-gcc3.patch', 'unpack'],
      ["CC=cc CFLAGS=-O2 ./configure '--prefix=/usr' --disable-nls", 'configure'],
      ["../gcc-12.2.0/configure '--prefix=/usr'", 'configure'],
      ["CC=cc CXX=c++ ./bootstrap '--prefix=/usr' '--parallel=2'", 'configure'],
      ['cmake -G Ninja ..', 'configure'],
      ['cmake --build b', 'compile'],
      ["make -j2 'MAKEINFO=true'", 'compile'],
      ['make', 'compile'],
      ['cc -O2 -o t t.c', 'compile'],
      ['make -j2 check', 'test'],
      ["make test 'CC=cc'", 'test'],
      ['bin/ctest -j2 --output-on-failure', 'test'],
      ['./testfixture test/where.test', 'test'],
      ['./python -m test -j2 test_json', 'test'],
      ["make install 'DESTDIR=/destdir'", 'install'],
      ['make install-binaries install-libraries', 'install'],
      ['cd gcc-12.2.0', 'other'],
      ['rm -rf /destdir/usr/share', 'other'],
    ];
    assert.deepEqual(
      cases.map(([line]) => [line, stepOf(line)]),
      cases,
    );
  });
});
