/**
 * Venvs and tarball exports, as a user makes them: bin/venv and
 * `peerpkgs export tarball` on a tree built on the busybox seed, and
 * DIR/bin/venv-run under a real bwrap. The merge rules are also checked
 * on hand-made outputs, where a case needs more packages than is worth
 * building.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { scratch, write, read, run, start, userEnv, busyboxHttpd, BIN, deadOwnersTemporary, type Run } from './helpers.ts';
import { makeSeedTarball, writeSeedPackage, binPackage } from './seed.ts';
import { readManifest } from '../src/archive/manifest.ts';
import { planMerge, writeMerged, MergeConflictError, type Output, type Strategy } from '../src/archive/merge.ts';
import { removeTreeSync } from '../src/archive/files.ts';

const pkg = binPackage;

const X_C = '#!/bin/sh\necho x from c\n';
const X_D = '#!/bin/sh\necho x from d\n';
const COMMON = 'shared by c, d and e\n';

describe('export', function () {
  this.timeout(120_000);
  let work: string;
  let cleanup: () => void;
  let www: { url: string; stop(): Promise<void> };
  let seedSha: string;
  let tree: string;
  let home: string;

  /** A tree with a (run-dep: seed), b (run-dep: a), and c, d, e that clash or agree on their files. */
  function writeTree(at: string): void {
    writeSeedPackage(at, www.url, seedSha);
    write(at, pkg('a', { runDeps: ['seed'] }));
    write(at, pkg('b', { runDeps: ['a'] }));
    write(at, pkg('c', { runDeps: ['seed'], files: { 'bin/x': X_C, 'share/common': COMMON } }));
    write(at, pkg('d', { runDeps: ['seed'], files: { 'bin/x': X_D, 'share/common': COMMON } }));
    write(at, pkg('e', { files: { 'share/common': COMMON } }));
  }

  before(async () => {
    ({ dir: work, cleanup } = scratch());
    const wwwDir = path.join(work, 'www');
    fs.mkdirSync(wwwDir);
    seedSha = await makeSeedTarball(wwwDir);
    www = await busyboxHttpd(wwwDir);
    home = path.join(work, 'home');
    tree = path.join(work, 'tree');
    writeTree(tree);
    const r = run(tree, 'build-packages-ifchange', ['-j2', './pkg/b', './pkg/c', './pkg/d', './pkg/e'], { PEERPKGS_HOME: home });
    assert.equal(r.status, 0, r.stderr);
  });
  after(async () => {
    await www.stop();
    cleanup();
  });

  const venv = (...args: string[]): Run => run(tree, 'venv', args, { PEERPKGS_HOME: home });
  const peerpkgs = (...args: string[]): Run => run(tree, 'peerpkgs', args, { PEERPKGS_HOME: home });
  /** Runs `file` (e.g. a venv's venv-run) as the user would, from `cwd`. */
  const exec = (cwd: string, file: string, args: string[], env: NodeJS.ProcessEnv = userEnv()): Run => {
    const r = spawnSync(file, args, { cwd, env, encoding: 'utf8', timeout: 60_000 });
    if (r.error) throw r.error;
    return { status: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
  };
  /** Where the output store unpacked a package: under the sha256 of its uncompressed archive. */
  const outputOf = (name: string) => {
    const tar = zlib.gunzipSync(fs.readFileSync(path.join(tree, `pkg/${name}/.pkg.tar.gz`)));
    return path.join(home, 'outputs', createHash('sha256').update(tar).digest('hex'));
  };
  /** Temporary siblings a venv or export may have left next to `p`. */
  const leftovers = (p: string) => fs.readdirSync(path.dirname(p)).filter((n) => n.startsWith(`.${path.basename(p)}.`));
  const fresh = (name: string) => {
    const d = path.join(work, name);
    removeTreeSync(d);
    return d;
  };

  describe('bin/venv', () => {
    let V: string;
    before(() => {
      V = fresh('venv-b');
      const r = venv('-o', V, './pkg/b');
      assert.equal(r.status, 0, r.stderr);
    });

    it('merges the package and its run closure as hardlinks of the unpacked outputs', () => {
      for (const [name, file] of [
        ['a', 'bin/a'],
        ['b', 'bin/b'],
        ['seed', 'bin/busybox'],
      ] as const) {
        assert.equal(fs.statSync(path.join(V, file)).ino, fs.statSync(path.join(outputOf(name), file)).ino, file);
      }
      assert.equal(fs.readlinkSync(path.join(V, 'usr/bin')), '../bin');
      assert.deepEqual(
        read(V, '.peerpkgs-venv')
          .split('\n')
          .map((l) => l.split(' ')[0]),
        ['peerpkgs-venv', 'seed', 'a', 'b', ''],
        'the record lists the packages in merge order',
      );
    });

    it('runs a command of the venv from another working directory, and keeps that directory', () => {
      const cwd = fresh('elsewhere');
      fs.mkdirSync(cwd);
      const r = exec(cwd, path.join(V, 'bin/venv-run'), ['b']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'hello from b\n');
      const w = exec(cwd, path.join(V, 'bin/venv-run'), ['sh', '-c', 'pwd; echo made >here']);
      assert.equal(w.status, 0, w.stderr);
      assert.equal(w.stdout, `${cwd}\n`);
      assert.equal(read(cwd, 'here'), 'made\n', "written to the host's directory");
    });

    it("puts the venv's top-level directories in place of the host's and keeps the rest of the host and the environment", () => {
      const script = [
        'test -x /bin/b || exit 11', // the venv's /bin
        'test -L /usr/bin || exit 12', // the venv's /usr: the seed's usr/bin -> ../bin
        'test ! -e /usr/lib || exit 13', // no host /usr behind it
        `test -d ${work} || exit 14`, // the host's /tmp
        'test -e /dev/null -a -e /proc/self/exe || exit 15',
        'echo "$PATH $VENV_TEST"',
      ].join('\n');
      const env = userEnv({ VENV_TEST: 'kept' });
      const r = exec(work, path.join(V, 'bin/venv-run'), ['sh', '-c', script], env);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${env.PATH} kept\n`);
    });

    it('passes the arguments through as given', () => {
      const args = ['a b', '', '*', '--bind', '-x', "it's"];
      const r = exec(work, path.join(V, 'bin/venv-run'), ['sh', '-c', 'printf "%s|" "$@"', 'sh', ...args]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, args.map((a) => `${a}|`).join(''));
    });

    it('passes the exit status through', () => {
      assert.equal(exec(work, path.join(V, 'bin/venv-run'), ['sh', '-c', 'exit 7']).status, 7);
    });

    it('reports a command killed by a signal as a shell does (128 + N)', () => {
      const r = exec(work, path.join(V, 'bin/venv-run'), ['sh', '-c', 'kill -TERM $$']);
      assert.equal(r.status, 143);
    });

    it('takes the command down with it when venv-run is killed', async () => {
      const p = spawn(path.join(V, 'bin/venv-run'), ['sh', '-c', 'echo $$; exec sleep 60'], { cwd: work, env: userEnv() });
      const pid = await new Promise<number>((resolve, reject) => {
        p.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
        p.once('exit', () => reject(new Error('venv-run exited first')));
      });
      const exited = new Promise((r) => p.once('exit', (_code, signal) => r(signal)));
      p.kill('SIGTERM');
      assert.equal(await exited, 'SIGTERM');
      const alive = () => {
        try {
          return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
        } catch {
          return false;
        }
      };
      for (let i = 0; alive() && i < 100; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(alive(), false, `the command (pid ${pid}) still runs`);
    });

    for (const shell of ['dash', 'bash']) {
      it(`works when run by ${shell}`, () => {
        const r = exec(work, `/bin/${shell}`, [path.join(V, 'bin/venv-run'), 'b']);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout, 'hello from b\n');
      });
    }

    it('works through a symlink to it and through a symlink to the venv', () => {
      const links = fresh('links');
      fs.mkdirSync(links);
      fs.symlinkSync(path.join(V, 'bin/venv-run'), path.join(links, 'vr'));
      fs.symlinkSync(path.relative(links, V), path.join(links, 'v'));
      for (const file of ['vr', 'v/bin/venv-run']) {
        const r = exec(links, `./${file}`, ['b']);
        assert.equal(r.status, 0, `${file}: ${r.stderr}`);
        assert.equal(r.stdout, 'hello from b\n', file);
      }
    });

    it('takes a leading -- as the end of its own arguments, not as the command', () => {
      const r = exec(work, path.join(V, 'bin/venv-run'), ['--', 'b']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'hello from b\n');
      assert.equal(exec(work, path.join(V, 'bin/venv-run'), ['--']).status, 2, 'no command after --');
    });

    it('exits 127 for a command not found in the venv, as a shell does', () => {
      for (const cmd of ['no-such-command', 'bwrap' /* the host's /usr/bin/bwrap, hidden by the venv's /usr */, '/usr/lib/nothing']) {
        const r = exec(work, path.join(V, 'bin/venv-run'), [cmd]);
        assert.equal(r.status, 127, `${cmd}: ${r.stderr}`);
        assert.equal(r.stderr, `venv-run: ${cmd}: command not found\n`);
      }
    });

    it('exits 126 for a file or directory it cannot run, as a shell does', () => {
      const cwd = fresh('not-runnable');
      write(cwd, { 'notes.txt': 'not a program' });
      for (const cmd of ['./notes.txt', '/usr', `${cwd}`]) {
        const r = exec(cwd, path.join(V, 'bin/venv-run'), [cmd]);
        assert.equal(r.status, 126, `${cmd}: ${r.stderr}`);
        assert.equal(r.stderr, `venv-run: ${cmd}: not an executable file\n`);
      }
    });

    it('says so when bwrap is missing', () => {
      const r = exec(work, '/bin/sh', [path.join(V, 'bin/venv-run'), 'true'], { PATH: '/nonexistent' });
      assert.equal(r.status, 127);
      assert.match(r.stderr, /bwrap \(bubblewrap\) is not on PATH/);
    });
  });

  describe('replacing a venv', () => {
    it('a second bin/venv replaces the venv, leaving nothing beside it', () => {
      const V = fresh('venv-again');
      assert.equal(venv('-o', V, './pkg/b').status, 0);
      const r = venv('-o', V, './pkg/a');
      assert.equal(r.status, 0, r.stderr);
      assert.ok(fs.existsSync(path.join(V, 'bin/a')));
      assert.ok(!fs.existsSync(path.join(V, 'bin/b')));
      assert.deepEqual(leftovers(V), []);
    });

    it('several bin/venv -o DIR at once all succeed, one after the other, leaving a valid venv and nothing beside it', async () => {
      const V = fresh('venv-race');
      const runs = await Promise.all(['b', 'a', 'b', 'a', 'b', 'a'].map((p) => start(tree, 'venv', ['-o', V, `./pkg/${p}`], { PEERPKGS_HOME: home })));
      for (const r of runs) assert.equal(r.status, 0, r.stderr);
      const r = exec(work, path.join(V, 'bin/venv-run'), ['a']);
      assert.equal(r.stdout, 'hello from a\n', r.stderr);
      assert.deepEqual(leftovers(V), []);
    });

    it("waits while another process holds the venv's lock, and replaces it only after", async () => {
      const V = fresh('venv-held');
      assert.equal(venv('-o', V, './pkg/b').status, 0);
      const lock = path.join(work, '.venv-held.lock');
      fs.symlinkSync(String(process.pid), lock); // as a live writer holds it
      const p = spawn(path.join(BIN, 'venv'), ['-o', V, './pkg/a'], { cwd: tree, env: userEnv({ PEERPKGS_HOME: home }) });
      let stderr = '';
      const exited = new Promise<number | null>((resolve) => p.once('close', resolve));
      await new Promise<void>((resolve) => {
        p.stderr.on('data', (d: Buffer) => {
          stderr += d;
          if (stderr.includes('\n')) resolve();
        });
        p.once('close', () => resolve());
      });
      assert.equal(stderr, `venv: waiting for ${V}: process ${process.pid} is writing it\n`);
      assert.ok(fs.existsSync(path.join(V, 'bin/b')), 'not replaced while the lock is held');
      fs.rmSync(lock);
      assert.equal(await exited, 0, stderr);
      assert.ok(!fs.existsSync(path.join(V, 'bin/b')));
      assert.deepEqual(leftovers(V), []);
    });

    it('a lock and temporaries left by a killed writer are taken over and removed', () => {
      const V = fresh('venv-killed');
      const dead = spawnSync('/bin/sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim();
      fs.symlinkSync(dead, path.join(work, '.venv-killed.lock'));
      fs.mkdirSync(deadOwnersTemporary(V));
      const r = venv('-o', V, './pkg/a');
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(leftovers(V), []);
    });

    it('a directory that is not a venv is left alone', () => {
      const D = fresh('mine');
      write(D, { 'notes.txt': 'mine' });
      const r = venv('-o', D, './pkg/a');
      assert.equal(r.status, 1);
      assert.match(r.stderr, /mine exists and is not a venv/);
      assert.deepEqual(fs.readdirSync(D), ['notes.txt']);
    });
  });

  describe('conflicts', () => {
    it('two packages providing one path differently is an error naming both and the path, leaving nothing', () => {
      const V = fresh('venv-cd');
      const r = venv('-o', V, './pkg/c', './pkg/d');
      assert.equal(r.status, 1);
      assert.match(r.stderr, /venv: c and d both provide bin\/x \(files with different content\)/);
      assert.ok(!fs.existsSync(V));
      assert.deepEqual(leftovers(V), []);
    });

    it('a file two packages provide identically is no conflict', () => {
      const V = fresh('venv-ce');
      const r = venv('-o', V, './pkg/c', './pkg/e');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(V, 'share/common'), COMMON);
    });

    it("--prefer-existing keeps the earlier package's", () => {
      const V = fresh('venv-existing');
      const r = venv('--prefer-existing', '-o', V, './pkg/c', './pkg/d');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(V, 'bin/x'), X_C);
      assert.equal(r.stderr, "venv: bin/x: c and d differ; kept c's\n");
    });

    it("--prefer-new keeps the later package's", () => {
      const V = fresh('venv-new');
      const r = venv('--prefer-new', '-o', V, './pkg/c', './pkg/d');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(V, 'bin/x'), X_D);
    });

    it("--namespaced keeps each package's as PATH@PACKAGE, and none at PATH", () => {
      const V = fresh('venv-ns');
      const r = venv('--namespaced', '-o', V, './pkg/c', './pkg/d');
      assert.equal(r.status, 0, r.stderr);
      assert.ok(!fs.existsSync(path.join(V, 'bin/x')));
      assert.equal(read(V, 'bin/x@c'), X_C);
      assert.equal(read(V, 'bin/x@d'), X_D);
      assert.equal(read(V, 'share/common'), COMMON, 'identical files are not namespaced');
      assert.equal(exec(work, path.join(V, 'bin/venv-run'), ['x@d']).stdout, 'x from d\n');
    });
  });

  describe('peerpkgs export tarball', () => {
    it('writes the merged closure as a peerpkgs archive', async () => {
      const T = fresh('t-closure.tar.gz');
      const r = peerpkgs('export', 'tarball', '-o', T, './pkg/b');
      assert.equal(r.status, 0, r.stderr);
      const entries = new Map((await readManifest(T)).map((e) => [e.path, e]));
      for (const p of ['bin/a', 'bin/b', 'bin/busybox']) assert.equal(entries.get(p)?.type, 'file', p);
      assert.equal(entries.get('usr/bin')?.target, '../bin');
      assert.ok(!entries.has('bin/venv-run'), 'a tarball is no venv');
      assert.equal(entries.get('bin/b')?.mode, 0o755, "the package's own mode, not the read-only store's");
      assert.equal(entries.get('bin')?.mode, 0o755);
      assert.equal(fs.statSync(path.join(outputOf('b'), 'bin/b')).mode & 0o777, 0o555);
      const x = fresh('t-closure-x');
      fs.mkdirSync(x);
      assert.equal(spawnSync('tar', ['-xzf', T, '-C', x]).status, 0);
      assert.equal(read(x, 'bin/b'), read(outputOf('b'), 'bin/b'));
    });

    it('gives the same bytes in a second run and from a tree built elsewhere', () => {
      const t1 = fresh('t1.tar.gz');
      const t2 = fresh('t2.tar.gz');
      const t3 = fresh('t3.tar.gz');
      const r1 = peerpkgs('export', 'tarball', '-o', t1, './pkg/b');
      assert.equal(r1.status, 0, r1.stderr);
      assert.equal(peerpkgs('export', 'tarball', '-o', t2, './pkg/b').status, 0);
      // another tree, another store, exported under another umask
      const other = fresh('other-tree');
      writeTree(other);
      const env = userEnv({ PEERPKGS_HOME: path.join(work, 'other-home') });
      const b = run(other, 'build-packages-ifchange', ['./pkg/b'], env);
      assert.equal(b.status, 0, b.stderr);
      const o = spawnSync('/bin/sh', ['-c', 'umask 077 && exec "$0" "$@"', path.join(BIN, 'peerpkgs'), 'export', 'tarball', '-o', t3, './pkg/b'], {
        cwd: other,
        env,
        encoding: 'utf8',
      });
      assert.equal(o.status, 0, o.stderr);
      const bytes = fs.readFileSync(t1);
      assert.ok(bytes.equals(fs.readFileSync(t2)), 'second run');
      assert.ok(bytes.equals(fs.readFileSync(t3)), 'other tree');
      assert.match(r1.stdout, /^[0-9a-f]{64} {2}.*t1\.tar\.gz\n$/);
    });

    it('follows the same conflict rules as venvs', async () => {
      const T = fresh('t-cd.tar.gz');
      const r = peerpkgs('export', 'tarball', '-o', T, './pkg/c', './pkg/d');
      assert.equal(r.status, 1);
      assert.match(r.stderr, /c and d both provide bin\/x/);
      assert.ok(!fs.existsSync(T));
      assert.equal(peerpkgs('export', 'tarball', '--namespaced', '-o', T, './pkg/c', './pkg/d').status, 0);
      const paths = (await readManifest(T)).map((e) => e.path);
      assert.ok(paths.includes('bin/x@c') && paths.includes('bin/x@d') && !paths.includes('bin/x'), paths.join(' '));
    });
  });

  describe('read-only outputs and peerpkgs verify', () => {
    /** Paths under `dir` (itself included) that have a write bit; symlinks have no mode of their own. */
    const writable = (dir: string): string[] => {
      const found: string[] = [];
      const visit = (p: string) => {
        const st = fs.lstatSync(p);
        if (!st.isSymbolicLink() && st.mode & 0o222) found.push(p);
        if (st.isDirectory()) for (const n of fs.readdirSync(p)) visit(path.join(p, n));
      };
      visit(dir);
      return found;
    };
    /** A user's edit of a read-only file: give it a write bit, then write. */
    const edit = (file: string, text: string) => {
      fs.chmodSync(file, fs.statSync(file).mode | 0o200);
      fs.appendFileSync(file, text);
    };
    /** A user's change in a read-only directory, done as they would: chmod u+w first. */
    const inDir = (dir: string, f: () => void) => {
      const mode = fs.statSync(dir).mode;
      fs.chmodSync(dir, mode | 0o200);
      f();
      fs.chmodSync(dir, mode);
    };

    it('unpacked outputs and venvs have no write bit, directories included', () => {
      for (const name of ['seed', 'a', 'b']) assert.deepEqual(writable(outputOf(name)), [], name);
      const V = fresh('venv-ro');
      assert.equal(venv('-o', V, './pkg/b').status, 0);
      assert.deepEqual(writable(V), []);
      if (process.getuid?.() !== 0) {
        // (root writes whatever the mode)
        assert.throws(() => fs.writeFileSync(path.join(V, 'bin/b'), 'x'), /EACCES/);
        assert.throws(() => fs.writeFileSync(path.join(V, 'bin/new'), 'x'), /EACCES/);
      }
    });

    it('finds a store file edited through a venv, naming it and its package, and --repair restores it in every venv sharing it', () => {
      const V = fresh('venv-edited');
      assert.equal(venv('-o', V, './pkg/b').status, 0);
      const original = read(V, 'bin/b');
      assert.equal(peerpkgs('verify').status, 0, 'clean to begin with');
      edit(path.join(V, 'bin/b'), 'echo changed\n');
      const V2 = fresh('venv-later');
      assert.equal(venv('-o', V2, './pkg/b').status, 0, 'a later venv carries the change');

      const r = peerpkgs('verify');
      assert.equal(r.status, 9, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`^${outputOf('b')} \\(b\\): bin/b: mode 0755, should be 0555; its content changed \\(\\d+ bytes, the package's \\d+\\)$`, 'm'));
      assert.match(r.stdout, /outputs checked, 1 damaged \(peerpkgs verify --repair restores them\)\n$/);
      const c = peerpkgs('check', './pkg/b');
      assert.equal(c.status, 9, c.stdout + c.stderr);
      assert.match(c.stdout, new RegExp(`^pkg/b: reproducible, output sha256 [0-9a-f]{64}, but its unpacked copy ${outputOf('b')} is damaged \\(1 paths: `, 'm'));
      const v = peerpkgs('verify', V);
      assert.equal(v.status, 9);
      assert.match(v.stdout, new RegExp(`^${V}/bin/b: mode 0755, should be 0555; its content changed`, 'm'));

      const fix = peerpkgs('verify', '--repair');
      assert.equal(fix.status, 0, fix.stdout + fix.stderr);
      assert.match(fix.stdout, new RegExp(`^${outputOf('b')} \\(b\\): repaired 1 paths from ${tree}/pkg/b/\\.pkg\\.tar\\.gz$`, 'm'));
      for (const d of [V, V2, outputOf('b')]) {
        assert.equal(read(d, 'bin/b'), original, d);
        assert.equal(fs.statSync(path.join(d, 'bin/b')).mode & 0o777, 0o555, d);
      }
      assert.equal(peerpkgs('verify').status, 0);
      assert.equal(peerpkgs('verify', V, V2).status, 0);
    });

    it('finds files replaced, removed and added in the store, and --repair puts back each', () => {
      const out = outputOf('seed');
      const busybox = fs.readFileSync(path.join(out, 'bin/busybox'));
      const [gone] = fs.readdirSync(path.join(out, 'bin')).filter((n) => fs.lstatSync(path.join(out, 'bin', n)).isSymbolicLink());
      inDir(path.join(out, 'bin'), () => {
        fs.rmSync(path.join(out, 'bin/busybox'));
        fs.writeFileSync(path.join(out, 'bin/busybox'), 'replaced', { mode: 0o555 });
        fs.rmSync(path.join(out, 'bin', gone!));
        fs.writeFileSync(path.join(out, 'bin/added'), 'added');
        fs.mkdirSync(path.join(out, 'bin/added-dir'));
        fs.writeFileSync(path.join(out, 'bin/added-dir/file'), 'added');
      });
      const r = peerpkgs('verify');
      assert.equal(r.status, 9);
      const lines = r.stdout.split('\n').filter((l) => l.startsWith(out));
      assert.deepEqual(
        lines.sort(),
        [
          `${out} (seed): bin/${gone}: missing`,
          `${out} (seed): bin/added: not in the package`,
          `${out} (seed): bin/added-dir: not in the package`,
          `${out} (seed): bin/added-dir/file: not in the package`,
          `${out} (seed): bin/busybox: its content changed (8 bytes, the package's ${busybox.length})`,
        ].sort(),
      );
      const fix = peerpkgs('verify', '--repair');
      assert.equal(fix.status, 0, fix.stdout);
      assert.ok(fs.readFileSync(path.join(out, 'bin/busybox')).equals(busybox));
      assert.ok(fs.lstatSync(path.join(out, 'bin', gone!)).isSymbolicLink());
      assert.deepEqual(writable(out), []);
      assert.equal(peerpkgs('verify').status, 0);
    });

    it('--repair says where the archive is missing, and repairs once it is built again', () => {
      write(tree, pkg('f', { runDeps: ['seed'] }));
      assert.equal(venv('-o', fresh('venv-f'), './pkg/f').status, 0); // builds it, and unpacks it into the store
      const out = outputOf('f');
      edit(path.join(out, 'bin/f'), 'echo changed\n');
      fs.rmSync(path.join(tree, 'pkg/f/.pkg.tar.gz'));
      const r = peerpkgs('verify', '--repair');
      assert.equal(r.status, 9);
      assert.match(r.stdout, new RegExp(`^${out} \\(f\\): cannot repair: its archive ${tree}/pkg/f/\\.pkg\\.tar\\.gz is gone; rebuild the package`, 'm'));
      assert.equal(run(tree, 'build-packages-ifchange', ['./pkg/f'], { PEERPKGS_HOME: home }).status, 0);
      assert.equal(peerpkgs('verify', '--repair').status, 0);
      assert.equal(read(out, 'bin/f'), '#!/bin/sh\necho hello from f\n');
    });

    it('--repair knows an archive rebuilt into another output before writing anything, and unpacks no more than the manifest gives', () => {
      write(tree, pkg('g', { runDeps: ['seed'] }));
      assert.equal(venv('-o', fresh('venv-g'), './pkg/g').status, 0);
      const out = outputOf('g');
      edit(path.join(out, 'bin/g'), 'echo changed\n');
      // rebuilt since: 8 MB of zeros, a small archive
      write(tree, { [`!pkg/g/build`]: '#!/bin/sh\nmkdir -p "$DESTDIR/share"\ndd if=/dev/zero of="$DESTDIR/share/zeros" bs=1M count=8 2>/dev/null\n' });
      assert.equal(run(tree, 'build-packages-ifchange', ['./pkg/g'], { PEERPKGS_HOME: home }).status, 0);
      const other = outputOf('g');
      const outputs = path.join(home, 'outputs');
      const r = peerpkgs('verify', '--repair');
      assert.equal(r.status, 9);
      assert.match(
        r.stdout,
        new RegExp(
          `^${out} \\(g\\): cannot repair: its archive ${tree}/pkg/g/\\.pkg\\.tar\\.gz is no longer this output \\(it is output ${path.basename(other)}\\); rebuild the package$`,
          'm',
        ),
      );
      // without the archive's record, it is hashed, and no further than the manifest's size
      fs.rmSync(path.join(tree, 'pkg/g/.pkg.tar.gz.sha256'));
      const again = peerpkgs('verify', '--repair');
      assert.equal(again.status, 9);
      assert.match(
        again.stdout,
        new RegExp(`^${out} \\(g\\): cannot repair: its archive \\S+ is no longer this output \\(it unpacks to more than the size its manifest gives\\)`, 'm'),
      );
      assert.deepEqual(
        fs.readdirSync(outputs).filter((n) => n.startsWith('.repair-')),
        [],
      );
      // built as it was, the archive is this output again
      write(tree, pkg('g', { runDeps: ['seed'] }));
      assert.equal(run(tree, 'build-packages-ifchange', ['./pkg/g'], { PEERPKGS_HOME: home }).status, 0);
      const fix = peerpkgs('verify', '--repair');
      assert.equal(fix.status, 0, fix.stdout);
    });

    it('finds a venv file replaced or added in the venv alone', () => {
      const V = fresh('venv-own');
      assert.equal(venv('-o', V, './pkg/b').status, 0);
      inDir(path.join(V, 'bin'), () => {
        fs.rmSync(path.join(V, 'bin/a'));
        fs.writeFileSync(path.join(V, 'bin/a'), '#!/bin/sh\necho mine\n', { mode: 0o555 });
        fs.writeFileSync(path.join(V, 'bin/extra'), 'extra', { mode: 0o444 });
      });
      const r = peerpkgs('verify', V);
      assert.equal(r.status, 9);
      assert.match(r.stdout, new RegExp(`^${V}/bin/a: its content changed`, 'm'));
      assert.match(r.stdout, new RegExp(`^${V}/bin/extra: in none of its packages$`, 'm'));
      assert.match(r.stdout, /make it again with bin\/venv -o /);
      assert.equal(peerpkgs('verify').status, 0, 'the store is untouched');
    });

    it('an output an older peerpkgs unpacked, with no manifest beside it, gets one when next used', () => {
      assert.equal(venv('-o', fresh('venv-a'), './pkg/a').status, 0);
      const out = outputOf('a');
      fs.rmSync(`${out}.manifest`);
      fs.rmSync(`${out}.archive`);
      const r = peerpkgs('verify');
      assert.equal(r.status, 0);
      assert.match(r.stdout, new RegExp(`^${out}: not checked: the store has no manifest for it`, 'm'));
      assert.equal(venv('-o', fresh('venv-a-again'), './pkg/a').status, 0);
      edit(path.join(out, 'bin/a'), 'echo changed\n');
      const again = peerpkgs('verify', '--repair');
      assert.match(again.stdout, new RegExp(`^${out} \\(a\\): bin/a: `, 'm'));
      assert.equal(again.status, 0, again.stdout);
    });

    it('takes a seed packed by plain tar, with no manifest, for build after build, and verify checks it by the manifest the store wrote', () => {
      const t = fresh('plain-seed-tree');
      const h = path.join(work, 'plain-seed-home');
      write(t, { '!pkg/seed/.pkg.tar.gz.do': fs.readFileSync(path.join(BIN, '../example/pkg/seed/.pkg.tar.gz.do'), 'utf8') });
      for (const p of ['p', 'q']) write(t, { [`!pkg/${p}/build`]: `#!/bin/sh\nmkdir -p "$DESTDIR/bin" && echo ${p} >"$DESTDIR/bin/${p}"\n`, [`pkg/${p}/build-deps`]: '../seed\n' });
      for (const p of ['p', 'q']) {
        const b = run(t, 'build-packages-ifchange', [`./pkg/${p}`], { PEERPKGS_HOME: h });
        assert.equal(b.status, 0, `${p}: ${b.stderr}`);
      }
      const r = run(t, 'peerpkgs', ['verify'], { PEERPKGS_HOME: h });
      assert.equal(r.status, 0, r.stdout);
      assert.doesNotMatch(r.stdout, /not checked/);
      const seedOut = fs.readdirSync(path.join(h, 'outputs')).find((n) => fs.existsSync(path.join(h, 'outputs', n, 'bin/busybox')))!;
      const busybox = path.join(h, 'outputs', seedOut, 'bin/busybox');
      edit(busybox, 'x');
      const bad = run(t, 'peerpkgs', ['verify'], { PEERPKGS_HOME: h });
      assert.equal(bad.status, 9, bad.stdout);
      assert.match(bad.stdout, /\(seed\): bin\/busybox: mode \d+, should be \d+; its content changed/);
      const fix = run(t, 'peerpkgs', ['verify', '--repair'], { PEERPKGS_HOME: h });
      assert.equal(fix.status, 0, fix.stdout + fix.stderr);
      assert.equal(run(t, 'peerpkgs', ['verify'], { PEERPKGS_HOME: h }).status, 0);
    });

    it('finds nothing wrong in venvs whose conflicts a strategy settled', () => {
      const made: string[] = [];
      for (const strategy of ['--prefer-existing', '--prefer-new', '--namespaced']) {
        const V = fresh(`venv-ok${strategy}`);
        const r = venv(strategy, '-o', V, './pkg/c', './pkg/d', './pkg/e');
        assert.equal(r.status, 0, r.stderr);
        made.push(V);
      }
      const r = peerpkgs('verify', ...made);
      assert.equal(r.status, 0, r.stdout);
      assert.equal(r.stdout, '3 venvs checked, 0 damaged\n');
    });
  });

  describe('merge plan', () => {
    /** Hand-made outputs: name → { path: content, or '->target' for a symlink, or '/' for a directory }. */
    const outputs = (spec: Record<string, Record<string, string>>): Output[] =>
      Object.entries(spec).map(([name, files]) => {
        const dir = fresh(`out-${name}`);
        fs.mkdirSync(dir);
        for (const [p, v] of Object.entries(files)) {
          fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
          if (v === '/') fs.mkdirSync(path.join(dir, p));
          else if (v.startsWith('->')) fs.symlinkSync(v.slice(2), path.join(dir, p));
          else fs.writeFileSync(path.join(dir, p), v);
        }
        return { name, dir, sha256: name };
      });
    const merged = (outs: Output[], strategy: Strategy): string[] => {
      const into = fresh('merged');
      fs.mkdirSync(into);
      writeMerged(planMerge(outs, strategy), into);
      const list: string[] = [];
      const walk = (rel: string) => {
        for (const n of fs.readdirSync(path.join(into, rel)).sort()) {
          const p = rel ? `${rel}/${n}` : n;
          const st = fs.lstatSync(path.join(into, p));
          if (st.isDirectory()) walk(p);
          else list.push(st.isSymbolicLink() ? `${p} -> ${fs.readlinkSync(path.join(into, p))}` : `${p}: ${read(into, p)}`);
        }
      };
      walk('');
      return list;
    };

    it("a directory and a symlink at one path conflict, and the loser's subtree goes with it", () => {
      const outs = outputs({ s: { 'usr/bin': '->../bin' }, t: { 'usr/bin/tool': 'tool' } });
      assert.throws(
        () => planMerge(outs),
        (e: unknown) => e instanceof MergeConflictError && e.path === 'usr/bin' && /a symlink and a directory/.test(e.message),
      );
      assert.deepEqual(merged(outs, 'prefer-existing'), ['usr/bin -> ../bin']);
      assert.deepEqual(merged(outs, 'prefer-new'), ['usr/bin/tool: tool']);
      assert.deepEqual(merged(outs, 'namespaced'), ['usr/bin@s -> ../bin', 'usr/bin@t/tool: tool']);
    });

    it('--namespaced gives every provider of a conflicting path its copy, later ones too', () => {
      const outs = outputs({ p: { 'bin/x': '1' }, q: { 'bin/x': '1' }, r: { 'bin/x': '2' }, s: { 'bin/x': '3' } });
      assert.deepEqual(merged(outs, 'namespaced'), ['bin/x@p: 1', 'bin/x@q: 1', 'bin/x@r: 2', 'bin/x@s: 3']);
      assert.deepEqual(merged(outs, 'prefer-new'), ['bin/x: 3']);
      assert.deepEqual(merged(outs, 'prefer-existing'), ['bin/x: 1']);
    });

    it('files differing only in mode conflict', () => {
      const outs = outputs({ p: { 'bin/x': 'same' }, q: { 'bin/x': 'same' } });
      fs.chmodSync(path.join(outs[1]!.dir, 'bin/x'), 0o755);
      assert.throws(() => planMerge(outs), /p and q both provide bin\/x \(files with different modes\)/);
    });
  });
});
