/**
 * The package model as a packager meets it: rec files, package directories,
 * pkghashes and closures, read from small trees in a scratch directory.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { scratch, write } from './helpers.ts';
import { TreeError } from '../src/tree/errors.ts';
import { parseRec } from '../src/tree/rec.ts';
import { loadPackage } from '../src/tree/package.ts';
import { PackageGraph, BUILDER_VERSION } from '../src/tree/pkghash.ts';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const C = 'c'.repeat(64);
const BUILD = '#!/bin/sh\nset -eu\necho hi >"$DESTDIR/hi"\n';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** fn must throw a TreeError whose message is `expected` (exactly, or matching it). */
function throwsTree(fn: () => unknown, expected: string | RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TreeError, `not a TreeError: ${String(e)}`);
    if (typeof expected === 'string') assert.equal(e.message, expected);
    else assert.match(e.message, expected);
    return true;
  });
}

describe('package tree', function () {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = scratch()));
  afterEach(() => cleanup());

  /** Write pkg/NAME under root; it gets an executable build unless it has a build or an override. */
  function pkg(name: string, files: Record<string, string> = {}, root = dir): string {
    const made = ['build', '!build', '.pkg.tar.gz.do'].some((f) => f in files);
    write(path.join(root, 'pkg', name), made ? files : { '!build': BUILD, ...files });
    return path.join(root, 'pkg', name);
  }

  describe('rec files', () => {
    it('reads records separated by blank lines, each field with its line', () => {
      const recs = parseRec('url: https://a/x.tgz\nsha256: 1\n\n\nurl: https://b/y.tgz\nsha256: 2\n', 'f.rec');
      assert.deepEqual(recs, [
        {
          line: 1,
          fields: [
            { name: 'url', value: 'https://a/x.tgz', line: 1 },
            { name: 'sha256', value: '1', line: 2 },
          ],
        },
        {
          line: 5,
          fields: [
            { name: 'url', value: 'https://b/y.tgz', line: 5 },
            { name: 'sha256', value: '2', line: 6 },
          ],
        },
      ]);
    });

    it('keeps repeated fields in a record, in order, as mirrors of one file', () => {
      const [rec] = parseRec('url: https://a/x.tgz\nurl: https://b/x.tgz\nsha256: 1\n', 'f.rec');
      assert.deepEqual(
        rec.fields.map((f) => `${f.name}=${f.value}`),
        ['url=https://a/x.tgz', 'url=https://b/x.tgz', 'sha256=1'],
      );
    });

    it('continues a value on a new line for each + line, with or without the space after it', () => {
      const [rec] = parseRec('Address:\n+ Foostrs. 19\n+Frankfurt\nNote: a\n+ b\n', 'f.rec');
      assert.deepEqual(
        rec.fields.map((f) => f.value),
        ['\nFoostrs. 19\nFrankfurt', 'a\nb'],
      );
    });

    it('joins a line ending in a backslash with the next', () => {
      const [rec] = parseRec('LongLine: a quite long \\\nvalue\nNext: x\n', 'f.rec');
      assert.deepEqual(
        rec.fields.map((f) => [f.name, f.value]),
        [
          ['LongLine', 'a quite long value'],
          ['Next', 'x'],
        ],
      );
    });

    it('skips comment lines inside and between records', () => {
      const recs = parseRec('# sources\nurl: x\n# the hash\nsha256: y\n\n# end\n', 'f.rec');
      assert.deepEqual(recs, [
        {
          line: 2,
          fields: [
            { name: 'url', value: 'x', line: 2 },
            { name: 'sha256', value: 'y', line: 4 },
          ],
        },
      ]);
    });

    it('does not return record descriptors as data', () => {
      const recs = parseRec('%rec: Fetch\n%mandatory: url sha256\n%type: url line\n\nurl: x\nsha256: y\n', 'f.rec');
      assert.deepEqual(
        recs.map((r) => r.line),
        [5],
      );
    });

    it('rejects a record that lacks a %mandatory field, naming the record', () => {
      throwsTree(
        () => parseRec('%rec: Fetch\n%mandatory: url sha256\n\nurl: x\nsha256: y\n\nurl: z\n', 'f.rec'),
        "f.rec:7: record lacks the mandatory field 'sha256' (%mandatory at line 2)",
      );
    });

    it('applies %mandatory only to the records after its descriptor, until the next one', () => {
      const text = 'url: before\n\n%rec: Fetch\n%mandatory: sha256\n\nsha256: y\n\n%rec: Other\n\nurl: after\n';
      assert.deepEqual(
        parseRec(text, 'f.rec').map((r) => r.fields[0].value),
        ['before', 'y', 'after'],
      );
    });

    it('names the file and line of a line that is not a field', () => {
      throwsTree(() => parseRec('url: x\nsha256 = y\n', 'f.rec'), /^f\.rec:2: expected 'Name: value'.*"sha256 = y"$/);
    });

    it('rejects a + line with no field to continue', () => {
      throwsTree(() => parseRec('url: x\n\n+ more\n', 'f.rec'), "f.rec:3: a '+' continuation line with no field before it");
    });

    it('rejects data fields inside a record descriptor', () => {
      throwsTree(() => parseRec('%rec: Fetch\nurl: x\n', 'f.rec'), /^f\.rec:2: field 'url' in a record descriptor/);
    });
  });

  describe('loading a package', () => {
    it('reads its name, build script and dependencies in file order, relative to the package', () => {
      pkg('seed', { '.pkg.tar.gz.do': 'exit 0\n' });
      pkg('libc');
      pkg('lib');
      const a = pkg('app', { 'build-deps': '../libc\n\n# the compiler\n../seed\n', 'run-deps': '../lib\n' });
      const p = loadPackage(a);
      assert.equal(p.name, 'app');
      assert.equal(p.dir, a);
      assert.equal(p.buildScript, path.join(a, 'build'));
      assert.deepEqual(p.buildDeps, [path.join(dir, 'pkg/libc'), path.join(dir, 'pkg/seed')]);
      assert.deepEqual(p.runDeps, [path.join(dir, 'pkg/lib')]);
    });

    it('accepts a package made by its .pkg.tar.gz.do alone, with no build script', () => {
      const p = loadPackage(pkg('seed', { '.pkg.tar.gz.do': 'exit 0\n' }));
      assert.equal(p.buildScript, null);
    });

    it('reads fetch records: mirrors of one file, named by file: or after the first url', () => {
      const a = pkg('make', {
        fetch: [
          'url: https://ftp.gnu.org/gnu/make/make-4.3.tar.gz',
          'url: https://mirror.example/gnu/make-4.3.tar.gz',
          `sha256: ${A}`,
          '',
          '# a patch served by a script',
          'url: https://example.org/get?id=7',
          'file: fix.patch',
          `sha256: ${B}`,
        ].join('\n'),
      });
      assert.deepEqual(loadPackage(a).fetch, [
        {
          file: 'make-4.3.tar.gz',
          sha256: A,
          urls: ['https://ftp.gnu.org/gnu/make/make-4.3.tar.gz', 'https://mirror.example/gnu/make-4.3.tar.gz'],
          line: 1,
        },
        { file: 'fix.patch', sha256: B, urls: ['https://example.org/get?id=7'], line: 6 },
      ]);
    });

    it('lists files/ by path with mode and content hash, and a symlink by its target', () => {
      const a = pkg('x', { 'files/b.patch': 'B', '!files/a/run.sh': 'X' });
      fs.symlinkSync('b.patch', path.join(a, 'files/link'));
      assert.deepEqual(loadPackage(a).files, [
        { path: 'a/run.sh', mode: 0o100755, sha256: sha('X') },
        { path: 'b.patch', mode: 0o100644, sha256: sha('B') },
        { path: 'link', mode: 0o120000, sha256: sha('b.patch') },
      ]);
    });

    it('names the run-deps line of a dependency that does not exist', () => {
      pkg('lib');
      const a = pkg('app', { 'run-deps': '../lib\n\n../nope\n' });
      throwsTree(() => loadPackage(a), `${a}/run-deps:3: ../nope: no such package directory (${dir}/pkg/nope)`);
    });

    it('names the build-deps line of a dependency that is not a package', () => {
      fs.mkdirSync(path.join(dir, 'pkg/empty'), { recursive: true });
      const a = pkg('app', { 'build-deps': '../empty\n' });
      throwsTree(() => loadPackage(a), `${a}/build-deps:1: ../empty: not a package: ${dir}/pkg/empty has neither a build script nor a .pkg.tar.gz.do`);
    });

    it('refuses a directory with neither a build script nor a .pkg.tar.gz.do', () => {
      const a = pkg('app', { fetch: '' });
      fs.rmSync(path.join(a, 'build'));
      throwsTree(() => loadPackage(a), `${a}: not a package: it has neither a build script nor a .pkg.tar.gz.do`);
    });

    it('names the line of a malformed fetch file', () => {
      const a = pkg('app', { fetch: `url: https://a/x.tgz\nsha256 ${A}\n` });
      throwsTree(() => loadPackage(a), new RegExp(`^${a}/fetch:2: expected 'Name: value'`));
    });

    it('rejects a sha256 that is not 64 lowercase hex digits, naming its line', () => {
      const a = pkg('app', { fetch: `# make\nurl: https://a/x.tgz\nsha256: ${A.toUpperCase()}\n` });
      throwsTree(() => loadPackage(a), `${a}/fetch:3: sha256 must be 64 lowercase hex digits, not "${A.toUpperCase()}"`);
    });

    it('rejects a fetch record without a sha256, naming the record', () => {
      const a = pkg('app', { fetch: `url: https://a/x.tgz\nsha256: ${A}\n\nurl: https://a/y.tgz\n` });
      throwsTree(() => loadPackage(a), `${a}/fetch:4: record has no sha256`);
    });

    it('rejects two records that fetch to the same file name', () => {
      const a = pkg('app', { fetch: `url: https://a/x.tgz\nsha256: ${A}\n\nurl: https://b/x.tgz\nsha256: ${B}\n` });
      throwsTree(() => loadPackage(a), `${a}/fetch:4: file 'x.tgz' is already fetched by the record at line 1`);
    });

    it("reads a fetch record's size, and rejects one that is not a byte count or is given twice, naming its line", () => {
      const a = pkg('app', { fetch: `url: https://a/x.tgz\nsha256: ${A}\nsize: 1234\n\nurl: https://a/y.tgz\nsha256: ${B}\n` });
      assert.deepEqual(
        loadPackage(a).fetch.map((f) => f.size),
        [1234, undefined],
      );
      for (const bad of ['12k', '-1', '012', '1e3', '']) {
        write(a, { fetch: `url: https://a/x.tgz\nsha256: ${A}\nsize: ${bad}\n` });
        throwsTree(() => loadPackage(a), `${a}/fetch:3: size must be a number of bytes, not ${JSON.stringify(bad)}`);
      }
      write(a, { fetch: `url: https://a/x.tgz\nsize: 1\nsha256: ${A}\nsize: 1\n` });
      throwsTree(() => loadPackage(a), `${a}/fetch:4: record has more than one size`);
    });

    it('rejects an unknown field in a fetch record, so a misspelt file: is not ignored', () => {
      const a = pkg('app', { fetch: `url: https://a/x.tgz\nflie: y.tgz\nsha256: ${A}\n` });
      throwsTree(() => loadPackage(a), `${a}/fetch:2: unknown field 'flie'; a fetch record has url, sha256, size and file`);
    });
  });

  describe('meta', () => {
    it('reads version, license, homepage and description', () => {
      const a = pkg('lua', { meta: 'version: 5.4.4\nlicense: MIT\nhomepage: https://www.lua.org/\ndescription: a small scripting language\n' });
      assert.deepEqual(loadPackage(a).meta, { version: '5.4.4', license: 'MIT', homepage: 'https://www.lua.org/', description: 'a small scripting language' });
      assert.deepEqual(loadPackage(pkg('bare')).meta, {});
    });

    it('refuses an unknown field, a license that is no SPDX expression and a second record, naming the line', () => {
      throwsTree(
        () => loadPackage(pkg('a', { meta: 'version: 1\nlicence: MIT\n' })),
        /\/pkg\/a\/meta:2: unknown field 'licence'; a meta record has version, license, homepage, description$/,
      );
      throwsTree(() => loadPackage(pkg('b', { meta: 'license: GPL v2\n' })), /\/pkg\/b\/meta:1: license "GPL v2" is not an SPDX license expression/);
      throwsTree(() => loadPackage(pkg('c', { meta: 'version: 1\n\nversion: 2\n' })), /\/pkg\/c\/meta:3: a meta file holds one record$/);
      throwsTree(() => loadPackage(pkg('d', { meta: 'version: 1\nversion: 2\n' })), /\/pkg\/d\/meta:2: 'version' is given twice$/);
      throwsTree(() => loadPackage(pkg('e', { meta: 'homepage: www.lua.org\n' })), /\/pkg\/e\/meta:1: homepage "www.lua.org" is not an http\(s\) url$/);
    });

    it('is given for every package of the real tree, with its license and a description', () => {
      const real = path.resolve(import.meta.dirname, '../pkg');
      for (const name of fs.readdirSync(real).filter((n) => fs.statSync(path.join(real, n)).isDirectory())) {
        const meta = loadPackage(path.join(real, name)).meta;
        assert.ok(meta.license && meta.description, `pkg/${name}/meta: ${JSON.stringify(meta)}`);
      }
    });

    it('is no input of the pkghash', () => {
      const a = pkg('lua');
      const before = new PackageGraph().pkghash(a);
      write(a, { meta: 'version: 5.4.4\nlicense: MIT\n' });
      assert.equal(new PackageGraph().pkghash(a), before);
    });
  });

  describe('pkghash', () => {
    /** A small tree: app builds with seed, runs with lib, which runs with libc. */
    function tree(root = dir): string {
      pkg('seed', { '.pkg.tar.gz.do': 'exit 0\n' }, root);
      pkg('libc', {}, root);
      pkg('lib', { 'run-deps': '../libc\n' }, root);
      return pkg(
        'app',
        {
          'build-deps': '../seed\n',
          'run-deps': '../lib\n',
          fetch: `url: https://a/app-1.tgz\nsha256: ${A}\n\nurl: https://a/extra.tgz\nsha256: ${B}\n`,
          'files/fix.patch': 'patch\n',
        },
        root,
      );
    }

    const hash = (d: string) => new PackageGraph().pkghash(d);

    /** The pkghash of app before and after `change`. */
    function around(change: (app: string) => void): [string, string] {
      const app = tree();
      const before = hash(app);
      change(app);
      return [before, hash(app)];
    }

    it('is the sha256 of a canonical text listing every input', () => {
      const app = tree();
      fs.symlinkSync('fix.patch', path.join(app, 'files/link'));
      const g = new PackageGraph();
      const text = g.pkghashText(app);
      assert.equal(
        text,
        [
          'pkghash-format 1',
          `builder "${BUILDER_VERSION}"`,
          `script "build" 100755 ${sha(BUILD)}`,
          `fetch "app-1.tgz" ${A}`,
          `fetch "extra.tgz" ${B}`,
          `file "fix.patch" 100644 ${sha('patch\n')}`,
          `file "link" 120000 ${sha('fix.patch')}`,
          `build-dep "seed" ${g.pkghash(path.join(dir, 'pkg/seed'))}`,
          `run-dep "lib" ${g.pkghash(path.join(dir, 'pkg/lib'))}`,
          '',
        ].join('\n'),
      );
      assert.equal(g.pkghash(app), sha(text));
    });

    it('is the same for identical trees in two directories', () => {
      assert.equal(hash(tree(path.join(dir, 'one'))), hash(tree(path.join(dir, 'two'))));
    });

    it('changes when the build script changes', () => {
      const [before, after] = around((app) => fs.appendFileSync(path.join(app, 'build'), 'true\n'));
      assert.notEqual(after, before);
    });

    it('changes when the build script stops being executable', () => {
      const [before, after] = around((app) => fs.chmodSync(path.join(app, 'build'), 0o644));
      assert.notEqual(after, before);
    });

    it("changes when a fetched file's sha256 changes", () => {
      const [before, after] = around((app) => write(app, { fetch: `url: https://a/app-1.tgz\nsha256: ${C}\n\nurl: https://a/extra.tgz\nsha256: ${B}\n` }));
      assert.notEqual(after, before);
    });

    it('does not change when a mirror is added or the mirrors are reordered', () => {
      const [before, after] = around((app) =>
        write(app, {
          fetch: `url: https://mirror/extra.tgz\nurl: https://a/extra.tgz\nfile: extra.tgz\nsha256: ${B}\n\nurl: https://b/app-1.tgz\nurl: https://a/app-1.tgz\nsha256: ${A}\n`,
        }),
      );
      assert.equal(after, before);
    });

    it('does not change when a fetch record gives its size', () => {
      const [before, after] = around((app) => write(app, { fetch: `url: https://a/app-1.tgz\nsha256: ${A}\nsize: 1234\n\nurl: https://a/extra.tgz\nsize: 0\nsha256: ${B}\n` }));
      assert.equal(after, before);
    });

    it('changes when a file in files/ changes', () => {
      const [before, after] = around((app) => write(app, { 'files/fix.patch': 'patch 2\n' }));
      assert.notEqual(after, before);
    });

    it('changes when a file is added to files/', () => {
      const [before, after] = around((app) => write(app, { 'files/sub/new': '' }));
      assert.notEqual(after, before);
    });

    it('changes when a file in files/ becomes executable', () => {
      const [before, after] = around((app) => fs.chmodSync(path.join(app, 'files/fix.patch'), 0o755));
      assert.notEqual(after, before);
    });

    it('does not change with mode bits a checkout does not keep (group and other write)', () => {
      const [before, after] = around((app) => fs.chmodSync(path.join(app, 'files/fix.patch'), 0o664));
      assert.equal(after, before);
    });

    it('changes when the build of a run-dep of a run-dep changes', () => {
      const [before, after] = around(() => fs.appendFileSync(path.join(dir, 'pkg/libc/build'), 'true\n'));
      assert.notEqual(after, before);
    });

    it('changes when the .pkg.tar.gz.do of a build-dep changes', () => {
      const [before, after] = around(() => write(dir, { 'pkg/seed/.pkg.tar.gz.do': 'exit 1\n' }));
      assert.notEqual(after, before);
    });

    it('does not depend on the order of dependencies or on comments in a deps file', () => {
      const app = tree();
      pkg('zlib');
      write(app, { 'run-deps': '../lib\n../zlib\n' });
      const before = hash(app);
      write(app, { 'run-deps': '# compression\n../zlib\n\n../lib\n' });
      assert.equal(hash(app), before);
    });
  });

  describe('closures', () => {
    it('lists the transitive run-deps, each after its own run-deps, without duplicates or the package', () => {
      pkg('d');
      pkg('b', { 'run-deps': '../d\n' });
      pkg('c', { 'run-deps': '../d\n' });
      const a = pkg('a', { 'run-deps': '../b\n../c\n' });
      assert.deepEqual(
        new PackageGraph().closure(a),
        ['d', 'b', 'c'].map((n) => path.join(dir, 'pkg', n)),
      );
    });

    it('leaves build-deps out of the closure', () => {
      pkg('gcc');
      const a = pkg('a', { 'build-deps': '../gcc\n' });
      assert.deepEqual(new PackageGraph().closure(a), []);
    });

    it('makes the build closure of the build-deps and their run-deps, not their build-deps', () => {
      pkg('gcc');
      pkg('libc');
      pkg('lib', { 'run-deps': '../libc\n' });
      pkg('make', { 'build-deps': '../gcc\n', 'run-deps': '../libc\n' });
      const a = pkg('app', { 'build-deps': '../make\n../lib\n', 'run-deps': '../lib\n' });
      assert.deepEqual(
        new PackageGraph().bclosure(a),
        ['libc', 'make', 'lib'].map((n) => path.join(dir, 'pkg', n)),
      );
    });
  });

  describe('dependency cycles', () => {
    let cwd: string;
    beforeEach(() => {
      cwd = process.cwd();
      process.chdir(dir);
    });
    afterEach(() => process.chdir(cwd));

    it('names the whole cycle and the run-deps line that closes it', () => {
      pkg('a', { 'run-deps': '../b\n' });
      pkg('b', { 'run-deps': '# back\n../a\n' });
      throwsTree(() => new PackageGraph().pkghash('pkg/a'), 'pkg/b/run-deps:2: dependency cycle: pkg/a -> pkg/b -> pkg/a');
    });

    it('finds a cycle that passes through build-deps', () => {
      pkg('a', { 'build-deps': '../b\n' });
      pkg('b', { 'run-deps': '../c\n' });
      pkg('c', { 'build-deps': '../a\n' });
      throwsTree(() => new PackageGraph().pkghash('pkg/a'), 'pkg/c/build-deps:1: dependency cycle: pkg/a -> pkg/b -> pkg/c -> pkg/a');
    });

    it('reports a package that depends on itself', () => {
      pkg('a', { 'run-deps': '../a\n' });
      throwsTree(() => new PackageGraph().closure('pkg/a'), 'pkg/a/run-deps:1: dependency cycle: pkg/a -> pkg/a');
    });
  });
});
