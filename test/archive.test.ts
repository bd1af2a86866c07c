/**
 * The archive layer as a package build and a cache see it: DESTDIR packed
 * into a deterministic .tar.gz led by its manifest, and archives, possibly
 * hostile, extracted safely.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as tarStream from 'tar-stream';
import { ArchiveError } from '../src/archive/errors.ts';
import { extract } from '../src/archive/extract.ts';
import { MANIFEST_NAME, parseManifest, readManifest, serializeManifest, type ManifestEntry } from '../src/archive/manifest.ts';
import { packDir } from '../src/archive/pack.ts';
import { scratch, write, read } from './helpers.ts';

const isRoot = process.getuid?.() === 0;
const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** The headers and contents of a .tar.gz, in order. */
async function entries(gzPath: string): Promise<{ header: tarStream.Header; body: Buffer }[]> {
  const tar = tarStream.extract();
  const feeding = pipeline(fs.createReadStream(gzPath), zlib.createGunzip(), tar as unknown as NodeJS.WritableStream);
  const found: { header: tarStream.Header; body: Buffer }[] = [];
  for await (const entry of tar) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    found.push({ header: entry.header, body: Buffer.concat(chunks) });
  }
  await feeding;
  return found;
}

type Crafted = Partial<tarStream.Header> & { name: string; body?: string };

/** A hand-made .tar.gz, as an attacker would make one. */
async function craft(gzPath: string, list: Crafted[]): Promise<void> {
  const tar = tarStream.pack();
  const writing = pipeline(tar as unknown as NodeJS.ReadableStream, zlib.createGzip(), fs.createWriteStream(gzPath));
  for (const { body, ...header } of list) {
    await new Promise<void>((resolve, reject) => tar.entry(header, body ?? '', (e) => (e ? reject(e) : resolve())));
  }
  tar.finalize();
  await writing;
}

/** A small DESTDIR with a bit of everything a package has. */
function sampleTree(dir: string): void {
  write(dir, {
    '!usr/bin/tool': '#!/bin/sh\necho tool\n',
    'usr/lib/libx.so.1': 'ELF...',
    'usr/share/doc/x/README with spaces': 'read me\n',
    'usr/share/ünïcödé/é.txt': 'accents\n',
    ['usr/share/deep/' + 'long-directory-name/'.repeat(8) + 'file']: 'long path\n',
    'etc/empty': '',
  });
  fs.mkdirSync(path.join(dir, 'var/empty-dir'), { recursive: true });
  fs.symlinkSync('libx.so.1', path.join(dir, 'usr/lib/libx.so'));
  fs.symlinkSync('../lib/' + 'x'.repeat(120), path.join(dir, 'usr/bin/dangling-long-target'));
  fs.linkSync(path.join(dir, 'usr/bin/tool'), path.join(dir, 'usr/bin/tool-alias'));
  fs.chmodSync(path.join(dir, 'etc/empty'), 0o400);
}

