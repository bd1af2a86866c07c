/**
 * The configuration file, $PEERPKGS_HOME/config, and `peerpkgs config`:
 * what a user writes there takes effect as the same variable would,
 * the environment overrides it, and a mistake in it is the environment's
 * one-line error with the file's name and line.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as path from 'node:path';
import { assertSchema, busyboxHttpd, run, scratch, write, type Run } from './helpers.ts';

describe('configuration file', function () {
  this.timeout(60_000);
  let s: { dir: string; cleanup: () => void };
  let home: string;
  let config: string;
  beforeEach(() => {
    s = scratch();
    home = path.join(s.dir, 'home');
    config = path.join(home, 'config');
  });
  afterEach(() => s.cleanup());
  const peerpkgs = (args: string[], env: NodeJS.ProcessEnv = {}): Run => run(s.dir, 'peerpkgs', args, { PEERPKGS_HOME: home, ...env });

  it('sets limits as the variables do, and the environment overrides it', async () => {
    const data = 'x'.repeat(256 * 1024);
    write(s.dir, { 'www/big.tar': data });
    const sha = crypto.createHash('sha256').update(data).digest('hex');
    const www = await busyboxHttpd(path.join(s.dir, 'www'));
    try {
      write(s.dir, { 'pkg/big/fetch': `url: ${www.url}/big.tar\nsha256: ${sha}\n` });
      write(home, { config: '# limits\nPKG_MAX_DOWNLOAD_SIZE: 64K\n\nPKG_MIRROR_IPFS: no\n' });
      const fetch = (env: NodeJS.ProcessEnv = {}) => run(s.dir, 'do-fetch', ['pkg/big/fetch'], { PEERPKGS_HOME: home, ...env });
      const bounded = fetch();
      assert.equal(bounded.status, 5, bounded.stderr);
      assert.match(bounded.stderr, /big\.tar: .*more than the 64K that PKG_MAX_DOWNLOAD_SIZE allows/);
      const r = fetch({ PKG_MAX_DOWNLOAD_SIZE: '1M' });
      assert.equal(r.status, 0, r.stderr);
    } finally {
      await www.stop();
    }
  });

  it('peerpkgs config says each value and where it came from, also as JSON', async () => {
    write(home, { config: 'PKG_CACHE_URL: file:///srv/cache\nPKG_CACHE_URL: https://example.org/cache#signed\nPKG_SANDBOX_TMP_SIZE: 1G\n\nPKG_IPFS_TIMEOUT: 9\n' });
    const r = peerpkgs(['config'], { PKG_IPFS_TIMEOUT: '5' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^configuration file: ${config}$`, 'm'));
    assert.match(r.stdout, new RegExp(`^PKG_CACHE_URL +file:///srv/cache https://example\\.org/cache#signed +\\(${config}:1\\)$`, 'm'));
    assert.match(r.stdout, new RegExp(`^PKG_SANDBOX_TMP_SIZE +1G +\\(${config}:3\\)$`, 'm'));
    assert.match(r.stdout, /^PKG_IPFS_TIMEOUT +5 +\(environment\)$/m);
    assert.match(r.stdout, /^PKG_MAX_DOWNLOAD_SIZE +4G +\(default\)$/m);
    assert.match(r.stdout, /^PKG_TRUSTED_KEYS +\(unset\)$/m);
    assert.match(r.stdout, new RegExp(`^PEERPKGS_HOME +${home} +\\(environment\\)$`, 'm'));

    const j = peerpkgs(['config', '--json'], { PKG_IPFS_TIMEOUT: '5' });
    assert.equal(j.status, 0, j.stderr);
    const doc = JSON.parse(j.stdout) as { file: string; settings: Array<{ name: string }> };
    await assertSchema('config', doc);
    assert.equal(doc.file, config);
    const by = new Map(doc.settings.map((o) => [o.name, o]));
    assert.deepEqual(by.get('PKG_SANDBOX_TMP_SIZE'), { name: 'PKG_SANDBOX_TMP_SIZE', value: '1G', source: 'file', line: 3 });
    assert.deepEqual(by.get('PKG_IPFS_TIMEOUT'), { name: 'PKG_IPFS_TIMEOUT', value: '5', source: 'environment' });
    assert.deepEqual(by.get('PKG_FORCE_BINARY'), { name: 'PKG_FORCE_BINARY', value: 'no', source: 'default' });
    assert.deepEqual(by.get('PKG_MIRROR_DB'), { name: 'PKG_MIRROR_DB', value: null, source: 'default' });
  });

  it("a bad value in it is the environment's error, named by file and line, exit 2, for any command", () => {
    const env = peerpkgs(['config'], { PKG_SANDBOX_TMP_SIZE: 'lots' });
    assert.equal(env.status, 2);
    assert.equal(env.stderr, 'peerpkgs: PKG_SANDBOX_TMP_SIZE=lots: expected a size such as 512M or 4G\n');
    write(home, { config: '# a comment\nPKG_SANDBOX_TMP_SIZE: lots\n' });
    for (const r of [peerpkgs(['config']), run(s.dir, 'build-packages-ifchange', ['./pkg/none'], { PEERPKGS_HOME: home })]) {
      assert.equal(r.status, 2);
      assert.match(r.stderr, new RegExp(`: ${config}:2: PKG_SANDBOX_TMP_SIZE=lots: expected a size such as 512M or 4G\\n$`));
    }
    assert.equal(peerpkgs(['config'], { PKG_SANDBOX_TMP_SIZE: '1G' }).status, 0, 'the environment overrides the bad value');
    write(home, { config: 'PKG_CACHE_URL: ftp://example.org/\n' });
    assert.equal(
      peerpkgs(['config']).stderr,
      `peerpkgs: ${config}:1: PKG_CACHE_URL: ftp://example.org/: ftp:// caches are not supported (supported: file://, http://, https://, ipfs://, ipns://)\n`,
    );
    // checked where it is used, and named by its place all the same
    write(home, { config: 'PKG_FORCE_BINARY: no\nPKG_TRUSTED_KEYS: ed25519:nonsense\n' });
    const keys = peerpkgs(['key', 'list']);
    assert.equal(keys.status, 2);
    assert.match(keys.stderr, new RegExp(`^peerpkgs key: ${config}:2: PKG_TRUSTED_KEYS, word 1: not a public key`));
  });

  it('refuses an unknown setting, PEERPKGS_HOME, and a line that is not a field', () => {
    const refused = (text: string, message: string) => {
      write(home, { config: text });
      const r = peerpkgs(['config']);
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr, `peerpkgs: ${config}:${message}\n`);
    };
    refused('PKG_FORCE_BINARY: no\nsandbox_tmp_size: 1G\n', '2: unknown setting sandbox_tmp_size (did you mean PKG_SANDBOX_TMP_SIZE?); peerpkgs config lists them');
    refused('PKG_CACHE_URLS: file:///x\n', '1: unknown setting PKG_CACHE_URLS; peerpkgs config lists them');
    refused('PEERPKGS_HOME: /elsewhere\n', '1: PEERPKGS_HOME is where this file is: set it in the environment');
    refused('PKG_FORCE_BINARY yes\n', "1: expected 'Name: value', a '+' continuation, a '#' comment or a blank line, not \"PKG_FORCE_BINARY yes\"");
  });

  it('has --help and usage errors', () => {
    const h = peerpkgs(['config', '--help']);
    assert.equal(h.status, 0);
    assert.match(h.stdout, /^usage: peerpkgs config \[--json\]$/m);
    const bad = peerpkgs(['config', 'extra']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /see peerpkgs config --help/);
  });
});
