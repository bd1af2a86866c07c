/**
 * Source mirrors: the CSV mirror database, p2pkgs' rec database imported,
 * and fetching through IPFS from real nodes in other processes over
 * loopback TCP, falling back to real HTTP servers.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN, scratch, write, run, start, userEnv, busyboxHttpd, freePort, type Run } from './helpers.ts';
import { makeSeedTarball, writeSeedPackage } from './seed.ts';
import { startDaemon, storedBlocks, type Daemon } from './ipfs-peer.ts';
import { addMirrorRecords, formatMirrorDb, mirrorDbPath, parseMirrorDb, readMirrorDb, type MirrorRecord } from '../src/mirrors/db.ts';
import { parseP2pkgsMirrors } from '../src/mirrors/import.ts';
import { TreeError } from '../src/tree/errors.ts';
import { BlockPacks } from '../src/ipfs/packs.ts';

const sha256 = (b: Uint8Array | string) => crypto.createHash('sha256').update(b).digest('hex');

const SHA_A = sha256('a');
const SHA_B = sha256('b');
const CID_1 = 'QmUqB24HxtVGiinvKH53Vy7MaLWiT2qV5q3EHcrh9Ee6Ua';
const CID_2 = 'QmbJkwhifN3LM9LtVjDYZJ7dSBmAxarQF4MsbXPJyXpvH2';
const CID_V1 = 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku';

/** In the format of p2pkgs' mirrors/ipfs: a descriptor, then ipfs_source records sorted by url. */
const P2PKGS_DB = `%rec: ipfs_source
%unique: sha256 cid
%mandatory: sha256 cid source_url
%allowed: sha256 cid source_url
%sort: source_url

source_url: http://ftp.barfooze.de/pub/sabotage/tarballs/linux-headers-4.19.88-1.tar.xz
sha256: 995bc76ccf0c40d752b5ea67c022232a17eef6c9ec80ea74ea742e3c19992813
cid: QmUqB24HxtVGiinvKH53Vy7MaLWiT2qV5q3EHcrh9Ee6Ua

source_url: https://ftp.gnu.org/gnu/make/make-4.2.tar.gz
sha256: e968ce3c57ad39a593a92339e23eb148af6296b9f40aa453a9a9202c99d34436
cid: QmYpJkdPPrrc2rxhhTqeAbAZnoiBsdYh7jXFhCd2AvWHHH

source_url: https://musl.libc.org/releases/musl-1.2.2.tar.gz
sha256: 9b969322012d796dc23dda27a35866034fa67d8fb67e0e2c45c913c3d43219dd
cid: QmWotMZZFdS7rPNu3Y58WL1NaVXKLJH195pcvR4oMEdZQE
`;

function throwsMessage(f: () => unknown, want: RegExp): void {
  assert.throws(f, (e: Error) => (assert.match(e.message, want), true));
}

