/**
 * Source mirrors: the CSV mirror database, p2pkgs' rec database imported,
 * and fetching through IPFS from real nodes in other processes over
 * loopback TCP, falling back to real HTTP servers.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { scratch, write, run } from './helpers.ts';
import { addMirrorRecords, formatMirrorDb, mirrorDbPath, parseMirrorDb, readMirrorDb, type MirrorRecord } from '../src/mirrors/db.ts';
import { parseP2pkgsMirrors } from '../src/mirrors/import.ts';
import { TreeError } from '../src/tree/errors.ts';

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
      assert.throws(() => parseMirrorDb(text, 'mirrors/ipfs.csv'), (e: Error) => e instanceof TreeError && want.test(e.message));
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
    assert.equal(
      fs.readFileSync(db, 'utf8'),
      `sha256,cid,url\n${first},${CID_2},http://x/f\n${second},${CID_1},http://x/f\n${second},${CID_2},http://x/f\n`,
    );
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
    throwsMessage(() => parseP2pkgsMirrors(P2PKGS_DB.replace('cid: QmYp', 'xcid: QmYp'), 'mirrors/ipfs'), /^mirrors\/ipfs:11: record lacks the mandatory field 'cid' \(%mandatory at line 3\)$/);
    throwsMessage(() => parseP2pkgsMirrors(`url: http://x/a\nsha256: ${SHA_A}\n`, 'f'), /^f:1: record has no cid$/);
    throwsMessage(() => parseP2pkgsMirrors(`url: http://x/a\nsha256: ${SHA_A}\ncid: Qm123\n`, 'f'), /^f:3: not an IPFS CID: "Qm123"$/);
  });

  it('peerpkgs mirrors import adds the records to the tree database, sorted, and again adds nothing', function () {
    write(dir, { 'pkg/README': '', 'p2pkgs-ipfs': P2PKGS_DB });
    const r = run(dir, 'peerpkgs', ['mirrors', 'import', 'p2pkgs-ipfs']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /mirrors\/ipfs\.csv: 3 records added, 0 already there/);
    const rows = readMirrorDb(path.join(dir, 'mirrors/ipfs.csv'));
    assert.deepEqual(rows.map((x) => x.sha256), [...rows.map((x) => x.sha256)].sort());
    assert.equal(rows.length, 3);
    const again = run(dir, 'peerpkgs', ['mirrors', 'import', 'p2pkgs-ipfs']);
    assert.match(again.stdout, /0 records added, 3 already there/);
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
