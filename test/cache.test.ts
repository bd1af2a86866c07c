/**
 * Binary package caches as a user meets them: packages published into a
 * cache directory, served by nginx or read as file://, substituted for a
 * build; and a server of ours that fails in the ways real ones do (500s,
 * resets, truncated, altered and slow bodies), which must cost a warning
 * and never leave a byte behind. Trust: what a key did not sign, or a key
 * we do not trust signed, is never unpacked.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { packDir } from '../src/archive/pack.ts';
import { recordSha256 } from '../src/store/outputs.ts';
import { parseCacheUrls, cachesFromEnv, CacheConfigError } from '../src/cache/backends.ts';
import { InfoError, parseInfo, serializeInfo, checkTrust, type InfoFields } from '../src/cache/info.ts';
import { generateKey, KeyError, loadSigningKey, loadTrustedKeys, TrustedKeys, type SigningKey } from '../src/cache/keys.ts';
import { addToCache, PublishError } from '../src/cache/publish.ts';
import { substitute, forceBinary, NoBinaryError, cacheConfig, type SubstituteResult, type Hit } from '../src/cache/substitute.ts';
import { addToPackageCache, key as keyCommand } from '../src/cli/cache-commands.ts';
import { removeTreeSync } from '../src/archive/files.ts';
import { PackageGraph } from '../src/tree/pkghash.ts';
import { SettingsError, settings } from '../src/settings.ts';
import { scratch, write, freePort, run } from './helpers.ts';
import { startNginx, type Nginx } from './nginx.ts';

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

interface Built {
  pkghash: string;
  name: string;
  archive: string;
  sha256: string;
  closure: string[];
}

/** A package's output packed as the build packs it, under a made-up pkghash. */
async function makePackage(dir: string, name: string, randomBytes = 300_000): Promise<Built> {
  const dest = path.join(dir, `${name}-destdir`);
  write(dest, {
    [`!bin/${name}`]: `#!/bin/sh\necho hello from ${name}\n`,
    [`share/${name}/README`]: `${name}, a test package\n`,
  });
  // incompressible, so the archive is many chunks on the wire
  randomFile(path.join(dest, `share/${name}/data.bin`), randomBytes);
  fs.symlinkSync('data.bin', path.join(dest, `share/${name}/link`));
  const archive = path.join(dir, `${name}.pkg.tar.gz`);
  const packed = await packDir(dest, archive);
  return { pkghash: sha256(`pkghash of ${name}`), name, archive, sha256: packed.sha256, closure: [] };
}

function randomFile(file: string, bytes: number): void {
  const fd = fs.openSync('/dev/urandom', 'r');
  const buf = Buffer.alloc(bytes);
  fs.readSync(fd, buf, 0, bytes, null);
  fs.closeSync(fd);
  fs.writeFileSync(file, buf);
}

