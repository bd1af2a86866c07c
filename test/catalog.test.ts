/**
 * Signed catalogs as a user meets them: add-to-package-cache writes one
 * beside the entries; `peerpkgs search`, `info NAME` and `install NAME`
 * read them over nginx and file://, with no tree; and a catalog that has
 * expired, that no trusted key signed, or that is older than one seen
 * before from the same cache is refused with its reason and exit status 10.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseCatalog, type Catalog } from '../src/cache/catalog.ts';
import { BIN, scratch, write, run, userEnv, assertSchema, type Run } from './helpers.ts';
import { startNginx, type Nginx } from './nginx.ts';
import { seededTree, binPackage } from './seed.ts';

describe('catalogs', function () {
  this.timeout(300_000);
  let work: string;
  let cleanup: () => void;
  let www: { url: string; stop(): Promise<void> };
  let nginx: Nginx;
  let tree: string;
  let home: string;
  let caches: string;
  let alicePub: string;
  let empty: string;

  before(async () => {
    ({ dir: work, cleanup } = scratch());
    ({ tree, www } = await seededTree(work));
    write(tree, binPackage('a', { runDeps: ['seed'], meta: 'version: 1.0\nlicense: MIT\n' }));
    write(tree, binPackage('b', { runDeps: ['a'], meta: 'version: 2.1\nlicense: MIT\nhomepage: https://example.org/b\ndescription: greets the world\n' }));
    write(tree, binPackage('c'));
    home = path.join(work, 'home');
    caches = path.join(work, 'caches');
    fs.mkdirSync(caches);
    empty = path.join(work, 'empty');
    fs.mkdirSync(empty);
    const env = { PEERPKGS_HOME: home };
    assert.equal(run(tree, 'build-packages-ifchange', ['-j2', './pkg/b', './pkg/c'], env).status, 0);
    for (const k of ['alice', 'mallory']) assert.equal(run(tree, 'peerpkgs', ['key', 'generate', k], env).status, 0);
    alicePub = path.join(home, 'keys/alice.pub');
    nginx = await startNginx(caches);
  });
  after(async () => {
    await nginx?.stop();
    await www.stop();
    cleanup();
  });

  /** Publishes `pkgs` into caches/NAME; returns what add-to-package-cache printed. */
  const publish = (name: string, pkgs: string[], more: string[] = ['--sign-key', 'alice']): string => {
    const r = run(tree, 'add-to-package-cache', ['-o', path.join(caches, name), ...more, ...pkgs], { PEERPKGS_HOME: home });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  const catalogOf = (name: string): Catalog => parseCatalog(fs.readFileSync(path.join(caches, name, 'catalog')));
  const freshHome = () => path.join(work, `client-${Math.random().toString(16).slice(2)}`);
  /** peerpkgs run as a user with no tree: in an empty directory, trusting alice. */
  const user = (h: string, urls: string, args: string[]): Run => run(empty, 'peerpkgs', args, { PEERPKGS_HOME: h, PKG_CACHE_URL: urls, PKG_TRUSTED_KEYS: alicePub });

  it('add-to-package-cache writes a signed catalog of every entry in the cache, one generation more each time', () => {
    assert.match(publish('signed', ['./pkg/b']), /^catalog: generation 1, 3 entries, expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/m);
    const one = catalogOf('signed');
    assert.equal(one.generation, 1);
    assert.deepEqual(
      one.entries.map((e) => e.name),
      ['seed', 'a', 'b'],
    );
    const b = one.entries[2]!;
    assert.deepEqual(b.meta, { version: '2.1', license: 'MIT', homepage: 'https://example.org/b', description: 'greets the world' });
    assert.deepEqual(b.closure, [one.entries[0]!.pkghash, one.entries[1]!.pkghash]);
    const info = fs.readFileSync(path.join(caches, 'signed', `${b.pkghash}.info`), 'utf8');
    assert.match(info, new RegExp(`^output-sha256: ${b.outputSha256}$`, 'm'));
    assert.match(one.keyId!, /^ed25519:[0-9a-f]{16}$/);
    const days = (Date.parse(one.expires) - Date.now()) / 86_400_000;
    assert.ok(days > 29.9 && days <= 30, `expires in ${days} days`);
    // adding c to the cache keeps the others, and their meta
    publish('signed', ['./pkg/c']);
    const two = catalogOf('signed');
    assert.equal(two.generation, 2);
    assert.deepEqual(
      two.entries.map((e) => e.name),
      ['seed', 'a', 'b', 'c'],
    );
    assert.deepEqual(two.entries[2]!.meta, b.meta);
    // one altered byte and the signature no longer verifies
    const text = fs.readFileSync(path.join(caches, 'signed', 'catalog'), 'utf8');
    write(caches, { 'altered/catalog': text.replace('greets the world', 'greets the worle') });
    const r = user(freshHome(), `${nginx.url}/altered`, ['search', 'greet']);
    assert.equal(r.status, 10, r.stderr);
    assert.match(
      r.stderr,
      /^peerpkgs search: refusing the catalog of http:\S+\/altered: the signature by ed25519:[0-9a-f]{16} \(alice\) does not verify: the catalog was altered or damaged$/m,
    );
  });

  it('search and info NAME read the catalogs over HTTP', async () => {
    publish('web', ['./pkg/b', './pkg/c']);
    const h = freshHome();
    const url = `${nginx.url}/web`;
    const b = catalogOf('web').entries.find((e) => e.name === 'b')!;
    const found = user(h, url, ['search', 'GREET']);
    assert.equal(found.status, 0, found.stderr);
    assert.equal(found.stdout, `b\t2.1\t${b.pkghash.slice(0, 12)}\tgreets the world\t${url}\n`);
    const byName = user(h, url, ['search', 'a']);
    assert.deepEqual(
      byName.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split('\t')[0]),
      ['a'],
    );
    const json = JSON.parse(user(h, url, ['search', '--json', 'b']).stdout) as Array<Record<string, string>>;
    assert.deepEqual(json, [
      { name: 'b', version: '2.1', license: 'MIT', homepage: 'https://example.org/b', description: 'greets the world', pkghash: b.pkghash, output: b.outputSha256, cache: url },
    ]);
    await assertSchema('search', json);
    const infoJson = JSON.parse(user(h, url, ['info', '--json', 'b']).stdout) as { closure: string[]; catalog: { generation: number } };
    await assertSchema('catalog-info', infoJson);
    assert.deepEqual([infoJson.closure, infoJson.catalog.generation], [['seed', 'a'], 1]);
    const info = user(h, url, ['info', 'b']);
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stdout, /^name: +b$/m);
    assert.match(info.stdout, /^version: +2\.1$/m);
    assert.match(info.stdout, /^description: +greets the world$/m);
    assert.match(info.stdout, new RegExp(`^pkghash: +${b.pkghash}$`, 'm'));
    assert.match(info.stdout, /^closure: +seed a$/m);
    assert.match(info.stdout, /^cache: .*catalog generation 1, signed by ed25519:/m);
    const none = user(h, url, ['info', 'nosuch']);
    assert.equal(none.status, 11);
    assert.equal(none.stderr, `peerpkgs: nosuch: no catalog has it (searched: ${url})\n`);
  });

  describe('a catalog is refused', () => {
    it('when it has expired', () => {
      publish('expired', ['./pkg/c'], ['--sign-key', 'alice', '--expires', '0d']);
      const r = user(freshHome(), `${nginx.url}/expired`, ['search', 'c']);
      assert.equal(r.status, 10);
      assert.match(
        r.stderr,
        /^peerpkgs search: refusing the catalog of \S+\/expired: it expired at \d{4}-[^;]+Z; its publisher renews it by adding to the cache again \(add-to-package-cache\)$/m,
      );
      assert.equal(r.stdout, '');
    });

    it('when no trusted key signed it', () => {
      publish('mallory', ['./pkg/c'], ['--sign-key', 'mallory']);
      const h = freshHome();
      const r = user(h, `${nginx.url}/mallory`, ['install', 'c']);
      assert.equal(r.status, 10, r.stderr);
      assert.match(
        r.stderr,
        /^peerpkgs install: refusing the catalog of \S+\/mallory: signed by ed25519:[0-9a-f]{16}, which is not a trusted key \(trusted: ed25519:[0-9a-f]{16} \(alice\)\)/m,
      );
      assert.ok(!fs.existsSync(path.join(h, 'profiles')));
      // nor unsigned, where the cache needs a signature
      publish('nokey', ['./pkg/c'], []);
      const unsigned = user(h, `${nginx.url}/nokey`, ['info', 'c']);
      assert.equal(unsigned.status, 10);
      assert.match(unsigned.stderr, /refusing the catalog of \S+\/nokey: not signed, and this cache needs a signature by a trusted key/);
    });

    it('when its generation is lower than the last seen from that cache: a replay', () => {
      publish('replay', ['./pkg/a']);
      const old = fs.readFileSync(path.join(caches, 'replay', 'catalog'));
      publish('replay', ['./pkg/c']);
      const h = freshHome();
      const url = `${nginx.url}/replay`;
      assert.equal(user(h, url, ['search', 'c']).stdout.split('\t')[0], 'c');
      fs.writeFileSync(path.join(caches, 'replay', 'catalog'), old);
      const r = user(h, url, ['search', 'a']);
      assert.equal(r.status, 10);
      assert.match(
        r.stderr,
        /^peerpkgs search: refusing the catalog of \S+\/replay: its generation 1 is lower than 2, the last seen from it: an old catalog replayed, or a mirror frozen in the past; if the cache was made anew on purpose, remove \S+$/m,
      );
      // another home has seen nothing yet
      assert.equal(user(freshHome(), url, ['search', 'a']).status, 0);
    });
  });

  it('install NAME installs from a cache with no tree, and profile-run runs its program', () => {
    publish('install', ['./pkg/b']);
    for (const url of [`${nginx.url}/install`, `file://${path.join(caches, 'install')}#signed`]) {
      const h = freshHome();
      const r = user(h, url, ['install', 'b']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^profile default: generation 1: /);
      const listed = JSON.parse(user(h, url, ['list', '--json']).stdout) as {
        packages: Array<{ name: string; version?: string; requested: boolean; deps: string[]; origin: unknown }>;
      };
      assert.deepEqual(
        listed.packages.map((p) => [p.name, p.requested, p.deps]),
        [
          ['seed', false, []],
          ['a', false, ['seed']],
          ['b', true, ['a']],
        ],
      );
      assert.deepEqual(listed.packages[2]!.origin, { kind: 'catalog', cache: url, name: 'b' });
      assert.equal(listed.packages[2]!.version, '2.1');
      const ran = spawnSync(path.join(h, 'profiles/default/bin/profile-run'), ['b'], { encoding: 'utf8', env: userEnv() });
      assert.equal(ran.status, 0, ran.stderr);
      assert.equal(ran.stdout, 'hello from b\n');
      // the store is whole, with each output's archive beside it
      const verified = user(h, url, ['verify']);
      assert.equal(verified.status, 0, verified.stdout + verified.stderr);
    }
  });

  it('install draws a bar of each archive coming on a terminal', function () {
    if (spawnSync('script', ['--version']).error) {
      if (process.env.CI === 'true') throw new Error('script(1) is missing: CI must have util-linux');
      return this.skip();
    }
    publish('install-tty', ['./pkg/b']);
    const env = userEnv({ PEERPKGS_HOME: freshHome(), PKG_CACHE_URL: `${nginx.url}/install-tty`, PKG_TRUSTED_KEYS: alicePub });
    const tty = spawnSync('script', ['-qfec', `${path.join(BIN, 'peerpkgs')} install b`, '/dev/null'], { cwd: empty, env, encoding: 'utf8', input: '' });
    assert.equal(tty.status, 0, tty.stdout);
    /* eslint-disable no-control-regex -- the terminal's codes are the point */
    for (const p of ['seed', 'a', 'b']) {
      assert.match(tty.stdout, new RegExp(`\\r${p} \\[ {20}\\] 0 B/[\\d.]+ (B|KiB|MiB) `), `${p}'s bar`);
      assert.match(tty.stdout, new RegExp(`\\r\\x1b\\[Kfetched ${p}: [\\d.]+ (B|KiB|MiB) in `), `${p}'s line that stays`);
    }
    assert.match(tty.stdout, /\r\x1b\[Kb: from http:\S+, signed by /, 'the line each substitution says, after the bar is cleared');
    /* eslint-enable no-control-regex */
  });

  it('upgrade takes the newest entry of the name from the catalog the package came from', () => {
    publish('upgrade', ['./pkg/b']);
    const h = freshHome();
    const url = `${nginx.url}/upgrade`;
    assert.equal(user(h, url, ['install', 'b']).status, 0);
    assert.match(user(h, url, ['upgrade']).stdout, /nothing changed \(generation 1\)/);
    const t2 = path.join(work, 'tree-upgrade');
    fs.cpSync(tree, t2, { recursive: true });
    write(t2, binPackage('b', { runDeps: ['a'], text: 'b again', meta: 'version: 2.2\n' }));
    const env = { PEERPKGS_HOME: home };
    assert.equal(run(t2, 'build-packages-ifchange', ['./pkg/b'], env).status, 0);
    assert.equal(run(t2, 'add-to-package-cache', ['-o', path.join(caches, 'upgrade'), '--sign-key', 'alice', './pkg/b'], env).status, 0);
    const r = user(h, url, ['upgrade']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'profile default: generation 2: b 2.1 -> 2.2\n');
    const ran = spawnSync(path.join(h, 'profiles/default/bin/profile-run'), ['b'], { encoding: 'utf8', env: userEnv() });
    assert.equal(ran.stdout, 'b again\n');
  });
});
