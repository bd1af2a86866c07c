/**
 * Python 3, ninja and CMake built with the tree's GCC (pkg/gcc), in a
 * scratch copy of pkg/, and used from one venv as a user would: python3
 * importing the extension modules built into it, ninja running a
 * build.ninja, cmake configuring a C++ project for ninja and GCC.
 *
 * CI cannot run it: it has no GCC (the chain takes over an hour to build).
 * It runs when PKG_TEST_GCC_HOME names a peerpkgs home whose built/ holds
 * pkg/gcc (GCC is then substituted from it, and so are these packages if
 * they were built there before; the scratch copy of pkg/ has no outputs):
 *
 *   PKG_TEST_GCC_HOME=$HOME/.cache/peerpkgs node node_modules/mocha/bin/mocha.js \
 *     --no-config --extension ts --timeout 120000 test/tree-py.test.ts
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gccTree, userEnv } from './helpers.ts';

const PACKAGES = ['python3', 'ninja', 'cmake'];

describe('python3, ninja and cmake built with GCC (PKG_TEST_GCC_HOME)', function () {
  this.timeout(4 * 60 * 60_000);
  let dir: string;
  let cleanup: (() => void) | undefined;
  // the venv's programs, found before any the host's PATH puts first (a python3 shim)
  const venvRun = (args: string[], opts: { cwd?: string; input?: string } = {}) => {
    const r = spawnSync(path.join(dir, 'venv/bin/venv-run'), args, {
      cwd: opts.cwd ?? dir,
      env: userEnv({ PATH: '/usr/bin:/bin' }),
      input: opts.input,
      encoding: 'utf8',
      timeout: 300_000,
    });
    if (r.error) throw r.error;
    return r;
  };

  before(function () {
    // busybox in the venv: ninja runs each command with /bin/sh, and this one
    // with tr; GCC, for cmake's project
    ({ dir, cleanup } = gccTree(this, PACKAGES, ['busybox', 'gcc']));
  });
  after(() => cleanup?.());

  it('python3 imports ssl, sqlite3, zlib, bz2, lzma, ctypes, hashlib and json, and they work', () => {
    const imports = venvRun(['python3', '-c', 'import ssl, sqlite3, zlib, bz2, lzma, ctypes, hashlib, json']);
    assert.equal(imports.status, 0, imports.stderr);
    assert.equal(imports.stdout + imports.stderr, '');
    const text = 'peerpkgs builds python with GCC\n';
    const program = [
      'import sys, ssl, sqlite3, zlib, bz2, lzma, ctypes, hashlib, json',
      'data = sys.stdin.read().encode()',
      'print(sys.version.split()[0])',
      'print(ssl.OPENSSL_VERSION)',
      'db = sqlite3.connect(":memory:")',
      'print(db.execute("select sqlite_version(), 6 * 7").fetchone())',
      'assert all(m.decompress(m.compress(data * 100)) == data * 100 for m in (zlib, bz2, lzma))',
      'print(hashlib.sha256(data).hexdigest())',
      'twice = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: 2 * x)',
      'print(json.dumps({"twice": twice(21)}))',
    ].join('\n');
    const r = venvRun(['python3', '-c', program], { input: text });
    assert.equal(r.status, 0, r.stderr);
    const sha = createHash('sha256').update(text).digest('hex');
    assert.equal(r.stdout, `3.11.2\nOpenSSL 3.0.20 ${/^OpenSSL 3\.0\.20 (.*)$/m.exec(r.stdout)?.[1]}\n('3.40.1', 42)\n${sha}\n{"twice": 42}\n`);
  });

  it('ninja runs a build.ninja, and a second run has nothing to do', () => {
    assert.equal(venvRun(['ninja', '--version']).stdout, '1.11.1\n');
    const work = path.join(dir, 'ninja-work');
    fs.mkdirSync(work);
    fs.writeFileSync(path.join(work, 'in.txt'), 'hello\n');
    fs.writeFileSync(path.join(work, 'build.ninja'), 'rule upper\n  command = tr a-z A-Z < $in > $out\nbuild out.txt: upper in.txt\n');
    const first = venvRun(['ninja'], { cwd: work });
    assert.equal(first.status, 0, first.stdout + first.stderr);
    assert.match(first.stdout, /\[1\/1\] tr a-z A-Z < in\.txt > out\.txt/);
    assert.equal(fs.readFileSync(path.join(work, 'out.txt'), 'utf8'), 'HELLO\n');
    assert.equal(venvRun(['ninja'], { cwd: work }).stdout, 'ninja: no work to do.\n');
  });

  it('cmake configures a C++17 project for ninja, which builds it with GCC, and the program runs', () => {
    assert.match(venvRun(['cmake', '--version']).stdout, /^cmake version 3\.25\.1$/m);
    const src = path.join(dir, 'cmake-src');
    fs.mkdirSync(src);
    fs.writeFileSync(
      path.join(src, 'CMakeLists.txt'),
      'cmake_minimum_required(VERSION 3.20)\nproject(hello CXX)\nset(CMAKE_CXX_STANDARD 17)\nadd_library(greet STATIC greet.cc)\nadd_executable(hello main.cc)\ntarget_link_libraries(hello greet)\n',
    );
    fs.writeFileSync(path.join(src, 'greet.cc'), '#include <string>\n#include <string_view>\nstd::string greet(std::string_view who) { return "hello, " + std::string(who); }\n');
    fs.writeFileSync(
      path.join(src, 'main.cc'),
      '#include <iostream>\n#include <optional>\n#include <string>\n#include <string_view>\nstd::string greet(std::string_view);\nint main(int argc, char **argv) {\n\tstd::optional<std::string_view> who;\n\tif (argc > 1) who = argv[1];\n\tstd::cout << greet(who.value_or("world")) << std::endl;\n}\n',
    );
    const configured = venvRun(['cmake', '-G', 'Ninja', '-S', 'cmake-src', '-B', 'cmake-build']);
    assert.equal(configured.status, 0, configured.stdout + configured.stderr);
    assert.match(configured.stdout, /^-- The CXX compiler identification is GNU 12\.2\.0$/m);
    assert.match(configured.stdout, /^-- Build files have been written to: .*\/cmake-build$/m);
    assert.ok(fs.existsSync(path.join(dir, 'cmake-build/build.ninja')), 'cmake wrote no build.ninja');
    const built = venvRun(['cmake', '--build', 'cmake-build']);
    assert.equal(built.status, 0, built.stdout + built.stderr);
    assert.match(built.stdout, /\[\d\/\d\] Linking CXX executable hello/);
    assert.equal(venvRun(['cmake-build/hello', 'peerpkgs']).stdout, 'hello, peerpkgs\n');
    assert.equal(venvRun(['cmake', '--build', 'cmake-build']).stdout, 'ninja: no work to do.\n');
  });
});
