/**
 * The redo engine as a user meets it: bin/redo* run on small trees.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { scratch, write, read, exists, run, start, runsOf } from './helpers.ts';

describe('redo', function () {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = scratch()));
  afterEach(() => cleanup());

  describe('running .do files', () => {
    it('makes a target from what TARGET.do prints on stdout', () => {
      write(dir, { 'hello.do': 'echo hello world' });
      const r = run(dir, 'redo', ['hello']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(dir, 'hello'), 'hello world\n');
    });

    it('makes a target from what the .do writes to $3', () => {
      write(dir, { 'out.do': 'printf data >"$3"' });
      assert.equal(run(dir, 'redo', ['out']).status, 0);
      assert.equal(read(dir, 'out'), 'data');
    });

    it('refuses a .do that writes both stdout and $3, keeping the old target', () => {
      write(dir, { 'both.do': 'echo old' });
      run(dir, 'redo', ['both']);
      write(dir, { 'both.do': 'echo a; echo b >"$3"' });
      const r = run(dir, 'redo', ['both']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /both: wrote to both \$3 and stdout/);
      assert.equal(read(dir, 'both'), 'old\n');
    });

    it('builds `all` when redo is given no target', () => {
      write(dir, { 'all.do': 'echo built-all >&2' });
      const r = run(dir, 'redo');
      assert.equal(r.status, 0);
      assert.match(r.stderr, /built-all/);
    });

    it("passes $1, $2, $3 and runs in the .do file's directory", () => {
      write(dir, {
        'sub/default.txt.do': 'echo "1=$1 2=$2 3=$3 pwd=$(basename "$PWD")"',
      });
      assert.equal(run(dir, 'redo', ['sub/x.txt']).status, 0);
      // $3: a temporary beside the target, named for its owner (archive/temporary.ts)
      assert.match(read(dir, 'sub/x.txt'), /^1=x\.txt 2=x 3=\.x\.txt\.tmp-\d+-\d+-[0-9a-f]{8}-[0-9a-f]{8} pwd=sub\n$/);
    });

    it('finds default.do in a parent directory and passes paths relative to it', () => {
      write(dir, { 'default.o.do': 'echo "1=$1 2=$2"', 'a/b/.keep': '' });
      assert.equal(run(path.join(dir, 'a'), 'redo', ['b/f.o']).status, 0);
      assert.equal(read(dir, 'a/b/f.o'), '1=a/b/f.o 2=a/b/f\n');
    });

    it('prefers TARGET.do, then the longest default.EXT.do, then default.do', () => {
      write(dir, {
        'default.do': 'echo default',
        'default.c.do': 'echo default.c',
        'default.b.c.do': 'echo default.b.c',
        'x.b.c.do': 'echo exact',
      });
      run(dir, 'redo', ['x.b.c', 'y.b.c', 'y.c', 'y']);
      assert.equal(read(dir, 'x.b.c'), 'exact\n');
      assert.equal(read(dir, 'y.b.c'), 'default.b.c\n');
      assert.equal(read(dir, 'y.c'), 'default.c\n');
      assert.equal(read(dir, 'y'), 'default\n');
    });

    it('runs .do files with sh -e: a failing command stops the script', () => {
      write(dir, { 'x.do': 'false\necho not-reached >&2' });
      const r = run(dir, 'redo', ['x']);
      assert.notEqual(r.status, 0);
      assert.doesNotMatch(r.stderr, /not-reached/);
    });

    it('runs a .do with #! by its interpreter', () => {
      write(dir, { '!py.do': '#!/usr/bin/env python3\nimport sys\nopen(sys.argv[3], "w").write("from python\\n")\n' });
      assert.equal(run(dir, 'redo', ['py']).status, 0, run(dir, 'redo', ['py']).stderr);
      assert.equal(read(dir, 'py'), 'from python\n');
    });

    it('creates no target when the .do writes nothing, and removes an old one', () => {
      write(dir, { 'maybe.do': 'if [ -e flag ]; then echo yes; fi' });
      write(dir, { flag: '' });
      run(dir, 'redo', ['maybe']);
      assert.equal(read(dir, 'maybe'), 'yes\n');
      fs.rmSync(path.join(dir, 'flag'));
      assert.equal(run(dir, 'redo', ['maybe']).status, 0);
      assert.equal(exists(dir, 'maybe'), false);
    });

    it('makes a directory target from $3', () => {
      write(dir, { 'd.do': 'mkdir "$3"; echo x >"$3/file"' });
      assert.equal(run(dir, 'redo', ['d']).status, 0);
      assert.equal(read(dir, 'd/file'), 'x\n');
      assert.equal(run(dir, 'redo', ['d']).status, 0, 'rebuilding over a directory');
    });

    it('handles names with spaces and non-ASCII characters', () => {
      write(dir, { 'my file.txt.do': 'redo-ifchange "ünï cödé.src"; cat "ünï cödé.src"', 'ünï cödé.src': 'ok\n' });
      assert.equal(run(dir, 'redo-ifchange', ['my file.txt']).status, 0);
      assert.equal(read(dir, 'my file.txt'), 'ok\n');
      write(dir, { 'ünï cödé.src': 'changed\n' });
      run(dir, 'redo-ifchange', ['my file.txt']);
      assert.equal(read(dir, 'my file.txt'), 'changed\n');
    });
  });

  describe('deciding what is out of date', () => {
    const counted = (name: string, body: string) => `echo ${name} >>"${'$'}{RUNS:-runs.log}"\n${body}`;

    it("rebuilds only when a dependency's content changed", () => {
      write(dir, { 'out.do': counted('out', 'redo-ifchange in; cat in'), in: 'v1\n' });
      run(dir, 'redo-ifchange', ['out']);
      run(dir, 'redo-ifchange', ['out']);
      assert.deepEqual(runsOf(dir), ['out'], 'second run is a no-op');
      const now = new Date(Date.now() + 5000);
      fs.utimesSync(path.join(dir, 'in'), now, now);
      run(dir, 'redo-ifchange', ['out']);
      assert.deepEqual(runsOf(dir), ['out'], 'a touch changes no content');
      write(dir, { in: 'v2\n' });
      run(dir, 'redo-ifchange', ['out']);
      assert.deepEqual(runsOf(dir), ['out', 'out']);
      assert.equal(read(dir, 'out'), 'v2\n');
    });

    it('rebuilds dependents through a chain of targets, and not when a rebuilt target is unchanged', () => {
      write(dir, {
        'top.do': counted('top', 'redo-ifchange mid; cat mid'),
        'mid.do': counted('mid', 'redo-ifchange src; head -n1 src'),
        src: 'a\nb\n',
      });
      run(dir, 'redo-ifchange', ['top']);
      write(dir, { src: 'a\nc\n' }); // mid's output stays "a"
      run(dir, 'redo-ifchange', ['top']);
      assert.deepEqual(runsOf(dir), ['top', 'mid', 'mid']);
      write(dir, { src: 'z\n' });
      run(dir, 'redo-ifchange', ['top']);
      assert.deepEqual(runsOf(dir), ['top', 'mid', 'mid', 'mid', 'top']);
      assert.equal(read(dir, 'top'), 'z\n');
    });

    it('a target rebuilt to the same bytes keeps its file (inode and mtime)', () => {
      write(dir, { 'x.do': 'echo same' });
      run(dir, 'redo', ['x']);
      const before = fs.statSync(path.join(dir, 'x'));
      run(dir, 'redo', ['x']);
      const after = fs.statSync(path.join(dir, 'x'));
      assert.equal(after.ino, before.ino);
      assert.equal(after.mtimeMs, before.mtimeMs);
      write(dir, { 'x.do': 'echo different' });
      run(dir, 'redo', ['x']);
      assert.equal(read(dir, 'x'), 'different\n');
    });

    it('redo rebuilds even when up to date', () => {
      write(dir, { 'x.do': counted('x', 'echo x') });
      run(dir, 'redo', ['x']);
      run(dir, 'redo', ['x']);
      assert.deepEqual(runsOf(dir), ['x', 'x']);
    });

    it('rebuilds when the .do file changes', () => {
      write(dir, { 'x.do': 'echo one' });
      run(dir, 'redo-ifchange', ['x']);
      write(dir, { 'x.do': 'echo two' });
      run(dir, 'redo-ifchange', ['x']);
      assert.equal(read(dir, 'x'), 'two\n');
    });

    it('rebuilds when a more specific .do file appears', () => {
      write(dir, { 'default.do': 'echo generic' });
      run(dir, 'redo-ifchange', ['x']);
      write(dir, { 'x.do': 'echo specific' });
      run(dir, 'redo-ifchange', ['x']);
      assert.equal(read(dir, 'x'), 'specific\n');
    });

    it('redo-ifcreate rebuilds the target once the file exists', () => {
      write(dir, { 'x.do': counted('x', 'redo-ifcreate later; echo x') });
      run(dir, 'redo-ifchange', ['x']);
      run(dir, 'redo-ifchange', ['x']);
      assert.deepEqual(runsOf(dir), ['x']);
      write(dir, { later: '' });
      run(dir, 'redo-ifchange', ['x']);
      assert.deepEqual(runsOf(dir), ['x', 'x']);
    });

    it('redo-always rebuilds the target on every run, once a run', () => {
      write(dir, {
        'a.do': counted('a', 'redo-always; echo a'),
        'b.do': 'redo-ifchange a a; redo-ifchange a',
      });
      run(dir, 'redo-ifchange', ['b']);
      run(dir, 'redo-ifchange', ['a']);
      assert.deepEqual(runsOf(dir), ['a', 'a']);
    });

    it('redo-stamp: dependents rebuild only when the stamp changes', () => {
      write(dir, {
        'ver.do': counted('ver', 'redo-always; cat version >"$3"; redo-stamp <"$3"'),
        'use.do': counted('use', 'redo-ifchange ver; cat ver'),
        version: '1\n',
      });
      run(dir, 'redo-ifchange', ['use']);
      run(dir, 'redo-ifchange', ['use']);
      assert.deepEqual(runsOf(dir), ['use', 'ver', 'ver']);
      write(dir, { version: '2\n' });
      run(dir, 'redo-ifchange', ['use']);
      assert.deepEqual(runsOf(dir), ['use', 'ver', 'ver', 'ver', 'use']);
    });

    it('rebuilds a target whose output was deleted', () => {
      write(dir, { 'x.do': 'echo x' });
      run(dir, 'redo-ifchange', ['x']);
      fs.rmSync(path.join(dir, 'x'));
      run(dir, 'redo-ifchange', ['x']);
      assert.equal(read(dir, 'x'), 'x\n');
    });

    it('does not overwrite a target modified by hand, and says so', () => {
      write(dir, { 'x.do': 'redo-ifchange in; cat in', in: 'a\n' });
      run(dir, 'redo-ifchange', ['x']);
      write(dir, { x: 'mine\n', in: 'b\n' });
      const r = run(dir, 'redo-ifchange', ['x']);
      assert.equal(r.status, 0);
      assert.match(r.stderr, /x - you modified it; skipping/);
      assert.equal(read(dir, 'x'), 'mine\n');
    });

    it('treats an existing file that redo did not make as a source, even if a default.do matches', () => {
      write(dir, { 'default.do': 'echo generated', 'hand.txt': 'precious\n', 'use.do': 'redo-ifchange hand.txt; cat hand.txt' });
      assert.equal(run(dir, 'redo-ifchange', ['use']).status, 0);
      assert.equal(read(dir, 'hand.txt'), 'precious\n');
      assert.equal(read(dir, 'use'), 'precious\n');
    });
  });

  describe('failures', () => {
    it('says, naming the jobs, when a build stalls with every job waiting and nothing running (12), not what Node would', () => {
      // a rule whose build waits for what never comes: the engine's own deadlock looks the same from outside
      // (a .do waiting on it would be a process the engine waits for: a hang, not this)
      write(dir, { 'rules.mjs': "export const rules = [{ name: 'stuck', version: '1', matches: (rel) => rel.startsWith('stuck'), build: () => new Promise(() => {}) }];\n" });
      const r = run(dir, 'redo', ['-j1', 'stuck', 'stuck2'], { REDO_RULES: path.join(dir, 'rules.mjs') });
      assert.equal(r.status, 12, r.stderr);
      assert.match(r.stderr, /^redo: internal error: the build stalled, every job waiting on another \(jobs: stuck stuck2; waiting for a slot: stuck2\)$/m);
      assert.doesNotMatch(r.stderr, /unsettled top-level await/);
    });

    it('passes on the exit status and names the target; keeps the old target and its deps', () => {
      write(dir, { 'x.do': 'redo-ifchange in; if grep -q bad in; then exit 42; fi; cat in', in: 'good\n' });
      assert.equal(run(dir, 'redo-ifchange', ['x']).status, 0);
      write(dir, { in: 'bad\n' });
      const r = run(dir, 'redo-ifchange', ['x']);
      assert.equal(r.status, 42);
      assert.match(r.stderr, /x: exit 42/);
      assert.match(r.stderr, /redo: failed: x \(exit 42\)\n$/, 'the last line names the failure');
      assert.equal(read(dir, 'x'), 'good\n');
      assert.deepEqual(
        fs.readdirSync(dir).filter((n) => n.includes('.tmp-')),
        [],
        'no temporary left',
      );
      write(dir, { in: 'good again\n' });
      assert.equal(run(dir, 'redo-ifchange', ['x']).status, 0);
      assert.equal(read(dir, 'x'), 'good again\n');
    });

    it('a failing dependency fails its dependents', () => {
      write(dir, { 'top.do': 'redo-ifchange bad; echo top', 'bad.do': 'exit 3' });
      const r = run(dir, 'redo', ['top']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /bad: exit 3/);
      assert.equal(exists(dir, 'top'), false);
    });

    it('names an unreadable dependency instead of crashing', function () {
      if (process.getuid?.() === 0) {
        // root reads anything: make the "file" a dangling path inside a file instead
        write(dir, { 'x.do': 'redo-ifchange notadir/file', notadir: '' });
      } else {
        write(dir, { 'x.do': 'redo-ifchange secret', secret: 'x' });
        fs.chmodSync(path.join(dir, 'secret'), 0);
      }
      const r = run(dir, 'redo', ['x']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /(notadir\/file|secret)/);
      assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
    });

    it('says there is no rule when neither the file nor a .do exists', () => {
      const r = run(dir, 'redo-ifchange', ['nothing']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /no rule to make nothing/);
    });

    it('stops at the first failure, but -k keeps building other targets', () => {
      write(dir, { 'bad.do': 'exit 1', 'good.do': 'echo good' });
      assert.notEqual(run(dir, 'redo', ['bad', 'good']).status, 0);
      assert.equal(exists(dir, 'good'), false);
      const r = run(dir, 'redo', ['-k', 'bad', 'good']);
      assert.notEqual(r.status, 0);
      assert.equal(read(dir, 'good'), 'good\n');
    });

    it('reports a dependency cycle by name instead of hanging', () => {
      write(dir, { 'a.do': 'redo-ifchange b', 'b.do': 'redo-ifchange a' });
      const r = run(dir, 'redo', ['a']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /dependency cycle: (a -> b -> a|b -> a -> b)/);
    });

    it('gives a usage error with exit status 2 for an unknown option', () => {
      const r = run(dir, 'redo', ['--bogus']);
      assert.equal(r.status, 2);
      assert.match(r.stderr, /unknown option --bogus/);
    });

    it('says redo-ifcreate and redo-always belong in a .do', () => {
      const r = run(dir, 'redo-always');
      assert.equal(r.status, 3);
      assert.match(r.stderr, /must be run from a \.do file/);
    });
  });

  describe('state', () => {
    it('rebuilds, not trusts, outputs whose state directory was deleted', () => {
      write(dir, { 'default.o.do': 'redo-ifchange "$2.c"; cat "$2.c"', 'f.c': 'one\n' });
      run(dir, 'redo-ifchange', ['f.o']);
      fs.rmSync(path.join(dir, '.redo'), { recursive: true });
      write(dir, { 'f.c': 'two\n' });
      assert.equal(run(dir, 'redo-ifchange', ['f.o']).status, 0);
      assert.equal(read(dir, 'f.o'), 'two\n');
    });

    it('rebuilds, not trusts, outputs whose state is corrupted', () => {
      write(dir, { 'default.o.do': 'redo-ifchange "$2.c"; cat "$2.c"', 'f.c': 'one\n' });
      run(dir, 'redo-ifchange', ['f.o']);
      for (const f of walk(path.join(dir, '.redo'))) if (!f.includes('/tmp/')) fs.writeFileSync(f, '{garbage\n\u0000\n');
      write(dir, { 'f.c': 'two\n' });
      assert.equal(run(dir, 'redo-ifchange', ['f.o']).status, 0);
      assert.equal(read(dir, 'f.o'), 'two\n');
    });

    it('lists targets, sources and out-of-date targets relative to the current directory', () => {
      write(dir, { 'sub/x.do': 'redo-ifchange y.src; cat y.src', 'sub/y.src': '1\n' });
      run(dir, 'redo-ifchange', ['sub/x']);
      assert.equal(run(dir, 'redo-targets').stdout, 'sub/x\n');
      assert.equal(run(path.join(dir, 'sub'), 'redo-sources').stdout, 'x.do\ny.src\n');
      assert.equal(run(dir, 'redo-ood').stdout, '');
      write(dir, { 'sub/y.src': '2\n' });
      assert.equal(run(dir, 'redo-ood').stdout, 'sub/x\n');
    });

    describe('names a built-in rule says are always targets', () => {
      // x.gen: a copy of x.src; x.ver: the first line of VERSION, stamped
      const rules = `import * as fs from 'node:fs';
export const rules = [
  { name: 'gen', version: '1', alwaysTarget: true, matches: (rel) => rel.endsWith('.gen'),
    async build(ctx) {
      const src = ctx.target.replace(/\\.gen$/, '.src');
      await ctx.ifchange([src]);
      fs.copyFileSync(src, ctx.out);
    } },
  { name: 'ver', version: '1', quiet: true, matches: (rel) => rel.endsWith('.ver'),
    async build(ctx) {
      const v = fs.readFileSync(ctx.target.replace(/[^/]*$/, 'VERSION'), 'utf8').split('\\n')[0];
      ctx.always();
      ctx.stamp(v);
      fs.writeFileSync(ctx.out, v + '\\n');
    } },
];
`;
      const withRules = (d: string, cmd: string, args: string[] = []) => run(d, cmd, args, { REDO_RULES: path.join(d, 'rules.mjs') });
      /** what cp -r or tar x leaves: no mark in the mtime's microseconds */
      const touch = (f: string) => fs.utimesSync(f, Math.floor(Date.now() / 1000), Math.floor(Date.now() / 1000));

      it('rebuilds one whose record is lost with the state, even without the mark in its mtime', () => {
        write(dir, { 'rules.mjs': rules, 'x.src': 'one\n' });
        assert.equal(withRules(dir, 'redo-ifchange', ['x.gen']).status, 0);
        fs.rmSync(path.join(dir, '.redo'), { recursive: true });
        write(dir, { 'x.src': 'two\n' });
        touch(path.join(dir, 'x.gen'));
        const r = withRules(dir, 'redo-ifchange', ['x.gen']);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(read(dir, 'x.gen'), 'two\n');
      });

      it('rebuilds one whose record came with a state copied from another checkout', () => {
        const other = scratch();
        try {
          write(other.dir, { 'rules.mjs': rules, 'x.src': 'theirs\n' });
          assert.equal(withRules(other.dir, 'redo-ifchange', ['x.gen']).status, 0);
          write(dir, { 'rules.mjs': rules, 'x.src': 'one\n' });
          assert.equal(withRules(dir, 'redo-ifchange', ['x.gen']).status, 0);
          write(dir, { 'x.src': 'two\n' });
          fs.rmSync(path.join(dir, '.redo'), { recursive: true });
          fs.cpSync(path.join(other.dir, '.redo'), path.join(dir, '.redo'), { recursive: true });
          touch(path.join(dir, 'x.gen'));
          const r = withRules(dir, 'redo-ifchange', ['x.gen']);
          assert.equal(r.status, 0, r.stderr);
          assert.equal(read(dir, 'x.gen'), 'two\n');
          assert.doesNotMatch(r.stderr, /you modified it/);
        } finally {
          other.cleanup();
        }
      });

      it('is no source when a file is put there by hand where its build had failed', () => {
        write(dir, { 'rules.mjs': rules });
        assert.notEqual(withRules(dir, 'redo-ifchange', ['x.gen']).status, 0, 'x.src is missing');
        write(dir, { 'x.gen': 'by hand\n', 'x.src': 'built\n' });
        assert.doesNotMatch(withRules(dir, 'redo-sources').stdout, /x\.gen/);
        assert.equal(withRules(dir, 'redo-ifchange', ['x.gen']).status, 0);
        assert.equal(read(dir, 'x.gen'), 'built\n');
      });

      it("redo-ood agrees with the build: a quiet stamped rule is asked, a deleted directory's targets are gone", () => {
        write(dir, { 'rules.mjs': rules, VERSION: '1\nnotes\n', 'out.do': 'redo-ifchange x.ver; cat x.ver', 'sub/y.do': 'echo y' });
        assert.equal(withRules(dir, 'redo-ifchange', ['out', 'sub/y']).status, 0);
        assert.equal(withRules(dir, 'redo-ood').stdout, '');
        write(dir, { VERSION: '1\nother notes\n' });
        fs.rmSync(path.join(dir, 'sub'), { recursive: true });
        assert.equal(withRules(dir, 'redo-ood').stdout, '', 'the stamp did not move');
        write(dir, { VERSION: '2\n' });
        assert.equal(withRules(dir, 'redo-ood').stdout, 'out\nx.ver\n');
        const r = withRules(dir, 'redo-ifchange', ['out']);
        assert.deepEqual(r.stderr.split('\n').filter(Boolean), ['redo  out'], 'the build agrees');
        assert.equal(withRules(dir, 'redo-ood').stdout, '');
      });
    });

    it('redo-targets inside a build lists what the build has made so far', () => {
      write(dir, { 'x.do': 'echo x', 'all.do': 'redo x; redo-targets >&2' });
      const r = run(dir, 'redo', ['all']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /^x$/m);
    });

    it('a file made by hand where a target had failed is a source, listed as one', () => {
      write(dir, { 'bork.do': 'exit 10' });
      assert.equal(run(dir, 'redo-ifchange', ['bork']).status, 10);
      write(dir, { bork: 'by hand\n' });
      assert.equal(run(dir, 'redo-ifchange', ['bork']).status, 0);
      assert.equal(read(dir, 'bork'), 'by hand\n');
      assert.match(run(dir, 'redo-sources').stdout, /^bork$/m);
      assert.doesNotMatch(run(dir, 'redo-targets').stdout, /^bork$/m);
      assert.equal(run(dir, 'redo', ['bork']).status, 0, 'redo bork: not redoing a file redo did not make');
      assert.equal(read(dir, 'bork'), 'by hand\n');
    });

    it('built-in rules share what they keep for a run, until redo-flush-cache forgets it', () => {
      // each .n holds the value its rule kept for the run: 1 made first, 2 after
      const rules = `import * as fs from 'node:fs';
const KEY = Symbol('kept');
let made = 0;
export const rules = [
  { name: 'n', version: '1', matches: (rel) => rel.endsWith('.n'),
    async build(ctx) { fs.writeFileSync(ctx.out, String(ctx.run.once(KEY, () => ++made))); } },
];
`;
      write(dir, { 'rules.mjs': rules, 'all.do': 'redo-ifchange a.n b.n; redo-flush-cache; redo-ifchange c.n' });
      const r = run(dir, 'redo', ['all'], { REDO_RULES: path.join(dir, 'rules.mjs') });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(
        ['a.n', 'b.n', 'c.n'].map((f) => read(dir, f)),
        ['1', '1', '2'],
      );
    });

    it('redo-whichdo lists the candidates up to the .do that exists', () => {
      write(dir, { 'default.o.do': '', 'a/.keep': '' });
      const r = run(dir, 'redo-whichdo', ['a/x.o']);
      assert.equal(r.status, 0);
      assert.equal(r.stdout, 'a/x.o.do\na/default.o.do\na/default.do\ndefault.o.do\n');
      const none = run(dir, 'redo-whichdo', ['a/x.zz']);
      assert.equal(none.status, 1);
    });
  });

  describe('parallel builds', () => {
    // each .do waits until the other has started: only a parallel build ends
    const meet = (me: string, other: string) => `touch started.${me}; n=0; while [ ! -e started.${other} ]; do n=$((n+1)); [ $n -lt 300 ] || exit 9; sleep 0.05; done; echo ${me}`;

    it('-j2 runs two builds at once', () => {
      write(dir, { 'a.do': meet('a', 'b'), 'b.do': meet('b', 'a'), 'all.do': 'redo-ifchange a b' });
      const r = run(dir, 'redo', ['-j2', 'all']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(dir, 'a') + read(dir, 'b'), 'a\nb\n');
    });

    it('-j1 runs one build at a time: a blocked .do lends its slot to its own dependencies only', () => {
      write(dir, {
        'all.do': 'redo first second',
        'first.do': 'redo-ifchange child; [ ! -e second.started ] || exit 22',
        'child.do': 'sleep 0.3',
        'second.do': 'touch second.started',
      });
      const r = run(dir, 'redo', ['-j1', 'all']);
      assert.equal(r.status, 0, r.stderr);
    });

    it("-j1 rebuilds a changed dependency found while checking, on the asking job's slot", function () {
      this.timeout(20_000);
      write(dir, {
        'all.do': 'redo-ifchange use',
        'use.do': 'redo-ifchange mid; cat mid',
        'mid.do': 'redo-ifchange leaf; cat leaf',
        'leaf.do': 'redo-ifchange src; cat src',
        src: '1\n',
      });
      assert.equal(run(dir, 'redo', ['-j1', 'all']).status, 0);
      write(dir, { src: '2\n' });
      const r = run(dir, 'redo', ['-j1', 'all']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(dir, 'use'), '2\n');
    });

    it("gives make the jobserver, so make -j in a .do shares redo's slots", () => {
      write(dir, {
        Makefile: 'all: p q\np:\n\t@echo "$(MAKEFLAGS)" >flags\nq:\n\t@true\n',
        'm.do': 'make -s >&2; cat flags',
      });
      const r = run(dir, 'redo', ['-j3', 'm']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(read(dir, 'm'), /--jobserver-auth=\d+,\d+/);
      assert.doesNotMatch(r.stderr, /jobserver unavailable/);
    });

    it('two redo processes never build one target twice', async () => {
      write(dir, {
        'slow.do': 'echo run >>runs.log; sleep 1; echo done',
        'a.do': 'redo-ifchange slow; echo a',
        'b.do': 'redo-ifchange slow; echo b',
      });
      const [ra, rb] = await Promise.all([start(dir, 'redo', ['a']), start(dir, 'redo', ['b'])]);
      assert.equal(ra.status, 0, ra.stderr);
      assert.equal(rb.status, 0, rb.stderr);
      assert.deepEqual(runsOf(dir), ['run']);
    });

    it('a redo process does not build again what another built after it started, lock free or not', async () => {
      write(dir, {
        'slow.do': 'echo run >>runs.log; echo done',
        'a.do': 'redo-ifchange slow; echo a',
        // b's process reads its state as it starts, then asks for slow only
        // once a's process has built it and exited: the lock is free by then
        'b.do': 'touch b-began; while [ ! -e go ]; do sleep 0.05; done; redo-ifchange slow; echo b',
      });
      const b = start(dir, 'redo', ['b']);
      for (let i = 0; !exists(dir, 'b-began'); i++) {
        assert.ok(i < 600, 'b never began');
        await new Promise((r) => setTimeout(r, 50));
      }
      const ra = run(dir, 'redo', ['a']);
      assert.equal(ra.status, 0, ra.stderr);
      write(dir, { go: '' });
      const rb = await b;
      assert.equal(rb.status, 0, rb.stderr);
      assert.deepEqual(runsOf(dir), ['run']);
      assert.equal(read(dir, 'b'), 'b\n');
    });

    it('real redo-* commands reach the running build from any interpreter', () => {
      write(dir, {
        '!py.do': '#!/usr/bin/env python3\nimport subprocess, sys\nsubprocess.check_call(["redo-ifchange", "dep"])\nprint(open("dep").read().strip() + "!")\n',
        'dep.do': 'echo dep',
      });
      const r = run(dir, 'redo-ifchange', ['py']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(dir, 'py'), 'dep!\n');
      write(dir, { 'dep.do': 'echo dep2' });
      run(dir, 'redo-ifchange', ['py']);
      assert.equal(read(dir, 'py'), 'dep2!\n', 'the dependency was recorded');
    });
  });

  describe('semantics other redo implementations share', () => {
    it('passes the environment of the asking .do on to the .do it builds', () => {
      write(dir, {
        'top.do': 'PREFIX=/a/b redo-ifchange p; export FLAVOUR=mint; redo-ifchange f; cat p f',
        'p.do': 'echo "prefix=$PREFIX"',
        'f.do': 'echo "flavour=$FLAVOUR"',
      });
      assert.equal(run(dir, 'redo', ['top']).status, 0);
      assert.equal(read(dir, 'top'), 'prefix=/a/b\nflavour=mint\n');
    });

    it('runs the rule of `redo X` every time it is asked, even twice in one run', () => {
      write(dir, {
        'count.do': 'echo run >>runs.log',
        'a.do': 'redo count',
        'b.do': 'redo count',
        'all.do': 'redo-ifchange a b',
      });
      assert.equal(run(dir, 'redo', ['all']).status, 0);
      assert.deepEqual(runsOf(dir), ['run', 'run']);
    });

    it('a nested redo -jN runs its targets in parallel even under -j1', () => {
      const meet = (me: string, other: string) => `touch started.${me}; n=0; while [ ! -e started.${other} ]; do n=$((n+1)); [ $n -lt 300 ] || exit 9; sleep 0.05; done`;
      write(dir, { 'p1.do': meet('p1', 'p2'), 'p2.do': meet('p2', 'p1'), 'all.do': 'redo -j2 p1 p2' });
      const r = run(dir, 'redo', ['-j1', 'all']);
      assert.equal(r.status, 0, r.stderr);
    });

    it('redo-ifchange with no targets inside a .do builds nothing', () => {
      write(dir, { 'x.do': 'redo-ifchange; redo-ifcreate; redo; echo x', 'all.do': 'echo all-ran >>runs.log' });
      assert.equal(run(dir, 'redo', ['x']).status, 0);
      assert.deepEqual(runsOf(dir), []);
    });

    it('resolves .. physically, through symlinked directories', () => {
      write(dir, { 'top/y/static': 'deep\n', 'top/static': 'shallow\n', 'top/y/show.do': 'redo-ifchange ../static; cat ../static' });
      fs.symlinkSync('.', path.join(dir, 'top/y/x'));
      const deep = path.join(dir, 'top/y/x/x/x');
      write(dir, { 'top/y/use.do': 'redo-ifchange "$(pwd)/../static"; cat ../static' });
      assert.equal(run(deep, 'redo-ifchange', ['../static']).status, 0, 'top/static, not top/y/x/x/static');
      assert.equal(run(deep, 'redo-ifchange', ['show']).status, 0);
      assert.equal(read(dir, 'top/y/show'), 'shallow\n');
    });

    it('lets a .do create the directory its target goes in', () => {
      write(dir, { 'default.txt.do': 'mkdir -p "$(dirname "$1")"; echo made >"$3"' });
      assert.equal(run(dir, 'redo-ifchange', ['new/deep/x.txt']).status, 0);
      assert.equal(read(dir, 'new/deep/x.txt'), 'made\n');
    });

    it('accepts a directory made in place as the target, and leaves it be', () => {
      write(dir, { 'made.do': 'echo run >>runs.log; rm -rf "$1"; mkdir "$1"' });
      assert.equal(run(dir, 'redo-ifchange', ['made']).status, 0);
      write(dir, { 'made/outfile': 'x' });
      const r = run(dir, 'redo-ifchange', ['made']);
      assert.equal(r.status, 0);
      assert.equal(r.stderr, '');
      assert.deepEqual(runsOf(dir), ['run']);
    });

    it('refuses a .do that writes the target itself instead of $3 (exit 206)', () => {
      write(dir, { 'bad.do': 'echo oops >"$1"' });
      const r = run(dir, 'redo', ['bad']);
      assert.equal(r.status, 206);
      assert.match(r.stderr, /bad: the \.do wrote to \$1/);
    });

    it('a target whose .do is deleted becomes a source', () => {
      write(dir, { 'gen.do': 'echo gen', 'use.do': 'redo-ifchange gen; cat gen' });
      run(dir, 'redo-ifchange', ['use']);
      fs.rmSync(path.join(dir, 'gen.do'));
      const r = run(dir, 'redo-ifchange', ['use']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(run(dir, 'redo-ifchange', ['use']).stderr, '', 'quiet once it is a source');
      assert.match(run(dir, 'redo-sources').stdout, /^gen$/m);
    });

    it('redo-flush-cache makes the running build look again, retrying what failed', () => {
      write(dir, {
        'maybe.do': '[ ! -e want-fail ]; echo ok',
        'all.do': 'touch want-fail; ! redo-ifchange maybe; rm want-fail; redo-flush-cache; redo-ifchange maybe',
      });
      const r = run(dir, 'redo', ['all']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(dir, 'maybe'), 'ok\n');
    });
  });

  describe('interruption', () => {
    it("a redo killed mid-build stops the .do's processes and keeps the old target", async () => {
      write(dir, { 'slow.do': 'echo old' });
      run(dir, 'redo', ['slow']);
      write(dir, { 'slow.do': 'sleep 30 & echo $! >sleeper.pid; wait; echo new' });
      const { spawn } = await import('node:child_process');
      const { userEnv, BIN, processState } = await import('./helpers.ts');
      const p = spawn(path.join(BIN, 'redo'), ['slow'], { cwd: dir, env: userEnv(), stdio: 'ignore' });
      // the shell makes the file before it writes the pid into it: wait for a whole line
      const pidLine = () => (exists(dir, 'sleeper.pid') ? read(dir, 'sleeper.pid') : '');
      for (let i = 0; !pidLine().endsWith('\n'); i++) {
        assert.ok(i < 400, 'the .do never started its sleep');
        await new Promise((r) => setTimeout(r, 25));
      }
      const sleeper = Number(pidLine());
      assert.ok(sleeper > 0, pidLine());
      const status = await new Promise<number | null>((resolve) => {
        p.on('exit', (code) => resolve(code));
        p.kill('SIGTERM');
      });
      assert.equal(status, 143);
      await new Promise((r) => setTimeout(r, 200));
      // gone, or a zombie waiting for whoever adopted it to reap it
      const state = processState(sleeper);
      assert.ok(state === 'gone' || state === 'Z', `the .do's sleep was stopped (state ${state})`);
      assert.equal(read(dir, 'slow'), 'old\n');
    });
  });

  describe('output', () => {
    it('prints one line a target, indented by depth', () => {
      write(dir, { 'all.do': 'redo-ifchange sub/a', 'sub/a.do': 'redo-ifchange b; echo a', 'sub/b.do': 'echo b' });
      const r = run(dir, 'redo');
      assert.equal(r.stderr, 'redo  all\nredo    sub/a\nredo      sub/b\n');
    });

    it('a .do that redirects the stderr of redo-ifchange gets the output of what it builds', () => {
      write(dir, {
        'all.do': 'redo-ifchange x 2>log',
        'x.do': 'echo from-x >&2; redo-ifchange y; echo x',
        '!y.do': '#!/bin/sh\necho from-y >&2\necho y\n',
      });
      const r = run(dir, 'redo', ['all']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, 'redo  all\n');
      assert.equal(read(dir, 'log'), 'redo    x\nfrom-x\nredo      y\nfrom-y\n');
    });

    it('a real redo-ifchange whose stderr is redirected gets the output too', () => {
      write(dir, {
        '!all.do': '#!/bin/sh\nredo-ifchange x 2>log\n',
        'x.do': 'echo from-x >&2; echo x',
      });
      const r = run(dir, 'redo', ['all']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(read(dir, 'log'), 'redo    x\nfrom-x\n');
    });

    it('--help describes the command', () => {
      const r = run(dir, 'redo-ifchange', ['--help']);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^usage: redo-ifchange/);
    });
  });
});

function* walk(d: string): Generator<string> {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) yield* walk(p);
    else yield p;
  }
}
