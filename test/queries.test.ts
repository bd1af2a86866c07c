/**
 * Questions asked of a package tree, through bin/peerpkgs: what depends
 * on a package (graph --reverse), how big its closures are (info), and
 * the same answers as JSON of the shapes test/schemas/ documents.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assertSchema, busyboxHttpd, run, scratch, write, type Run } from './helpers.ts';
import { BUSYBOX, makeSeedTarball, simplePackage, writeSeedPackage } from './seed.ts';

describe('queries', function () {
  this.timeout(120_000);
  let s: { dir: string; cleanup: () => void };
  let www: { url: string; stop(): Promise<void> };
  let tree: string;
  let home: string;
  const pkg = (name: string) => path.join(tree, 'pkg', name);

  // one tree for the file: a, b run-depends on a, c builds with b, d builds
  // with c, e run-depends on b, f on nothing; a and b built
  before(async () => {
    s = scratch();
    tree = path.join(s.dir, 'tree');
    home = path.join(s.dir, 'home');
    fs.mkdirSync(path.join(s.dir, 'www'));
    const seedSha = await makeSeedTarball(path.join(s.dir, 'www'));
    www = await busyboxHttpd(path.join(s.dir, 'www'));
    writeSeedPackage(tree, www.url, seedSha);
    write(tree, simplePackage('a', 'a'));
    write(tree, simplePackage('b', 'b', { 'pkg/b/run-deps': '../a\n' }));
    write(tree, simplePackage('c', 'c', { 'pkg/c/build-deps': '../seed\n../b\n' }));
    write(tree, simplePackage('d', 'd', { 'pkg/d/build-deps': '../seed\n../c\n' }));
    write(tree, simplePackage('e', 'e', { 'pkg/e/run-deps': '../b\n' }));
    write(tree, simplePackage('f', 'f'));
    write(tree, { 'pkg/notes/README': 'not a package\n' });
    const r = run(tree, 'build-packages-ifchange', ['./pkg/b'], { PEERPKGS_HOME: home });
    assert.equal(r.status, 0, r.stderr);
  });
  after(async () => {
    await www.stop();
    s.cleanup();
  });
  const peerpkgs = (...args: string[]): Run => run(tree, 'peerpkgs', args, { PEERPKGS_HOME: home });
  const json = (...args: string[]): unknown => {
    const r = peerpkgs(...args);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout);
  };

  describe('graph --reverse', () => {
    it('lists what in the tree depends on a package, by run or build, directly or not', () => {
      const r = peerpkgs('graph', '--reverse', './pkg/a');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'run: pkg/b\nbuild: pkg/c (indirectly)\nbuild: pkg/d (indirectly)\nrun: pkg/e (indirectly)\n');
      assert.equal(peerpkgs('graph', '--reverse', './pkg/f').stdout, '', 'nothing depends on f');
    });

    it('says the same as JSON', async () => {
      const doc = json('graph', '--reverse', '--json', './pkg/b');
      await assertSchema('graph-reverse', doc);
      assert.deepEqual(doc, {
        package: pkg('b'),
        tree: path.join(tree, 'pkg'),
        dependents: [
          { package: pkg('c'), kind: 'build', direct: true },
          { package: pkg('d'), kind: 'build', direct: false },
          { package: pkg('e'), kind: 'run', direct: true },
        ],
      });
    });

    it('takes one package', () => {
      const r = peerpkgs('graph', '--reverse', './pkg/a', './pkg/b');
      assert.equal(r.status, 2);
      assert.match(r.stderr, /--reverse takes one package directory \(see peerpkgs graph --help\)/);
    });
  });

  it('graph --json gives each package once with its direct dependencies', async () => {
    const doc = json('graph', '--json', './pkg/e');
    await assertSchema('graph', doc);
    assert.deepEqual(doc, {
      roots: [pkg('e')],
      packages: {
        [pkg('e')]: { buildDeps: [pkg('seed')], runDeps: [pkg('b')] },
        [pkg('seed')]: { buildDeps: [], runDeps: [] },
        [pkg('b')]: { buildDeps: [pkg('seed')], runDeps: [pkg('a')] },
        [pkg('a')]: { buildDeps: [pkg('seed')], runDeps: [] },
      },
    });
  });

  describe('info', () => {
    // each package installs bin/NAME: "#!/bin/sh\necho NAME\n"
    const script = (name: string) => `#!/bin/sh\necho ${name}\n`.length;

    it('gives the unpacked size of the output, with its run closure, and of its build closure', () => {
      const r = peerpkgs('info', './pkg/b');
      assert.equal(r.status, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(
          `^size: +${script('b')} B unpacked\\n +with its run closure ${script('a') + script('b')} B \\(2 packages\\)\\n +build closure \\d+\\.\\d [KM]iB \\(1 package\\)$`,
          'm',
        ),
      );
    });

    it('says which packages are not built', () => {
      const r = peerpkgs('info', './pkg/e');
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^size: +not built\n +with its run closure unknown: pkg\/e not built\n +build closure \d+\.\d [KM]iB \(1 package\)$/m);
    });

    it('says the same as JSON, in bytes', async () => {
      const doc = json('info', '--json', './pkg/b', './pkg/d') as Array<Record<string, unknown>>;
      await assertSchema('info', doc);
      const [b, d] = doc;
      assert.equal(b!.package, pkg('b'));
      assert.deepEqual(b!.closure, [pkg('a')]);
      assert.deepEqual(b!.size, {
        output: script('b'),
        runClosure: { bytes: script('a') + script('b'), packages: 2, missing: [] },
        buildClosure: { bytes: fs.statSync(BUSYBOX).size, packages: 1, missing: [] },
      });
      assert.equal((b!.output as { upToDate: boolean }).upToDate, true);
      assert.equal(d!.output, null);
      assert.deepEqual(d!.size, {
        output: null,
        runClosure: { bytes: null, packages: 1, missing: [pkg('d')] },
        buildClosure: { bytes: null, packages: 2, missing: [pkg('c')] },
      });
    });
  });
});
