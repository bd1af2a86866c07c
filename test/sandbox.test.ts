/**
 * The build sandbox as a package build meets it: a root merged from
 * unpacked outputs (busybox and a small second layer), run in a real bwrap.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { assembleRoot, RootConflictError, type Layer } from '../src/sandbox/root.ts';
import { bwrapArgs, runSandboxed, sandboxEnv, type SandboxOptions } from '../src/sandbox/bwrap.ts';
import { REPO, scratch, write, read } from './helpers.ts';

const APPLETS = ['sh', 'cat', 'ls', 'id', 'hostname', 'wget', 'nc', 'touch', 'env', 'head', 'printf', 'mkdir', 'echo', 'true', 'test', 'pwd', 'chmod', 'rm', 'mv', 'wc'];

/** An unpacked output holding busybox and its applets in bin/. */
function busyboxLayer(dir: string): Layer {
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.copyFileSync('/usr/bin/busybox', path.join(dir, 'bin/busybox'));
  for (const a of APPLETS) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
  return { dir, id: 'busybox-1' };
}

function helloLayer(dir: string): Layer {
  write(dir, { 'usr/share/hello/greeting': 'hello from a layer\n', '!usr/bin/hello': '#!/bin/sh\ncat /usr/share/hello/greeting\n' });
  return { dir, id: 'hello-1' };
}

