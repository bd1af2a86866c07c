/**
 * The tree's larger GCC-built packages, perl, openssl, nginx and git,
 * built in a scratch copy of pkg/ and run from one venv, each program
 * called once as a user would.
 *
 * CI cannot run it: it has no GCC (the chain takes over an hour to build).
 * It runs when PKG_TEST_GCC_HOME names a peerpkgs home whose built/ holds
 * pkg/gcc (GCC is then substituted from it, and so are these packages if
 * they were built there before; the scratch copy of pkg/ has no outputs):
 *
 *   PKG_TEST_GCC_HOME=$HOME/.cache/peerpkgs node node_modules/mocha/bin/mocha.js \
 *     --no-config --extension ts --timeout 120000 test/tree-big.test.ts
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gccTree, userEnv } from './helpers.ts';

const PACKAGES = ['perl', 'openssl', 'nginx', 'git'];

describe('the larger packages built with GCC (PKG_TEST_GCC_HOME)', function () {
  this.timeout(4 * 60 * 60_000);
  let dir: string;
  let cleanup: (() => void) | undefined;
  const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
  const venvRun = (args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}) => {
    const r = spawnSync(path.join(dir, 'venv/bin/venv-run'), args, { cwd: opts.cwd ?? dir, env: userEnv(opts.env), input: opts.input, encoding: 'utf8', timeout: 60_000 });
    if (r.error) throw r.error;
    return r;
  };

  before(function () {
    ({ dir, cleanup } = gccTree(this, PACKAGES));
  });
  after(() => cleanup?.());

  it("perl computes a SHA-256 with Digest::SHA, linked into it, that node's agrees with", () => {
    const text = 'peerpkgs builds perl with GCC\n';
    const p = venvRun(['perl', '-MDigest::SHA=sha256_hex', '-e', 'local $/; print sha256_hex(<STDIN>), "\\n"'], { input: text });
    assert.equal(p.status, 0, p.stderr);
    assert.equal(p.stdout, `${sha256(text)}\n`);
    assert.match(venvRun(['perl', '-e', 'print "$^V\\n"']).stdout, /^v5\.36\.0$/m);
  });

  it("openssl dgst -sha256 of a file gives node's digest", () => {
    const file = path.join(dir, 'data.bin');
    const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7919) & 0xff));
    fs.writeFileSync(file, data);
    const r = venvRun(['openssl', 'dgst', '-sha256', file]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `SHA2-256(${file})= ${sha256(data)}\n`);
    assert.match(venvRun(['openssl', 'version']).stdout, /^OpenSSL 3\.0\.20 /);
  });

  it('nginx -t accepts a minimal configuration', () => {
    const prefix = path.join(dir, 'nginx');
    fs.mkdirSync(prefix);
    // nginx's own defaults put logs and temporary files under /var: here, under the prefix
    const conf = [
      'daemon off;',
      'error_log stderr;',
      'pid nginx.pid;',
      'events {}',
      'http {',
      '  access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${t};`),
      '  gzip on;',
      '  server {',
      '    listen 127.0.0.1:18080;',
      '    location / { root html; }',
      '  }',
      '}',
    ];
    fs.writeFileSync(path.join(prefix, 'nginx.conf'), conf.join('\n') + '\n');
    const r = venvRun(['nginx', '-e', 'stderr', '-p', prefix, '-c', 'nginx.conf', '-t']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /the configuration file .*nginx\.conf syntax is ok/);
    assert.match(r.stderr, /configuration file .*nginx\.conf test is successful/);
    const v = venvRun(['nginx', '-V']).stderr;
    assert.match(v, /^nginx version: nginx\/1\.22\.1$/m);
    assert.match(v, /^built with OpenSSL 3\.0\.20 /m);
  });

  it('git makes a repository and a commit in it', () => {
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const env = { HOME: dir, GIT_AUTHOR_NAME: 'A U Thor', GIT_AUTHOR_EMAIL: 'author@example.org', GIT_COMMITTER_NAME: 'A U Thor', GIT_COMMITTER_EMAIL: 'author@example.org' };
    const git = (...args: string[]) => {
      const r = venvRun(['git', ...args], { cwd: repo, env: { ...env, GIT_AUTHOR_DATE: '2000-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2000-01-01T00:00:00Z' } });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    assert.match(git('init', '-b', 'main'), /^Initialized empty Git repository in .*\/repo\/\.git\/$/m);
    fs.writeFileSync(path.join(repo, 'hello.txt'), 'hello\n');
    git('add', 'hello.txt');
    assert.match(git('commit', '-m', 'first'), /^\[main \(root-commit\) [0-9a-f]{7}\] first$/m);
    assert.equal(git('log', '--format=%an %s'), 'A U Thor first\n');
    // the blob's id is the SHA-1 of its header and content, as any git computes it
    assert.equal(git('rev-parse', 'HEAD:hello.txt').trim(), createHash('sha1').update('blob 6\0hello\n').digest('hex'));
  });
});
