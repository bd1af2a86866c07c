/**
 * IPFS as a user meets it: `peerpkgs ipfs daemon` and the commands that
 * use it, real nodes in separate processes talking over loopback TCP, and
 * package caches shared over ipfs:// and ipns:// between two machines (two
 * PEERPKGS_HOMEs) that a build substitutes from.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { BIN, exists, read, run, scratch, start, userEnv, write, busyboxHttpd, type Run } from './helpers.ts';
import { makeSeedTarball, writeSeedPackage, simplePackage } from './seed.ts';
import { startDaemon, storedBlocks, type Daemon } from './ipfs-peer.ts';
import { BlockPacks } from '../src/ipfs/packs.ts';

/** The CIDv1 form of a CID, as IPNS records carry it. */
async function cidV1(cid: string): Promise<string> {
  const { CID } = await import('multiformats/cid');
  return CID.parse(cid).toV1().toString();
}

/** The roots and blocks of a CARv1, read independently of the writer under test. */
async function readCar(car: Buffer): Promise<{ roots: string[]; blocks: { cid: import('multiformats/cid').CID; bytes: Uint8Array }[] }> {
  const { CID, varint } = await import('multiformats');
  const dagCbor = await import('@ipld/dag-cbor');
  const [length, at] = varint.decode(car);
  const header = dagCbor.decode(car.subarray(at, at + length)) as { version: number; roots: unknown[] };
  assert.equal(header.version, 1);
  const blocks = [];
  for (let i = at + length; i < car.length;) {
    const [n, k] = varint.decode(car, i);
    const [cid, bytes] = CID.decodeFirst(car.subarray(i + k, i + k + n));
    blocks.push({ cid, bytes });
    i += k + n;
  }
  return { roots: header.roots.map((r) => CID.asCID(r)!.toString()), blocks };
}