describe('mirrors: the database', function () {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = scratch()));
  afterEach(() => cleanup());

  it('reads rows of sha256,cid,url under the header, quoted urls included', function () {
    const text = `sha256,cid,url\n${SHA_A},${CID_1},http://example.org/a.tar.gz\n${SHA_A},${CID_V1},"http://example.org/a,1.tar.gz"\n`;
    assert.deepEqual(parseMirrorDb(text, 'mirrors/ipfs.csv'), [
      { sha256: SHA_A, cid: CID_1, url: 'http://example.org/a.tar.gz' },
      { sha256: SHA_A, cid: CID_V1, url: 'http://example.org/a,1.tar.gz' },
    ]);
  });

  it('names the file and line of a malformed row', function () {
    const bad = (text: string, want: RegExp) =>
      assert.throws(
        () => parseMirrorDb(text, 'mirrors/ipfs.csv'),
        (e: Error) => e instanceof TreeError && want.test(e.message),
      );
    const ok = `sha256,cid,url\n${SHA_A},${CID_1},http://x/a\n`;
    bad(`${ok}${SHA_B.slice(1)},${CID_1},http://x/b\n`, /^mirrors\/ipfs\.csv:3: sha256 must be 64 lowercase hex digits/);
    bad(`${ok}${SHA_B},not-a-cid,http://x/b\n`, /^mirrors\/ipfs\.csv:3: not an IPFS CID: "not-a-cid"/);
    bad(`${ok}${SHA_B},${CID_1}\n`, /^mirrors\/ipfs\.csv:3: a row has 3 fields \(sha256,cid,url\), this one 2/);
    bad(`${ok}${SHA_B},${CID_1},nothing\n`, /^mirrors\/ipfs\.csv:3: not a url: "nothing"/);
    bad(`${ok}\n<<<<<<< HEAD\n`, /^mirrors\/ipfs\.csv:4: a row has 3/);
    bad(`${ok}${SHA_B},${CID_1},"http://x/b\n`, /^mirrors\/ipfs\.csv:\d+: not CSV: /);
    bad(`cid,sha256,url\n`, /^mirrors\/ipfs\.csv:1: the first line must be the header "sha256,cid,url"/);
  });

  it('writes sorted by sha256 then cid, one row per pair, through a rename', async function () {
    const db = path.join(dir, 'mirrors/ipfs.csv');
    const r = (sha: string, cid: string, url = 'http://x/f'): MirrorRecord => ({ sha256: sha, cid, url });
    const [first, second] = SHA_A < SHA_B ? [SHA_A, SHA_B] : [SHA_B, SHA_A];
    assert.equal((await addMirrorRecords(db, [r(second, CID_2), r(first, CID_2)])).length, 2);
    const added = await addMirrorRecords(db, [r(second, CID_1), r(second, CID_2, 'http://other/f'), r(second, CID_1)]);
    assert.deepEqual(added, [r(second, CID_1)]);
    assert.equal(fs.readFileSync(db, 'utf8'), `sha256,cid,url\n${first},${CID_2},http://x/f\n${second},${CID_1},http://x/f\n${second},${CID_2},http://x/f\n`);
    assert.deepEqual(fs.readdirSync(path.dirname(db)), ['ipfs.csv'], 'no temporary file or lock is left');
    assert.equal(formatMirrorDb(readMirrorDb(db)), fs.readFileSync(db, 'utf8'), 'what is written reads back the same');
  });

  it('refuses to write a record that would make the file malformed, leaving it as it was', async function () {
    const db = path.join(dir, 'ipfs.csv');
    await addMirrorRecords(db, [{ sha256: SHA_A, cid: CID_1, url: 'http://x/a' }]);
    const before = fs.readFileSync(db, 'utf8');
    await assert.rejects(addMirrorRecords(db, [{ sha256: 'zz', cid: CID_1, url: 'http://x/a' }]), /sha256 must be 64/);
    assert.equal(fs.readFileSync(db, 'utf8'), before);
  });

  it('is mirrors/ipfs.csv beside the pkg/ of the package tree, unless PKG_MIRROR_DB names another', function () {
    write(dir, { 'tree/pkg/foo/build': '' });
    assert.equal(mirrorDbPath(path.join(dir, 'tree/pkg/foo'), {}), path.join(dir, 'tree/mirrors/ipfs.csv'));
    assert.equal(mirrorDbPath(path.join(dir, 'tree/pkg/foo'), { PKG_MIRROR_DB: '/srv/db.csv' }), '/srv/db.csv');
    assert.equal(mirrorDbPath('/', {}), null);
  });

  it("imports p2pkgs' rec-format mirrors/ipfs", function () {
    const records = parseP2pkgsMirrors(P2PKGS_DB, 'mirrors/ipfs');
    assert.equal(records.length, 3);
    assert.deepEqual(records[1], {
      sha256: 'e968ce3c57ad39a593a92339e23eb148af6296b9f40aa453a9a9202c99d34436',
      cid: 'QmYpJkdPPrrc2rxhhTqeAbAZnoiBsdYh7jXFhCd2AvWHHH',
      url: 'https://ftp.gnu.org/gnu/make/make-4.2.tar.gz',
    });
    // older files name the url field url:
    assert.equal(parseP2pkgsMirrors(`url: http://x/a\nsha256: ${SHA_A}\ncid: ${CID_1}\n`, 'f')[0]!.url, 'http://x/a');
    throwsMessage(
      () => parseP2pkgsMirrors(P2PKGS_DB.replace('cid: QmYp', 'xcid: QmYp'), 'mirrors/ipfs'),
      /^mirrors\/ipfs:11: record lacks the mandatory field 'cid' \(%mandatory at line 3\)$/,
    );
    throwsMessage(() => parseP2pkgsMirrors(`url: http://x/a\nsha256: ${SHA_A}\n`, 'f'), /^f:1: record has no cid$/);
    throwsMessage(() => parseP2pkgsMirrors(`url: http://x/a\nsha256: ${SHA_A}\ncid: Qm123\n`, 'f'), /^f:3: not an IPFS CID: "Qm123"$/);
  });

  it('peerpkgs mirrors import adds the records to the tree database, sorted, and again adds nothing', function () {
    write(dir, { 'pkg/README': '', 'p2pkgs-ipfs': P2PKGS_DB });
    const r = run(dir, 'peerpkgs', ['mirrors', 'import', 'p2pkgs-ipfs']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /mirrors\/ipfs\.csv: 3 records added, 0 already there/);
    const rows = readMirrorDb(path.join(dir, 'mirrors/ipfs.csv'));
    assert.deepEqual(
      rows.map((x) => x.sha256),
      [...rows.map((x) => x.sha256)].sort(),
    );
    assert.equal(rows.length, 3);
    const again = run(dir, 'peerpkgs', ['mirrors', 'import', 'p2pkgs-ipfs']);
    assert.match(again.stdout, /0 records added, 3 already there/);
  });

  it('a writer waits for the one holding the lock, then adds its rows to what that one wrote', async function () {
    write(dir, { 'pkg/README': '', one: `source_url: http://x/1\nsha256: ${SHA_A}\ncid: ${CID_1}\n` });
    const db = path.join(dir, 'mirrors/ipfs.csv');
    fs.mkdirSync(path.join(dir, 'mirrors/.ipfs.csv.lock'), { recursive: true });
    let done = false;
    const importing = start(dir, 'peerpkgs', ['mirrors', 'import', 'one']).finally(() => (done = true));
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(done, false, 'the import waits while the lock is held');
    // what the holder writes before letting go
    fs.writeFileSync(db, `sha256,cid,url\n${SHA_B},${CID_2},http://x/2\n`);
    fs.rmdirSync(path.join(dir, 'mirrors/.ipfs.csv.lock'));
    const r = await importing;
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(
      readMirrorDb(db)
        .map((x) => x.cid)
        .sort(),
      [CID_1, CID_2].sort(),
    );
  });

  it('a malformed database stops a fetch that would use it, naming file and line', function () {
    write(dir, {
      'pkg/x/fetch': `url: http://127.0.0.1:1/x.tar.gz\nsha256: ${SHA_A}\n`,
      'mirrors/ipfs.csv': `sha256,cid,url\n${SHA_A},${CID_1}\n`,
    });
    // a peer to ask (the database is read before any node is started)
    const peer = '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWK8FrnF9uTjD8RTy81zkzvoz8dMfu8BLgEqftK32Po9kE';
    const r = run(dir, 'do-fetch', ['pkg/x/fetch'], { PEERPKGS_HOME: path.join(dir, 'home'), PKG_IPFS_PEERS: peer });
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /^do-fetch: mirrors\/ipfs\.csv:2: a row has 3 fields \(sha256,cid,url\), this one 2\n$/);
  });

  it('peerpkgs info lists the IPFS mirrors of each source', function () {
    write(dir, { '!pkg/x/build': '', 'pkg/x/fetch': `url: http://example.org/x.tar.gz\nsha256: ${SHA_A}\n` });
    write(dir, { 'mirrors/ipfs.csv': `sha256,cid,url\n${SHA_A},${CID_1},http://example.org/x.tar.gz\n${SHA_B},${CID_2},http://example.org/y\n` });
    const r = run(dir, 'peerpkgs', ['info', './pkg/x'], { PEERPKGS_HOME: path.join(dir, 'home') });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`source: +x\\.tar\\.gz ${SHA_A} \\(not fetched\\)\\n +ipfs://${CID_1}\\n +http://example\\.org/x\\.tar\\.gz\\n`));
    assert.doesNotMatch(r.stdout, new RegExp(CID_2));
  });

  it('peerpkgs mirrors import: a bad record is exit 4 naming file and line; usage mistakes exit 2', function () {
    write(dir, { 'pkg/README': '', bad: `source_url: http://x/a\nsha256: abc\ncid: ${CID_1}\n` });
    const r = run(dir, 'peerpkgs', ['mirrors', 'import', 'bad']);
    assert.equal(r.status, 4);
    assert.match(r.stderr, /^peerpkgs: bad:2: sha256 must be 64 lowercase hex digits, not "abc"\n$/);
    assert.equal(fs.existsSync(path.join(dir, 'mirrors/ipfs.csv')), false);
    const u = run(dir, 'peerpkgs', ['mirrors', 'import']);
    assert.equal(u.status, 2);
    assert.match(u.stderr, /name one p2pkgs mirrors file/);
    assert.equal(run(dir, 'ipfs-pin-fetch-file', []).status, 2);
    const h = run(dir, 'ipfs-pin-all-fetch-files', ['--help']);
    assert.equal(h.status, 0);
    assert.match(h.stdout, /mirrors pin-all/);
  });
});