describe('archive', function () {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = scratch()));
  afterEach(() => cleanup());

  describe('packing DESTDIR', () => {
    it('writes byte-identical archives when the same tree is packed twice', async () => {
      sampleTree(path.join(dir, 'dest'));
      const a = await packDir(path.join(dir, 'dest'), path.join(dir, 'a.tar.gz'));
      const b = await packDir(path.join(dir, 'dest'), path.join(dir, 'b.tar.gz'));
      assert.deepEqual(fs.readFileSync(path.join(dir, 'a.tar.gz')), fs.readFileSync(path.join(dir, 'b.tar.gz')));
      assert.deepEqual(a, b);
    });

    it('writes the same bytes for the same content made elsewhere, at other times, in another order, by another user', async () => {
      const one = path.join(dir, 'one');
      const two = path.join(dir, 'elsewhere/two');
      write(one, { a: 'A', 'sub/b': 'B', 'sub/c': 'C' });
      fs.linkSync(path.join(one, 'a'), path.join(one, 'hard'));
      write(two, { 'sub/c': 'C', 'sub/b': 'B', hard: 'A' });
      fs.linkSync(path.join(two, 'hard'), path.join(two, 'a'));
      const later = new Date('2020-02-02T02:02:02Z');
      for (const p of ['a', 'sub/b', 'sub', '.']) fs.utimesSync(path.join(two, p), later, later);
      if (isRoot) fs.chownSync(path.join(two, 'sub/b'), 1234, 5678);
      const a = await packDir(one, path.join(dir, 'one.tar.gz'));
      const b = await packDir(two, path.join(dir, 'two.tar.gz'));
      assert.equal(a.sha256, b.sha256);
      assert.deepEqual(fs.readFileSync(path.join(dir, 'one.tar.gz')), fs.readFileSync(path.join(dir, 'two.tar.gz')));
    });

    it('returns the sha256 of the uncompressed tar, and the size and sha256 of the file written', async () => {
      sampleTree(path.join(dir, 'dest'));
      const out = path.join(dir, 'out.tar.gz');
      const r = await packDir(path.join(dir, 'dest'), out);
      const gz = fs.readFileSync(out);
      assert.equal(r.sha256, sha256(zlib.gunzipSync(gz)));
      assert.equal(r.compressedSha256, sha256(gz));
      assert.equal(r.size, gz.length);
      assert.equal(r.files, (await readManifest(out)).length);
    });

    it('puts the manifest first, listing every path with its type, mode, size and sha256 or target', async () => {
      write(dir, { '!dest/bin/x': 'exe', 'dest/doc': 'text' });
      fs.chmodSync(path.join(dir, 'dest/bin'), 0o755);
      fs.chmodSync(path.join(dir, 'dest/doc'), 0o644);
      fs.symlinkSync('x', path.join(dir, 'dest/bin/y'));
      fs.linkSync(path.join(dir, 'dest/doc'), path.join(dir, 'dest/doc2'));
      await packDir(path.join(dir, 'dest'), path.join(dir, 'out.tar.gz'));
      const [first, ...rest] = await entries(path.join(dir, 'out.tar.gz'));
      assert.equal(first.header.name, MANIFEST_NAME);
      assert.deepEqual(parseManifest(first.body.toString()), [
        { path: 'bin', type: 'directory', mode: 0o755, size: 0 },
        { path: 'bin/x', type: 'file', mode: 0o755, size: 3, sha256: sha256('exe') },
        { path: 'bin/y', type: 'symlink', mode: 0o777, size: 0, target: 'x' },
        { path: 'doc', type: 'file', mode: 0o644, size: 4, sha256: sha256('text') },
        { path: 'doc2', type: 'link', mode: 0o644, size: 0, target: 'doc' },
      ]);
      assert.deepEqual(
        rest.map((e) => e.header.name),
        ['bin', 'bin/x', 'bin/y', 'doc', 'doc2'],
      );
    });

    it('sorts entries bytewise, a directory before its contents', async () => {
      write(dir, { 'dest/a/z': '', 'dest/a-b': '', 'dest/B': '', 'dest/é': '', 'dest/a/b/c': '' });
      await packDir(path.join(dir, 'dest'), path.join(dir, 'out.tar.gz'));
      const names = (await entries(path.join(dir, 'out.tar.gz'))).map((e) => e.header.name);
      assert.deepEqual(names, [MANIFEST_NAME, 'B', 'a', 'a-b', 'a/b', 'a/b/c', 'a/z', 'é']);
    });

    it('gives every entry the fixed mtime, uid and gid 0, no user names, and no atime or ctime', async () => {
      sampleTree(path.join(dir, 'dest'));
      await packDir(path.join(dir, 'dest'), path.join(dir, 'out.tar.gz'), { mtime: 1700000000 });
      for (const { header } of await entries(path.join(dir, 'out.tar.gz'))) {
        assert.equal(header.mtime.getTime(), 1700000000_000, header.name);
        assert.deepEqual([header.uid, header.gid, header.uname, header.gname], [0, 0, '', ''], header.name);
        for (const key of Object.keys(header.pax ?? {})) assert.ok(['path', 'linkpath'].includes(key), `${header.name}: pax ${key}`);
      }
    });

    it('writes a gzip header with no file name and a zero time', async () => {
      write(dir, { 'dest/f': 'x' });
      await packDir(path.join(dir, 'dest'), path.join(dir, 'out.tar.gz'));
      const gz = fs.readFileSync(path.join(dir, 'out.tar.gz'));
      assert.equal(gz[3], 0, 'no FNAME or other optional fields');
      assert.equal(gz.readUInt32LE(4), 0, 'MTIME');
    });

    it('refuses a setuid file, naming it, and leaves any older archive as it was', async function () {
      write(dir, { 'dest/bin/su': 'x', 'out.tar.gz': 'old' });
      fs.chmodSync(path.join(dir, 'dest/bin/su'), 0o4755);
      await assert.rejects(packDir(path.join(dir, 'dest'), path.join(dir, 'out.tar.gz')), (e: Error) => {
        assert.ok(e instanceof ArchiveError);
        assert.match(e.message, /bin\/su: mode 4755 has a setuid/);
        return true;
      });
      assert.equal(read(dir, 'out.tar.gz'), 'old');
      assert.deepEqual(fs.readdirSync(dir).sort(), ['dest', 'out.tar.gz']);
    });

    it('refuses a fifo', async () => {
      fs.mkdirSync(path.join(dir, 'dest'));
      assert.equal(spawnSync('mkfifo', [path.join(dir, 'dest/pipe')]).status, 0);
      await assert.rejects(packDir(path.join(dir, 'dest'), path.join(dir, 'out.tar.gz')), /ArchiveError: cannot pack pipe: it is a fifo/);
      assert.equal(fs.existsSync(path.join(dir, 'out.tar.gz')), false);
    });

    it('refuses a path too long for the system to name, in one line naming it', async () => {
      const dest = path.join(dir, 'dest');
      const name = 'x'.repeat(250);
      fs.mkdirSync(dest);
      // 20 levels of 250 bytes, beyond PATH_MAX (4096): two halves, one moved into the other
      const half = Array(10).fill(name).join('/');
      write(dir, { [`dest/${half}/f`]: 'x', [`other/${half}/g`]: 'y' });
      fs.renameSync(path.join(dir, 'other', name), path.join(dest, half, name));
      try {
        await assert.rejects(packDir(dest, path.join(dir, 'out.tar.gz')), (e: Error) => {
          assert.equal(e.name, 'ArchiveError');
          assert.match(e.message, /^cannot pack x{80}… \(\d+ bytes, \d+ levels\): path too long or too deep$/);
          return true;
        });
        assert.equal(fs.existsSync(path.join(dir, 'out.tar.gz')), false);
      } finally {
        // halved again, so that removing it names no path beyond PATH_MAX either
        fs.renameSync(path.join(dest, half, name), path.join(dir, 'other', name));
      }
    });

    it('refuses a device node', async function () {
      if (!isRoot) this.skip(); // only root can make one
      fs.mkdirSync(path.join(dir, 'dest/dev'), { recursive: true });
      assert.equal(spawnSync('mknod', [path.join(dir, 'dest/dev/null'), 'c', '1', '3']).status, 0);
      await assert.rejects(packDir(path.join(dir, 'dest'), path.join(dir, 'out.tar.gz')), /ArchiveError: cannot pack dev\/null: it is a character device/);
    });

    it('refuses a file named like the manifest at the top of the tree', async () => {
      write(dir, { [`dest/${MANIFEST_NAME}`]: 'forged' });
      await assert.rejects(packDir(path.join(dir, 'dest'), path.join(dir, 'out.tar.gz')), /reserved for the archive's manifest/);
    });
  });

  describe('the manifest', () => {
    const odd: ManifestEntry[] = [
      { path: 'a dir', type: 'directory', mode: 0o750, size: 0 },
      { path: 'a dir/new\nline "quoted" \\ tab\t', type: 'file', mode: 0o400, size: 7, sha256: sha256('content') },
      { path: 'ln', type: 'symlink', mode: 0o777, size: 0, target: '../ü ñ' },
      { path: 'hard', type: 'link', mode: 0o400, size: 0, target: 'a dir/new\nline "quoted" \\ tab\t' },
    ];

    it('writes one line per path, whatever characters the path holds, and reads it back', () => {
      const text = serializeManifest(odd);
      assert.equal(text.split('\n').length, 1 + odd.length + 1);
      assert.deepEqual(parseManifest(text), odd);
    });

    it('refuses a manifest that is truncated or malformed', () => {
      const text = serializeManifest(odd);
      assert.throws(() => parseManifest(text.slice(0, -10)), ArchiveError);
      assert.throws(() => parseManifest(text.replace('"0750"', '"rwx"')), /line 2: bad mode/);
      assert.throws(() => parseManifest('something else\n'), /not a peerpkgs manifest/);
    });

    it('is read from an archive whose rest is missing: only its first entry is decompressed', async () => {
      fs.mkdirSync(path.join(dir, 'dest'));
      fs.writeFileSync(path.join(dir, 'dest/big'), Buffer.from(createHash('sha512').update('seed').digest('hex').repeat(40000)));
      await packDir(path.join(dir, 'dest'), path.join(dir, 'out.tar.gz'));
      const full = await readManifest(path.join(dir, 'out.tar.gz'));
      fs.truncateSync(path.join(dir, 'out.tar.gz'), 2048);
      assert.deepEqual(await readManifest(path.join(dir, 'out.tar.gz')), full);
      assert.deepEqual(
        full.map((e) => e.path),
        ['big'],
      );
    });

    it('is refused from an archive that does not start with one', async () => {
      await craft(path.join(dir, 'plain.tar.gz'), [{ name: 'README', body: 'hi' }]);
      await assert.rejects(readManifest(path.join(dir, 'plain.tar.gz')), /not a peerpkgs archive \(first entry is "README"/);
    });
  });

  describe('extracting', () => {
    it('restores what was packed: contents, modes, symlinks, hardlinks and mtimes, without the manifest', async () => {
      const src = path.join(dir, 'src');
      sampleTree(src);
      fs.chmodSync(path.join(src, 'usr/share/doc/x'), 0o555); // read-only, yet filled
      const packed = await packDir(src, path.join(dir, 'out.tar.gz'), { mtime: 1234567890 });
      const dest = path.join(dir, 'dest');
      const r = await extract(path.join(dir, 'out.tar.gz'), dest);
      assert.equal(r.sha256, packed.sha256);
      const list = (root: string) => fs.readdirSync(root, { recursive: true, encoding: 'utf8' }).sort();
      assert.deepEqual(list(dest), list(src));
      for (const p of list(src)) {
        const [a, b] = [fs.lstatSync(path.join(src, p)), fs.lstatSync(path.join(dest, p))];
        assert.equal(b.mode, a.mode, p);
        if (a.isFile()) assert.deepEqual(fs.readFileSync(path.join(dest, p)), fs.readFileSync(path.join(src, p)), p);
        if (a.isSymbolicLink()) assert.equal(fs.readlinkSync(path.join(dest, p)), fs.readlinkSync(path.join(src, p)), p);
        else assert.equal(b.mtimeMs, 1234567890_000, p);
      }
      assert.equal(fs.statSync(path.join(dest, 'usr/bin/tool-alias')).ino, fs.statSync(path.join(dest, 'usr/bin/tool')).ino);
      assert.deepEqual(fs.readdirSync(dir).sort(), ['dest', 'out.tar.gz', 'src'], 'no temporary left');
      for (const root of [src, dest]) fs.chmodSync(path.join(root, 'usr/share/doc/x'), 0o755);
    });

    it('accepts the archive as a stream, and checks the expected sha256', async () => {
      write(dir, { 'src/f': 'data' });
      const { sha256: expected } = await packDir(path.join(dir, 'src'), path.join(dir, 'out.tar.gz'));
      const r = await extract(fs.createReadStream(path.join(dir, 'out.tar.gz')), path.join(dir, 'dest'), { expectSha256: expected });
      assert.equal(r.sha256, expected);
      assert.equal(read(dir, 'dest/f'), 'data');
    });

    it('extracts an ordinary tarball made by tar(1), with ./ paths and no manifest', async () => {
      write(dir, { 'src/pkg-1.0/configure': 'x', 'src/pkg-1.0/src/main.c': 'int main;' });
      assert.equal(spawnSync('tar', ['-czf', path.join(dir, 'pkg.tar.gz'), '-C', path.join(dir, 'src'), '.']).status, 0);
      await extract(path.join(dir, 'pkg.tar.gz'), path.join(dir, 'dest'));
      assert.equal(read(dir, 'dest/pkg-1.0/src/main.c'), 'int main;');
    });

    it('replaces an existing destination once the new tree is complete', async () => {
      write(dir, { 'src/new': 'n', 'dest/old': 'o' });
      await packDir(path.join(dir, 'src'), path.join(dir, 'out.tar.gz'));
      await extract(path.join(dir, 'out.tar.gz'), path.join(dir, 'dest'));
      assert.deepEqual(fs.readdirSync(path.join(dir, 'dest')), ['new']);
      assert.deepEqual(fs.readdirSync(dir).sort(), ['dest', 'out.tar.gz', 'src']);
    });

    describe('refuses, writing nothing,', () => {
      const refusals: [string, Crafted[], RegExp][] = [
        [
          'a path going up with ..',
          [
            { name: 'ok', body: 'fine' },
            { name: '../evil', body: 'x' },
          ],
          /"\.\.\/evil": its path goes up through '\.\.'/,
        ],
        ['a .. hidden inside a path', [{ name: 'a/../../evil', body: 'x' }], /"a\/\.\.\/\.\.\/evil": its path goes up/],
        ['an absolute path', [{ name: '/abs', body: 'x' }], /"\/abs": its path is absolute/],
        [
          'a file written through a symlink',
          [
            { name: 'link', type: 'symlink', linkname: '../../outside' },
            { name: 'link/file', body: 'x' },
          ],
          /"link": symlink to "\.\.\/\.\.\/outside": it leads outside the archive/,
        ],
        [
          'a file written through a symlink, even one that stays inside',
          [
            { name: 'sub', type: 'directory' },
            { name: 'link', type: 'symlink', linkname: 'sub' },
            { name: 'link/file', body: 'x' },
          ],
          /"link\/file": its parent "link" is a symlink/,
        ],
        ['a symlink leading outside', [{ name: 'up', type: 'symlink', linkname: 'a/../../x' }], /"up": symlink to "a\/\.\.\/\.\.\/x": it leads outside the archive/],
        ['a symlink with an absolute target', [{ name: 'etc', type: 'symlink', linkname: '/etc' }], /"etc": symlink to "\/etc": it leads to the absolute path \/etc/],
        [
          'a symlink leading outside through another symlink made after it',
          [
            { name: 'b', type: 'symlink', linkname: 'a/..' },
            { name: 'a', type: 'symlink', linkname: '.' },
          ],
          /"b": symlink: it leads outside the archive/,
        ],
        ['a hardlink to a path outside', [{ name: 'h', type: 'link', linkname: '../x' }], /"h": its target "\.\.\/x" goes up/],
        [
          'a hardlink to a path not yet extracted',
          [
            { name: 'h', type: 'link', linkname: 'later' },
            { name: 'later', body: 'x' },
          ],
          /"h": hardlink to "later", which is not a file extracted before it/,
        ],
        ['a device', [{ name: 'dev/sda', type: 'block-device', devmajor: 8 }], /"dev\/sda": block-device entries are not allowed/],
        ['a fifo', [{ name: 'p', type: 'fifo' }], /"p": fifo entries are not allowed/],
        ['a setuid file', [{ name: 'bin/su', mode: 0o4755, body: 'x' }], /"bin\/su": mode 4755 has a setuid or setgid bit/],
        [
          'a path that appears twice',
          [
            { name: 'f', body: 'one' },
            { name: 'f', type: 'symlink', linkname: '/etc/passwd' },
          ],
          /"f": it appears twice/,
        ],
      ];
      for (const [what, list, message] of refusals) {
        it(what, async () => {
          const archive = path.join(dir, 'in/evil.tar.gz');
          fs.mkdirSync(path.dirname(archive));
          await craft(archive, list);
          const dest = path.join(dir, 'out/dest');
          fs.mkdirSync(path.dirname(dest));
          await assert.rejects(extract(archive, dest), (e: Error) => {
            assert.ok(e instanceof ArchiveError, String(e));
            assert.match(e.message, message);
            return true;
          });
          assert.deepEqual(fs.readdirSync(path.join(dir, 'out')), [], 'neither the destination nor a temporary');
          assert.deepEqual(fs.readdirSync(dir).sort(), ['in', 'out']);
          assert.deepEqual(fs.readdirSync(path.join(dir, 'in')), ['evil.tar.gz']);
        });
      }

      it('an archive whose sha256 is not the one expected, leaving the old destination as it was', async () => {
        write(dir, { 'src/f': 'new', 'dest/f': 'old' });
        await packDir(path.join(dir, 'src'), path.join(dir, 'out.tar.gz'));
        await assert.rejects(extract(path.join(dir, 'out.tar.gz'), path.join(dir, 'dest'), { expectSha256: '0'.repeat(64) }), (e: Error) => {
          assert.ok(e instanceof ArchiveError);
          assert.match(e.message, /out\.tar\.gz: sha256 of the uncompressed archive is [0-9a-f]{64}, expected 0{64}/);
          return true;
        });
        assert.equal(read(dir, 'dest/f'), 'old');
        assert.deepEqual(fs.readdirSync(dir).sort(), ['dest', 'out.tar.gz', 'src']);
      });

      it('a truncated archive', async () => {
        write(dir, { 'src/f': createHash('sha512').update('x').digest('hex').repeat(1000) });
        await packDir(path.join(dir, 'src'), path.join(dir, 'out.tar.gz'));
        fs.truncateSync(path.join(dir, 'out.tar.gz'), fs.statSync(path.join(dir, 'out.tar.gz')).size - 20);
        await assert.rejects(extract(path.join(dir, 'out.tar.gz'), path.join(dir, 'dest')), ArchiveError);
        assert.equal(fs.existsSync(path.join(dir, 'dest')), false);
      });
    });
  });

  describe('streaming', () => {
    it('packs and extracts a 200 MB file without holding it in memory', async function () {
      this.timeout(30_000);
      const file = path.join(dir, 'src/big.bin');
      fs.mkdirSync(path.dirname(file));
      // Mostly holes, with some incompressible data, so gzip has real work but the test stays quick.
      const fd = fs.openSync(file, 'w');
      const chunk = Buffer.alloc(1 << 20);
      for (let mb = 0; mb < 200; mb += 10) fs.writeSync(fd, createHash('sha256').update(String(mb)).digest(), 0, 32, mb << 20);
      fs.writeSync(fd, chunk, 0, 1, (200 << 20) - 1);
      fs.closeSync(fd);

      const base = process.memoryUsage().rss;
      let peak = base;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
      try {
        const packed = await packDir(path.join(dir, 'src'), path.join(dir, 'big.tar.gz'));
        const r = await extract(path.join(dir, 'big.tar.gz'), path.join(dir, 'dest'), { expectSha256: packed.sha256 });
        assert.equal(r.sha256, packed.sha256);
      } finally {
        clearInterval(sampler);
      }
      peak = Math.max(peak, process.memoryUsage().rss);
      assert.equal(fs.statSync(path.join(dir, 'dest/big.bin')).size, 200 << 20);
      assert.ok(peak - base < 150 << 20, `rss grew by ${Math.round((peak - base) / 2 ** 20)} MB`);
    });
  });
});
