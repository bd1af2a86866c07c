/**
 * The distfile store and the downloader, against real servers on loopback:
 * busybox httpd for the normal path, small node:http servers for faults.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { scratch, write, busyboxHttpd, start } from './helpers.ts';
import { peerpkgsHome } from '../src/home.ts';
import { DistfileStore, HashMismatch } from '../src/fetch/store.ts';
import { fetchDistfile, FetchError, type Distfile, type FetchOptions, type Source } from '../src/fetch/fetch.ts';
import { fetchAll } from '../src/fetch/fetchfile.ts';
import { LineProgress, BarProgress, silentProgress } from '../src/fetch/progress.ts';

const sha256 = (b: Uint8Array | string) => crypto.createHash('sha256').update(b).digest('hex');

// big enough to arrive in several chunks, so truncation and stalls happen mid-body
const DATA = crypto.randomBytes(256 * 1024);
const DATA_SHA = sha256(DATA);
const OTHER = Buffer.from('another distfile\n');
const OTHER_SHA = sha256(OTHER);

interface Server {
  url: string;
  requests: string[];
  stop(): Promise<void>;
}

/** A node:http server misbehaving as the handler says; records each request path. */
async function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Server> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    handler(req, res);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as net.AddressInfo;
  const stop = async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return { url: `http://127.0.0.1:${port}`, requests, stop };
}

/**
 * A raw TCP server that sends `head` and then drips one byte of `drip` every
 * 50 ms: never silent long enough for an idle timeout, never done. It stops
 * by itself after 20 s, whoever is still listening.
 */
async function trickle(head: string, drip: Buffer): Promise<Server> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.once('data', (d) => requests.push(d.toString().split(' ')[1] ?? ''));
    sock.on('error', () => {});
    sock.write(head);
    let i = 0;
    const timer = setInterval(() => (i < drip.length ? sock.write(drip.subarray(i, ++i)) : sock.end()), 50);
    const stop = setTimeout(() => sock.destroy(), 20_000);
    sock.on('close', () => (clearInterval(timer), clearTimeout(stop), sockets.delete(sock)));
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as net.AddressInfo;
  const stop = async () => {
    for (const sock of sockets) sock.destroy();
    await new Promise((r) => server.close(r));
  };
  return { url: `http://127.0.0.1:${port}`, requests, stop };
}

/**
 * A server whose body does not end while the client reads: chunked, 16 kB at
 * a time. It stops by itself after 32 MB or 20 s, so that a client without
 * a bound fills no disk.
 */
async function endless(): Promise<Server> {
  const chunk = Buffer.alloc(16 * 1024, 'y');
  return serve((_req, res) => {
    res.writeHead(200);
    const until = Date.now() + 20_000;
    let left = 2048;
    const more = () => {
      while (!res.destroyed && Date.now() < until && left-- > 0) if (!res.write(chunk)) return void res.once('drain', more);
      res.end();
    };
    more();
  });
}