/** Start a command and call `onLine` with each line of its stderr as it comes. */
function startWatching(cwd: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, onLine: (line: string) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(path.join(BIN, cmd), args, { cwd, env: userEnv(env) });
    let stdout = '';
    let stderr = '';
    let partial = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d: Buffer) => {
      stderr += d;
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      lines.forEach(onLine);
    });
    p.on('error', reject);
    p.on('close', (status) => resolve({ status: status ?? 128, stdout, stderr }));
  });
}

describe('mirrors: fetching from IPFS peers', function () {
  this.timeout(120_000);
  let shared: { dir: string; cleanup: () => void };
  let www: { url: string; stop(): Promise<void> };
  let wwwDir: string;
  let seedSha: string;
  let homeA: string;
  let a: Daemon;
  let dead: string; // a url nothing answers
  const files: Record<string, { sha: string; cid: string }> = {};
  let dir: string;
  let cleanup: () => void;
  let homes = 0;

  // a peer's blocks live in its blockstore, one file a block: the leaves of
  // a file added with kubo's defaults hold its 256 KiB chunks verbatim
  const CHUNK = 256 * 1024;
  const BIG_CHUNKS = 12;

  before(async () => {
    shared = scratch();
    wwwDir = path.join(shared.dir, 'www');
    fs.mkdirSync(wwwDir);
    seedSha = await makeSeedTarball(wwwDir);
    const content: Record<string, Buffer> = {
      'small.bin': crypto.randomBytes(300 * 1024),
      'other.bin': crypto.randomBytes(100 * 1024),
      'big.bin': crypto.randomBytes(BIG_CHUNKS * CHUNK),
      'pinme.bin': crypto.randomBytes(200 * 1024),
    };
    for (const [name, bytes] of Object.entries(content)) fs.writeFileSync(path.join(wwwDir, name), bytes);
    www = await busyboxHttpd(wwwDir);
    dead = `http://127.0.0.1:${await freePort()}`;
    homeA = path.join(shared.dir, 'a');
    for (const name of ['small.bin', 'other.bin', 'big.bin']) {
      const r = run(shared.dir, 'peerpkgs', ['ipfs', 'add', '--pin', path.join(wwwDir, name)], { PEERPKGS_HOME: homeA });
      assert.equal(r.status, 0, r.stderr);
      files[name] = { sha: sha256(content[name]!), cid: r.stdout.trim() };
    }
    // peer A keeps only the first half of big.bin: a fetch of it gets going, then never ends
    const big = content['big.bin']!;
    const probes: Buffer[] = [];
    for (let i = BIG_CHUNKS / 2; i < BIG_CHUNKS; i++) probes.push(big.subarray(i * CHUNK, i * CHUNK + 64));
    const packs = new BlockPacks(path.join(homeA, 'ipfs/packs'));
    const dropped = await packs.rewrite(async (mh) => {
      const block = (await packs.read(mh))!;
      return !probes.some((p) => block.includes(p));
    });
    await packs.close();
    const removed = dropped.length;
    assert.equal(removed, BIG_CHUNKS / 2, 'the leaves of the second half were found in the blockstore');
    a = await startDaemon(homeA, { PKG_IPFS_GATEWAY_LISTEN: '/ip4/127.0.0.1/tcp/0' });
  });
  after(async () => {
    await a?.stop();
    await www?.stop();
    shared?.cleanup();
  });
  beforeEach(() => {
    ({ dir, cleanup } = scratch());
    writeSeedPackage(dir, www.url, seedSha);
  });
  afterEach(() => cleanup());

  /** A fresh machine: an empty PEERPKGS_HOME that dials A. */
  const fresh = (more: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    PEERPKGS_HOME: path.join(shared.dir, `home-${++homes}`),
    PKG_IPFS_PEERS: a.addr,
    PKG_IPFS_TIMEOUT: '3',
    ...more,
  });
  const mirrorDb = (rows: Array<[string, string, string]>) => write(dir, { 'mirrors/ipfs.csv': `sha256,cid,url\n${rows.map((r) => r.join(',')).join('\n')}\n` });
  const fetchFile = (pkg: string, file: string, sha: string, ...urls: string[]) =>
    write(dir, { [`pkg/${pkg}/fetch`]: `${urls.map((u) => `url: ${u}`).join('\n')}\nfile: ${file}\nsha256: ${sha}\n` });
  const stored = (env: NodeJS.ProcessEnv, sha: string) => fs.existsSync(path.join(env.PEERPKGS_HOME!, 'distfiles', sha));

  it('builds a package whose urls are all dead from a peer, through the mirror database', function () {
    const { sha, cid } = files['small.bin']!;
    const other = files['other.bin']!;
    write(dir, {
      '!pkg/x/build': '#!/bin/sh\nset -e\nmkdir -p "$DESTDIR/share"\ncp x.bin y.bin "$DESTDIR/share/"\n',
      'pkg/x/build-deps': '../seed\n',
      // two sources, fetched at the same time through one node
      'pkg/x/fetch': `url: ${dead}/x.tar.gz\nfile: x.bin\nsha256: ${sha}\n\nurl: ${dead}/y.tar.gz\nfile: y.bin\nsha256: ${other.sha}\n`,
    });
    mirrorDb([
      [sha, cid, 'http://example.org/x.tar.gz'],
      [other.sha, other.cid, 'http://example.org/y.tar.gz'],
    ]);
    const env = fresh();
    const r = run(dir, 'build-packages-ifchange', ['./pkg/x'], env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`fetching x\\.bin \\(300\\.0 KiB\\) from ipfs://${cid}`), 'progress, as for HTTP');
    assert.match(r.stderr, /fetched x\.bin: 300\.0 KiB/);
    assert.match(r.stderr, /fetched y\.bin: 100\.0 KiB/);
    assert.ok(stored(env, sha) && stored(env, other.sha));
    assert.ok(!r.stderr.includes(dead), 'the dead url was not needed');
  });

  it('starts no IPFS node when the sources are in the distfile store', function () {
    const { sha, cid } = files['small.bin']!;
    write(dir, { '!pkg/x/build': '#!/bin/sh\nmkdir -p "$DESTDIR/share"\ncp x.bin "$DESTDIR/share/"\n', 'pkg/x/build-deps': '../seed\n' });
    fetchFile('x', 'x.bin', sha, `${dead}/x.tar.gz`);
    mirrorDb([[sha, cid, 'http://example.org/x.tar.gz']]);
    const env = fresh();
    assert.equal(run(dir, 'peerpkgs', ['distfiles', 'add', path.join(wwwDir, 'small.bin')], env).status, 0);
    const r = run(dir, 'build-packages-ifchange', ['./pkg/x'], env);
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /ipfs/);
    assert.equal(fs.existsSync(path.join(env.PEERPKGS_HOME!, 'ipfs')), false, 'no node made its repository');
  });

  it('fetches from the urls at once, starting no node, when IPFS has no peer to ask', function () {
    const { sha, cid } = files['small.bin']!;
    fetchFile('x', 'x.bin', sha, `${www.url}/small.bin`);
    mirrorDb([[sha, cid, `${www.url}/small.bin`]]);
    const env = fresh({ PKG_IPFS_PEERS: '' });
    const r = run(dir, 'do-fetch', ['pkg/x/fetch'], env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`fetching x\\.bin \\(300\\.0 KiB\\) from ${www.url}/small\\.bin`));
    assert.doesNotMatch(r.stderr, /ipfs/);
    assert.equal(fs.existsSync(path.join(env.PEERPKGS_HOME!, 'ipfs')), false);
  });

  it('fetches from the mirror through a gateway when IPFS has no peer but PKG_IPFS_GATEWAYS', function () {
    const { sha, cid } = files['small.bin']!;
    fetchFile('x', 'x.bin', sha, `${dead}/x.tar.gz`);
    mirrorDb([[sha, cid, 'http://example.org/x.tar.gz']]);
    const env = fresh({ PKG_IPFS_PEERS: '', PKG_IPFS_GATEWAYS: a.gateway });
    const r = run(dir, 'do-fetch', ['pkg/x/fetch'], env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`fetching x\\.bin \\(300\\.0 KiB\\) from ipfs://${cid}`));
    assert.ok(stored(env, sha));
  });

  it('PKG_MIRROR_IPFS=no fetches from the urls only', function () {
    const { sha, cid } = files['small.bin']!;
    fetchFile('x', 'x.bin', sha, `${www.url}/small.bin`);
    mirrorDb([[sha, cid, `${www.url}/small.bin`]]);
    const env = fresh({ PKG_MIRROR_IPFS: 'no' });
    const r = run(dir, 'do-fetch', ['pkg/x/fetch'], env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`fetching x\\.bin \\(300\\.0 KiB\\) from ${www.url}/small\\.bin`));
    assert.doesNotMatch(r.stderr, /ipfs/);
    assert.equal(fs.existsSync(path.join(env.PEERPKGS_HOME!, 'ipfs')), false);
  });

  it('rejects a mirror serving bytes of another sha256 and takes the url', function () {
    const { sha } = files['small.bin']!;
    const wrong = files['other.bin']!.cid;
    fetchFile('x', 'x.bin', sha, `${www.url}/small.bin`);
    mirrorDb([[sha, wrong, `${www.url}/small.bin`]]);
    const env = fresh();
    const r = run(dir, 'do-fetch', ['pkg/x/fetch'], env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`x\\.bin: ipfs://${wrong}: sha256 mismatch \\(got ${files['other.bin']!.sha}\\)`));
    assert.match(r.stderr, new RegExp(`fetched x\\.bin: 300\\.0 KiB`));
    assert.ok(stored(env, sha));
  });

  it('lists the mirror with the urls, each with why it failed, when none has the source', function () {
    const { sha } = files['small.bin']!;
    const wrong = files['other.bin']!.cid;
    fetchFile('x', 'x.bin', sha, `${dead}/x.bin`);
    mirrorDb([[sha, wrong, `${dead}/x.bin`]]);
    const r = run(dir, 'do-fetch', ['pkg/x/fetch'], fresh());
    assert.equal(r.status, 5, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`could not fetch x\\.bin \\(sha256 ${sha}\\):\\n  ipfs://${wrong}: sha256 mismatch \\(got [0-9a-f]{64}\\)\\n  ${dead}/x\\.bin: connection refused\\n`),
    );
  });

  it('ipfs-pin-fetch-file records a row that a second, fresh node fetches through; ipfs-pin-all-fetch-files the whole tree', function () {
    const sha = sha256(fs.readFileSync(path.join(wwwDir, 'pinme.bin')));
    fs.copyFileSync(path.join(wwwDir, 'pinme.bin'), path.join(wwwDir, 'gone.bin'));
    fetchFile('p', 'pinme.bin', sha, `${www.url}/gone.bin`);
    // pinned into A, through its daemon
    const pin = run(dir, 'ipfs-pin-fetch-file', ['pkg/p/fetch'], { PEERPKGS_HOME: homeA });
    assert.equal(pin.status, 0, pin.stderr);
    const rows = readMirrorDb(path.join(dir, 'mirrors/ipfs.csv'));
    assert.equal(rows.length, 1);
    assert.deepEqual({ ...rows[0], cid: '' }, { sha256: sha, cid: '', url: `${www.url}/gone.bin` });
    assert.match(rows[0]!.cid, /^Qm/, "kubo's default: CIDv0");
    assert.match(pin.stdout, new RegExp(`pinned pinme\\.bin \\(sha256 ${sha}\\) as /ipfs/${rows[0]!.cid}`));
    fs.rmSync(path.join(wwwDir, 'gone.bin'));
    const env = fresh();
    const r = run(dir, 'do-fetch', ['pkg/p/fetch'], env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`fetching pinme\\.bin .*from ipfs://${rows[0]!.cid}`));
    assert.ok(stored(env, sha));
    // the whole tree: the seed's tarball is added, pinme.bin is not recorded twice
    const all = run(dir, 'ipfs-pin-all-fetch-files', [], { PEERPKGS_HOME: homeA });
    assert.equal(all.status, 0, all.stderr);
    assert.deepEqual(
      readMirrorDb(path.join(dir, 'mirrors/ipfs.csv'))
        .map((x) => x.sha256)
        .sort(),
      [sha, seedSha].sort(),
    );
  });

  it('ipfs-pin-fetch-file with no daemon pins into the home, which a daemon started later serves', async function () {
    const sha = sha256(fs.readFileSync(path.join(wwwDir, 'pinme.bin')));
    fetchFile('p', 'pinme.bin', sha, `${www.url}/pinme.bin`);
    const homeP = path.join(shared.dir, `pinner-${++homes}`);
    const pin = run(dir, 'ipfs-pin-fetch-file', ['pkg/p/fetch'], { PEERPKGS_HOME: homeP });
    assert.equal(pin.status, 0, pin.stderr);
    assert.match(pin.stderr, /which no daemon serves: run peerpkgs ipfs daemon so that peers can fetch from it/);
    assert.equal(storedBlocks(homeP), 0, 'the distfile is kept once: its one leaf is read from the distfile store, not copied into a block');
    const [row] = readMirrorDb(path.join(dir, 'mirrors/ipfs.csv'));
    const p = await startDaemon(homeP);
    try {
      fetchFile('p', 'pinme.bin', sha, `${dead}/pinme.bin`);
      const env = fresh({ PKG_IPFS_PEERS: p.addr });
      const r = run(dir, 'do-fetch', ['pkg/p/fetch'], env);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`fetching pinme\\.bin .*from ipfs://${row!.cid}`));
      assert.ok(stored(env, sha));
    } finally {
      await p.stop();
    }
  });

  // last: it kills A
  it('falls back to the url, saying why, when the peer goes away mid-transfer', async function () {
    const { sha, cid } = files['big.bin']!;
    fetchFile('x', 'big.bin', sha, `${www.url}/big.bin`);
    mirrorDb([[sha, cid, `${www.url}/big.bin`]]);
    const env = fresh();
    let killed: Promise<unknown> | null = null;
    const r = await startWatching(dir, 'do-fetch', ['pkg/x/fetch'], env, (line) => {
      // the transfer is announced once its first bytes are in
      if (line.includes(`from ipfs://${cid}`)) killed ??= a.stop('SIGKILL');
    });
    assert.ok(killed, `the transfer from the peer began:\n${r.stderr}`);
    await killed;
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`big\\.bin: ipfs://${cid}: stalled after \\d+(\\.\\d)? [KM]iB \\(the peer went away or lacks the rest\\)`));
    assert.match(r.stderr, new RegExp(`fetching big\\.bin \\(3\\.0 MiB\\) from ${www.url}/big\\.bin`));
    assert.ok(stored(env, sha));
  });
});
