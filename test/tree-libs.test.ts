/**
 * The libraries and build tools built with the tree's GCC (pkg/gcc): zstd,
 * pkgconf, libffi, libsodium, ncurses, readline and sqlite, built in a
 * scratch copy of pkg/ and run from one venv, each as a user would call it.
 * The libraries are linked into small programs compiled in that venv by its
 * GCC, with the flags pkg-config gives.
 *
 * CI cannot build GCC (the chain takes hours), so this needs a peerpkgs
 * home whose built/ index holds pkg/gcc: PKG_TEST_GCC_HOME names it, and
 * without it the tests are skipped, saying so. Run it as
 *
 *   PKG_TEST_GCC_HOME=$HOME/.cache/peerpkgs node node_modules/mocha/bin/mocha.js \
 *     --no-config --extension ts --timeout 120000 test/tree-libs.test.ts
 *
 * The packages are built in that home (taken from its store when it holds
 * them already, as after bin/build-packages-ifchange in a checkout).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gccTree, userEnv } from './helpers.ts';

const PACKAGES = ['zstd', 'pkgconf', 'libffi', 'libsodium', 'ncurses', 'readline', 'sqlite'];

describe('libraries and build tools built by the tree’s GCC', function () {
  // a package missing from the home is built: minutes each
  this.timeout(3 * 3600_000);
  let dir: string;
  let cleanup: (() => void) | undefined;

  before(function () {
    ({ dir, cleanup } = gccTree(this, PACKAGES, ['gcc']));
  });
  after(() => cleanup?.());

  const venvRun = (args: string[], input?: string) => {
    const r = spawnSync(path.join(dir, 'venv/bin/venv-run'), args, { cwd: dir, env: userEnv(), input, encoding: 'utf8', timeout: 120_000 });
    if (r.error) throw r.error;
    return r;
  };
  /** `program` compiled in the venv by its GCC, with pkg-config's flags for `modules`, and run. */
  const compileAndRun = (name: string, program: string, modules: string[], input?: string) => {
    fs.writeFileSync(path.join(dir, `${name}.c`), program);
    const flags = venvRun(['pkg-config', '--static', '--cflags', '--libs', ...modules]);
    assert.equal(flags.status, 0, flags.stderr);
    const cc = venvRun(['cc', '-O2', '-o', name, `${name}.c`, ...flags.stdout.trim().split(/\s+/).filter(Boolean)]);
    assert.equal(cc.status, 0, cc.stderr);
    return venvRun([`./${name}`], input);
  };

  it('zstd compresses and decompresses', () => {
    assert.match(venvRun(['zstd', '--version']).stdout, /^\*\*\* Zstandard CLI \(64-bit\) v1\.5\.4, by Yann Collet \*\*\*$/m);
    const text = 'a line for zstd\n'.repeat(1000);
    const packed = spawnSync(path.join(dir, 'venv/bin/venv-run'), ['zstd', '-19', '-c'], { cwd: dir, env: userEnv(), input: text });
    assert.equal(packed.status, 0);
    assert.ok(packed.stdout.length < text.length / 20, `${packed.stdout.length} bytes`);
    assert.equal(packed.stdout.readUInt32LE(0), 0xfd2fb528, 'a zstd frame');
    const back = spawnSync(path.join(dir, 'venv/bin/venv-run'), ['zstd', '-dc'], { cwd: dir, env: userEnv(), input: packed.stdout });
    assert.equal(back.stdout.toString(), text);
  });

  it('pkg-config finds the libraries’ .pc files in /usr/lib/pkgconfig', () => {
    const r = venvRun(['pkg-config', '--modversion', 'libzstd', 'libffi', 'libsodium', 'ncursesw', 'readline', 'sqlite3']);
    assert.equal(r.stdout, '1.5.4\n3.4.4\n1.0.18\n6.4.20221231\n8.2\n3.40.1\n', r.stderr);
    assert.equal(venvRun(['pkg-config', '--libs', 'libsodium']).stdout.trim(), '-lsodium');
  });

  it('libffi calls a function whose signature it is given at run time', () => {
    const r = compileAndRun(
      'ffi',
      `#include <ffi.h>
#include <stdio.h>
static double scale(int n, double x) { return n * x; }
int main(void) {
	ffi_cif cif;
	ffi_type *args[] = { &ffi_type_sint, &ffi_type_double };
	int n = 6;
	double x = 7.25, result;
	void *values[] = { &n, &x };
	if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 2, &ffi_type_double, args) != FFI_OK) return 1;
	ffi_call(&cif, FFI_FN(scale), &result, values);
	printf("%g\\n", result);
	return 0;
}
`,
      ['libffi'],
    );
    assert.equal(r.stdout, '43.5\n', r.stderr);
  });

  it('libsodium hashes as BLAKE2b does', () => {
    const r = compileAndRun(
      'sodium',
      `#include <sodium.h>
#include <stdio.h>
int main(void) {
	unsigned char h[64];
	if (sodium_init() < 0) return 1;
	crypto_generichash(h, sizeof h, (const unsigned char *)"abc", 3, NULL, 0);
	for (int i = 0; i < 64; i++) printf("%02x", h[i]);
	printf("\\n");
	return 0;
}
`,
      ['libsodium'],
    );
    assert.equal(r.stdout, createHash('blake2b512').update('abc').digest('hex') + '\n', r.stderr);
  });

  it('ncurses’ tput reads the terminfo database', () => {
    assert.equal(venvRun(['tput', '-T', 'vt100', 'cols']).stdout, '80\n');
    assert.match(venvRun(['infocmp', '-1', 'xterm-256color']).stdout, /^\tcolors#0x100,$/m);
  });

  it('readline reads a line and keeps it in its history', () => {
    const r = compileAndRun(
      'rl',
      `#include <stdio.h>
#include <stdlib.h>
#include <readline/readline.h>
#include <readline/history.h>
int main(void) {
	char *line = readline("");
	if (!line) return 1;
	add_history(line);
	fprintf(stderr, "readline %s: [%s], history %d: [%s]\\n", rl_library_version, line, history_length, history_get(history_base)->line);
	free(line);
	return 0;
}
`,
      ['readline'],
      'a line\n',
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, 'readline 8.2: [a line], history 1: [a line]\n');
  });

  it('sqlite3 runs SQL, and is linked with readline', () => {
    const r = venvRun(['sqlite3', ':memory:', 'create table t(x); insert into t values (6), (7); select sqlite_version(), x * (select x from t where x = 7) from t where x = 6;']);
    assert.equal(r.stdout, '3.40.1|42\n', r.stderr);
    // its history file is written by readline, when the shell has it
    const history = path.join(dir, 'sqlite-history');
    const i = spawnSync(path.join(dir, 'venv/bin/venv-run'), ['sqlite3', '-interactive', ':memory:'], {
      cwd: dir,
      env: userEnv({ SQLITE_HISTORY: history }),
      input: 'select 6 * 7;\n',
      encoding: 'utf8',
    });
    assert.match(i.stdout, /^42$/m, i.stderr);
    assert.equal(fs.readFileSync(history, 'utf8').trim().split('\n').pop(), 'select 6 * 7;');
    const json = venvRun(['sqlite3', ':memory:', `select json_extract('{"a":[1,2,3]}', '$.a[2]');`]);
    assert.equal(json.stdout, '3\n');
  });
});
