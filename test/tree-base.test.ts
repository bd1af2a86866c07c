/**
 * The GNU base and the shells, built by GCC: sed, grep, diffutils,
 * findutils, gawk, gzip, bzip2, patch, coreutils and bash, each with
 * ../gcc in its build-deps, built from pkg/ as checked out and run from a
 * venv of them all, one call of each package's program.
 *
 * GCC takes over an hour to build from the seed, more than a CI run has:
 * this file needs a peerpkgs home whose built/ holds pkg/gcc, named by
 * PKG_TEST_GCC_HOME (the user's, ~/.cache/peerpkgs, once the chain is
 * built there: `bin/build-packages-ifchange -j2 ./pkg/gcc`). Without it,
 * the whole file is skipped, saying so. The packages are built in a
 * scratch copy of pkg/ with that home, so GCC comes from its built/ index,
 * as do these packages if that home built them before.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { gccTree, userEnv } from './helpers.ts';

const PACKAGES = ['sed', 'grep', 'diffutils', 'findutils', 'gawk', 'gzip', 'bzip2', 'patch', 'coreutils', 'bash'];

describe('the GNU base and shells, built by GCC (PKG_TEST_GCC_HOME)', function () {
  this.timeout(60_000);
  let dir: string;
  let cleanup: (() => void) | undefined;

  before(function () {
    ({ dir, cleanup } = gccTree(this, PACKAGES));
  });
  after(() => cleanup?.());

  const venvRun = (args: string[], input?: Buffer | string) => {
    const r = spawnSync(path.join(dir, 'venv/bin/venv-run'), args, { cwd: dir, env: userEnv(), input, timeout: 60_000 });
    if (r.error) throw r.error;
    return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString(), bytes: r.stdout };
  };
  const file = (name: string, text: string) => fs.writeFileSync(path.join(dir, name), text);

  it('sed edits a stream', () => {
    assert.equal(venvRun(['sed', '-E', 's/([^ ]+) ([^ ]+)/\\2 \\1/; 2d'], 'hello world\ndropped line\nsed 4.9\n').stdout, 'world hello\n4.9 sed\n');
  });

  it('grep prints the matching lines, numbered', () => {
    assert.equal(venvRun(['grep', '-n', '-E', '^b+$'], 'a\nbbb\nab\nb\n').stdout, '2:bbb\n4:b\n');
  });

  it('diff shows a unified diff and exits 1 when files differ', () => {
    file('old.txt', 'one\ntwo\nthree\n');
    file('new.txt', 'one\nTWO\nthree\n');
    const r = venvRun(['diff', '-u', '--label', 'a', '--label', 'b', 'old.txt', 'new.txt']);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '--- a\n+++ b\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n');
  });

  it('find lists the files a test selects', () => {
    for (const f of ['tree/a.txt', 'tree/sub/b.txt', 'tree/sub/c.md']) {
      fs.mkdirSync(path.join(dir, path.dirname(f)), { recursive: true });
      file(f, f);
    }
    assert.equal(venvRun(['find', 'tree', '-name', '*.txt', '-type', 'f']).stdout.split('\n').sort().join('\n'), '\ntree/a.txt\ntree/sub/b.txt');
  });

  it('gawk runs a program', () => {
    const r = venvRun(['awk', '{ n += $2 } END { printf "%s %d %s\\n", toupper($1), n, gensub(/(.)(.)/, "\\\\2\\\\1", 1, "ab") }'], 'x 1\ny 41\n');
    assert.equal(r.stdout, 'Y 42 ba\n');
  });

  it('gzip compresses what another gzip reads, and reads what another wrote', () => {
    const text = 'a line for gzip\n'.repeat(1000);
    const gz = venvRun(['gzip', '-9', '-c'], text).bytes;
    assert.ok(gz.length < text.length / 10);
    assert.equal(zlib.gunzipSync(gz).toString(), text);
    assert.equal(venvRun(['gzip', '-dc'], zlib.gzipSync(text)).stdout, text);
  });

  it('bzip2 compresses to the .bz2 format and back', () => {
    const text = 'a line for bzip2\n'.repeat(1000);
    const bz = venvRun(['bzip2', '-c'], text).bytes;
    assert.equal(bz.subarray(0, 4).toString('latin1'), 'BZh9');
    assert.ok(bz.length < text.length / 10);
    assert.equal(venvRun(['bunzip2', '-c'], bz).stdout, text);
  });

  it('patch applies a unified diff', () => {
    file('poem.txt', 'roses are red\nviolets are blue\n');
    const r = venvRun(['patch', 'poem.txt'], '--- poem.txt\n+++ poem.txt\n@@ -1,2 +1,2 @@\n roses are red\n-violets are blue\n+GCC compiled you\n');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'patching file poem.txt\n');
    assert.equal(fs.readFileSync(path.join(dir, 'poem.txt'), 'utf8'), 'roses are red\nGCC compiled you\n');
  });

  it("coreutils' sha256sum and sort", () => {
    const text = 'coreutils\n';
    const sha = createHash('sha256').update(text).digest('hex');
    assert.equal(venvRun(['sha256sum'], text).stdout, `${sha}  -\n`);
    assert.equal(venvRun(['sort', '-n', '-r'], '10\n9\n100\n').stdout, '100\n10\n9\n');
    assert.match(venvRun(['ls', '--version']).stdout, /^ls \(GNU coreutils\) 9\.1$/m);
  });

  it("bash, the tree's (musl's), runs a script with arrays and its own expansions", () => {
    const r = venvRun(['bash', '-c', 'a=(x y z); echo "$BASH_VERSION $MACHTYPE ${#a[@]} ${a[1]^^} $((2 ** 10))"']);
    assert.equal(r.stdout, '5.2.15(1)-release x86_64-pc-linux-musl 3 Y 1024\n');
  });
});
