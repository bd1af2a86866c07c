/**
 * The command frame: every command in bin/ and every peerpkgs subcommand
 * answers --help with its own usage, a usage error is exit 2 whichever
 * command meets it, and a build stopped by a signal exits as a shell
 * reports that signal.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN, run, scratch, userEnv, write } from './helpers.ts';
import { startDaemon } from './ipfs-peer.ts';
import { EXIT, PeerpkgsError, SIGNAL_EXIT, UsageError, explain } from '../src/errors.ts';
import { TreeError } from '../src/tree/errors.ts';
import { FetchError } from '../src/fetch/fetch.ts';
import { IpfsError, IpfsNotFound, IpfsUnreachable } from '../src/ipfs/errors.ts';
import { KeyError, TrustListError } from '../src/cache/keys.ts';
import { SettingsError, VARIABLES } from '../src/settings.ts';

/** Subcommands of subcommands: each has a --help of its own. */
const SUB_SUBCOMMANDS = [
  ['key', 'generate'],
  ['key', 'list'],
  ['key', 'trust'],
  ['cache', 'add'],
  ['cache', 'publish'],
  ['export', 'tarball'],
  ['export', 'oci'],
  ['mirrors', 'import'],
  ['mirrors', 'pin'],
  ['mirrors', 'pin-all'],
  ['ipfs', 'cat'],
  ['ipfs', 'get'],
  ['ipfs', 'ls'],
  ['ipfs', 'pin'],
  ['ipfs', 'add'],
  ['ipfs', 'daemon'],
  ['ipfs', 'publish'],
  ['ipfs', 'resolve'],
  ['seed', 'reproduce'],
  ['distfiles', 'add'],
] as const;

const SUBCOMMANDS = [
  'build',
  'fetch',
  'new',
  'graph',
  'info',
  'search',
  'check',
  'distfiles',
  'verify',
  'venv',
  'export',
  'sbom',
  'cache',
  'key',
  'ipfs',
  'seed',
  'mirrors',
  'config',
];

/** A command line each command refuses as a usage error. */
const MISUSE: Record<string, string[]> = {
  new: [],
  'new-package': [],
  'redo-whichdo': [],
  'redo-always': ['x'],
  'redo-flush-cache': ['x'],
  'redo-targets': ['x'],
  'redo-sources': ['x'],
  'redo-ood': ['x'],
};

// they read the state under the current directory, and nothing else
const READS_NO_VARIABLE = new Set(['redo-targets', 'redo-sources', 'redo-ood', 'redo-whichdo']);

// names only, and outside a build nothing to refuse
const NO_USAGE_ERROR = new Set(['redo-ifcreate', 'redo-stamp']);

