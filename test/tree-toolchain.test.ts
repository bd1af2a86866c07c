/**
 * The final toolchain: musl, binutils, make, tar and GCC 12 compiled by the
 * chain's last GCC (pkg/gcc-12), built in a scratch copy of pkg/ and run
 * from one venv as a user would run them. What makes them final is checked
 * in the programs themselves: every object GCC compiled carries its
 * version in a .comment section, so the compiler, assembler, linker, the C
 * library and C++ library, make and tar must name GCC 12.2.0 and no earlier
 * GCC of the chain (3.4.6, 10.2.0).
 *
 * CI cannot run it: it has no GCC (the chain takes over an hour to build).
 * It runs when PKG_TEST_GCC_HOME names a peerpkgs home whose built/ holds
 * pkg/gcc:
 *
 *   PKG_TEST_GCC_HOME=$HOME/.cache/peerpkgs node node_modules/mocha/bin/mocha.js \
 *     --no-config --extension ts --timeout 120000 test/tree-toolchain.test.ts
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gccTree, userEnv } from './helpers.ts';

const PACKAGES = ['musl', 'binutils', 'make', 'tar', 'gcc'];
const TRIPLET = 'x86_64-pc-linux-musl';

describe('the final toolchain, compiled by GCC 12 (PKG_TEST_GCC_HOME)', function () {
  this.timeout(60_000);
  let dir: string;
  let cleanup: (() => void) | undefined;
  const venvRun = (args: string[], input?: string) => {
    const r = spawnSync(path.join(dir, 'venv/bin/venv-run'), args, { cwd: dir, env: userEnv(), input, encoding: 'utf8', timeout: 60_000 });
    if (r.error) throw r.error;
    return r;
  };
  const ok = (args: string[], input?: string) => {
    const r = venvRun(args, input);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  before(function () {
    this.timeout(4 * 60 * 60_000);
    ({ dir, cleanup } = gccTree(this, PACKAGES, ['busybox']));
  });
  after(() => cleanup?.());

  it('compiles, links statically and runs C (with complex.h, which the tcc-built musl lacks) and C++17', () => {
    fs.writeFileSync(
      path.join(dir, 'c.c'),
      '#include <complex.h>\n#include <stdio.h>\nint main(void) { double complex z = cexp(I * 3.14159265358979323846); printf("%.0f %ld\\n", creal(z), __STDC_VERSION__); return 0; }\n',
    );
    fs.writeFileSync(
      path.join(dir, 'cc.cc'),
      '#include <iostream>\n#include <optional>\n#include <string>\nint main() { std::optional<std::string> s{"C++"}; std::cout << *s << " " << __cplusplus << std::endl; }\n',
    );
    ok(['gcc', '-O2', '-o', 'c', 'c.c']);
    ok(['g++', '-std=c++17', '-O2', '-o', 'cc', 'cc.cc']);
    assert.equal(ok(['./c']), '-1 201710\n');
    assert.equal(ok(['./cc']), 'C++ 201703\n');
    for (const exe of ['c', 'cc']) assert.doesNotMatch(ok(['readelf', '-l', exe]), /INTERP/, `${exe} is linked dynamically`);
    // the musl it links is its run-dep's, in /usr/lib (the driver names it by its own lib/gcc/… path)
    assert.equal(ok(['sh', '-c', 'readlink -f "$(gcc -print-file-name=libc.a)"']).trim(), '/usr/lib/libc.a');
  });

  it('names GCC 12.2.0, and no earlier compiler of the chain, in every object of the toolchain', () => {
    const files = [
      `/usr/libexec/gcc/${TRIPLET}/12.2.0/cc1`,
      `/usr/libexec/gcc/${TRIPLET}/12.2.0/cc1plus`,
      '/usr/bin/gcc',
      '/usr/bin/as',
      `/usr/${TRIPLET}/bin/ld`,
      '/usr/bin/make',
      '/usr/bin/tar',
      '/usr/lib/libc.a',
      '/usr/lib/libstdc++.a',
      `/usr/lib/gcc/${TRIPLET}/12.2.0/libgcc.a`,
    ];
    for (const file of files) {
      // (an archive's members written in assembly have no .comment, which
      // readelf warns of and exits 1 for: its output is what counts)
      const comments = venvRun(['readelf', '-p', '.comment', file]).stdout;
      const versions = new Set([...comments.matchAll(/GCC: \(GNU\) (\S+)/g)].map((m) => m[1]));
      assert.deepEqual([...versions], ['12.2.0'], `${file}: ${comments.slice(0, 2000)}`);
    }
  });

  it('runs the GCC-built binutils, make and tar', () => {
    assert.match(ok(['ld', '--version']), /^GNU ld \(GNU Binutils\) 2\.40$/m);
    assert.match(ok(['as', '--version']), /^GNU assembler \(GNU Binutils\) 2\.40$/m);
    assert.match(ok(['make', '--version']), /^GNU Make 4\.4\.1$/m);
    assert.match(ok(['tar', '--version']), /^tar \(GNU tar\) 1\.34$/m);
    fs.mkdirSync(path.join(dir, 'mk'));
    fs.writeFileSync(path.join(dir, 'mk/Makefile'), 'all: a.out\n%.out: %.in\n\tcp $< $@\na.in:\n\techo $(words x y z) >$@\n');
    ok(['make', '-C', 'mk', '-j2']);
    assert.equal(fs.readFileSync(path.join(dir, 'mk/a.out'), 'utf8'), '3\n');
    ok(['tar', '-czf', 'mk.tar.gz', 'mk']);
    assert.deepEqual(ok(['tar', '-tzf', 'mk.tar.gz']).split('\n').filter(Boolean).sort(), ['mk/', 'mk/Makefile', 'mk/a.in', 'mk/a.out']);
  });
});