describe('sandbox', function () {
  let base: string;
  let cleanupBase: () => void;
  let layers: Layer[];
  let root: string;
  let dir: string;
  let cleanup: () => void;
  let work: string;
  let destdir: string;

  before(() => {
    ({ dir: base, cleanup: cleanupBase } = scratch());
    layers = [busyboxLayer(path.join(base, 'out/busybox')), helloLayer(path.join(base, 'out/hello'))];
    root = assembleRoot(path.join(base, 'home'), layers).root;
  });
  after(() => cleanupBase());
  beforeEach(() => {
    ({ dir, cleanup } = scratch());
    work = path.join(dir, 'tree/pkg/hello/work');
    destdir = path.join(dir, 'tree/pkg/hello/destdir');
    fs.mkdirSync(work, { recursive: true });
    fs.mkdirSync(destdir);
  });
  afterEach(() => cleanup());

  /** Runs `script` as the package's build script; its output (stdout and stderr, in order) is returned. */
  async function build(script: string, extra: Partial<SandboxOptions> = {}) {
    write(work, { build: script });
    const lines: string[] = [];
    const r = await runSandboxed({ root, work, destdir, argv: ['/bin/sh', '-e', './build'], onLine: (l) => lines.push(`${l}\n`), ...extra });
    return { ...r, output: lines.join('') };
  }

  describe('the root', () => {
    it("holds every layer's files", async () => {
      const r = await build('hello\ntest -x /bin/busybox');
      assert.equal(r.status, 0, r.output);
      assert.equal(r.output, 'hello from a layer\n');
    });

    it("links the layers' files instead of copying them", () => {
      const inLayer = fs.statSync(path.join(layers[0]!.dir, 'bin/busybox'));
      const inRoot = fs.statSync(path.join(root, 'bin/busybox'));
      assert.equal(inRoot.ino, inLayer.ino);
    });

    it('copies the files of a layer on another filesystem', function () {
      const shm = '/dev/shm';
      if (!fs.existsSync(shm) || fs.statSync(shm).dev === fs.statSync(dir).dev) this.skip();
      const far = fs.mkdtempSync(path.join(shm, 'peerpkgs-test-'));
      try {
        write(far, { 'share/far': 'from tmpfs\n' });
        const made = assembleRoot(path.join(dir, 'home'), [...layers, { dir: far, id: 'far-1' }]);
        assert.equal(read(made.root, 'share/far'), 'from tmpfs\n');
      } finally {
        fs.rmSync(far, { recursive: true, force: true });
      }
    });

    it('is made once for a closure and reused by later builds', () => {
      const home = path.join(dir, 'home');
      const first = assembleRoot(home, layers);
      const again = assembleRoot(home, layers);
      assert.deepEqual([first.reused, again.reused, again.root], [false, true, first.root]);
    });

    it("is made anew when a layer's identity changes", () => {
      const home = path.join(dir, 'home');
      const first = assembleRoot(home, layers);
      const changed = assembleRoot(home, [layers[0]!, { ...layers[1]!, id: 'hello-2' }]);
      assert.equal(changed.reused, false);
      assert.notEqual(changed.root, first.root);
    });

    it('refuses two layers with different files at one path, naming both and the path', () => {
      const other: Layer = { dir: path.join(dir, 'out/other'), id: 'other-1' };
      write(other.dir, { 'usr/share/hello/greeting': 'a different greeting\n' });
      assert.throws(
        () => assembleRoot(path.join(dir, 'home'), [...layers, other]),
        (e: unknown) => e instanceof RootConflictError && e.message.includes('/usr/share/hello/greeting') && e.message.includes(layers[1]!.dir) && e.message.includes(other.dir),
      );
    });

    it('leaves no partial root behind after a conflict', () => {
      const other: Layer = { dir: path.join(dir, 'out/other'), id: 'other-1' };
      write(other.dir, { 'bin/sh': 'not busybox' });
      const home = path.join(dir, 'home');
      assert.throws(() => assembleRoot(home, [...layers, other]), RootConflictError);
      assert.deepEqual(fs.readdirSync(path.join(home, 'roots')), []);
    });

    it('accepts the same file in two layers', () => {
      const twin: Layer = { dir: path.join(dir, 'out/twin'), id: 'twin-1' };
      write(twin.dir, { 'usr/share/hello/greeting': 'hello from a layer\n', 'usr/share/twin': 'x' });
      fs.symlinkSync('busybox', path.join(twin.dir, 'usr/share/sh'));
      const made = assembleRoot(path.join(dir, 'home'), [...layers, twin]);
      assert.equal(read(made.root, 'usr/share/twin'), 'x');
    });

    it('refuses the same content at one path with another setuid bit, as an export does', () => {
      const other: Layer = { dir: path.join(dir, 'out/other'), id: 'other-1' };
      write(other.dir, { '!usr/bin/hello': '#!/bin/sh\ncat /usr/share/hello/greeting\n' });
      fs.chmodSync(path.join(other.dir, 'usr/bin/hello'), 0o4755);
      assert.throws(
        () => assembleRoot(path.join(dir, 'home'), [...layers, other]),
        (e: unknown) => e instanceof RootConflictError && e.path === 'usr/bin/hello',
      );
    });

    it("keeps a layer's hardlinks as hardlinks where it copies them from another filesystem", function () {
      const shm = '/dev/shm';
      if (!fs.existsSync(shm) || fs.statSync(shm).dev === fs.statSync(dir).dev) this.skip();
      const far = fs.mkdtempSync(path.join(shm, 'peerpkgs-test-'));
      try {
        write(far, { 'share/far': 'from tmpfs\n' });
        fs.linkSync(path.join(far, 'share/far'), path.join(far, 'share/also-far'));
        const { root: made } = assembleRoot(path.join(dir, 'home'), [...layers, { dir: far, id: 'far-1' }]);
        const [a, b] = ['share/far', 'share/also-far'].map((p) => fs.statSync(path.join(made, p)));
        assert.equal(a!.ino, b!.ino);
        assert.notEqual(a!.dev, fs.statSync(far).dev);
      } finally {
        fs.rmSync(far, { recursive: true, force: true });
      }
    });
  });

  describe('what the build sees', () => {
    it('runs in fresh user, network, IPC, PID and UTS namespaces', () => {
      const args = bwrapArgs({ root, work, destdir, argv: ['/bin/true'] });
      for (const ns of ['user', 'net', 'ipc', 'pid', 'uts']) assert.ok(args.includes(`--unshare-${ns}`), ns);
    });

    it('runs as the unprivileged user build on the host build', async () => {
      const r = await build('id -un; id -u; id -gn; hostname');
      assert.equal(r.status, 0, r.output);
      assert.equal(r.output, 'build\n1000\nbuild\nbuild\n');
    });

    // and PWD, which bwrap sets on --chdir as any shell would
    it('has HOME, PATH, TMPDIR, DESTDIR and SOURCE_DATE_EPOCH set, and nothing else', async () => {
      const lines: string[] = [];
      await runSandboxed({ root, work, destdir, argv: ['/bin/env'], env: { SOURCE_DATE_EPOCH: '1700000000' }, onLine: (l) => lines.push(l.toString()) });
      const env = Object.fromEntries(lines.map((l) => l.split('=', 2)));
      assert.deepEqual(env, {
        HOME: '/home/build',
        PATH: '/bin:/usr/bin',
        TMPDIR: '/tmp',
        DESTDIR: '/destdir',
        SOURCE_DATE_EPOCH: '1700000000',
        PWD: '/home/build',
      });
    });

    it('starts in /home/build, holding what the caller put in the work directory', async () => {
      write(work, { 'make-1.0.tar.gz': 'sources', 'files/fix.patch': 'patch' });
      const r = await build('pwd; ls -A; cat files/fix.patch');
      assert.equal(r.status, 0, r.output);
      assert.equal(r.output, '/home/build\nbuild\nfiles\nmake-1.0.tar.gz\npatch\n');
    });

    it("leaves what it installs in $DESTDIR in the caller's destdir", async () => {
      const r = await build('mkdir -p "$DESTDIR/bin"; echo installed >"$DESTDIR/bin/tool"');
      assert.equal(r.status, 0, r.output);
      assert.equal(read(destdir, 'bin/tool'), 'installed\n');
    });

    it('may write to /home/build, /destdir and /tmp', async () => {
      const r = await build('for d in /home/build /destdir /tmp; do echo x >$d/written; done; cat /tmp/written');
      assert.equal(r.status, 0, r.output);
      assert.equal(r.output, 'x\n');
    });

    it('has a /tmp and a /dev/shm of the size it is given, and a read-only /dev', async () => {
      const r = await build('cat /dev/zero >/tmp/full || true\ncat /dev/zero >/dev/shm/full || true\necho x >/dev/new || true\nwc -c /tmp/full /dev/shm/full', {
        tmpBytes: 256 * 1024,
      });
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /^\s*262144 \/tmp\/full$/m);
      assert.match(r.output, /^\s*262144 \/dev\/shm\/full$/m);
      assert.match(r.output, /Read-only file system/);
    });

    it("reports the build script's exit status", async () => {
      const r = await build('exit 3');
      assert.deepEqual([r.status, r.signal], [3, null]);
    });
  });

  describe('what the build cannot do', () => {
    it("cannot write to /, /bin, /usr, /etc or a layer's file", async () => {
      const r = await build(
        'for p in /new /bin/new /usr/new /etc/new /etc/passwd /bin/busybox /usr/share/hello/greeting; do\n' + '  if echo x >>$p; then echo "wrote $p"; fi\n' + 'done 2>/dev/null',
      );
      assert.equal(r.status, 0, r.output);
      assert.equal(r.output, '');
      assert.equal(read(layers[1]!.dir, 'usr/share/hello/greeting'), 'hello from a layer\n');
    });

    it("finds nothing of the host's /etc but its own passwd and group", async () => {
      const r = await build('ls -A /etc');
      assert.equal(r.status, 0, r.output);
      assert.equal(r.output, 'group\npasswd\n');
    });

    it("finds nothing of the host's $HOME, of the tree outside its package or of the host's files", async () => {
      write(dir, { 'tree/pkg/other/secret': 'secret' });
      const paths = [os.homedir(), path.join(dir, 'tree/pkg/other/secret'), work, '/etc/hostname', '/usr/bin/busybox', '/root'];
      const r = await build(`for p in ${paths.join(' ')}; do if test -e $p; then echo "visible: $p"; fi; done; ls -A ..`);
      assert.equal(r.status, 0, r.output);
      assert.equal(r.output, 'build\n');
    });

    it("cannot connect to a server on the host's loopback", async () => {
      let connections = 0;
      const server = net.createServer((s) => {
        connections++;
        s.destroy();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as net.AddressInfo).port;
      try {
        const r = await build(`if nc 127.0.0.1 ${port} </dev/null; then echo nc connected; fi\n` + `if wget -q -T 2 -O- http://127.0.0.1:${port}/; then echo wget connected; fi`);
        assert.doesNotMatch(r.output, /^(nc|wget) connected$/m);
        assert.equal(connections, 0);
      } finally {
        server.close();
      }
    });

    it('gets no file the engine inherited by accident', () => {
      write(dir, { 'outside/secret': 'the-secret-bytes' });
      const leaked = fs.openSync(path.join(dir, 'outside'), 'r');
      const opts: SandboxOptions = { root, work, destdir, argv: ['/bin/sh', '-c', 'cat /proc/self/fd/20/secret'] };
      const engine = `import { runSandboxed } from ${JSON.stringify(path.join(REPO, 'src/sandbox/bwrap.ts'))};
        process.exit((await runSandboxed(JSON.parse(process.argv[1]))).status);`;
      // an engine started with fd 20 open on a host directory, not close-on-exec
      // (node itself sets close-on-exec on a few low fds at start-up)
      const stdio: Array<'ignore' | 'pipe' | number> = Array(21).fill('ignore');
      stdio[1] = stdio[2] = 'pipe';
      stdio[20] = leaked;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', engine, JSON.stringify(opts)], {
        stdio,
        encoding: 'utf8',
      });
      fs.closeSync(leaked);
      assert.notEqual(r.status, 0);
      assert.doesNotMatch(r.stdout + r.stderr, /the-secret-bytes/);
    });
  });

  describe('the jobserver', () => {
    it('reaches the build at the same fds, named by MAKEFLAGS and PKG_JOBSERVER', async () => {
      const fifo = path.join(dir, 'jobserver');
      execFileSync('mkfifo', [fifo]);
      const r = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      const w = fs.openSync(fifo, fs.constants.O_WRONLY);
      try {
        fs.writeSync(w, '+'); // a free slot
        // the build takes the slot and gives back one of its own
        const b = await build('IFS=, read -r R W <<EOF\n$PKG_JOBSERVER\nEOF\neval "head -c 1 <&$R"; eval "printf x >&$W"; echo " $MAKEFLAGS"', {
          makeflags: `-j3 --jobserver-auth=${r},${w}`,
          fds: [r, w],
        });
        assert.equal(b.status, 0, b.output);
        assert.equal(b.output, `+ -j3 --jobserver-auth=${r},${w}\n`);
        const back = Buffer.alloc(4);
        assert.equal(back.subarray(0, fs.readSync(r, back)).toString(), 'x');
      } finally {
        fs.closeSync(r);
        fs.closeSync(w);
      }
    });

    it('passes on only the jobserver flags of MAKEFLAGS', () => {
      const env = sandboxEnv({ makeflags: 'ks -j4 --jobserver-auth=7,8 -- CFLAGS=-O0' });
      assert.deepEqual([env.MAKEFLAGS, env.PKG_JOBSERVER], ['-j4 --jobserver-auth=7,8', '7,8']);
    });
  });

  it('says how to install bwrap when it is missing', async () => {
    await assert.rejects(runSandboxed({ root, work, destdir, argv: ['/bin/true'], bwrap: path.join(dir, 'no-bwrap') }), {
      message: 'bwrap not found: install bubblewrap (apt-get install bubblewrap)',
    });
  });
});