/** Everything under dir, as relative paths (hidden and temporary files too). */
function listAll(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

type Fault = (req: http.IncomingMessage, res: http.ServerResponse, data: Buffer) => void;

/**
 * A server the test controls: /MODE/NAME serves NAME from the signed cache
 * as the fault MODE says; it records every request.
 */
async function faultServer(root: string, faults: Record<string, Fault>): Promise<{ url: string; requests: string[]; stop(): Promise<void> }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const [, mode = '', name = ''] = (req.url ?? '').split('/');
    const file = path.join(root, name);
    const fault = faults[mode];
    if (!fault || !fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    fault(req, res, fs.readFileSync(file));
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Writes `bytes` one every 50 ms: never silent long enough for an idle
 * timeout, never done. Stops by itself after 20 s, or when the socket closes.
 */
function drip(socket: import('node:net').Socket, write: (b: Buffer) => void, bytes: Buffer): void {
  let i = 0;
  const timer = setInterval(() => (i < bytes.length ? write(bytes.subarray(i, ++i)) : socket.end()), 50);
  const stop = setTimeout(() => socket.destroy(), 20_000);
  socket.on('close', () => (clearInterval(timer), clearTimeout(stop)));
}

const half = (data: Buffer) => data.subarray(0, data.length >> 1);
const isArchive = (req: http.IncomingMessage) => (req.url ?? '').endsWith('.tar.gz');
const serve = (res: http.ServerResponse, data: Buffer) => res.writeHead(200, { 'content-length': data.length }).end(data);

describe('binary package caches', function () {
  this.timeout(60_000);
  let top: { dir: string; cleanup: () => void };
  let home: string;
  let caches: string; // served by nginx: signed/, unsigned/, mallory/, tampered/
  let hello: Built;
  let other: Built;
  let alice: SigningKey;
  let mallory: SigningKey;
  let trustAlice: TrustedKeys;
  let nginx: Nginx;
  let faults: Awaited<ReturnType<typeof faultServer>>;
  // fresh for each test: where the archive goes and where outputs are unpacked
  let work: string;
  let targetDir: string;
  let outputs: string;

  before(async () => {
    top = scratch();
    home = path.join(top.dir, 'home');
    caches = path.join(top.dir, 'caches');
    alice = generateKey(home, 'alice');
    mallory = generateKey(home, 'mallory');
    trustAlice = loadTrustedKeys(home, { PKG_TRUSTED_KEYS: path.join(home, 'keys/alice.pub') });
    hello = await makePackage(top.dir, 'hello');
    other = await makePackage(top.dir, 'other', 1000);
    await addToCache({ dir: path.join(caches, 'signed'), packages: [hello, other], signKey: alice });
    await addToCache({ dir: path.join(caches, 'unsigned'), packages: [hello] });
    await addToCache({ dir: path.join(caches, 'mallory'), packages: [hello], signKey: mallory });
    // one byte changed in the middle of the archive, the length the same
    fs.cpSync(path.join(caches, 'signed'), path.join(caches, 'tampered'), { recursive: true });
    const tampered = path.join(caches, 'tampered', `${hello.pkghash}.tar.gz`);
    const bytes = fs.readFileSync(tampered);
    bytes[bytes.length >> 1]! ^= 0x01;
    fs.writeFileSync(tampered, bytes);

    nginx = await startNginx(caches);
    const signed = path.join(caches, 'signed');
    faults = await faultServer(signed, {
      ok: (_req, res, data) => serve(res, data),
      500: (_req, res) => res.writeHead(500, 'Internal Server Error').end('oops'),
      reset: (req, res, data) => {
        if (!isArchive(req)) return serve(res, data);
        res.writeHead(200, { 'content-length': data.length });
        res.write(half(data), () => setTimeout(() => res.socket?.resetAndDestroy(), 50));
      },
      truncated: (req, res, data) => {
        if (!isArchive(req)) return serve(res, data);
        res.writeHead(200, { 'content-length': data.length });
        res.write(half(data), () => res.socket?.end());
      },
      // chunked, so that only the .info can tell the body is short
      short: (req, res, data) => {
        if (!isArchive(req)) return serve(res, data);
        res.writeHead(200).end(half(data));
      },
      altered: (req, res, data) => {
        if (!isArchive(req)) return serve(res, data);
        const copy = Buffer.from(data);
        copy[copy.length >> 1]! ^= 0x80;
        serve(res, copy);
      },
      longer: (req, res, data) => serve(res, isArchive(req) ? Buffer.concat([data, Buffer.alloc(10)]) : data),
      slow: (req, res, data) => {
        if (!isArchive(req)) return serve(res, data);
        res.writeHead(200, { 'content-length': data.length });
        res.write(half(data)); // and then nothing, for ever
      },
      silent: () => {}, // accepts the connection, never answers
      // the .info's status line, then a header a byte at a time, for ever
      'drip-headers': (req, res, data) => {
        if (isArchive(req)) return serve(res, data);
        req.socket.write('HTTP/1.1 200 OK\r\nX-Slow: ');
        drip(req.socket, (b) => req.socket.write(b), Buffer.alloc(10_000, 'a'));
      },
      // the archive's headers, then its body a byte at a time
      'drip-body': (req, res, data) => {
        if (!isArchive(req)) return serve(res, data);
        res.writeHead(200, { 'content-length': data.length }).flushHeaders();
        drip(req.socket, (b) => res.write(b), data);
      },
      'no-archive': (req, res, data) => (isArchive(req) ? res.writeHead(404).end() : serve(res, data)),
      // the .info of `other` under hello's name: a replayed, validly signed entry
      'wrong-info': (req, res, data) => (isArchive(req) ? serve(res, data) : serve(res, fs.readFileSync(path.join(signed, `${other.pkghash}.info`)))),
      // output-sha256 changed after signing, as an attacker would to slip in another archive
      'altered-info': (req, res, data) => {
        if (isArchive(req)) return serve(res, data);
        serve(res, Buffer.from(data.toString().replace(/^output-sha256: .*$/m, `output-sha256: ${other.sha256}`)));
      },
      redirect: (req, res) => res.writeHead(302, { location: `${nginx.url}/signed/${path.basename(req.url ?? '')}` }).end(),
    });
  });

  after(async () => {
    await faults?.stop();
    await nginx?.stop();
    top?.cleanup();
  });

  beforeEach(() => {
    work = fs.mkdtempSync(path.join(top.dir, 'work-'));
    targetDir = path.join(work, 'pkg/hello');
    outputs = path.join(work, 'outputs');
    fs.mkdirSync(targetDir, { recursive: true });
  });

  afterEach(() => removeTreeSync(work)); // unpacked outputs are read-only

  async function sub(
    urls: string,
    opts: { trusted?: TrustedKeys; pkg?: Built; closure?: string[]; maxUnpackBytes?: number } = {},
  ): Promise<{ r: SubstituteResult; log: string[] }> {
    const log: string[] = [];
    const pkg = opts.pkg ?? hello;
    const r = await substitute({
      pkghash: pkg.pkghash,
      name: pkg.name,
      target: path.join(targetDir, '.pkg.tar.gz'),
      caches: parseCacheUrls(urls, { timeoutMs: 400 }),
      trusted: opts.trusted ?? trustAlice,
      outputsDir: outputs,
      ...(opts.closure ? { closure: opts.closure } : {}),
      ...(opts.maxUnpackBytes ? { maxUnpackBytes: opts.maxUnpackBytes } : {}),
      log: (l) => log.push(l),
    });
    return { r, log };
  }

  function hitOf(r: SubstituteResult): Hit {
    assert.ok('hit' in r, `expected a hit, got a miss: ${JSON.stringify(r)}`);
    return r.hit;
  }

  /** The hit is whole: the archive's bytes, the unpacked files, and nothing else anywhere. */
  function assertHello(hit: Hit): void {
    assert.equal(hit.sha256, hello.sha256);
    assert.equal(path.dirname(hit.tmp), targetDir);
    assert.ok(fs.readFileSync(hit.tmp).equals(fs.readFileSync(hello.archive)), 'the archive is the published one');
    const out = path.join(outputs, hello.sha256);
    assert.equal(fs.readFileSync(path.join(out, 'bin/hello'), 'utf8'), '#!/bin/sh\necho hello from hello\n');
    assert.equal(fs.statSync(path.join(out, 'bin/hello')).mode & 0o777, 0o555, 'read-only');
    assert.equal(fs.readlinkSync(path.join(out, 'share/hello/link')), 'data.bin');
    assert.equal(fs.statSync(path.join(out, 'share/hello/data.bin')).size, 300_000);
    assert.deepEqual(fs.readdirSync(outputs).sort(), [hello.sha256, `${hello.sha256}.archive`, `${hello.sha256}.manifest`], 'no temporary tree is left in outputs/');
    assert.equal(fs.readFileSync(path.join(out + '.archive'), 'utf8'), `${path.join(targetDir, '.pkg.tar.gz')}\n`, 'where the archive will be');
    assert.deepEqual(fs.readdirSync(targetDir), [path.basename(hit.tmp)], 'no temporary file is left beside the target');
  }

  function assertNothingKept(): void {
    assert.deepEqual(listAll(outputs), [], 'nothing unpacked');
    assert.deepEqual(listAll(targetDir), [], 'no archive kept');
  }

  describe('substitution', () => {
    it('substitutes from a file:// cache: the archive beside the target, its files in outputs/<sha256>', async () => {
      const { r, log } = await sub(`file://${caches}/signed`);
      const hit = hitOf(r);
      assertHello(hit);
      assert.equal(hit.cache, `file://${caches}/signed`);
      assert.equal(hit.signer, alice.id);
      assert.match(log.join('\n'), new RegExp(`hello: from file://\\S+, signed by ${alice.id}`));
    });

    it('substitutes from an HTTP cache (nginx) whose entry a trusted key signed', async () => {
      const hit = hitOf((await sub(`${nginx.url}/signed`)).r);
      assertHello(hit);
      assert.equal(hit.info.name, 'hello');
    });

    it('is a miss, naming the caches asked, when no cache has the package; a 404 is no warning', async () => {
      fs.mkdirSync(path.join(work, 'empty'));
      const urls = [`${nginx.url}/nothing-here`, `file://${work}/empty`];
      const { r, log } = await sub(urls.join(' '));
      assert.deepEqual(r, { miss: urls, tried: urls.map((cache) => ({ cache, reason: 'not there' })) });
      assert.deepEqual(log, []);
      assertNothingKept();
    });

    it('tries the caches in the order PKG_CACHE_URL gives', async () => {
      const { r } = await sub(`${nginx.url}/nothing ${nginx.url}/signed file://${caches}/signed`);
      assert.equal(hitOf(r).cache, `${nginx.url}/signed`);
    });

    it('follows redirects', async () => {
      assertHello(hitOf((await sub(`${faults.url}/redirect`)).r));
    });

    it('checks the archive but does not unpack it again when outputs/<sha256> is already there', async () => {
      assertHello(hitOf((await sub(`${nginx.url}/signed`)).r));
      fs.rmSync(targetDir, { recursive: true });
      fs.mkdirSync(targetDir);
      const marker = path.join(outputs, hello.sha256, 'bin/hello');
      const before = fs.statSync(marker).ino;
      assertHello(hitOf((await sub(`${nginx.url}/signed`)).r));
      assert.equal(fs.statSync(marker).ino, before, 'the unpacked tree is the one that was there');
    });

    const faultCases: Array<[string, string, RegExp]> = [
      ['answers HTTP 500', '500', /\.info: HTTP 500 Internal Server Error/],
      // (how much arrived depends on the scheduler: a reset drops what the client had not read yet)
      ['resets the connection mid-body', 'reset', /\.tar\.gz: connection reset; truncated \(got \d+ of \d+ bytes\)/],
      ['closes the connection before the announced length', 'truncated', /\.tar\.gz: connection closed early; truncated \(got \d+ of \d+ bytes\)/],
      ['ends a chunked body early', 'short', /\.tar\.gz is truncated \(got \d+ of \d+ bytes\)/],
      ['sends an altered body of the right length', 'altered', /\.tar\.gz (has sha256 [0-9a-f]{64}, its \.info says [0-9a-f]{64}|: .*)/],
      ['sends a body longer than the .info says', 'longer', /announces \d+ bytes, more than the \d+ bytes expected/],
      ['stalls mid-body', 'slow', /\.tar\.gz: timed out \(no data for 400 ms\)/],
      ['never answers', 'silent', /\.info: timed out \(no data for 400 ms\)/],
      ['has the .info but not the archive', 'no-archive', /it has [0-9a-f]{64}\.info but no [0-9a-f]{64}\.tar\.gz/],
    ];
    for (const [what, mode, reason] of faultCases) {
      it(`warns, naming the cache and the reason, when a cache ${what}, and uses the next cache; nothing of it is kept`, async () => {
        const bad = `${faults.url}/${mode}`;
        const { r, log } = await sub(`${bad} ${nginx.url}/signed`);
        const hit = hitOf(r);
        assertHello(hit);
        assert.equal(hit.cache, `${nginx.url}/signed`);
        const warning = log.find((l) => l.startsWith('warning: '));
        assert.ok(warning, log.join('\n'));
        assert.ok(warning.startsWith(`warning: hello: ${bad}: `), warning);
        assert.match(warning, reason);
        assert.ok(warning.endsWith(`; trying ${nginx.url}/signed`), warning);
      });
    }

    const dripCases: Array<[string, string, RegExp]> = [
      ['drips the headers of its answer', 'drip-headers', /\.info: too slow: no answer in 0\.5 s \(PKG_DOWNLOAD_BASE_TIME\)/],
      ['drips the body of its archive', 'drip-body', /\.tar\.gz: too slow: not done in [\d.]+ s, the time allowed for \d+ bytes \(PKG_DOWNLOAD_MIN_RATE\)/],
    ];
    for (const [what, mode, reason] of dripCases) {
      it(`gives up on a cache that ${what}, never silent but too slow, with a warning, and does not ask it again for now`, async () => {
        const bad = `${faults.url}/${mode}`;
        // the deadline: 0.5 s, and the bytes at 1 MiB/s; the idle timeout never comes
        const env = { PKG_CACHE_URL: `${bad} ${nginx.url}/signed`, PKG_DOWNLOAD_BASE_TIME: '0.5', PKG_DOWNLOAD_MIN_RATE: '1M' };
        const caches = cachesFromEnv(env, { timeoutMs: 400 });
        const once = async () => {
          const log: string[] = [];
          const target = path.join(targetDir, '.pkg.tar.gz');
          const r = await substitute({ pkghash: hello.pkghash, name: 'hello', target, caches, trusted: trustAlice, outputsDir: outputs, log: (l) => log.push(l) });
          return { hit: hitOf(r), warning: log.find((l) => l.startsWith(`warning: hello: ${bad}: `)) ?? log.join('\n') };
        };
        const first = await once();
        assertHello(first.hit);
        assert.match(first.warning, reason);
        fs.rmSync(first.hit.tmp);
        const asked = faults.requests.length;
        const second = await once();
        assert.match(second.warning, /too slow: .* \(earlier; not asked again for now\)/);
        assert.equal(faults.requests.length, asked, 'the slow cache was not asked again');
      });
    }

    it('keeps nothing when the only cache fails mid-body, and reports a miss with the reason', async () => {
      const { r } = await sub(`${faults.url}/reset`);
      assert.ok('miss' in r);
      assert.match(r.tried[0]!.reason, /connection reset/);
      assertNothingKept();
    });

    it('warns of a file:// cache whose directory is not there, which a missing entry is not', async () => {
      const { r, log } = await sub(`file://${work}/typo`);
      assert.ok('miss' in r);
      assert.deepEqual(log, [`warning: hello: file://${work}/typo: ${hello.pkghash}.info: ${work}/typo: no such directory`]);
    });

    it('refuses a file:// entry that is a FIFO or a symlink to a device, without waiting on it', async () => {
      for (const [kind, make] of [
        ['fifo', (f: string) => spawnSync('mkfifo', [f])],
        ['link', (f: string) => fs.symlinkSync('/dev/zero', f)],
      ] as const) {
        const dir = path.join(work, `odd-${kind}`);
        fs.mkdirSync(dir, { recursive: true });
        make(path.join(dir, `${hello.pkghash}.info`));
        const { r } = await sub(`file://${dir}`);
        assert.ok('miss' in r);
        assert.match(r.tried[0]!.reason, /is not a regular file/);
      }
    });

    it('does not ask a cache it could not reach again for every package', async () => {
      const dead = `http://127.0.0.1:${await freePort()}`;
      const caches = parseCacheUrls(dead);
      const reasons: string[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await substitute({
          pkghash: hello.pkghash,
          name: 'hello',
          target: path.join(targetDir, '.pkg.tar.gz'),
          caches,
          trusted: trustAlice,
          outputsDir: outputs,
          log: () => {},
        });
        assert.ok('miss' in r);
        reasons.push(r.tried[0]!.reason);
      }
      assert.match(reasons[0]!, /connection refused$/);
      assert.match(reasons[1]!, /connection refused \(earlier; not asked again for now\)$/);
    });

    it('refuses an entry whose .info is that of another package, or whose closure differs', async () => {
      const { r, log } = await sub(`${faults.url}/wrong-info`);
      assert.ok('miss' in r);
      assert.match(log.join('\n'), new RegExp(`it is the \\.info of pkghash ${other.pkghash}`));
      const { r: r2, log: log2 } = await sub(`${nginx.url}/signed`, { closure: [other.pkghash] });
      assert.ok('miss' in r2);
      assert.match(log2.join('\n'), /its closure \(0 packages\) is not the package's \(1\)/);
      assertNothingKept();
    });

    it('PKG_FORCE_BINARY=yes makes a miss an error naming the package and the caches asked', async () => {
      assert.equal(forceBinary({ PKG_FORCE_BINARY: 'yes' }), true);
      assert.equal(forceBinary({}), false);
      const { r } = await sub(`${nginx.url}/nothing ${faults.url}/500`);
      assert.ok('miss' in r);
      const e = new NoBinaryError('hello', hello.pkghash, r.tried);
      assert.equal(
        e.message,
        `hello: no cache has a usable binary package (pkghash ${hello.pkghash}), and PKG_FORCE_BINARY=yes forbids building it:\n` +
          `  ${nginx.url}/nothing: not there\n` +
          `  ${faults.url}/500: ${hello.pkghash}.info: HTTP 500 Internal Server Error\n` +
          'unset PKG_FORCE_BINARY to build it',
      );
    });
  });

  describe('decompression bombs', () => {
    // 8 MiB of zeros, a few kB of gzip: signed by a trusted key all the same
    let bomb: Built;
    let bombs: string;
    let tarBytes: number;

    before(async () => {
      const dest = path.join(top.dir, 'bomb-destdir');
      fs.mkdirSync(dest);
      fs.writeFileSync(path.join(dest, 'zeros'), Buffer.alloc(8 << 20));
      const archive = path.join(top.dir, 'bomb.pkg.tar.gz');
      const packed = await packDir(dest, archive);
      bomb = { pkghash: sha256('pkghash of bomb'), name: 'bomb', archive, sha256: packed.sha256, closure: [] };
      bombs = path.join(top.dir, 'bombs');
      await addToCache({ dir: path.join(bombs, 'honest'), packages: [bomb], signKey: alice });
      const { keyId: _k, signature: _s, signed: _d, ...fields } = parseInfo(fs.readFileSync(path.join(bombs, 'honest', `${bomb.pkghash}.info`)));
      tarBytes = fields.outputSize!;
      const entry = (name: string, f: InfoFields) => {
        fs.mkdirSync(path.join(bombs, name));
        fs.copyFileSync(archive, path.join(bombs, name, `${bomb.pkghash}.tar.gz`));
        fs.writeFileSync(path.join(bombs, name, `${bomb.pkghash}.info`), serializeInfo(f, alice));
      };
      entry('lies', { ...fields, outputSize: 1 << 20 });
      const { outputSize: _o, ...format1 } = fields;
      entry('format1', format1);
    });

    it('publishes the uncompressed size in the .info, and an archive that keeps to it unpacks', async () => {
      assert.ok(fs.statSync(bomb.archive).size < 100_000, 'a bomb: small compressed');
      assert.ok(tarBytes > 8 << 20, `output-size ${tarBytes} is the tar's length`);
      const hit = hitOf((await sub(`file://${bombs}/honest`, { pkg: bomb })).r);
      assert.equal(fs.statSync(path.join(outputs, bomb.sha256, 'zeros')).size, 8 << 20);
      assert.equal(hit.info.outputSize, tarBytes);
    });

    it('stops unpacking a signed archive at the output-size its .info gives, keeping nothing', async () => {
      const { r, log } = await sub(`file://${bombs}/lies`, { pkg: bomb });
      assert.ok('miss' in r);
      assert.match(log.join('\n'), /warning: bomb: file:\S+: [0-9a-f]{64}\.tar\.gz: it unpacks to more than the 1048576 bytes its \.info gives as output-size$/m);
      assertNothingKept();
    });

    it('bounds an .info without output-size (format 1) by PKG_MAX_UNPACK_SIZE', async () => {
      const small = settings({ PKG_MAX_UNPACK_SIZE: '1M' }).maxUnpackBytes;
      const { r, log } = await sub(`file://${bombs}/format1`, { pkg: bomb, maxUnpackBytes: small });
      assert.ok('miss' in r);
      assert.match(log.join('\n'), /\.tar\.gz: it unpacks to more than the 1M that PKG_MAX_UNPACK_SIZE allows an \.info without output-size$/m);
      assertNothingKept();
      const { r: r2 } = await sub(`file://${bombs}/format1`, { pkg: bomb, maxUnpackBytes: settings({ PKG_MAX_UNPACK_SIZE: '64M' }).maxUnpackBytes });
      assert.equal(hitOf(r2).sha256, bomb.sha256);
    });
  });

  describe('variables and trust lists, as the commands read them', () => {
    let tree: string;
    let h: string;
    const build = (env: NodeJS.ProcessEnv) => run(tree, 'build-packages-ifchange', ['./pkg/solo'], { PEERPKGS_HOME: h, ...env });
    const oneLine = (stderr: string, line: RegExp) => {
      assert.match(stderr, line);
      assert.doesNotMatch(stderr, /^\s+at /m, 'no stack trace');
    };

    beforeEach(() => {
      tree = path.join(work, 'tree');
      h = path.join(work, 'home');
      write(tree, { '!pkg/solo/build': '#!/bin/sh\nmkdir -p "$DESTDIR/share"\n' });
      fs.mkdirSync(h);
    });

    it('PKG_FORCE_BINARY: each word means the same to the build as to substitution, and a bad one is exit 2', () => {
      for (const word of ['1', 'y', 'yes', 'true', 'on', 'YES']) {
        assert.equal(forceBinary({ PKG_FORCE_BINARY: word }), true, word);
        // no cache at all: with the flag, that is a refusal, not a build
        const r = build({ PKG_FORCE_BINARY: word });
        assert.equal(r.status, 1, `${word}: ${r.stderr}`);
        assert.match(r.stderr, /solo: no cache has a usable binary package/, word);
      }
      for (const word of ['0', 'n', 'no', 'false', 'off', '']) assert.equal(forceBinary({ PKG_FORCE_BINARY: word }), false, word);
      assert.throws(() => forceBinary({ PKG_FORCE_BINARY: 'maybe' }), SettingsError);
      const bad = build({ PKG_FORCE_BINARY: 'maybe' });
      assert.equal(bad.status, 2);
      assert.equal(bad.stderr, 'build-packages-ifchange: PKG_FORCE_BINARY=maybe: expected yes or no\n');
    });

    it('a bad PKG_IPFS_TIMEOUT is refused, in one line with exit 2, by the build and by peerpkgs ipfs', () => {
      const line = 'PKG_IPFS_TIMEOUT=soon: expected a number of seconds\n';
      const b = build({ PKG_IPFS_TIMEOUT: 'soon' });
      assert.equal(b.status, 2);
      assert.equal(b.stderr, `build-packages-ifchange: ${line}`);
      const i = run(tree, 'peerpkgs', ['ipfs', 'id'], { PEERPKGS_HOME: h, PKG_IPFS_TIMEOUT: 'soon' });
      assert.equal(i.status, 2);
      assert.equal(i.stderr, `peerpkgs: ${line}`);
    });

    it('a bad PKG_CACHE_URL is refused up front, in one line with exit 2', () => {
      for (const [url, why] of [
        ['ftp://x/y', 'ftp:// caches are not supported'],
        [`file://${work}/c#signd`, 'unknown fragment #signd'],
        ['file://host/c', 'File URL host must be'],
        ['ipfs://', 'name the CID'],
      ]) {
        const r = build({ PKG_CACHE_URL: url });
        assert.equal(r.status, 2, r.stderr);
        oneLine(r.stderr, new RegExp(`^build-packages-ifchange: PKG_CACHE_URL: ${url.replace(/[.#]/g, '\\$&')}: ${why}`));
      }
    });

    it('numbers and sizes in variables: plain decimals, more than nothing, and bounded', () => {
      for (const [name, value, why] of [
        ['PKG_IPFS_TIMEOUT', '0x10', 'expected a number of seconds'],
        ['PKG_IPFS_TIMEOUT', '1e-9', 'expected a number of seconds'],
        ['PKG_IPFS_TIMEOUT', '0.0001', 'must be at least 0.001 seconds'],
        ['PKG_DOWNLOAD_BASE_TIME', '99999999999', 'must be at most 1000000000 seconds'],
        ['PKG_SANDBOX_TMP_SIZE', '99999999T', 'must be at most 8192T'],
        ['PKG_MAX_DOWNLOAD_SIZE', '9'.repeat(400), 'must be at most 8192T'],
      ]) {
        assert.throws(
          () => settings({ [name]: value }),
          (e: Error) => e instanceof SettingsError && e.message === `${name}=${value}: ${why}`,
          `${name}=${value}`,
        );
      }
      const r = build({ PKG_SANDBOX_TMP_SIZE: '99999999T' });
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr, 'build-packages-ifchange: PKG_SANDBOX_TMP_SIZE=99999999T: must be at most 8192T\n');
      assert.equal(settings({ PKG_IPFS_TIMEOUT: '1.5' }).ipfsTimeoutMs, 1500);
      // the default /tmp bound: 4G, or a quarter of the memory of a smaller machine
      assert.equal(settings({}).sandboxTmpBytes, Math.min(4 * 1024 ** 3, Math.floor(os.totalmem() / 4 / 1024 ** 2) * 1024 ** 2));
    });

    it('a trusted-keys file that does not parse is one line naming the file and line, exit 2, for the build and for peerpkgs key', () => {
      fs.writeFileSync(path.join(h, 'trusted-keys'), `# ours\n${alice.publicKey} alice\n\x00\x01garbage\xff${'x'.repeat(500)}\n`);
      fs.mkdirSync(path.join(work, 'empty-cache'));
      const where = `${h}/trusted-keys:3: not a public key`;
      const b = build({ PKG_CACHE_URL: `file://${work}/empty-cache` });
      assert.equal(b.status, 2, b.stderr);
      oneLine(b.stderr, new RegExp(`^\\S+: pkg/solo/\\.pkg\\.tar\\.gz: ${where} \\(want ed25519:<base64 of 32 bytes>, as in a \\.pub file\\): "[^"]+…"$`, 'm'));
      const out: string[] = [];
      const k = run(tree, 'peerpkgs', ['key', 'list'], { PEERPKGS_HOME: h });
      out.push(k.stderr);
      assert.equal(k.status, 2);
      oneLine(k.stderr, new RegExp(`^peerpkgs key: ${where}`));
    });

    it("a .pub file's text in PKG_TRUSTED_KEYS is one line naming the variable and the word, exit 2", () => {
      const pub = fs.readFileSync(path.join(home, 'keys/alice.pub'), 'utf8');
      fs.mkdirSync(path.join(work, 'empty-cache'));
      const b = build({ PKG_CACHE_URL: `file://${work}/empty-cache`, PKG_TRUSTED_KEYS: pub });
      assert.equal(b.status, 2, b.stderr);
      oneLine(
        b.stderr,
        /PKG_TRUSTED_KEYS, word 2: "alice": no such file \(give public keys, ed25519:<base64>, or paths to \.pub files; a \.pub file's comment cannot be given here\)$/m,
      );
    });
  });

  describe('trust', () => {
    it('never unpacks a tampered archive (one byte changed, same length), even from a cache that takes unsigned entries', async () => {
      const { r, log } = await sub(`file://${caches}/tampered`);
      assert.ok('miss' in r);
      assert.match(log.join('\n'), /warning: hello: file:\/\/\S+\/tampered: [0-9a-f]{64}\.tar\.gz/);
      assertNothingKept();
    });

    it('refuses an .info altered after it was signed, before asking for its archive', async () => {
      const before = faults.requests.length;
      const { r, log } = await sub(`${faults.url}/altered-info`);
      assert.ok('miss' in r);
      assert.match(log.join('\n'), new RegExp(`refusing [0-9a-f]{64}\\.info: the signature by ${alice.id} \\(alice\\) does not verify`));
      assert.deepEqual(faults.requests.slice(before), [`/altered-info/${hello.pkghash}.info`], 'the archive was never asked for');
      assertNothingKept();
    });

    it('refuses an entry signed by a key it does not trust, naming that key and the trusted ones, and never fetches its archive', async () => {
      const { r, log } = await sub(`${nginx.url}/mallory`);
      assert.ok('miss' in r);
      const warning = log.join('\n');
      assert.match(warning, new RegExp(`signed by ${mallory.id}, which is not a trusted key \\(trusted: ${alice.id} \\(alice\\)\\)`));
      assert.match(warning, /add its public key .* to \$PEERPKGS_HOME\/trusted-keys or PKG_TRUSTED_KEYS/);
      assert.doesNotMatch(fs.readFileSync(nginx.accessLog, 'utf8'), /\/mallory\/[0-9a-f]{64}\.tar\.gz/);
      assertNothingKept();
    });

    it('refuses unsigned entries from an HTTP cache unless its URL is marked #unsigned', async () => {
      const { r, log } = await sub(`${nginx.url}/unsigned`);
      assert.ok('miss' in r);
      assert.match(log.join('\n'), /not signed, and this cache needs a signature by a trusted key \(trusted: ed25519:[0-9a-f]{16} \(alice\)\); mark the cache URL with #unsigned/);
      assertNothingKept();
      const relaxed = hitOf((await sub(`${nginx.url}/unsigned#unsigned`)).r);
      assertHello(relaxed);
      assert.equal(relaxed.signer, null);
    });

    it('takes unsigned entries from a file:// cache unless its URL is marked #signed', async () => {
      assertHello(hitOf((await sub(`file://${caches}/unsigned`)).r));
      removeTreeSync(work);
      fs.mkdirSync(targetDir, { recursive: true });
      const { r, log } = await sub(`file://${caches}/unsigned#signed`);
      assert.ok('miss' in r);
      assert.match(log.join('\n'), /not signed/);
    });

    it('a cache marked #unsigned still refuses a signature by a trusted key that does not verify', async () => {
      const { r, log } = await sub(`${faults.url}/altered-info#unsigned`);
      assert.ok('miss' in r);
      assert.match(log.join('\n'), /does not verify/);
    });

    it('trusts the keys in $PEERPKGS_HOME/trusted-keys and in PKG_TRUSTED_KEYS, as keys or .pub files', async () => {
      const h = path.join(work, 'home2');
      fs.mkdirSync(h);
      assert.equal(loadTrustedKeys(h, {}).size, 0);
      fs.writeFileSync(path.join(h, 'trusted-keys'), `# who signs our caches\n\n${alice.publicKey} alice@example.org\n`);
      const fromFile = loadTrustedKeys(h, {});
      assert.deepEqual(
        fromFile.list().map((k) => [k.id, k.comment]),
        [[alice.id, 'alice@example.org']],
      );
      assertHello(hitOf((await sub(`${nginx.url}/mallory ${nginx.url}/signed`, { trusted: fromFile })).r));

      const fromEnv = loadTrustedKeys(path.join(work, 'nowhere'), { PKG_TRUSTED_KEYS: `${alice.publicKey} ${path.join(home, 'keys/mallory.pub')}` });
      assert.deepEqual(
        fromEnv.list().map((k) => k.id),
        [alice.id, mallory.id],
      );
      assert.equal(fromEnv.get(mallory.id)?.comment, 'mallory');

      assert.throws(() => loadTrustedKeys(h, { PKG_TRUSTED_KEYS: 'ed25519:nope' }), /PKG_TRUSTED_KEYS, word 1: not a public key/);
      assert.throws(() => loadTrustedKeys(h, { PKG_TRUSTED_KEYS: '/no/such.pub' }), /PKG_TRUSTED_KEYS, word 1: "\/no\/such\.pub": no such file/);
      fs.appendFileSync(path.join(h, 'trusted-keys'), 'ssh-ed25519 AAAA bob\n');
      assert.throws(
        () => loadTrustedKeys(h, {}),
        (e: Error) => e instanceof KeyError && /trusted-keys:4: not a public key/.test(e.message),
      );
    });

    it('does not trust a key because it was generated here; keeps its private half 0600; never overwrites one', () => {
      const h = path.join(work, 'home3');
      const k = generateKey(h, 'builder');
      assert.equal(loadTrustedKeys(h, {}).size, 0);
      assert.equal(fs.statSync(path.join(h, 'keys/builder.key')).mode & 0o777, 0o600);
      assert.equal(fs.statSync(path.join(h, 'keys')).mode & 0o777, 0o700);
      assert.equal(fs.readFileSync(path.join(h, 'keys/builder.pub'), 'utf8'), `${k.publicKey} builder\n`);
      assert.match(k.id, /^ed25519:[0-9a-f]{16}$/);
      assert.equal(loadSigningKey(h, 'builder').id, k.id);
      assert.throws(() => generateKey(h, 'builder'), /builder\.key already exists/);
      assert.throws(() => loadSigningKey(h, 'nobody'), /no signing key nobody .*peerpkgs key generate nobody/);
      assert.throws(() => generateKey(h, '../evil'), /invalid key name/);
    });
  });

  describe('the .info and PKG_CACHE_URL', () => {
    const fields = () => ({
      pkghash: hello.pkghash,
      name: 'hello',
      outputSha256: hello.sha256,
      outputSize: 10240,
      archiveSize: 123,
      archiveSha256: sha256('x'),
      closure: [other.pkghash],
    });

    it('writes one canonical text, signed over the bytes before its signature line', () => {
      const text = serializeInfo(fields(), alice);
      const lines = text.split('\n');
      assert.deepEqual(lines.slice(0, 9), [
        'peerpkgs-info: 2',
        `pkghash: ${hello.pkghash}`,
        'name: "hello"',
        `output-sha256: ${hello.sha256}`,
        'output-size: 10240',
        'archive-size: 123',
        `archive-sha256: ${sha256('x')}`,
        `closure: ${other.pkghash}`,
        `key: ${alice.id}`,
      ]);
      assert.match(lines[9]!, /^signature: [A-Za-z0-9+/]{86}==$/);
      const info = parseInfo(text);
      assert.deepEqual({ ...info, signature: null, signed: null }, { ...fields(), keyId: alice.id, signature: null, signed: null });
      assert.equal(checkTrust(info, trustAlice, true)?.id, alice.id);
      assert.equal(
        serializeInfo({ ...fields(), closure: [] })
          .split('\n')
          .slice(7)
          .join('\n'),
        'closure:\nkey: none\nsignature: none\n',
      );
    });

    it('reads format 1, which has no output-size', () => {
      const { outputSize: _, ...v1 } = fields();
      const text = serializeInfo(v1, alice);
      assert.match(text, /^peerpkgs-info: 1\n/);
      assert.doesNotMatch(text, /output-size/);
      const info = parseInfo(text);
      assert.equal(info.outputSize, undefined);
      assert.equal(checkTrust(info, trustAlice, true)?.id, alice.id);
    });

    it('refuses a text that is not the canonical spelling of its fields', () => {
      const text = serializeInfo(fields(), alice);
      for (const bad of [
        text.replace('archive-size: 123', 'archive-size: 0123'),
        text.replace(`pkghash: ${hello.pkghash}`, `pkghash: ${hello.pkghash.toUpperCase()}`),
        text.replace('name: "hello"\n', '').replace('closure:', 'name: "hello"\nclosure:'),
        text.replace('peerpkgs-info: 2', 'peerpkgs-info: 1'),
        text.replace('output-size: 10240\n', ''),
        text.replace('output-size: 10240', 'output-size: -1'),
        text.slice(0, -1),
      ]) {
        assert.throws(() => parseInfo(bad), InfoError, bad);
      }
      assert.throws(() => parseInfo(text.replace('peerpkgs-info: 2', 'peerpkgs-info: 3')), /format "3" is not understood/);
    });

    it('reads PKG_CACHE_URL: space-separated URLs in order, each with its trust policy', () => {
      const c = parseCacheUrls(`  file:///srv/c   http://h/c#unsigned\nhttps://h/d file:///mnt/shared#signed `);
      assert.deepEqual(
        c.map((x) => [x.url, x.requireSignature]),
        [
          ['file:///srv/c', false],
          ['http://h/c#unsigned', false],
          ['https://h/d', true],
          ['file:///mnt/shared#signed', true],
        ],
      );
      assert.deepEqual(parseCacheUrls(''), []);
      assert.throws(
        () => parseCacheUrls('./cache'),
        (e: Error) => e instanceof CacheConfigError && /not a URL \(for a directory write file:\/\/\/absolute\/path\)/.test(e.message),
      );
      assert.throws(() => parseCacheUrls('ftp://h/c'), /ftp:\/\/ caches are not supported \(supported: file:\/\/, http:\/\/, https:\/\/, ipfs:\/\/, ipns:\/\/\)/);
      assert.throws(() => parseCacheUrls('http://h/c#trusted'), /unknown fragment #trusted/);
      const cfg = cacheConfig(home, { PKG_CACHE_URL: 'http://h/c', PKG_FORCE_BINARY: 'yes', PKG_TRUSTED_KEYS: alice.publicKey });
      assert.deepEqual([cfg.caches.length, cfg.trusted.size, cfg.forceBinary], [1, 1, true]);
    });
  });

  describe('publishing', () => {
    it('writes <pkghash>.tar.gz and a signed <pkghash>.info that verifies and describes it, and no temporary files', async () => {
      const dir = path.join(work, 'cache');
      const r = await addToCache({ dir, packages: [hello, { ...other, closure: [hello.pkghash] }], signKey: alice });
      // no provenance: these archives have no record of a build here (test/provenance.test.ts has those)
      assert.deepEqual(
        { ...r, catalog: undefined },
        {
          added: [hello.pkghash, other.pkghash],
          skipped: [],
          provenance: new Map([
            [hello.pkghash, null],
            [other.pkghash, null],
          ]),
          catalog: undefined,
        },
      );
      assert.deepEqual(
        r.catalog.entries.map((e) => e.name),
        ['hello', 'other'],
      );
      assert.deepEqual(listAll(dir), [`${hello.pkghash}.info`, `${hello.pkghash}.tar.gz`, `${other.pkghash}.info`, `${other.pkghash}.tar.gz`, 'catalog'].sort());
      const archive = fs.readFileSync(path.join(dir, `${other.pkghash}.tar.gz`));
      assert.ok(archive.equals(fs.readFileSync(other.archive)));
      const info = parseInfo(fs.readFileSync(path.join(dir, `${other.pkghash}.info`)));
      assert.deepEqual(
        [info.pkghash, info.name, info.outputSha256, info.archiveSize, info.archiveSha256, info.closure, info.keyId],
        [other.pkghash, 'other', other.sha256, archive.length, sha256(archive), [hello.pkghash], alice.id],
      );
      assert.equal(checkTrust(info, trustAlice, true)?.id, alice.id);
    });

    it('skips entries already there, leaving them as they are', async () => {
      const dir = path.join(work, 'cache');
      await addToCache({ dir, packages: [hello], signKey: alice });
      const info = path.join(dir, `${hello.pkghash}.info`);
      const before = fs.statSync(info);
      const r = await addToCache({ dir, packages: [hello, other], signKey: mallory });
      assert.deepEqual({ ...r, catalog: undefined }, { added: [other.pkghash], skipped: [hello.pkghash], provenance: new Map([[other.pkghash, null]]), catalog: undefined });
      assert.equal(fs.statSync(info).ino, before.ino);
      assert.equal(parseInfo(fs.readFileSync(info)).keyId, alice.id);
    });

    it('refuses an archive that is not what its record says, or missing, and writes nothing', async () => {
      const dir = path.join(work, 'cache');
      await assert.rejects(
        addToCache({ dir, packages: [{ ...hello, sha256: other.sha256 }], signKey: alice }),
        (e: Error) => e instanceof PublishError && /is [0-9a-f]{64}, but [0-9a-f]{64} is recorded for it; rebuild it/.test(e.message),
      );
      await assert.rejects(addToCache({ dir, packages: [{ ...hello, archive: path.join(work, 'nope.tar.gz') }] }), /nope\.tar\.gz: not built/);
      const junk = path.join(work, 'junk.tar.gz');
      fs.writeFileSync(junk, 'not gzip');
      await assert.rejects(addToCache({ dir, packages: [{ ...hello, archive: junk, sha256: undefined as never }] }), /not a \.tar\.gz/);
      assert.deepEqual(listAll(dir), []);
    });

    /** A tree whose packages (app run-depending on lib, more if asked) are built, as far as publishing can tell. */
    async function builtTree(more: string[] = []): Promise<{ tree: string; g: PackageGraph }> {
      const tree = path.join(work, 'tree');
      write(tree, {
        '!pkg/app/build': '#!/bin/sh\n',
        'pkg/app/run-deps': ['../lib', ...more.map((m) => `../${m}`)].join('\n') + '\n',
        '!pkg/lib/build': '#!/bin/sh\n',
        '!pkg/tool/build': '#!/bin/sh\n',
      });
      for (const m of more) write(tree, { [`!pkg/${m}/build`]: `#!/bin/sh\n# ${m}\n` }); // a pkghash of its own
      const g = new PackageGraph();
      for (const name of ['app', 'lib', ...more]) {
        const d = path.join(tree, 'pkg', name);
        const src = path.join(work, `${name}-dest`);
        write(src, { [`bin/${name}`]: name });
        const packed = await packDir(src, path.join(d, '.pkg.tar.gz'));
        recordSha256(path.join(d, '.pkg.tar.gz'), packed.sha256);
        fs.writeFileSync(path.join(d, '.pkghash'), g.pkghash(d) + '\n');
      }
      return { tree, g };
    }

    /** add-to-package-cache ARGS in a process of its own, as two users would run it. */
    function addInProcess(args: string[]): { done: Promise<{ status: number | null; stdout: string; stderr: string }>; said: Promise<string> } {
      const code = `const m = await import(${JSON.stringify(new URL('../src/cli/cache-commands.ts', import.meta.url).href)}); process.exitCode = await m.addToPackageCache(process.argv.slice(1));`;
      const p = spawn(process.execPath, ['--input-type=module', '-e', code, '--', ...args], { env: { ...process.env, PEERPKGS_HOME: home } });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d) => (stdout += d));
      const done = new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => p.on('close', (status) => resolve({ status, stdout, stderr })));
      // its first line on stderr, or all of it if it says none
      const said = new Promise<string>((resolve) => {
        p.stderr.on('data', (d) => {
          stderr += d;
          if (stderr.includes('\n')) resolve(stderr);
        });
        void done.then(() => resolve(stderr));
      });
      return { done, said };
    }

    it('two add-to-package-cache runs at once with different keys each add an entry once, and report who signed what is there', async () => {
      const more = ['m1', 'm2', 'm3', 'm4', 'm5', 'm6'];
      const { tree } = await builtTree(more);
      const dir = path.join(work, 'cache');
      const runs = await Promise.all(['alice', 'mallory'].map((k) => addInProcess(['-o', dir, '--sign-key', k, path.join(tree, 'pkg/app')]).done));
      const keys = [alice, mallory];
      const addedBy = new Map<string, string>();
      runs.forEach((r, i) => {
        assert.equal(r.status, 0, r.stderr);
        for (const [, h] of r.stdout.matchAll(/^added \S+ ([0-9a-f]{64})$/gm)) {
          assert.ok(!addedBy.has(h!), `${h} added by both runs`);
          addedBy.set(h!, keys[i]!.id);
        }
        // what this run skipped, the other one added
        for (const [, h, by] of r.stdout.matchAll(/^already there \S+ ([0-9a-f]{64}) \(signed by (\S+)\)$/gm)) assert.equal(by, keys[1 - i]!.id, h);
      });
      assert.equal(addedBy.size, 2 + more.length, runs.map((r) => r.stdout).join('---\n'));
      for (const [h, id] of addedBy) assert.equal(parseInfo(fs.readFileSync(path.join(dir, `${h}.info`))).keyId, id, `${h}: the key the run that added it reported`);
      assert.deepEqual(
        listAll(dir).filter((f) => !/^[0-9a-f]{64}\.(info|tar\.gz)$/.test(f)),
        ['catalog'],
        'nothing else: no lock, no temporaries',
      );
    });

    it("add-to-package-cache waits while another process holds the cache directory's lock, and then reports what that one wrote", async () => {
      const { tree, g } = await builtTree();
      const dir = path.join(work, 'cache');
      fs.mkdirSync(dir);
      fs.symlinkSync(String(process.pid), path.join(dir, '.lock')); // as a live writer holds it
      const p = addInProcess(['-o', dir, '--sign-key', 'mallory', path.join(tree, 'pkg/app')]);
      assert.match(await p.said, new RegExp(`^add-to-package-cache: waiting for .*cache: process ${process.pid} is writing to it\n$`));
      assert.deepEqual(listAll(dir), ['.lock'], 'nothing written while the lock is held');
      const lib = g.pkghash(path.join(tree, 'pkg/lib'));
      const archive = path.join(tree, 'pkg/lib/.pkg.tar.gz');
      // what the holder of the lock writes, in place before it lets go: were the lock let go
      // first, the waiting process could take it before this one and add lib itself
      const other = path.join(work, 'other');
      fs.mkdirSync(other);
      await addToCache({ dir: other, packages: [{ pkghash: lib, name: 'lib', archive, closure: [] }], signKey: alice });
      for (const f of fs.readdirSync(other)) fs.renameSync(path.join(other, f), path.join(dir, f));
      fs.rmSync(path.join(dir, '.lock'));
      const r = await p.done;
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^already there \\S+ ${lib} \\(signed by ${alice.id}\\)$`, 'm'));
      assert.match(r.stdout, /^1 added, signed by \S+ \(mallory\); 1 already in /m);
    });

    it('takes over the lock of a run that was killed, and leaves no lock behind', async () => {
      const dir = path.join(work, 'cache');
      fs.mkdirSync(dir);
      const dead = spawnSync('/bin/sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim();
      fs.symlinkSync(dead, path.join(dir, '.lock'));
      const r = await addToCache({ dir, packages: [hello], signKey: alice, onWait: () => assert.fail('waited for a dead process') });
      assert.deepEqual(r.added, [hello.pkghash]);
      assert.deepEqual(listAll(dir), [`${hello.pkghash}.info`, `${hello.pkghash}.tar.gz`, 'catalog'].sort());
    });

    it('add-to-package-cache publishes packages with their run closures, signed, and names a package not built with the command that builds it', async () => {
      const { tree, g } = await builtTree();
      const out: string[] = [];
      const err: string[] = [];
      const io = { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s), env: { PEERPKGS_HOME: home } };
      const dir = path.join(work, 'cache');
      assert.equal(await addToPackageCache(['-o', dir, '--sign-key', 'alice', path.join(tree, 'pkg/app')], io), 0, err.join(''));
      const app = g.pkghash(path.join(tree, 'pkg/app'));
      const lib = g.pkghash(path.join(tree, 'pkg/lib'));
      assert.deepEqual(listAll(dir), [`${app}.info`, `${app}.tar.gz`, `${lib}.info`, `${lib}.tar.gz`, 'catalog'].sort());
      assert.deepEqual(parseInfo(fs.readFileSync(path.join(dir, `${app}.info`))).closure, [lib]);
      assert.match(out.join(''), /2 added, signed by ed25519:[0-9a-f]{16} \(alice\); 0 already in /);

      err.length = 0;
      assert.equal(await addToPackageCache(['-o', dir, path.join(tree, 'pkg/tool')], io), 1);
      assert.match(err.join(''), /^add-to-package-cache: \S*pkg\/tool\/\.pkg\.tar\.gz: not built \(run bin\/build-packages-ifchange \.\/\S*pkg\/tool\)\n$/);
      err.length = 0;
      assert.equal(await addToPackageCache([path.join(tree, 'pkg/app')], io), 2);
      assert.match(err.join(''), /name the cache directory with -o DIR/);
    });

    it('peerpkgs key generate, trust and list', async () => {
      const out: string[] = [];
      const err: string[] = [];
      const h = path.join(work, 'home4');
      const io = { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s), env: { PEERPKGS_HOME: h } };
      assert.equal(await keyCommand(['generate', 'ci'], io), 0, err.join(''));
      const id = loadSigningKey(h, 'ci').id;
      assert.match(out.join(''), new RegExp(`made key ci: ${id}\n[^]*it is not trusted yet`));
      assert.equal(await keyCommand(['generate', 'ci'], io), 1);
      assert.match(err.join(''), /ci\.key already exists/);
      assert.equal(await keyCommand(['trust', path.join(h, 'keys/ci.pub')], io), 0);
      assert.equal(await keyCommand(['trust', path.join(h, 'keys/ci.pub')], io), 0);
      assert.equal(loadTrustedKeys(h, {}).get(id)?.comment, 'ci');
      assert.equal(fs.readFileSync(path.join(h, 'trusted-keys'), 'utf8').split('\n').filter(Boolean).length, 1, 'trusted once');
      out.length = 0;
      assert.equal(await keyCommand(['list'], io), 0);
      assert.match(out.join(''), new RegExp(`signing keys:\n  ci ${id}\ntrusted keys:\n  ${id} ci \\(.*trusted-keys:1\\)\n`));
    });
  });
});