describe('the command frame', function () {
  this.timeout(120_000);
  let s: ReturnType<typeof scratch>;
  before(() => (s = scratch()));
  after(() => s.cleanup());

  const commands = fs.readdirSync(BIN).sort();

  describe('--help', () => {
    for (const cmd of commands) {
      it(`${cmd} --help shows ${cmd}'s own usage`, () => {
        const r = run(s.dir, cmd, ['--help'], { PEERPKGS_HOME: path.join(s.dir, 'home') });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`^usage: ${cmd}[ \\n]`));
        if (!READS_NO_VARIABLE.has(cmd)) assert.match(r.stdout, /^Environment\b/m, 'names the variables it reads');
      });
    }
    for (const sub of SUBCOMMANDS) {
      it(`peerpkgs ${sub} --help shows its own usage`, () => {
        const r = run(s.dir, 'peerpkgs', [sub, '--help'], { PEERPKGS_HOME: path.join(s.dir, 'home') });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`^usage: peerpkgs ${sub}[ \\n]`));
      });
    }
    for (const [sub, subsub] of SUB_SUBCOMMANDS) {
      it(`peerpkgs ${sub} ${subsub} --help shows its own usage and the variables it reads`, () => {
        const r = run(s.dir, 'peerpkgs', [sub, subsub, '--help'], { PEERPKGS_HOME: path.join(s.dir, 'home') });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`^usage: peerpkgs ${sub} ${subsub}[ \\n]`));
        assert.match(r.stdout, /^Environment: .*PEERPKGS_HOME|^Environment: PKG_IPFS_PEERS/m);
      });
    }
    it('peerpkgs --help lists every command, and every variable settings.ts reads with what it sets', () => {
      const r = run(s.dir, 'peerpkgs', ['--help']);
      assert.equal(r.status, 0, r.stderr);
      for (const sub of SUBCOMMANDS) assert.match(r.stdout, new RegExp(`^  ${sub} `, 'm'));
      // what settings.ts reads from the environment, each in its one list
      const source = fs.readFileSync(path.join(BIN, '../src/settings.ts'), 'utf8');
      const read = new Set([...source.matchAll(/\benv\.((?:PKG|PEERPKGS)_[A-Z_]+)\b/g)].map((m) => m[1]!));
      assert.ok(read.size > 10);
      assert.deepEqual(
        [...read].filter((v) => !(v in VARIABLES)),
        [],
        'read but not listed in VARIABLES',
      );
      for (const [v, what] of Object.entries(VARIABLES)) assert.ok(r.stdout.includes(`  ${v.padEnd(23)} ${what}\n`), `${v} is not in peerpkgs --help`);
    });
  });

  describe('exit statuses', () => {
    for (const cmd of commands.filter((c) => c !== 'peerpkgs' && !NO_USAGE_ERROR.has(c))) {
      it(`a usage error of ${cmd} is exit 2 and points to ${cmd} --help`, () => {
        const r = run(s.dir, cmd, MISUSE[cmd] ?? ['--no-such-option'], { PEERPKGS_HOME: path.join(s.dir, 'home') });
        assert.equal(r.status, EXIT.usage, r.stderr);
        assert.match(r.stderr, new RegExp(`see ${cmd} --help`));
      });
    }
    for (const sub of SUBCOMMANDS) {
      it(`a usage error of peerpkgs ${sub} is exit 2`, () => {
        const r = run(s.dir, 'peerpkgs', [sub, ...(MISUSE[sub] ?? ['--no-such-option'])], { PEERPKGS_HOME: path.join(s.dir, 'home') });
        assert.equal(r.status, EXIT.usage, r.stderr);
        assert.match(r.stderr, /see peerpkgs .*--help/);
      });
    }

    it('maps every error to one line and its row of the table', () => {
      const cases: Array<[unknown, number]> = [
        [new UsageError('bad'), 2],
        [new SettingsError('PKG_X: bad'), 2],
        [new TreeError('pkg/a/build-deps:1: no such package'), 4],
        [new FetchError([]), 5],
        [new IpfsNotFound('gone'), 7],
        [new IpfsUnreachable('far'), 8],
        [new PeerpkgsError('damaged', EXIT.damaged), 9],
        [new Error('a bug'), 1],
      ];
      for (const [e, code] of cases) assert.equal(explain(e, 'cmd').exitCode, code, String(e));
      assert.equal(explain(new UsageError('bad'), 'peerpkgs build').message, 'bad (see peerpkgs build --help)');
      // a stable name, the class's own
      for (const [e, name] of [
        [new TreeError('x'), 'TreeError'],
        [new KeyError('x'), 'KeyError'],
        [new TrustListError('x'), 'TrustListError'],
        [new IpfsError('x'), 'IpfsError'],
        [new IpfsNotFound('x'), 'IpfsNotFound'],
      ] as const)
        assert.equal(e.name, name);
      assert.equal(explain(new TrustListError('x'), 'cmd').exitCode, 2);
    });

    it('a missing build-dep is exit 4 (a bad tree) from every command that meets it', () => {
      const tree = path.join(s.dir, 'missing-dep');
      write(tree, { '!pkg/a/build': '#!/bin/sh\nmkdir -p "$DESTDIR"\n', 'pkg/a/build-deps': '../nothere\n' });
      const home = { PEERPKGS_HOME: path.join(tree, 'home') };
      const lines: Array<[string, ...string[]]> = [
        ['build-packages-ifchange', './pkg/a'],
        ['peerpkgs', 'build', './pkg/a'],
        ['peerpkgs', 'info', './pkg/a'],
        ['peerpkgs', 'graph', './pkg/a'],
        ['venv', '-o', 'v', './pkg/a'],
        ['peerpkgs', 'export', 'tarball', '-o', 'a.tar.gz', './pkg/a'],
        ['peerpkgs', 'sbom', './pkg/a'],
        ['peerpkgs', 'check', './pkg/a'],
        ['add-to-package-cache', '-o', 'cache', './pkg/a'],
        ['redo-ifchange', 'pkg/a/.pkg.tar.gz'],
      ];
      for (const [cmd, ...args] of lines) {
        const r = run(tree, cmd, args, home);
        assert.equal(r.status, EXIT.badTree, `${cmd} ${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /pkg\/a\/build-deps:1: \.\.\/nothere: no such package directory/, `${cmd} ${args.join(' ')}`);
      }
      assert.ok(!fs.existsSync(path.join(tree, 'v')) && !fs.existsSync(path.join(tree, 'a.tar.gz')));
    });

    describe('a file the command line names that is missing or not a file: one line naming it, exit 2', () => {
      const home = () => ({ PEERPKGS_HOME: path.join(s.dir, 'home') });
      const cases: Array<[string, string[], RegExp]> = [
        ['peerpkgs', ['key', 'trust', 'nonsense'], /^peerpkgs key: nonsense: neither a public key \(ed25519:\.\.\.\) nor a file \(see peerpkgs key trust --help\)\n$/],
        ['peerpkgs', ['distfiles', 'add', '/nonexistent'], /^peerpkgs: \/nonexistent: no such file or directory\n$/],
        ['peerpkgs', ['distfiles', 'add', '.'], /^peerpkgs: \.: not a regular file\n$/],
        ['do-fetch', ['nothere/fetch'], /^do-fetch: nothere\/fetch: no such file or directory\n$/],
        ['peerpkgs', ['ipfs', 'add', 'nothere'], /^peerpkgs ipfs add: nothere: no such file or directory\n$/],
        ['peerpkgs', ['verify', 'nothere'], /^peerpkgs: nothere: no such file or directory\n$/],
      ];
      for (const [cmd, args, line] of cases) {
        it(`${cmd} ${args.join(' ')}`, () => {
          const r = run(s.dir, cmd, args, home());
          assert.equal(r.status, EXIT.usage, r.stderr);
          assert.match(r.stderr, line);
          assert.doesNotMatch(r.stderr, /\bE[A-Z]{3,}\b|node:|at /, 'no errno code, no stack');
        });
      }
      it("maps a system call's error on a file to the path and what is wrong, and to exit 2 only for a file the user named", () => {
        const enoent = Object.assign(new Error("ENOENT: no such file or directory, open 'x/y'"), { code: 'ENOENT', syscall: 'open', path: 'x/y' });
        assert.deepEqual(explain(enoent, 'cmd', ['./x/y']), { message: './x/y: no such file or directory', exitCode: EXIT.usage });
        assert.deepEqual(explain(enoent, 'cmd', ['other']), { message: 'x/y: no such file or directory', exitCode: EXIT.failed });
        const eacces = Object.assign(new Error('EACCES'), { code: 'EACCES', syscall: 'open', path: '/etc/shadow' });
        assert.equal(explain(eacces, 'cmd', ['/etc/shadow']).message, '/etc/shadow: permission denied');
      });
    });

    it('do-fetch takes a package directory for its fetch file', () => {
      const tree = path.join(s.dir, 'do-fetch-dir');
      write(tree, { 'src.txt': 'a source\n' });
      const sha = createHash('sha256').update('a source\n').digest('hex');
      write(tree, { '!pkg/p/build': '#!/bin/sh\n', 'pkg/p/fetch': `url: file://${tree}/src.txt\nsha256: ${sha}\n` });
      const r = run(tree, 'do-fetch', ['-o', 'out', './pkg/p'], { PEERPKGS_HOME: path.join(tree, 'home') });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(fs.readFileSync(path.join(tree, 'out/src.txt'), 'utf8'), 'a source\n');
    });

    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      it(`a build stopped by ${signal} exits ${SIGNAL_EXIT[signal]}`, async () => {
        const tree = path.join(s.dir, `signal-${signal}`);
        // a .pkg.tar.gz.do makes a package the engine builds without a sandbox
        write(tree, { 'pkg/slow/.pkg.tar.gz.do': 'touch started; exec sleep 60\n' });
        const p = spawn(path.join(BIN, 'build-packages-ifchange'), ['./pkg/slow'], { cwd: tree, env: userEnv({ PEERPKGS_HOME: path.join(tree, 'home') }), stdio: 'ignore' });
        const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
        for (let i = 0; !fs.existsSync(path.join(tree, 'pkg/slow/started')); i++) {
          assert.ok(i < 800, 'the build never began');
          await new Promise((r) => setTimeout(r, 25));
        }
        p.kill(signal);
        assert.equal(await exited, SIGNAL_EXIT[signal]);
      });
    }
  });

  describe('the wrapper, bin/peerpkgs', () => {
    // what Node was started with (malloc settings | heap sizes), seen by a
    // module Node loads before peerpkgs's own code; and what the .do file
    // that redo runs was given
    const show = "process.getBuiltinModule('node:fs').appendFileSync(process.env.SEEN, `node: ${process.env.GLIBC_TUNABLES ?? 'unset'} | ${process.execArgv.join(' ')}\\n`);\n";
    const doFile = 'echo "do: ${GLIBC_TUNABLES-unset}" >> "$SEEN"; : > $3\n';
    const tuned = 'glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=8388608';
    const IPFS_HEAP = '--max-semi-space-size=2 --initial-old-space-size=32';
    const cases: [string, NodeJS.ProcessEnv, string][] = [
      [
        'with an ipfs:// cache, the process runs with its malloc settings and the .do file gets none',
        { PKG_CACHE_URL: 'ipfs://bafkqaaa' },
        `node: ${tuned} | ${IPFS_HEAP}\ndo: unset\n`,
      ],
      [
        "with an ipfs:// cache, the user's own settings come after the process's, and the .do file gets the user's alone",
        { PKG_CACHE_URL: 'ipfs://bafkqaaa', GLIBC_TUNABLES: 'glibc.malloc.tcache_count=7' },
        `node: ${tuned}:glibc.malloc.tcache_count=7 | ${IPFS_HEAP}\ndo: glibc.malloc.tcache_count=7\n`,
      ],
      [
        "with no ipfs:// cache, the user's settings alone everywhere",
        { GLIBC_TUNABLES: 'glibc.malloc.tcache_count=7' },
        'node: glibc.malloc.tcache_count=7 | --max-semi-space-size=1\ndo: glibc.malloc.tcache_count=7\n',
      ],
    ];
    cases.forEach(([what, extra, expected], i) => {
      it(what, () => {
        const dir = path.join(s.dir, `wrapper-${i}`);
        write(dir, { 'out.do': doFile, 'show.mjs': show });
        const seen = path.join(dir, 'seen');
        const env: NodeJS.ProcessEnv = {
          PEERPKGS_HOME: path.join(dir, 'home'),
          NODE_OPTIONS: `--import=${path.join(dir, 'show.mjs')}`,
          SEEN: seen,
          GLIBC_TUNABLES: undefined,
          ...extra,
        };
        const r = run(dir, 'redo', ['out'], env);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(fs.readFileSync(seen, 'utf8'), expected);
      });
    });
    it('with an ipfs:// cache and a daemon running, a build and an ipfs command start on the default heap; the daemon keeps its own', async () => {
      const dir = path.join(s.dir, 'wrapper-daemon');
      write(dir, { 'out.do': doFile, 'show.mjs': show, file: 'some bytes\n' });
      const seen = path.join(dir, 'seen');
      const home = path.join(dir, 'home');
      const env: NodeJS.ProcessEnv = { PEERPKGS_HOME: home, NODE_OPTIONS: `--import=${path.join(dir, 'show.mjs')}`, SEEN: seen, GLIBC_TUNABLES: undefined };
      const d = await startDaemon(home, env);
      try {
        assert.equal(fs.readFileSync(seen, 'utf8'), `node: ${tuned} | ${IPFS_HEAP}\n`, 'the daemon moves the blocks');
        fs.rmSync(seen);
        const r = run(dir, 'redo', ['out'], { ...env, PKG_CACHE_URL: 'ipfs://bafkqaaa' });
        assert.equal(r.status, 0, r.stderr);
        assert.equal(fs.readFileSync(seen, 'utf8'), 'node: unset | --max-semi-space-size=1\ndo: unset\n');
        fs.rmSync(seen);
        const cid = run(dir, 'peerpkgs', ['ipfs', 'add', 'file'], env);
        assert.equal(cid.status, 0, cid.stderr);
        fs.rmSync(seen);
        const cat = run(dir, 'peerpkgs', ['ipfs', 'cat', cid.stdout.trim()], env);
        assert.equal(cat.stdout, 'some bytes\n', cat.stderr);
        assert.equal(fs.readFileSync(seen, 'utf8'), 'node: unset | --max-semi-space-size=1\n');
      } finally {
        await d.stop();
      }
    });
    it('ipfs add runs with the malloc settings and the heap that start fastest', () => {
      const dir = path.join(s.dir, 'wrapper-add');
      write(dir, { 'show.mjs': show, file: 'some bytes\n' });
      const seen = path.join(dir, 'seen');
      const r = run(dir, 'peerpkgs', ['ipfs', 'add', '-n', 'file'], { NODE_OPTIONS: `--import=${path.join(dir, 'show.mjs')}`, SEEN: seen, GLIBC_TUNABLES: undefined });
      assert.equal(r.status, 0, r.stderr);
      // no old generation size: with one, Node compiles its own modules from source
      assert.equal(fs.readFileSync(seen, 'utf8'), `node: ${tuned} | --max-semi-space-size=2\n`);
    });
  });
});