describe('IPFS', function () {
  this.timeout(120_000);
  let s: { dir: string; cleanup: () => void };
  const daemons: Daemon[] = [];
  beforeEach(() => (s = scratch()));
  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.stop();
    s.cleanup();
  });
  const daemon = async (home: string, env: NodeJS.ProcessEnv = {}) => {
    const d = await startDaemon(home, env);
    daemons.push(d);
    return d;
  };
  const ipfs = (home: string, args: string[], env: NodeJS.ProcessEnv = {}): Run => run(s.dir, 'peerpkgs', ['ipfs', ...args], { PEERPKGS_HOME: home, ...env });

  describe('the daemon', () => {
    it('serves commands on its socket, prints and writes its addresses, and stops cleanly', async () => {
      const home = path.join(s.dir, 'home');
      const d = await daemon(home);
      assert.match(d.addr, /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3Koo\w+$/);
      assert.deepEqual(read(home, 'ipfs/addrs').trim().split('\n'), [d.peerId, d.addr]);
      assert.ok(fs.statSync(path.join(home, 'ipfs/api.sock')).isSocket());
      write(s.dir, { 'hello.txt': 'hello world\n' });
      const r = ipfs(home, ['add', 'hello.txt']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o\n');
      const id = ipfs(home, ['id']);
      assert.match(id.stdout, new RegExp(`^peer id: ${d.peerId}$`, 'm'), 'the daemon answered, not a node of its own');
      assert.equal(ipfs(home, ['cat', 'QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o']).stdout, 'hello world\n');
      assert.equal(await d.stop('SIGTERM'), 0, d.output());
      assert.ok(!exists(home, 'ipfs/api.sock'), 'socket removed');
      assert.ok(!exists(home, 'ipfs/addrs'), 'addrs removed');
      // the same identity next time
      const again = await daemon(home);
      assert.equal(again.peerId, d.peerId);
      assert.equal(await again.stop('SIGINT'), 0, again.output());
    });

    it('listens on the same address after a restart, and on a new port when that one is taken', async () => {
      const home = path.join(s.dir, 'home');
      const first = await daemon(home);
      assert.equal(await first.stop(), 0, first.output());
      const again = await daemon(home);
      assert.equal(again.addr, first.addr, 'the multiaddr peers were given still reaches it');
      assert.equal(again.peerId, first.peerId);
      assert.equal(await again.stop(), 0, again.output());
      // another program took the port meanwhile
      const port = Number(/\/tcp\/(\d+)\//.exec(first.addr)![1]);
      const squatter = net.createServer().listen(port, '127.0.0.1');
      await new Promise((r) => squatter.once('listening', r));
      try {
        const moved = await daemon(home);
        assert.notEqual(moved.addr, first.addr);
        const was = first.addr.replace(/\/p2p\/.*/, '');
        assert.match(moved.output(), new RegExp(`^could not listen on ${was} as last time \\(listen EADDRINUSE: .*\\): listening on a new port;`, 'm'));
        assert.equal(await moved.stop(), 0, moved.output());
        squatter.close();
        const last = await daemon(home);
        assert.equal(last.addr, moved.addr, 'the new port is the one remembered');
      } finally {
        squatter.close();
      }
    });

    it('replaces the stale socket of a daemon that was killed, and refuses to run twice', async () => {
      const home = path.join(s.dir, 'home');
      const killed = await daemon(home);
      await killed.stop('SIGKILL');
      assert.ok(exists(home, 'ipfs/api.sock'), 'a killed daemon leaves its socket');
      // commands do not trip over it: they start a node of their own
      write(s.dir, { f: 'x' });
      assert.equal(ipfs(home, ['add', 'f']).status, 0);
      const d = await daemon(home);
      assert.match(d.output(), /removed a stale socket/);
      const twice = spawn(path.join(BIN, 'peerpkgs'), ['ipfs', 'daemon'], { env: userEnv({ PEERPKGS_HOME: home }) });
      let err = '';
      twice.stderr.on('data', (b) => (err += b));
      const code = await new Promise((r) => twice.once('exit', r));
      assert.equal(code, 1);
      assert.match(err, new RegExp(`a daemon already runs on \\S+api\\.sock \\(peer id ${d.peerId}\\)`));
      assert.equal(ipfs(home, ['id']).status, 0, 'the first one still serves');
    });

    it('has help and usage errors', () => {
      const home = path.join(s.dir, 'home');
      const h = ipfs(home, ['--help']);
      assert.equal(h.status, 0);
      assert.match(h.stdout, /^usage: peerpkgs ipfs COMMAND/);
      assert.match(
        ipfs(home, ['get', '--help']).stdout,
        /^usage: peerpkgs ipfs get ADDRESS -o PATH\n\nWrite a file or directory to PATH .*\n\nADDRESS: CID\[\/PATH\], \/ipfs\/CID\[\/PATH\], ipfs:\/\/CID/,
      );
      const bad = ipfs(home, ['get', 'QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o']);
      assert.equal(bad.status, 2);
      assert.equal(bad.stderr, 'peerpkgs ipfs get: name where to write it with -o PATH (see peerpkgs ipfs get --help)\n');
      assert.equal(ipfs(home, ['cat', 'not-a-cid']).stderr, 'peerpkgs ipfs cat: not-a-cid: not a CID\n');
    });
  });

  describe('add', () => {
    it('--only-hash prints the CID add prints, stores nothing and starts no node', () => {
      fs.writeFileSync(path.join(s.dir, 'big'), Buffer.alloc(3 * 262144 + 5, 7));
      const home = path.join(s.dir, 'home');
      for (const flag of ['-n', '--only-hash']) {
        const r = ipfs(home, ['add', flag, 'big']);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(fs.existsSync(path.join(home, 'ipfs')), false);
      }
      const hashed = ipfs(home, ['add', '-n', 'big']).stdout;
      const added = ipfs(home, ['add', 'big']);
      assert.equal(added.stdout, hashed);
      assert.equal(ipfs(home, ['cat', hashed.trim()]).stdout, fs.readFileSync(path.join(s.dir, 'big'), 'utf8'));
      const both = ipfs(home, ['add', '-n', '--pin', 'big']);
      assert.equal(both.status, 2);
      assert.match(both.stderr, /--pin and --only-hash: nothing is stored to pin/);
    });

    it('with no daemon and nothing to pin, writes the blocks without starting a node; with --pin it starts one', () => {
      fs.writeFileSync(path.join(s.dir, 'big'), Buffer.alloc(3 * 262144 + 5, 7));
      const home = path.join(s.dir, 'home');
      const added = ipfs(home, ['add', 'big']);
      assert.equal(added.status, 0, added.stderr);
      assert.ok(!exists(home, 'ipfs/identity'), 'no node: a node makes its identity first');
      assert.equal(storedBlocks(home), 3, 'three equal leaves are one block, then the short last leaf and the root');
      assert.equal(ipfs(home, ['cat', added.stdout.trim()]).stdout, fs.readFileSync(path.join(s.dir, 'big'), 'utf8'));
      const pinned = ipfs(path.join(s.dir, 'other'), ['add', '--pin', 'big']);
      assert.equal(pinned.status, 0, pinned.stderr);
      assert.equal(pinned.stdout, added.stdout);
      assert.ok(exists(path.join(s.dir, 'other'), 'ipfs/identity'), 'pins are kept by a node');
    });
  });

  describe('between two nodes', () => {
    /** 3 MiB whose 256 KiB leaves all differ */
    const pattern = (): Buffer => {
      const b = Buffer.alloc(3 << 20);
      for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
      return b;
    };

    it('ipfs get draws a bar on a terminal, and off one says only where it saved', async function () {
      if (spawnSync('script', ['--version']).error) {
        if (process.env.CI === 'true') throw new Error('script(1) is missing: CI must have util-linux');
        return this.skip();
      }
      const a = await daemon(path.join(s.dir, 'a'));
      fs.writeFileSync(path.join(s.dir, 'f.bin'), pattern());
      const cid = ipfs(a.home, ['add', '--pin', 'f.bin']).stdout.trim();
      const plain = ipfs(path.join(s.dir, 'b'), ['get', cid, '-o', 'plain'], { PKG_IPFS_PEERS: a.addr });
      assert.equal(plain.status, 0, plain.stderr);
      assert.equal(plain.stderr, `saved file ${cid} to plain\n`);
      const tty = spawnSync('script', ['-qfec', `${path.join(BIN, 'peerpkgs')} ipfs get ${cid} -o out`, '/dev/null'], {
        cwd: s.dir,
        env: userEnv({ PEERPKGS_HOME: path.join(s.dir, 'c'), PKG_IPFS_PEERS: a.addr }),
        encoding: 'utf8',
        input: '',
      });
      assert.equal(tty.status, 0, tty.stdout);
      /* eslint-disable no-control-regex -- the terminal's codes are the point */
      assert.match(tty.stdout, /\rout \[[# ]{20}\] [\d.]+ (B|KiB|MiB)\/3\.0 MiB /, 'the bar');
      assert.match(tty.stdout, /\r\x1b\[Kfetched out: 3\.0 MiB in [\d.]+ s/, 'the line that stays');
      /* eslint-enable no-control-regex */
      assert.match(tty.stdout, new RegExp(`saved file ${cid} to out`));
      assert.ok(fs.readFileSync(path.join(s.dir, 'out')).equals(pattern()));
    });

    it('a file comes from a daemon in one CAR over libp2p, each block checked: a peer whose CAR holds a wrong block is warned about', async () => {
      const a = await daemon(path.join(s.dir, 'a'));
      const data = pattern();
      fs.writeFileSync(path.join(s.dir, 'f.bin'), data);
      const cid = ipfs(a.home, ['add', '--pin', 'f.bin']).stdout.trim();
      const got = ipfs(path.join(s.dir, 'b'), ['get', cid, '-o', 'out'], { PKG_IPFS_PEERS: a.addr });
      assert.equal(got.status, 0, got.stderr);
      assert.ok(fs.readFileSync(path.join(s.dir, 'out')).equals(data));
      assert.doesNotMatch(got.stderr, /warning/);
      // one byte of the tenth leaf changed where A keeps it
      const packs = path.join(a.home, 'ipfs/packs');
      const pack = path.join(packs, fs.readdirSync(packs)[0]!);
      const at = fs.readFileSync(pack).indexOf(data.subarray(10 * 262144 + 1000, 10 * 262144 + 1064));
      assert.ok(at > 0, 'the leaf is in the pack');
      const fd = fs.openSync(pack, 'r+');
      fs.writeSync(fd, Buffer.from([data[10 * 262144 + 1000]! ^ 0xff]), 0, 1, at);
      fs.closeSync(fd);
      const bad = ipfs(path.join(s.dir, 'c'), ['get', cid, '-o', 'out2'], { PKG_IPFS_PEERS: a.addr, PKG_IPFS_TIMEOUT: '3' });
      assert.equal(bad.status, 8, bad.stderr);
      assert.match(bad.stderr, new RegExp(`^ipfs: warning: peer ${a.peerId} sent a block that is not \\S+; not asking it for a CAR again$`, 'm'));
      assert.ok(!fs.existsSync(path.join(s.dir, 'out2')), 'nothing of a failed get is left');
    });

    it('a CAR a peer cuts short is said so, and the rest is asked for block by block', async () => {
      const home = path.join(s.dir, 'a');
      const data = pattern();
      fs.writeFileSync(path.join(s.dir, 'f.bin'), data);
      const cid = ipfs(home, ['add', '--pin', 'f.bin']).stdout.trim();
      // A keeps only the first half of the leaves
      const packs = new BlockPacks(path.join(home, 'ipfs/packs'));
      const probes = [6, 7, 8, 9, 10, 11].map((i) => data.subarray(i * 262144, i * 262144 + 64));
      const dropped = await packs.rewrite(async (mh) => {
        const block = (await packs.read(mh))!;
        return !probes.some((p) => block.includes(p));
      });
      await packs.close();
      assert.equal(dropped.length, 6);
      const a = await daemon(home);
      const got = ipfs(path.join(s.dir, 'b'), ['get', cid, '-o', 'out'], { PKG_IPFS_PEERS: a.addr, PKG_IPFS_TIMEOUT: '3' });
      assert.equal(got.status, 8, got.stderr);
      assert.match(got.stderr, new RegExp(`^ipfs: warning: peer ${a.peerId}: the CAR of ${cid} broke off \\(.+\\); the rest comes a block at a time$`, 'm'));
      assert.match(got.stderr, /could not find .* on any connected peer within 3 s/);
      assert.equal(storedBlocks(path.join(s.dir, 'b')), 7, 'the root and the six leaves the CAR brought are kept');
    });

    it('a directory added on A is fetched by B, which dials A from PKG_IPFS_PEERS', async () => {
      const a = await daemon(path.join(s.dir, 'a'));
      const big = Buffer.alloc(3 << 20);
      for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
      write(s.dir, { 'tree/README': 'read me\n', 'tree/sub/deeper/x': 'x\n', 'tree/.hidden': 'not added' });
      fs.writeFileSync(path.join(s.dir, 'tree/sub/big.bin'), big);
      fs.symlinkSync('sub/deeper/x', path.join(s.dir, 'tree/link'));
      const added = ipfs(a.home, ['add', '--pin', 'tree']);
      assert.equal(added.status, 0, added.stderr);
      const cid = added.stdout.trim();
      const b = path.join(s.dir, 'b');
      const peers = { PKG_IPFS_PEERS: a.addr };
      const got = ipfs(b, ['get', cid, '-o', 'out'], peers);
      assert.equal(got.status, 0, got.stderr);
      assert.deepEqual((fs.readdirSync(path.join(s.dir, 'out'), { recursive: true }) as string[]).sort(), ['README', 'link', 'sub', 'sub/big.bin', 'sub/deeper', 'sub/deeper/x']);
      assert.ok(fs.readFileSync(path.join(s.dir, 'out/sub/big.bin')).equals(big));
      assert.equal(fs.readlinkSync(path.join(s.dir, 'out/link')), 'sub/deeper/x');
      assert.equal(ipfs(b, ['cat', `${cid}/sub/deeper/x`], peers).stdout, 'x\n');
      assert.match(ipfs(b, ['ls', cid], peers).stdout, /^\S+ 8 README\n\S+ 0 link\n\S+ 0 sub\/\n$/);
      // B now has the blocks itself: no peer needed
      assert.equal(ipfs(b, ['cat', `${cid}/README`]).stdout, 'read me\n');
    });

    it('B reads a file whose DAG is three levels deep, with dag-pb or raw leaves, byte for byte as A added it', async () => {
      const a = await daemon(path.join(s.dir, 'a'));
      // 1 KiB chunks: 700 leaves, more than the 174 links a node holds, twice over
      const data = Buffer.alloc(700 * 1024 + 5);
      for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
      fs.writeFileSync(path.join(s.dir, 'deep.bin'), data);
      for (const leaves of [[], ['--cid-version', '1']]) {
        const added = ipfs(a.home, ['add', '--chunker', 'size-1024', ...leaves, 'deep.bin']);
        assert.equal(added.status, 0, added.stderr);
        const b = path.join(s.dir, `b${leaves.length}`);
        const got = ipfs(b, ['get', added.stdout.trim(), '-o', `out${leaves.length}`], { PKG_IPFS_PEERS: a.addr });
        assert.equal(got.status, 0, got.stderr);
        assert.ok(fs.readFileSync(path.join(s.dir, `out${leaves.length}`)).equals(data), `leaves ${leaves.join(' ') || 'dag-pb'}`);
      }
    });

    it("add --nocopy keeps a file's data in the file alone; B fetches it from A; once the file changes A sends nothing of it", async () => {
      const a = await daemon(path.join(s.dir, 'a'));
      const data = Buffer.alloc(700 * 1024);
      for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
      fs.writeFileSync(path.join(s.dir, 'src.bin'), data);
      const added = ipfs(a.home, ['add', '--nocopy', 'src.bin']);
      assert.equal(added.status, 0, added.stderr);
      const cid = added.stdout.trim();
      assert.equal(cid, ipfs(a.home, ['add', '-n', 'src.bin']).stdout.trim(), 'the CID add prints for the same bytes');
      assert.equal(storedBlocks(a.home), 1, 'the root alone is a block in the repo; its three leaves are read from src.bin');
      const got = ipfs(path.join(s.dir, 'b'), ['get', cid, '-o', 'out'], { PKG_IPFS_PEERS: a.addr });
      assert.equal(got.status, 0, got.stderr);
      assert.ok(fs.readFileSync(path.join(s.dir, 'out')).equals(data));
      // one byte changed in place: A no longer has that leaf, and says why
      const fd = fs.openSync(path.join(s.dir, 'src.bin'), 'r+');
      fs.writeSync(fd, Buffer.from([data[300_000]! ^ 1]), 0, 1, 300_000);
      fs.closeSync(fd);
      // run alongside, not blocking: A's stderr is read meanwhile
      const after = await start(s.dir, 'peerpkgs', ['ipfs', 'get', cid, '-o', 'out2'], { PEERPKGS_HOME: path.join(s.dir, 'c'), PKG_IPFS_PEERS: a.addr, PKG_IPFS_TIMEOUT: '3' });
      assert.equal(after.status, 8, after.stderr);
      assert.ok(!exists(s.dir, 'out2'));
      assert.match(a.output(), /src\.bin has changed since it was added: its bytes at 262144 are no longer the block /);
    });

    it('what B pinned stays readable when A is gone', async () => {
      const a = await daemon(path.join(s.dir, 'a'));
      write(s.dir, { 'd/one': '1\n', 'd/sub/two': '2\n' });
      const cid = ipfs(a.home, ['add', 'd']).stdout.trim();
      const b = path.join(s.dir, 'b');
      const pinned = ipfs(b, ['pin', cid], { PKG_IPFS_PEERS: a.addr });
      assert.equal(pinned.status, 0, pinned.stderr);
      assert.equal(pinned.stdout, `pinned ${cid}\n`);
      await a.stop();
      const offline = { PKG_IPFS_TIMEOUT: '2' };
      assert.equal(ipfs(b, ['cat', `${cid}/sub/two`], offline).stdout, '2\n', 'fetched by the pin, not by this cat');
      assert.equal(ipfs(b, ['cat', `${cid}/one`], offline).stdout, '1\n');
    });

    it('peerpkgs cache publish adds a cache directory, pinned, and names it as a PKG_CACHE_URL', async () => {
      const a = await daemon(path.join(s.dir, 'a'));
      write(s.dir, { 'cache/x.info': 'info\n', 'cache/.x.info.tmp-1': 'half-written' });
      const r = run(s.dir, 'peerpkgs', ['cache', 'publish', 'cache', '--ipns', 'team'], { PEERPKGS_HOME: a.home });
      assert.equal(r.status, 0, r.stderr);
      const [, cid, name] = /^catalog: generation 1, 0 entries, expires \S+\nipfs:\/\/(\w+)\nipns:\/\/(k51\w+)\n$/.exec(r.stdout) ?? [];
      assert.ok(cid && name, r.stdout);
      assert.equal(ipfs(path.join(s.dir, 'b'), ['resolve', name], { PKG_IPFS_PEERS: a.addr }).stdout, `/ipfs/${await cidV1(cid)}\n`);
      assert.equal(
        ipfs(a.home, ['ls', cid])
          .stdout.split('\n')
          .filter(Boolean)
          .map((l) => l.split(' ')[2])
          .join(' '),
        'catalog x.info',
        'temporary files are not published',
      );
    });

    it('a path missing from a reachable directory is "not found" (7); blocks nobody has are "unreachable" (8), naming the peers', async () => {
      const a = await daemon(path.join(s.dir, 'a'));
      write(s.dir, { 'd/f': 'f\n' });
      const cid = ipfs(a.home, ['add', 'd']).stdout.trim();
      const b = path.join(s.dir, 'b');
      const env = { PKG_IPFS_PEERS: a.addr, PKG_IPFS_TIMEOUT: '2' };
      const missing = ipfs(b, ['cat', `${cid}/nothere`], env);
      assert.equal(missing.status, 7, missing.stderr);
      assert.equal(missing.stderr, `peerpkgs ipfs cat: ${cid}/nothere: no such file or directory\n`);
      const nobody = 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyka';
      const gone = ipfs(b, ['cat', nobody], env);
      assert.equal(gone.status, 8, gone.stderr);
      assert.equal(gone.stderr, `peerpkgs ipfs cat: could not find ${nobody} on any connected peer within 2 s (peers: ${a.peerId})\n`);
      assert.ok(!exists(s.dir, 'out'));
      assert.equal(ipfs(b, ['get', nobody, '-o', 'out'], env).status, 8);
      assert.deepEqual(
        fs.readdirSync(s.dir).filter((f) => f.includes('out')),
        [],
        'nothing of a failed get is left',
      );
    });
  });

  describe('gc', () => {
    /** Two files of four blocks each (three 256 KiB leaves and a root): one added pinned, one not. */
    const addTwo = (home: string): { pinned: string; loose: string } => {
      for (const [name, seed] of [
        ['pinned.bin', 1],
        ['loose.bin', 2],
      ] as const) {
        const b = Buffer.alloc(600_000);
        for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(((i + seed) * 2654435761) >>> 0, i);
        fs.writeFileSync(path.join(s.dir, name), b);
      }
      const pinned = ipfs(home, ['add', '--pin', 'pinned.bin']);
      const loose = ipfs(home, ['add', 'loose.bin']);
      assert.equal(pinned.status + loose.status, 0, pinned.stderr + loose.stderr);
      return { pinned: pinned.stdout.trim(), loose: loose.stdout.trim() };
    };
    const gc = (home: string, args: string[] = []): Run => run(s.dir, 'peerpkgs', ['gc', ...args], { PEERPKGS_HOME: home });

    it('deletes the blocks no pin reaches, says what it freed as its own kind, and lists them with --dry-run', () => {
      const home = path.join(s.dir, 'home');
      const { pinned, loose } = addTwo(home);
      const packs = () => fs.readdirSync(path.join(home, 'ipfs/packs')).map((p) => [p, fs.statSync(path.join(home, 'ipfs/packs', p)).size]);
      const before = packs();
      assert.equal(storedBlocks(home), 8);
      const dry = gc(home, ['--dry-run']);
      assert.equal(dry.status, 0, dry.stderr);
      assert.match(dry.stdout, /^would free IPFS blocks: 4 \(\d+(\.\d)? KiB\)$/m);
      assert.equal(dry.stdout.split('\n').filter((l) => /^would delete block \w+ in \S+\/ipfs\/packs\/[\w-]+\.pack$/.test(l)).length, 4);
      assert.deepEqual(packs(), before, 'a dry run changes no pack');
      const r = gc(home);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^freed IPFS blocks: 4 \(\d+(\.\d)? KiB\)$/m);
      assert.equal(storedBlocks(home), 4);
      const offline = { PKG_IPFS_TIMEOUT: '1' };
      const kept = ipfs(home, ['cat', pinned], offline);
      assert.equal(kept.status, 0, kept.stderr);
      assert.equal(kept.stdout, fs.readFileSync(path.join(s.dir, 'pinned.bin')).toString('utf8'), 'the pinned file reads back whole');
      const gone = ipfs(home, ['cat', loose], offline);
      assert.equal(gone.status, 8, gone.stderr);
      assert.match(gc(home).stdout, /^freed IPFS blocks: 0 \(0 B\)$/m, 'nothing more to free');
    });

    it('collects through the running daemon, which goes on serving what is pinned', async () => {
      const d = await daemon(path.join(s.dir, 'home'));
      const { pinned, loose } = addTwo(d.home);
      const r = gc(d.home);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^freed IPFS blocks: 4 /m);
      assert.equal(storedBlocks(d.home), 4);
      assert.equal(ipfs(d.home, ['cat', pinned]).stdout, fs.readFileSync(path.join(s.dir, 'pinned.bin')).toString('utf8'));
      assert.equal(ipfs(d.home, ['cat', loose], { PKG_IPFS_TIMEOUT: '1' }).status, 8);
      // and takes new blocks as before
      write(s.dir, { 'after.txt': 'after gc\n' });
      const after = ipfs(d.home, ['add', 'after.txt']);
      assert.equal(ipfs(d.home, ['cat', after.stdout.trim()]).stdout, 'after gc\n');
      assert.equal(await d.stop('SIGTERM'), 0, d.output());
    });
  });

  describe('discovery on the DHT', () => {
    it('C, which knows only B, finds A (which added a file) through the DHT and fetches from it', async () => {
      const DHT = { PKG_IPFS_DHT: 'yes' };
      const b = await daemon(path.join(s.dir, 'b'), DHT);
      const a = await daemon(path.join(s.dir, 'a'), { ...DHT, PKG_IPFS_PEERS: b.addr });
      write(s.dir, { 'found.txt': 'found through the DHT\n' });
      const added = ipfs(a.home, ['add', 'found.txt']);
      assert.equal(added.status, 0, added.stderr);
      const cid = added.stdout.trim();
      const c = path.join(s.dir, 'c');
      const onlyB = { PKG_IPFS_PEERS: b.addr, PKG_IPFS_TIMEOUT: '5' };
      const without = ipfs(c, ['cat', cid], onlyB);
      assert.equal(without.status, 8, 'B does not have it, and without the DHT nobody says who does');
      const got = ipfs(c, ['cat', cid], { ...onlyB, ...DHT });
      assert.equal(got.status, 0, got.stderr);
      assert.equal(got.stdout, 'found through the DHT\n');
    });
  });

  describe('the trustless gateway', () => {
    const GATEWAY = { PKG_IPFS_GATEWAY_LISTEN: '/ip4/127.0.0.1/tcp/0' };
    /** 700 KB that no two chunks share */
    const content = () => {
      const b = Buffer.alloc(700_000);
      for (let i = 0; i + 4 <= b.length; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
      return b;
    };
    const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest();
    const get = async (url: string, init: RequestInit = {}) => {
      const r = await fetch(url, init);
      return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
    };
    /** A daemon serving a gateway, with d/sub/f (raw leaves) added: its CIDs. */
    async function served() {
      const a = await daemon(path.join(s.dir, 'a'), GATEWAY);
      assert.match(a.gateway ?? '', /^http:\/\/127\.0\.0\.1:\d+$/, a.output());
      fs.mkdirSync(path.join(s.dir, 'd/sub'), { recursive: true });
      fs.writeFileSync(path.join(s.dir, 'd/sub/f'), content());
      const added = ipfs(a.home, ['add', '--cid-version', '1', 'd']);
      assert.equal(added.status, 0, added.stderr);
      const dir = added.stdout.trim();
      const file = ipfs(a.home, ['ls', `${dir}/sub`]).stdout.split(' ')[0]!;
      return { a, gw: a.gateway!, dir, file };
    }

    it('serves a block as raw bytes that hash to its CID; 404 for a CID it lacks, even one a connected peer has; 400 for garbage', async () => {
      const other = await daemon(path.join(s.dir, 'other'));
      write(s.dir, { 'elsewhere.txt': 'only the other node has this\n' });
      const elsewhere = ipfs(other.home, ['add', '--cid-version', '1', 'elsewhere.txt']).stdout.trim();
      const a = await daemon(path.join(s.dir, 'a'), { ...GATEWAY, PKG_IPFS_PEERS: other.addr });
      write(s.dir, { 'hello.txt': 'hello world\n' });
      const cid = ipfs(a.home, ['add', '--cid-version', '1', 'hello.txt']).stdout.trim();
      const { CID } = await import('multiformats/cid');

      const raw = await get(`${a.gateway}/ipfs/${cid}?format=raw`);
      assert.equal(raw.status, 200);
      assert.equal(raw.headers.get('content-type'), 'application/vnd.ipld.raw');
      assert.equal(raw.body.toString(), 'hello world\n');
      assert.deepEqual(sha256(raw.body), Buffer.from(CID.parse(cid).multihash.digest));
      // the same asked for by Accept; HEAD has the headers and no body
      assert.deepEqual((await get(`${a.gateway}/ipfs/${cid}`, { headers: { accept: 'application/vnd.ipld.raw' } })).body, raw.body);
      const head = await get(`${a.gateway}/ipfs/${cid}?format=raw`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), '12');
      assert.equal(head.body.length, 0);

      // never fetched for the asker: the gateway is not a relay to its peers
      assert.equal((await get(`${a.gateway}/ipfs/${elsewhere}?format=raw`)).status, 404);
      assert.equal(ipfs(a.home, ['cat', elsewhere]).stdout, 'only the other node has this\n', 'the peer is connected and has it');
      const garbage = await get(`${a.gateway}/ipfs/not-a-cid?format=raw`);
      assert.equal(garbage.status, 400);
      assert.equal(garbage.body.toString(), 'not-a-cid: not a CID\n');
      assert.equal((await get(`${a.gateway}/ipfs/${cid}`)).status, 400, 'no verifiable format asked for');
      assert.equal((await get(`${a.gateway}/ipfs/${cid}/x?format=raw`)).status, 400, 'a raw block has no path');
    });

    it('serves a CAR of a path: the blocks that lead to it, then the whole file, each the block of its CID', async () => {
      const { gw, dir, file } = await served();
      const url = `${gw}/ipfs/${dir}/sub/f`;
      const car = await get(url, { headers: { accept: 'application/vnd.ipld.car' } });
      assert.equal(car.status, 200, car.body.toString());
      assert.equal(car.headers.get('content-type'), 'application/vnd.ipld.car; version=1; order=dfs; dups=y');
      const { roots, blocks } = await readCar(car.body);
      assert.deepEqual(roots, [dir]);
      for (const b of blocks) assert.deepEqual(sha256(b.bytes), Buffer.from(b.cid.multihash.digest), `${b.cid} is its block`);
      // d, d/sub, the file's root, then its three chunks in order
      assert.equal(blocks.length, 6);
      assert.equal(blocks[0]!.cid.toString(), dir);
      assert.equal(blocks[2]!.cid.toString(), file);
      assert.deepEqual(Buffer.concat(blocks.slice(3).map((b) => b.bytes)), content());
      // dag-scope=block: the path and the file's root, no chunk
      const scoped = await readCar((await get(`${url}?format=car&dag-scope=block`)).body);
      assert.deepEqual(
        scoped.blocks.map((b) => b.cid.toString()),
        blocks.slice(0, 3).map((b) => b.cid.toString()),
      );
      assert.equal((await get(`${gw}/ipfs/${dir}/sub/nothere?format=car`)).status, 404);
    });

    it('a node fetches through gateways: a block is used only if it hashes to its CID, and a gateway that lied is not asked again', async () => {
      const { gw, dir } = await served();
      let asked = 0;
      const liar = http.createServer((req, res) => {
        asked++;
        res.writeHead(200, { 'content-type': 'application/vnd.ipld.raw' });
        res.end('not the block you asked for');
      });
      await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
      try {
        const liarUrl = `http://127.0.0.1:${(liar.address() as net.AddressInfo).port}`;
        const got = await start(s.dir, 'peerpkgs', ['ipfs', 'get', `${dir}/sub/f`, '-o', 'out'], { PEERPKGS_HOME: path.join(s.dir, 'b'), PKG_IPFS_GATEWAYS: `${liarUrl} ${gw}` });
        assert.equal(got.status, 0, got.stderr);
        assert.ok(fs.readFileSync(path.join(s.dir, 'out')).equals(content()));
        assert.match(got.stderr, new RegExp(`^ipfs: warning: ${liarUrl} sent a block that is not ${dir}; not asking it again$`, 'm'));
        assert.equal(asked, 1, 'asked for the first block only');
        // with the liar alone, nothing is had
        const only = await start(s.dir, 'peerpkgs', ['ipfs', 'cat', `${dir}/sub/f`], { PEERPKGS_HOME: path.join(s.dir, 'c'), PKG_IPFS_GATEWAYS: liarUrl, PKG_IPFS_TIMEOUT: '2' });
        assert.equal(only.status, 8, only.stderr);
        assert.equal(only.stdout, '');
        assert.match(
          only.stderr,
          new RegExp(`could not find ${dir}/sub/f on any connected peer or gateway within 2 s \\(peers: none connected; name some in PKG_IPFS_PEERS; gateways: ${liarUrl}\\)`),
        );
      } finally {
        await new Promise((r) => liar.close(r));
      }
    });

    /**
     * The gateway `gw` behind a server that counts the requests and the
     * connections they came over, and that may answer a CAR otherwise
     * (`car`: the gateway's CAR in, what to send out; null: 406, as a
     * gateway that serves only raw blocks answers).
     */
    async function counted(gw: string | (() => string), car?: (body: Buffer) => Buffer | null, host = '127.0.0.1') {
      const seen = { requests: 0, cars: 0, connections: 0 };
      const server = http.createServer((req, res) => {
        seen.requests++;
        const isCar = /format=car/.test(req.url ?? '');
        if (isCar) seen.cars++;
        void fetch(`${typeof gw === 'string' ? gw : gw()}${req.url}`, { headers: { accept: req.headers.accept ?? '*/*' } }).then(async (r) => {
          let body: Buffer | null = Buffer.from(await r.arrayBuffer());
          if (isCar && car && r.status === 200) body = car(body);
          if (body === null) {
            res.writeHead(406);
            res.end('only raw blocks here\n');
            return;
          }
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/octet-stream' });
          res.end(body);
        });
      });
      server.on('connection', () => seen.connections++);
      await new Promise<void>((r) => server.listen(0, host, r));
      return {
        url: `http://${host}:${(server.address() as net.AddressInfo).port}`,
        port: (server.address() as net.AddressInfo).port,
        seen,
        close: async () => {
          server.closeAllConnections();
          await new Promise((r) => server.close(r));
        },
      };
    }

    /** d/sub/f added again in 171 chunks of 4 KiB: one interior node, the file's root, over 171 leaves */
    async function servedInChunks() {
      const { a, gw } = await served();
      const added = ipfs(a.home, ['add', '--cid-version', '1', '--chunker', 'size-4096', 'd/sub/f']);
      assert.equal(added.status, 0, added.stderr);
      return { gw, file: added.stdout.trim() };
    }

    it("a node gets a file's blocks from a gateway in one CAR, not a request a block", async () => {
      const { gw, file } = await servedInChunks();
      const proxy = await counted(gw);
      try {
        const got = await start(s.dir, 'peerpkgs', ['ipfs', 'get', file, '-o', 'out'], { PEERPKGS_HOME: path.join(s.dir, 'b'), PKG_IPFS_GATEWAYS: proxy.url });
        assert.equal(got.status, 0, got.stderr);
        assert.equal(got.stderr, `saved file ${file} to out\n`, 'and no warning');
        assert.ok(fs.readFileSync(path.join(s.dir, 'out')).equals(content()));
        // the root as a raw block, then the CAR
        assert.equal(proxy.seen.cars, 1);
        assert.ok(proxy.seen.requests <= 3, `${proxy.seen.requests} requests`);
        // and the blocks are kept, as blocks from a peer are: served again with no gateway
        const again = await start(s.dir, 'peerpkgs', ['ipfs', 'get', file, '-o', 'again'], { PEERPKGS_HOME: path.join(s.dir, 'b'), PKG_IPFS_TIMEOUT: '2' });
        assert.equal(again.status, 0, again.stderr);
        assert.ok(fs.readFileSync(path.join(s.dir, 'again')).equals(content()));
      } finally {
        await proxy.close();
      }
    });

    it('a node asks a gateway that serves no CAR for a block at a time, over connections it keeps', async () => {
      const { gw, file } = await servedInChunks();
      const proxy = await counted(gw, () => null);
      try {
        const got = await start(s.dir, 'peerpkgs', ['ipfs', 'get', file, '-o', 'out'], { PEERPKGS_HOME: path.join(s.dir, 'b'), PKG_IPFS_GATEWAYS: proxy.url });
        assert.equal(got.status, 0, got.stderr);
        assert.equal(got.stderr, `saved file ${file} to out\n`, 'and no warning');
        assert.ok(fs.readFileSync(path.join(s.dir, 'out')).equals(content()));
        assert.ok(proxy.seen.requests >= 172, `the file and its 171 chunks: ${proxy.seen.requests} requests`);
        assert.ok(proxy.seen.connections < proxy.seen.requests / 10, `${proxy.seen.connections} connections for ${proxy.seen.requests} requests`);
      } finally {
        await proxy.close();
      }
    });

    it('a CAR cut short is used as far as it goes, with a warning, and the rest is asked for a block at a time', async () => {
      const { gw, file } = await servedInChunks();
      const proxy = await counted(gw, (car) => car.subarray(0, Math.floor(car.length / 2)));
      try {
        const got = await start(s.dir, 'peerpkgs', ['ipfs', 'get', file, '-o', 'out'], { PEERPKGS_HOME: path.join(s.dir, 'b'), PKG_IPFS_GATEWAYS: proxy.url });
        assert.equal(got.status, 0, got.stderr);
        assert.equal(
          got.stderr,
          `ipfs: warning: ${proxy.url}: the CAR of ${file} broke off (the CAR ends inside a section (${got.stderr.match(/\((\d+ of \d+) bytes\)/)?.[1]} bytes)); the rest comes a block at a time\nsaved file ${file} to out\n`,
        );
        assert.ok(fs.readFileSync(path.join(s.dir, 'out')).equals(content()));
        assert.equal(proxy.seen.cars, 1);
        assert.ok(proxy.seen.requests > 60 && proxy.seen.requests < 120, `half the chunks a block at a time: ${proxy.seen.requests} requests`);
      } finally {
        await proxy.close();
      }
    });

    it("a gateway whose CAR holds a block that is not its CID's is not asked again, and the file comes whole from another", async () => {
      const { gw, file } = await servedInChunks();
      // the last byte of the CAR is the last chunk's
      const liar = await counted(gw, (car) => {
        const bad = Buffer.from(car);
        bad[bad.length - 1] ^= 0xff;
        return bad;
      });
      try {
        const got = await start(s.dir, 'peerpkgs', ['ipfs', 'get', file, '-o', 'out'], { PEERPKGS_HOME: path.join(s.dir, 'b'), PKG_IPFS_GATEWAYS: `${liar.url} ${gw}` });
        assert.equal(got.status, 0, got.stderr);
        assert.ok(fs.readFileSync(path.join(s.dir, 'out')).equals(content()));
        const warned = new RegExp(`^ipfs: warning: ${liar.url} sent a block that is not (\\S+); not asking it again$`, 'm').exec(got.stderr);
        assert.ok(warned, got.stderr);
        assert.notEqual(warned[1], file, 'a chunk, not the root');
        assert.equal(liar.seen.cars, 1);
        assert.equal(liar.seen.requests, 2, 'the root, then the CAR: nothing after the wrong block');
      } finally {
        await liar.close();
      }
    });

    it('a node takes a file from the gateway a connected peer announces on its own address, not over libp2p, unless told not to', async () => {
      // a cache in front of A's gateway, on A's host: A tells its peers to use it
      let target = '';
      const proxy = await counted(() => target);
      // and one on another host (127.0.0.2), which a peer must not be sent to
      const elsewhere = await counted(() => target, undefined, '127.0.0.2');
      try {
        const a = await daemon(path.join(s.dir, 'a'), { ...GATEWAY, PKG_IPFS_GATEWAY_ANNOUNCE: `/ip4/127.0.0.1/tcp/${proxy.port} /ip4/127.0.0.2/tcp/${elsewhere.port}` });
        target = a.gateway!;
        assert.doesNotMatch(read(a.home, 'ipfs/addrs'), /\/http/, 'a gateway is no address to dial');
        assert.doesNotMatch(a.output(), /^listening: .*\/http/m);
        fs.writeFileSync(path.join(s.dir, 'f'), content());
        const file = ipfs(a.home, ['add', '--pin', 'f']).stdout.trim();
        // (started, not run: the proxies answer from this process)
        const got = await start(s.dir, 'peerpkgs', ['ipfs', 'get', file, '-o', 'out'], { PEERPKGS_HOME: path.join(s.dir, 'b'), PKG_IPFS_PEERS: a.addr });
        assert.equal(got.status, 0, got.stderr);
        assert.equal(got.stderr, `saved file ${file} to out\n`, 'and no warning');
        assert.ok(fs.readFileSync(path.join(s.dir, 'out')).equals(content()));
        assert.equal(proxy.seen.cars, 1, 'the file came in one CAR from the gateway A announced');
        assert.equal(elsewhere.seen.requests, 0, 'the one on another host than the peer is not asked');
        // told not to: over libp2p, as from a peer with no gateway
        const own = await start(s.dir, 'peerpkgs', ['ipfs', 'get', file, '-o', 'out2'], {
          PEERPKGS_HOME: path.join(s.dir, 'c'),
          PKG_IPFS_PEERS: a.addr,
          PKG_IPFS_PEER_GATEWAYS: 'no',
        });
        assert.equal(own.status, 0, own.stderr);
        assert.ok(fs.readFileSync(path.join(s.dir, 'out2')).equals(content()));
        assert.equal(proxy.seen.requests, 1, 'nothing more through the gateway');
      } finally {
        await proxy.close();
        await elsewhere.close();
      }
    });

    it('a gateway a peer announces that fails is warned about once, and the file comes over libp2p', async () => {
      // a port nothing listens on: the gateway is down
      const closed = await counted('http://127.0.0.1:1');
      await closed.close();
      const a = await daemon(path.join(s.dir, 'a'), { ...GATEWAY, PKG_IPFS_GATEWAY_ANNOUNCE: `/ip4/127.0.0.1/tcp/${closed.port}` });
      fs.writeFileSync(path.join(s.dir, 'f'), content());
      const file = ipfs(a.home, ['add', '--pin', 'f']).stdout.trim();
      const got = ipfs(path.join(s.dir, 'b'), ['get', file, '-o', 'out'], { PKG_IPFS_PEERS: a.addr });
      assert.equal(got.status, 0, got.stderr);
      assert.ok(fs.readFileSync(path.join(s.dir, 'out')).equals(content()));
      assert.match(got.stderr, new RegExp(`^ipfs: warning: peer ${a.peerId}: its gateway http://127\\.0\\.0\\.1:${closed.port}: .*connection refused.*; asking over libp2p$`, 'm'));
      assert.equal(got.stderr.match(/warning/g)?.length, 1, got.stderr);
    });

    it('a running daemon fetches through the gateways a command names, as it dials the peers one names', async () => {
      const { gw, dir } = await served();
      const b = await daemon(path.join(s.dir, 'b'));
      const got = ipfs(b.home, ['get', `${dir}/sub/f`, '-o', 'out'], { PKG_IPFS_GATEWAYS: gw });
      assert.equal(got.status, 0, got.stderr);
      assert.ok(fs.readFileSync(path.join(s.dir, 'out')).equals(content()));
      assert.match(ipfs(b.home, ['id']).stdout, new RegExp(`^peer id: ${b.peerId}$`, 'm'), 'through the daemon, not a node of its own');
    });

    it('refuses a gateway setting that does not parse, in one line (2)', () => {
      const bad = ipfs(path.join(s.dir, 'b'), ['cat', 'bafkqaaa'], { PKG_IPFS_GATEWAYS: 'ftp://example.org' });
      assert.equal(bad.status, 2);
      assert.equal(bad.stderr, 'peerpkgs: PKG_IPFS_GATEWAYS: ftp://example.org: not an http(s) URL\n');
      const listen = ipfs(path.join(s.dir, 'b'), ['daemon'], { PKG_IPFS_GATEWAY_LISTEN: '127.0.0.1:8080' });
      assert.equal(listen.status, 2);
      assert.equal(listen.stderr, 'peerpkgs: PKG_IPFS_GATEWAY_LISTEN: 127.0.0.1:8080: expected one address such as /ip4/127.0.0.1/tcp/8080\n');
      const announce = ipfs(path.join(s.dir, 'b'), ['daemon'], { PKG_IPFS_GATEWAY_ANNOUNCE: '/ip4/127.0.0.1/tcp/8080 /ip4/example.org/tcp/80' });
      assert.equal(announce.status, 2);
      assert.equal(announce.stderr, 'peerpkgs: PKG_IPFS_GATEWAY_ANNOUNCE: /ip4/example.org/tcp/80: expected an address such as /ip4/127.0.0.1/tcp/8080\n');
    });
  });

  describe('IPNS', () => {
    it('a name published on A resolves on B, which takes the record from A', async () => {
      const a = await daemon(path.join(s.dir, 'a'));
      write(s.dir, { v1: 'version 1\n' });
      const cid = ipfs(a.home, ['add', '--cid-version', '1', 'v1']).stdout.trim();
      const pub = ipfs(a.home, ['publish', cid, '--key', 'team']);
      assert.equal(pub.status, 0, pub.stderr);
      const name = pub.stdout.trim();
      assert.match(name, /^k51[0-9a-z]+$/);
      assert.equal(ipfs(a.home, ['publish', cid, '--key', 'team']).stdout.trim(), name, 'the key is kept');
      const r = ipfs(path.join(s.dir, 'b'), ['resolve', name], { PKG_IPFS_PEERS: a.addr });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `/ipfs/${cid}\n`);
    });

    it('cat, get, ls and pin take every form of address: CID, /ipfs/, ipfs://, /ipns/, ipns://', async () => {
      const a = await daemon(path.join(s.dir, 'a'));
      write(s.dir, { 'site/sub/page': 'a page\n' });
      const cid = ipfs(a.home, ['add', '--cid-version', '1', 'site']).stdout.trim();
      const name = ipfs(a.home, ['publish', cid, '--key', 'site']).stdout.trim();
      const forms = [`${cid}/sub`, `/ipfs/${cid}/sub`, `ipfs://${cid}/sub`, `/ipns/${name}/sub`, `ipns://${name}/sub`];
      for (const [i, at] of forms.entries()) {
        const cat = ipfs(a.home, ['cat', `${at}/page`]);
        assert.equal(cat.status, 0, `${at}: ${cat.stderr}`);
        assert.equal(cat.stdout, 'a page\n', at);
        assert.match(ipfs(a.home, ['ls', at]).stdout, /^\S+ 7 page\n$/, at);
        const got = ipfs(a.home, ['get', at, '-o', `out${i}`]);
        assert.equal(got.status, 0, got.stderr);
        assert.equal(read(s.dir, `out${i}/page`), 'a page\n', at);
        const pinned = ipfs(a.home, ['pin', at]);
        assert.equal(pinned.status, 0, `${at}: ${pinned.stderr}`);
      }
      const bad = ipfs(a.home, ['cat', '/nothing/here']);
      assert.equal(bad.status, 2, bad.stderr);
      assert.match(bad.stderr, /^peerpkgs ipfs cat: \/nothing\/here: not an IPFS address \(CID\[\/PATH\], .*\)/);
    });

    it("refuses a record signed by another key than the name's", async () => {
      const home = path.join(s.dir, 'a');
      let a = await daemon(home);
      write(s.dir, { good: 'good\n', evil: 'evil\n' });
      const good = ipfs(home, ['add', 'good']).stdout.trim();
      const evil = ipfs(home, ['add', 'evil']).stdout.trim();
      const name = ipfs(home, ['publish', good, '--key', 'team']).stdout.trim();
      ipfs(home, ['publish', evil, '--key', 'mallory']);
      await a.stop();
      // a peer that serves mallory's record under the team's name: its
      // stored records are files named by routing key; swap them
      const records = path.join(home, 'ipfs/datastore/peerpkgs-ipns');
      const files = fs.readdirSync(records);
      assert.equal(files.length, 2);
      const bytes = files.map((f) => fs.readFileSync(path.join(records, f)));
      fs.writeFileSync(path.join(records, files[0]!), bytes[1]!);
      fs.writeFileSync(path.join(records, files[1]!), bytes[0]!);
      a = await daemon(home);
      const r = ipfs(path.join(s.dir, 'b'), ['resolve', name], { PKG_IPFS_PEERS: a.addr });
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stderr, `peerpkgs ipfs resolve: ${name}: refused the record a peer sent: it is not validly signed by the name's key, or it has expired\n`);
    });
  });

  describe('package caches over IPFS', () => {
    let seed: { www: { url: string; stop(): Promise<void> }; sha: string; dir: string; cleanup(): void };
    before(async () => {
      const w = scratch();
      const wwwDir = path.join(w.dir, 'www');
      fs.mkdirSync(wwwDir);
      const sha = await makeSeedTarball(wwwDir);
      seed = { www: await busyboxHttpd(wwwDir), sha, ...w };
    });
    after(async () => {
      await seed.www.stop();
      seed.cleanup();
    });

    /** A tree with a and b (b run-depends on a), built and published by A into `cache`, signed by `team`. */
    function publishTree(homeA: string, extra: string[]): Run {
      writeSeedPackage(path.join(s.dir, 'tree'), seed.www.url, seed.sha);
      write(path.join(s.dir, 'tree'), simplePackage('a', 'a'));
      write(path.join(s.dir, 'tree'), simplePackage('b', 'b', { 'pkg/b/run-deps': '../a\n' }));
      assert.equal(run(s.dir, 'peerpkgs', ['key', 'generate', 'team'], { PEERPKGS_HOME: homeA }).status, 0);
      const pub = run(path.join(s.dir, 'tree'), 'add-to-package-cache', ['-o', path.join(s.dir, 'cache'), '--sign-key', 'team', ...extra, './pkg/b'], { PEERPKGS_HOME: homeA });
      assert.equal(pub.status, 0, pub.stderr);
      return pub;
    }

    /** Machine B: a fresh copy of the tree (no outputs) and a fresh home. */
    function machineB(): string {
      const b = path.join(s.dir, 'b-tree');
      for (const p of ['a', 'b', 'seed']) {
        fs.cpSync(path.join(s.dir, 'tree/pkg', p), path.join(b, 'pkg', p), {
          recursive: true,
          filter: (f) => !['.pkg.tar.gz', '.pkg.tar.gz.sha256', '.pkghash'].includes(path.basename(f)),
        });
      }
      return b;
    }

    it("B builds from A's cache published under IPNS, substituting every package", async () => {
      const homeA = path.join(s.dir, 'a');
      const a = await daemon(homeA);
      const pub = publishTree(homeA, ['--ipns', 'team']);
      const name = /^ipns:\/\/(k51\w+)$/m.exec(pub.stdout)?.[1];
      assert.ok(name, pub.stdout);
      assert.match(pub.stdout, /^ipfs:\/\/Qm\w+$/m);
      const b = machineB();
      const env = {
        PEERPKGS_HOME: path.join(s.dir, 'b-home'),
        PKG_CACHE_URL: `ipns://${name}`,
        PKG_IPFS_PEERS: a.addr,
        PKG_TRUSTED_KEYS: path.join(homeA, 'keys/team.pub'),
        PKG_FORCE_BINARY: 'yes',
      };
      const r = run(b, 'build-packages-ifchange', ['./pkg/b'], env);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`b: substituted from ipns://${name} \\(signed by ed25519:[0-9a-f]{16}\\)`));
      assert.match(r.stderr, /a: substituted from ipns:/);
      assert.doesNotMatch(r.stderr, /sandbox root/, 'nothing was built');
      assert.equal(read(b, 'pkg/b/.pkg.tar.gz.sha256').split(' ')[0], read(path.join(s.dir, 'tree'), 'pkg/b/.pkg.tar.gz.sha256').split(' ')[0]);
    });

    /**
     * A publishes the tree to IPFS; B, whose node does not listen and names
     * no peer, cannot reach it (`missing`), and then, with `reach` in its
     * environment, substitutes a and b from it, building nothing.
     */
    async function onlyThrough(o: {
      a: NodeJS.ProcessEnv;
      timeout: number;
      missing: (cid: string) => RegExp;
      why: string;
      reach: (a: Awaited<ReturnType<typeof daemon>>) => NodeJS.ProcessEnv;
    }) {
      const homeA = path.join(s.dir, 'a');
      const a = await daemon(homeA, o.a);
      const pub = publishTree(homeA, ['--ipfs']);
      const cid = /^ipfs:\/\/(Qm\w+)$/m.exec(pub.stdout)![1]!;
      const b = machineB();
      const env = {
        PKG_CACHE_URL: `ipfs://${cid}`,
        PKG_TRUSTED_KEYS: path.join(homeA, 'keys/team.pub'),
        PKG_FORCE_BINARY: 'yes',
        PKG_IPFS_TIMEOUT: String(o.timeout),
      };
      const without = run(b, 'build-packages-ifchange', ['./pkg/b'], { ...env, PEERPKGS_HOME: path.join(s.dir, 'c-home') });
      assert.notEqual(without.status, 0, o.why);
      assert.match(without.stderr, o.missing(cid));
      const r = run(b, 'build-packages-ifchange', ['./pkg/b'], { ...env, ...o.reach(a), PEERPKGS_HOME: path.join(s.dir, 'b-home') });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`b: substituted from ipfs://${cid} \\(signed by ed25519:[0-9a-f]{16}\\)`));
      assert.match(r.stderr, new RegExp(`a: substituted from ipfs://${cid}`));
      assert.doesNotMatch(r.stderr, /sandbox root/, 'nothing was built');
      for (const p of ['a', 'b']) {
        assert.equal(read(b, `pkg/${p}/.pkg.tar.gz.sha256`).split(' ')[0], read(path.join(s.dir, 'tree'), `pkg/${p}/.pkg.tar.gz.sha256`).split(' ')[0]);
      }
    }

    it("B substitutes from A's ipfs:// cache through A's trustless gateway, with no libp2p connection between them", () =>
      onlyThrough({
        a: { PKG_IPFS_GATEWAY_LISTEN: '/ip4/127.0.0.1/tcp/0' },
        timeout: 2,
        why: 'without the gateway the cache cannot be reached',
        missing: (cid) => new RegExp(`warning: a: ipfs://${cid}: .*could not find .* on any connected peer within 2 s`),
        reach: (a) => ({ PKG_IPFS_GATEWAYS: a.gateway }),
      }));

    it("B, which names no peer, finds A on the local network by mDNS and substitutes from A's ipfs:// cache", () =>
      // no gateway, no DHT: a multicast query is the only way to A
      onlyThrough({
        a: { PKG_IPFS_MDNS: 'yes' },
        timeout: 5,
        why: 'without mDNS nobody says where A is',
        missing: () => /could not find .* on any connected peer within 5 s \(peers: none connected/,
        reach: () => ({ PKG_IPFS_MDNS: 'yes' }),
      }));

    it('cache publish writes the catalog anew, signed, a generation up each time, and search finds its packages over ipfs://', async () => {
      const homeA = path.join(s.dir, 'a');
      const a = await daemon(homeA);
      assert.match(publishTree(homeA, []).stdout, /^catalog: generation 1, 2 entries/m);
      const publish = (more: string[] = ['--sign-key', 'team']) => run(s.dir, 'peerpkgs', ['cache', 'publish', 'cache', ...more], { PEERPKGS_HOME: homeA });
      const first = publish();
      assert.equal(first.status, 0, first.stderr);
      const [, cid] = /^catalog: generation 2, 2 entries, expires \S+\nipfs:\/\/(Qm\w+)\n$/.exec(first.stdout) ?? [];
      assert.ok(cid, first.stdout);
      const user = (args: string[]) =>
        run(s.dir, 'peerpkgs', args, {
          PEERPKGS_HOME: path.join(s.dir, 'b-home'),
          PKG_CACHE_URL: `ipfs://${cid}`,
          PKG_IPFS_PEERS: a.addr,
          PKG_TRUSTED_KEYS: path.join(homeA, 'keys/team.pub'),
        });
      const found = user(['search', 'b']);
      assert.equal(found.status, 0, found.stderr);
      assert.match(found.stdout, new RegExp(`^b\\s.*ipfs://${cid}$`, 'm'));
      assert.match(user(['info', 'b']).stdout, /catalog generation 2, signed by ed25519:[0-9a-f]{16}/);
      const second = publish();
      assert.equal(second.status, 0, second.stderr);
      assert.match(second.stdout, /^catalog: generation 3, 2 entries/m);
      // a signed catalog is not silently replaced by an unsigned one
      const unsigned = publish([]);
      assert.equal(unsigned.status, 2);
      assert.match(
        unsigned.stderr,
        /^peerpkgs cache publish: \S+\/cache\/catalog is signed by ed25519:[0-9a-f]{16}: sign its next generation too \(--sign-key NAME\), or move it away to publish the cache unsigned/,
      );
      assert.match(fs.readFileSync(path.join(s.dir, 'cache/catalog'), 'utf8'), /^generation: 3$/m, 'the refused publish changed nothing');
    });

    it('an entry missing from a reachable ipfs:// directory is a miss; an unreachable root is a warning naming the cache', async () => {
      const homeA = path.join(s.dir, 'a');
      const a = await daemon(homeA);
      const pub = publishTree(homeA, ['--ipfs']);
      const cid = /^ipfs:\/\/(Qm\w+)$/m.exec(pub.stdout)![1]!;
      const b = machineB();
      // a package the cache does not have
      write(b, simplePackage('c', 'c'));
      const env = {
        PEERPKGS_HOME: path.join(s.dir, 'b-home'),
        PKG_IPFS_PEERS: a.addr,
        PKG_IPFS_TIMEOUT: '2',
        PKG_TRUSTED_KEYS: path.join(homeA, 'keys/team.pub'),
        PKG_FORCE_BINARY: 'yes',
      };
      const miss = run(b, 'build-packages-ifchange', ['./pkg/c'], { ...env, PKG_CACHE_URL: `ipfs://${cid}` });
      assert.notEqual(miss.status, 0);
      assert.match(miss.stderr, new RegExp(`c: no cache has a usable binary package[^\\n]*\\n\\s+ipfs://${cid}: not there`));
      assert.doesNotMatch(miss.stderr, /warning/);
      // a root nobody has, then the good cache: a warning naming the first, and the package from the second
      const nobody = 'QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n';
      const r = run(b, 'build-packages-ifchange', ['./pkg/b'], { ...env, PKG_CACHE_URL: `ipfs://${nobody} ipfs://${cid}` });
      assert.equal(r.status, 0, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`warning: b: ipfs://${nobody}: .*could not find ${nobody}/\\w+\\.info on any connected peer within 2 s \\(peers: ${a.peerId}\\).*; trying ipfs://${cid}`),
      );
      assert.match(r.stderr, new RegExp(`b: substituted from ipfs://${cid}`));
    });
  });
});
