/**
 * The tree's larger GCC-built packages, perl, openssl, nginx and git,
 * built in a scratch copy of pkg/ and run from one venv, each program
 * called once as a user would; and the tree serving itself: git clones and
 * fetches over http from the tree's nginx.
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
import { spawn, spawnSync } from 'node:child_process';
import * as net from 'node:net';
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

  /**
   * DIR/NAME holding an nginx.conf that serves `root` on 127.0.0.1:`port`
   * (`http` lines added to its http block). nginx's own defaults put logs
   * and temporary files under /var: here, under the prefix. As root, its
   * workers would be nobody, who cannot read the scratch directory.
   */
  const nginxPrefix = (name: string, port: number, root: string, http: string[] = []): string => {
    const prefix = path.join(dir, name);
    fs.mkdirSync(prefix);
    const conf = [
      'daemon off;',
      ...(process.getuid?.() === 0 ? ['user root;'] : []),
      'error_log stderr;',
      'pid nginx.pid;',
      'events {}',
      'http {',
      '  access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${t};`),
      ...http.map((l) => `  ${l}`),
      '  server {',
      `    listen 127.0.0.1:${port};`,
      `    location / { root ${root}; }`,
      '  }',
      '}',
    ];
    fs.writeFileSync(path.join(prefix, 'nginx.conf'), conf.join('\n') + '\n');
    return prefix;
  };

  before(function () {
    // busybox: the shell git runs its helpers through (a local clone's upload-pack)
    ({ dir, cleanup } = gccTree(this, PACKAGES, ['busybox']));
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
    const prefix = nginxPrefix('nginx', 18080, 'html', ['gzip on;']);
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
  it("git clones and fetches over http from the tree's own nginx (git-remote-http, libcurl and OpenSSL linked in)", async () => {
    const at = {
      GIT_AUTHOR_DATE: '2000-01-01T00:00:00Z',
      GIT_COMMITTER_DATE: '2000-01-01T00:00:00Z',
      GIT_AUTHOR_NAME: 'A U Thor',
      GIT_AUTHOR_EMAIL: 'a@example.org',
      GIT_COMMITTER_NAME: 'A U Thor',
      GIT_COMMITTER_EMAIL: 'a@example.org',
    };
    const git = (cwd: string, ...args: string[]) => {
      const r = venvRun(['git', ...args], { cwd, env: at });
      assert.equal(r.status, 0, `git ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    // the origin, served as files (git's "dumb" http protocol: any web
    // server will do, given the index update-server-info writes)
    const www = path.join(dir, 'www');
    const work = path.join(dir, 'origin-work');
    fs.mkdirSync(work, { recursive: true });
    git(work, 'init', '-b', 'main');
    fs.writeFileSync(path.join(work, 'a.txt'), 'one\n');
    git(work, 'add', 'a.txt');
    git(work, 'commit', '-m', 'one');
    git(dir, 'clone', '--bare', work, path.join(www, 'repo.git'));
    git(path.join(www, 'repo.git'), 'update-server-info');

    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
      srv.on('error', reject);
    });
    const prefix = nginxPrefix('nginx-git', port, www);
    const nginx = spawn(path.join(dir, 'venv/bin/venv-run'), ['nginx', '-e', 'stderr', '-p', prefix, '-c', 'nginx.conf'], {
      cwd: dir,
      env: userEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    let log = '';
    nginx.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    try {
      const url = `http://127.0.0.1:${port}/repo.git`;
      // up when it answers
      for (let i = 0; ; i++) {
        const up = await fetch(`${url}/HEAD`).then(
          (r) => r.ok,
          () => false,
        );
        if (up) break;
        assert.ok(i < 100 && nginx.exitCode === null, `nginx did not come up: ${log}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      git(dir, 'clone', url, 'clone');
      const clone = path.join(dir, 'clone');
      assert.equal(fs.readFileSync(path.join(clone, 'a.txt'), 'utf8'), 'one\n');
      assert.equal(git(clone, 'log', '--format=%s'), 'one\n');
      assert.equal(git(clone, 'config', 'remote.origin.url').trim(), url);

      // a second commit reaches the clone by git pull
      fs.writeFileSync(path.join(work, 'a.txt'), 'one\ntwo\n');
      git(work, 'commit', '-am', 'two');
      git(work, 'push', path.join(www, 'repo.git'), 'main');
      git(path.join(www, 'repo.git'), 'update-server-info');
      git(clone, 'pull', '--ff-only');
      assert.equal(git(clone, 'log', '--format=%s'), 'two\none\n');
      assert.equal(fs.readFileSync(path.join(clone, 'a.txt'), 'utf8'), 'one\ntwo\n');

      // a missing repository is git's own error; https is there: OpenSSL
      // speaks TLS to a server that answers in plain http, and says so
      const missing = venvRun(['git', 'ls-remote', `http://127.0.0.1:${port}/nosuch.git`]);
      assert.equal(missing.status, 128);
      assert.match(missing.stderr, /repository 'http:\/\/127\.0\.0\.1:\d+\/nosuch\.git\/' not found/);
      const https = venvRun(['git', 'ls-remote', `https://127.0.0.1:${port}/repo.git`]);
      assert.equal(https.status, 128);
      assert.match(https.stderr, /unable to access 'https:\/\/127\.0\.0\.1:\d+\/repo\.git\/': .*(SSL|TLS|wrong version number)/i);
    } finally {
      try {
        process.kill(-nginx.pid!, 'SIGTERM');
      } catch {
        /* gone already */
      }
    }
  });
});
