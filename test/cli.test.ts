/**
 * The command frame: every command in bin/ and every peerpkgs subcommand
 * answers --help with its own usage, a usage error is exit 2 whichever
 * command meets it, and a build stopped by a signal exits as a shell
 * reports that signal.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN, run, scratch, userEnv, write } from './helpers.ts';
import { EXIT, PeerpkgsError, SIGNAL_EXIT, UsageError, explain } from '../src/errors.ts';
import { TreeError } from '../src/tree/errors.ts';
import { FetchError } from '../src/fetch/fetch.ts';
import { IpfsError, IpfsNotFound, IpfsUnreachable } from '../src/ipfs/errors.ts';
import { KeyError, TrustListError } from '../src/cache/keys.ts';
import { SettingsError } from '../src/settings.ts';

const SUBCOMMANDS = ['build', 'fetch', 'new', 'graph', 'info', 'check', 'distfiles', 'verify', 'venv', 'export', 'sbom', 'cache', 'key', 'ipfs', 'seed', 'mirrors', 'config'];

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
      });
    }
    for (const sub of SUBCOMMANDS) {
      it(`peerpkgs ${sub} --help shows its own usage`, () => {
        const r = run(s.dir, 'peerpkgs', [sub, '--help'], { PEERPKGS_HOME: path.join(s.dir, 'home') });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`^usage: peerpkgs ${sub}[ \\n]`));
      });
    }
    it('peerpkgs --help lists every command and every PKG_* and PEERPKGS_* variable', () => {
      const r = run(s.dir, 'peerpkgs', ['--help']);
      assert.equal(r.status, 0, r.stderr);
      for (const sub of SUBCOMMANDS) assert.match(r.stdout, new RegExp(`^  ${sub} `, 'm'));
      const settings = fs.readFileSync(path.join(BIN, '../src/settings.ts'), 'utf8');
      const vars = new Set(settings.match(/\b(PKG|PEERPKGS)_[A-Z_]+\b/g));
      assert.ok(vars.size > 10);
      for (const v of vars) assert.match(r.stdout, new RegExp(`\\b${v}\\b`), `${v} is not in peerpkgs --help`);
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
      for (const [e, name] of [[new TreeError('x'), 'TreeError'], [new KeyError('x'), 'KeyError'], [new TrustListError('x'), 'TrustListError'], [new IpfsError('x'), 'IpfsError'], [new IpfsNotFound('x'), 'IpfsNotFound']] as const) assert.equal(e.name, name);
      assert.equal(explain(new TrustListError('x'), 'cmd').exitCode, 2);
    });

    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      it(`a build stopped by ${signal} exits ${SIGNAL_EXIT[signal]}`, async () => {
        const tree = path.join(s.dir, `signal-${signal}`);
        // a .pkg.tar.gz.do makes a package the engine builds without a sandbox
        write(tree, { 'pkg/slow/.pkg.tar.gz.do': 'touch started; exec sleep 60\n' });
        const p = spawn(path.join(BIN, 'build-packages-ifchange'), ['./pkg/slow'], { cwd: tree, env: userEnv({ PEERPKGS_HOME: path.join(tree, 'home') }), stdio: 'ignore' });
        const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
        for (let i = 0; i < 400 && !fs.existsSync(path.join(tree, 'pkg/slow/started')); i++) await new Promise((r) => setTimeout(r, 25));
        p.kill(signal);
        assert.equal(await exited, SIGNAL_EXIT[signal]);
      });
    }
  });
});