describe('fetch', function () {
  let dir: string;
  let cleanup: () => void;
  let www: Omit<Server, 'requests'>;
  let home: string;
  let store: DistfileStore;
  const servers: Server[] = [];

  const want = (...urls: string[]): Distfile => ({ file: 'foo-1.0.tar.gz', sha256: DATA_SHA, urls });
  const opts = (more: Partial<FetchOptions> = {}): FetchOptions => ({ store, timeoutMs: 1000, retries: 2, backoffMs: 5, progress: silentProgress, ...more });
  const fault = async (handler: Parameters<typeof serve>[0]) => {
    const s = await serve(handler);
    servers.push(s);
    return s;
  };
  /** What the store directory holds; every file must be named by its own hash. */
  const storeFiles = (): string[] => {
    if (!fs.existsSync(store.dir)) return [];
    const names = fs.readdirSync(store.dir);
    for (const n of names) assert.equal(sha256(fs.readFileSync(path.join(store.dir, n))), n, `${n} holds other bytes`);
    return names.sort();
  };
  const failure = async (p: Promise<unknown>): Promise<FetchError> => {
    const e = await p.then(
      () => assert.fail('fetch succeeded'),
      (e: unknown) => e,
    );
    assert.ok(e instanceof FetchError, String(e));
    return e;
  };

  before(async () => {
    ({ dir, cleanup } = scratch());
    fs.mkdirSync(path.join(dir, 'www'));
    fs.writeFileSync(path.join(dir, 'www', 'foo-1.0.tar.gz'), DATA);
    www = await busyboxHttpd(path.join(dir, 'www'));
  });
  after(async () => {
    await www.stop();
    cleanup();
  });
  beforeEach(() => {
    home = fs.mkdtempSync(path.join(dir, 'home-'));
    store = new DistfileStore(home);
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });

  describe('peerpkgsHome', () => {
    it('is $PEERPKGS_HOME when set, else ~/.cache/peerpkgs', () => {
      assert.equal(peerpkgsHome({ PEERPKGS_HOME: '/srv/pp' }), '/srv/pp');
      assert.equal(peerpkgsHome({}), path.join(os.homedir(), '.cache', 'peerpkgs'));
    });
  });

  describe('the distfile store', () => {
    it('stores a local file under its sha256, read-only, in <home>/distfiles', async () => {
      write(dir, { 'local.tar': 'local bytes' });
      const sum = await store.add(path.join(dir, 'local.tar'));
      assert.equal(sum, sha256('local bytes'));
      assert.ok(store.has(sum));
      assert.equal(store.path(sum), path.join(home, 'distfiles', sum));
      assert.equal(fs.readFileSync(store.path(sum), 'utf8'), 'local bytes');
      assert.equal(fs.statSync(store.path(sum)).mode & 0o222, 0);
    });

    it('takes a stored file whose stat changed but whose bytes are right, once it has hashed it again', async () => {
      write(dir, { 'touched.tar': 'touched bytes' });
      const sum = await store.add(path.join(dir, 'touched.tar'));
      fs.utimesSync(store.path(sum), new Date(1000), new Date(1000));
      assert.equal(await store.verify(sum), 'ok');
      assert.equal(fs.readFileSync(store.path(sum), 'utf8'), 'touched bytes');
    });

    it('removes a stored file whose bytes were changed, saying what they hash to', async () => {
      write(dir, { 'changed.tar': 'first bytes' });
      const sum = await store.add(path.join(dir, 'changed.tar'));
      fs.chmodSync(store.path(sum), 0o644);
      fs.writeFileSync(store.path(sum), 'other bytes');
      assert.deepEqual(await store.verify(sum), { removed: sha256('other bytes') });
      assert.equal(store.has(sum), false);
      assert.equal(await store.verify(sum), 'missing');
    });

    it('replaces a damaged stored file when the right bytes are added again', async () => {
      write(dir, { 'again.tar': 'right bytes' });
      const sum = await store.add(path.join(dir, 'again.tar'));
      fs.chmodSync(store.path(sum), 0o644);
      fs.writeFileSync(store.path(sum), 'wrong bytes');
      assert.equal(await store.add(path.join(dir, 'again.tar')), sum);
      assert.equal(fs.readFileSync(store.path(sum), 'utf8'), 'right bytes');
      assert.deepEqual(storeFiles(), [sum]);
    });

    it('leaves a file already stored as it was when it is added again', async () => {
      write(dir, { 'again.tar': 'same bytes' });
      const sum = await store.add(path.join(dir, 'again.tar'));
      const before = fs.statSync(store.path(sum));
      assert.equal(await store.add(path.join(dir, 'again.tar')), sum);
      const after = fs.statSync(store.path(sum));
      assert.deepEqual([after.ino, after.mtimeMs], [before.ino, before.mtimeMs]);
      assert.deepEqual(storeFiles(), [sum]);
    });

    it('refuses bytes that do not have the hash they are put under, keeping nothing', async () => {
      await assert.rejects(store.put(DATA_SHA, [Buffer.from('not it')]), (e: unknown) => e instanceof HashMismatch && e.got === sha256('not it'));
      assert.equal(store.has(DATA_SHA), false);
      assert.deepEqual(storeFiles(), []);
    });

    it('rejects a sha256 that is not 64 lowercase hexadecimal digits', () => {
      assert.throws(() => store.path(DATA_SHA.toUpperCase()), /invalid sha256/);
      assert.throws(() => store.has('abc'), /invalid sha256/);
      assert.throws(() => store.path(`../${DATA_SHA.slice(3)}`), /invalid sha256/);
    });
  });

  describe('fetching a distfile', () => {
    it('downloads it from an HTTP server into the store', async () => {
      const p = await fetchDistfile(want(`${www.url}/foo-1.0.tar.gz`), opts());
      assert.equal(p, store.path(DATA_SHA));
      assert.deepEqual(fs.readFileSync(p), DATA);
    });

    it('takes a distfile already in the store without asking any server', async () => {
      const s = await fault((_req, res) => res.end(DATA));
      await store.put(DATA_SHA, [DATA]);
      assert.equal(await fetchDistfile(want(`${s.url}/foo-1.0.tar.gz`), opts()), store.path(DATA_SHA));
      assert.deepEqual(s.requests, []);
    });

    it('retries a server error with backoff, then takes the next URL', async () => {
      const s = await fault((_req, res) => res.writeHead(500).end());
      await fetchDistfile(want(`${s.url}/foo`, `${www.url}/foo-1.0.tar.gz`), opts({ retries: 2 }));
      assert.equal(s.requests.length, 3);
      assert.ok(store.has(DATA_SHA));
    });

    it('does not retry a 404', async () => {
      const s = await fault((_req, res) => res.writeHead(404).end());
      const e = await failure(fetchDistfile(want(`${s.url}/foo`), opts({ retries: 3 })));
      assert.equal(s.requests.length, 1);
      assert.match(e.message, /\/foo: HTTP 404 Not Found$/m);
    });

    it('gives up on a server that stops sending, before or during the body, after the timeout', async () => {
      const silent = await fault(() => {});
      const stalls = await fault((_req, res) => {
        res.writeHead(200, { 'content-length': DATA.length });
        res.write(DATA.subarray(0, 1000));
      });
      const t0 = Date.now();
      // the timeout applies to the good source too (busybox httpd forks for each request, and a
      // loaded machine may start it late), so it is not cut fine; the bound tells the timeout
      // given (two sources: under a second) from the default one (30 s each), by far
      await fetchDistfile(want(`${silent.url}/a`, `${stalls.url}/b`, `${www.url}/foo-1.0.tar.gz`), opts({ timeoutMs: 400, retries: 0 }));
      assert.ok(Date.now() - t0 < 15_000, 'the timeout given, not the default');
      assert.ok(store.has(DATA_SHA));
      assert.deepEqual(storeFiles(), [DATA_SHA]);
    });

    it('reports a timeout as the reason a source failed', async () => {
      const silent = await fault(() => {});
      const e = await failure(fetchDistfile(want(`${silent.url}/a`), opts({ timeoutMs: 100, retries: 1 })));
      assert.match(e.message, /\/a: timed out \(no data for 100 ms\) \(2 tries\)$/m);
    });

    it('retries a connection reset', async () => {
      let n = 0;
      const s = await fault((req, res) => (n++ === 0 ? req.socket.destroy() : res.end(DATA)));
      await fetchDistfile(want(`${s.url}/foo`), opts());
      assert.equal(s.requests.length, 2);
      assert.ok(store.has(DATA_SHA));
    });

    it('throws away a truncated body and takes the next source, leaving only verified files', async () => {
      const s = await fault((req, res) => {
        res.writeHead(200, { 'content-length': DATA.length });
        res.write(DATA.subarray(0, DATA.length / 2), () => req.socket.destroy());
      });
      const notes: string[] = [];
      const progress = new LineProgress({ write: (l: string) => void notes.push(l) });
      await fetchDistfile(want(`${s.url}/foo`, `${www.url}/foo-1.0.tar.gz`), opts({ retries: 1, progress }));
      assert.equal(s.requests.length, 2, 'truncation is transient: tried again');
      assert.match(notes.join(''), /truncated \(got \d+ of 262144 bytes\)/);
      assert.deepEqual(storeFiles(), [DATA_SHA]);
    });

    it('throws away a body with other bytes and takes the next source without retrying', async () => {
      const altered = Buffer.from(DATA);
      altered[1000] ^= 1;
      const s = await fault((_req, res) => res.end(altered));
      const e = await failure(fetchDistfile(want(`${s.url}/foo`), opts()));
      assert.match(e.message, new RegExp(`/foo: sha256 mismatch \\(got ${sha256(altered)}\\)$`, 'm'));
      assert.equal(s.requests.length, 1);
      assert.deepEqual(storeFiles(), []);
      await fetchDistfile(want(`${s.url}/foo`, `${www.url}/foo-1.0.tar.gz`), opts());
      assert.deepEqual(storeFiles(), [DATA_SHA]);
    });

    it('follows redirects, relative or absolute, and refuses a loop', async () => {
      const s = await fault((req, res) => {
        if (req.url === '/one') res.writeHead(301, { location: '/two' }).end();
        else if (req.url === '/two') res.writeHead(302, { location: `${www.url}/foo-1.0.tar.gz` }).end();
        else res.writeHead(307, { location: '/loop' }).end();
      });
      const e = await failure(fetchDistfile(want(`${s.url}/loop`), opts()));
      assert.match(e.message, /\/loop: too many redirects \(more than 5\)$/m);
      await fetchDistfile(want(`${s.url}/one`), opts());
      assert.ok(store.has(DATA_SHA));
    });

    it('copies a file:// URL into the store, verified', async () => {
      const url = pathToFileURL(path.join(dir, 'www', 'foo-1.0.tar.gz')).href;
      assert.equal(await fetchDistfile(want(url), opts()), store.path(DATA_SHA));
      assert.deepEqual(fs.readFileSync(store.path(DATA_SHA)), DATA);
    });

    it('tries extra sources (a mirror) before the URLs', async () => {
      const s = await fault((_req, res) => res.end(DATA));
      const asked: string[] = [];
      const mirror: Source = {
        describe: () => 'mirror:test',
        open: async (w) => (asked.push(w.sha256), { body: [DATA], size: DATA.length }),
      };
      await fetchDistfile(want(`${s.url}/foo`), opts({ sources: [mirror] }));
      assert.deepEqual(asked, [DATA_SHA]);
      assert.deepEqual(s.requests, []);
    });

    it('when every source fails, lists each with its reason and the command that fixes it offline', async () => {
      const s500 = await fault((_req, res) => res.writeHead(500).end());
      const s404 = await fault((_req, res) => res.writeHead(404).end());
      write(dir, { 'wrong.tar.gz': 'wrong' });
      const wrong = pathToFileURL(path.join(dir, 'wrong.tar.gz')).href;
      const missing = pathToFileURL(path.join(dir, 'missing.tar.gz')).href;
      const e = await failure(fetchDistfile(want(`${s500.url}/foo`, `${s404.url}/foo`, wrong, missing, 'ftp://example.org/foo'), opts()));
      assert.equal(
        e.message,
        [
          `could not fetch foo-1.0.tar.gz (sha256 ${DATA_SHA}):`,
          `  ${s500.url}/foo: HTTP 500 Internal Server Error (3 tries)`,
          `  ${s404.url}/foo: HTTP 404 Not Found`,
          `  ${wrong}: sha256 mismatch (got ${sha256('wrong')})`,
          `  ${missing}: no such file`,
          `  ftp://example.org/foo: unsupported URL scheme ftp:`,
          'to work offline, download it by other means and run: peerpkgs distfiles add /path/to/foo-1.0.tar.gz',
        ].join('\n'),
      );
      assert.deepEqual(storeFiles(), []);
    });
  });

  describe('bounds', () => {
    const quick = { timeoutMs: 1000, retries: 0, deadline: { baseMs: 500, minRate: 1 << 20 } };
    const track = async (s: Server) => (servers.push(s), s);

    it('gives up on a server that drips its headers, never silent, when the base time is out', async () => {
      const s = await track(await trickle('HTTP/1.1 200 OK\r\nX-Slow: ', Buffer.alloc(1000, 'a')));
      const e = await failure(fetchDistfile(want(`${s.url}/a`), opts(quick)));
      assert.match(e.message, /\/a: too slow: no answer in 0\.5 s \(PKG_DOWNLOAD_BASE_TIME\)$/m);
      assert.deepEqual(storeFiles(), []);
    });

    it('gives up on a server that drips its body, never silent, when the time for its size is out, and takes the next source', async () => {
      const s = await track(await trickle(`HTTP/1.1 200 OK\r\nContent-Length: ${DATA.length}\r\n\r\n`, DATA));
      const notes: string[] = [];
      const progress = new LineProgress({ write: (l: string) => void notes.push(l) });
      await fetchDistfile(want(`${s.url}/b`, `${www.url}/foo-1.0.tar.gz`), opts({ ...quick, progress }));
      // 0.5 s, and 262144 bytes at 1 MiB/s
      assert.match(notes.join(''), /\/b: too slow: not done in 0\.8 s, the time allowed for 262144 bytes \(PKG_DOWNLOAD_MIN_RATE\)/);
      assert.deepEqual(storeFiles(), [DATA_SHA]);
    });

    it('downloads under a deadline beyond what one timer holds (2^31 ms, 24.8 days)', async () => {
      // 35 days: Node would fire a single timer of that length at once
      await fetchDistfile(want(`${www.url}/foo-1.0.tar.gz`), opts({ retries: 0, deadline: { baseMs: 3_000_000_000, minRate: 1 << 20 } }));
      assert.deepEqual(storeFiles(), [DATA_SHA]);
    });

    it('takes a distfile whose fetch record gives its size, and refuses one of another length, naming the url', async () => {
      const url = `${www.url}/foo-1.0.tar.gz`;
      const longer = await failure(fetchDistfile({ ...want(url), size: DATA.length - 1 }, opts()));
      assert.match(longer.message, new RegExp(`${url}: the server announces 262144 bytes, more than the 262143 bytes its fetch record says$`, 'm'));
      const shorter = await failure(fetchDistfile({ ...want(url), size: DATA.length + 1 }, opts()));
      assert.match(shorter.message, new RegExp(`${url}: is 262144 bytes, its fetch record says 262145$`, 'm'));
      // a file:// source is held to the same size
      const file = pathToFileURL(path.join(dir, 'www', 'foo-1.0.tar.gz')).href;
      const local = await failure(fetchDistfile({ ...want(file), size: 10 }, opts()));
      assert.match(local.message, new RegExp(`${file}: is 262144 bytes, its fetch record says 10$`, 'm'));
      assert.deepEqual(storeFiles(), []);
      await fetchDistfile({ ...want(url), size: DATA.length }, opts());
      assert.deepEqual(storeFiles(), [DATA_SHA]);
    });

    it('stops reading a body that never ends at the size its fetch record gives, keeping nothing', async () => {
      const s = await track(await endless());
      const e = await failure(fetchDistfile({ ...want(`${s.url}/endless`), size: 100_000 }, opts()));
      assert.match(e.message, /\/endless: longer than the 100000 bytes its fetch record says$/m);
      assert.deepEqual(storeFiles(), []);
      assert.deepEqual(fs.readdirSync(store.dir), [], 'no temporary file left');
    });

    it('stops reading a body that never ends at PKG_MAX_DOWNLOAD_SIZE when its fetch record gives no size', async () => {
      const s = await track(await endless());
      const e = await failure(fetchDistfile(want(`${s.url}/endless`), opts({ maxBytes: 64 * 1024 })));
      assert.match(e.message, /\/endless: longer than the 64K that PKG_MAX_DOWNLOAD_SIZE allows a source whose fetch record gives no size$/m);
      assert.deepEqual(fs.readdirSync(store.dir), []);
    });

    it('do-fetch: PKG_MAX_DOWNLOAD_SIZE bounds a download (exit 5), and a bad value is a usage error (exit 2)', async () => {
      const s = await track(await endless());
      write(dir, { 'pkg/endless/fetch': `url: ${s.url}/endless.tar\nsha256: ${DATA_SHA}\n` });
      const env = { PEERPKGS_HOME: home, PKG_MIRROR_IPFS: 'no' };
      const r = await start(path.join(dir, 'pkg/endless'), 'do-fetch', ['fetch'], { ...env, PKG_MAX_DOWNLOAD_SIZE: '1M' });
      assert.equal(r.status, 5, r.stderr);
      assert.match(r.stderr, new RegExp(`${s.url}/endless\\.tar: longer than the 1M that PKG_MAX_DOWNLOAD_SIZE allows`));
      const bad = await start(path.join(dir, 'pkg/endless'), 'do-fetch', ['fetch'], { ...env, PKG_MAX_DOWNLOAD_SIZE: 'lots' });
      assert.equal(bad.status, 2);
      assert.equal(bad.stderr, 'do-fetch: PKG_MAX_DOWNLOAD_SIZE=lots: expected a size such as 512M or 4G\n');
    });
  });

  describe('progress', () => {
    it('prints a start line and a line with size and rate when not on a terminal', async () => {
      let out = '';
      const progress = new LineProgress({ write: (s: string) => (out += s), isTTY: false });
      await fetchDistfile(want(`${www.url}/foo-1.0.tar.gz`), opts({ progress }));
      const lines = out.split('\n');
      assert.equal(lines[0], `fetching foo-1.0.tar.gz (256.0 KiB) from ${www.url}/foo-1.0.tar.gz`);
      assert.match(lines[1], /^fetched foo-1\.0\.tar\.gz: 256\.0 KiB in \d+\.\d s \(([\d.]+ [KMG]?i?B\/s|-)\)$/);
      assert.equal(lines.length, 3);
      assert.doesNotMatch(out, /\r/);
    });

    it('redraws one status line in place on a terminal, with bytes done of total and rate', () => {
      let out = '';
      const progress = new BarProgress({ write: (s: string) => (out += s), isTTY: true, columns: 100 });
      const t = progress.begin('foo-1.0.tar.gz', 'http://x/foo', 2048);
      assert.match(out, /^\rfoo-1\.0\.tar\.gz \[ {20}\] 0 B\/2\.0 KiB (\d[\d.]* [KMG]?i?B\/s|-)/);
      out = '';
      t.advance(1024);
      progress.note('a note scrolls above the bar');
      assert.ok(out.startsWith('\r\x1b[Ka note scrolls above the bar\n\rfoo-1.0.tar.gz [##########          ] 1.0 KiB/2.0 KiB '), JSON.stringify(out));
      out = '';
      t.done();
      assert.ok(out.startsWith('\r\x1b[Kfetched foo-1.0.tar.gz: 1.0 KiB in '), JSON.stringify(out));
    });

    it('takes a terminal that says it has 0 columns (a pty without a size) as 80 wide', () => {
      let out = '';
      const progress = new BarProgress({ write: (s: string) => (out += s), isTTY: true, columns: 0 });
      progress.begin('foo-1.0.tar.gz', 'http://x/foo', 2048);
      assert.match(out, /^\rfoo-1\.0\.tar\.gz \[ {20}\] 0 B\/2\.0 KiB /);
    });

    it('redraws the status line at most ten times a second', () => {
      let out = '';
      const progress = new BarProgress({ write: (s: string) => (out += s), isTTY: true });
      const t = progress.begin('foo-1.0.tar.gz', 'http://x/foo');
      for (let i = 0; i < 1000; i++) t.advance(1);
      assert.equal(out.split('\r').length - 1, 1);
    });
  });

  describe('fetchAll', () => {
    it('fetches every distfile of a package and returns their store paths by file name', async () => {
      fs.writeFileSync(path.join(dir, 'www', 'other.txt'), OTHER);
      const got = await fetchAll([want(`${www.url}/foo-1.0.tar.gz`), { file: 'other.txt', sha256: OTHER_SHA, urls: [`${www.url}/other.txt`] }], opts());
      assert.deepEqual(
        [...got],
        [
          ['foo-1.0.tar.gz', store.path(DATA_SHA)],
          ['other.txt', store.path(OTHER_SHA)],
        ],
      );
    });

    it('tries every distfile even when one fails, and names all that are missing', async () => {
      const s404 = await fault((_req, res) => res.writeHead(404).end());
      const e = await failure(
        fetchAll([{ file: 'a.tar', sha256: OTHER_SHA, urls: [`${s404.url}/a.tar`] }, want(`${www.url}/foo-1.0.tar.gz`), { file: 'b.tar', sha256: sha256('b'), urls: [] }], {
          ...opts(),
          concurrency: 1,
        }),
      );
      assert.ok(store.has(DATA_SHA));
      assert.match(e.message, /^could not fetch a\.tar .*:\n {2}http:\/\/.*\/a\.tar: HTTP 404 Not Found\ncould not fetch b\.tar .*:\n {2}no sources: the package lists no url\n/);
      assert.match(e.message, /run: peerpkgs distfiles add \/path\/to\/a\.tar \/path\/to\/b\.tar$/);
    });
  });
});
