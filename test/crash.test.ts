/**
 * Fault injection: commands killed with SIGKILL at random moments (while
 * fetching, building, packing, unpacking, substituting from a cache,
 * publishing to one), each followed by the same command run normally, as
 * a user would after a crash. Each time the outputs must be those of a
 * clean build, nothing partial may be visible, and no temporary may be
 * left. The moments come from a seeded generator: CRASH_SEED=N replays a
 * run (the seed is printed); CRASH_VERBOSE=1 says what each kill cut short.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { BIN, scratch, write, run, userEnv, busyboxHttpd, deadOwnersTemporary, processState, type Run } from './helpers.ts';
import { makeSeedTarball, writeSeedPackage } from './seed.ts';

const KILLS = Number(process.env.CRASH_KILLS ?? 20);

/** mulberry32: small, and the same numbers for the same seed everywhere. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Every name a writer gives a temporary, today's pattern and the ones before it. */
const TEMPORARY = /\.tmp-\d+-\d+-[0-9a-f]{8}-[0-9a-f]{8}$|\.tmp[.-]\d+|^\.unpack-|\.redo\.tmp|\.cache-\d+-|^\.export-|\.old-/;

function temporariesUnder(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (TEMPORARY.test(e.name)) found.push(path.relative(root, p));
      // an unpacked output or a root is whole or absent: no need to go in
      else if (e.isDirectory() && !/^[0-9a-f]{32,64}$/.test(e.name)) walk(p);
    }
  };
  if (fs.existsSync(root)) walk(root);
  return found;
}

/** rm -rf, read-only directories and all. */
function removeAll(dir: string): void {
  if (!fs.existsSync(dir)) return;
  execFileSync('chmod', ['-R', 'u+w', dir]);
  fs.rmSync(dir, { recursive: true, force: true });
}

/** The sha256 of the uncompressed archive: an output's identity. */
function outputSha(archive: string): string {
  return sha256(zlib.gunzipSync(fs.readFileSync(archive)));
}

describe('crashes leave nothing wrong and nothing behind', function () {
  this.timeout(600_000);
  let shared: { dir: string; cleanup: () => void };
  let www: { url: string; stop(): Promise<void> };
  let seedSha: string;
  let srcSha: string;
  /** package name -> output sha256 of a clean build */
  const clean = new Map<string, string>();
  let built: string; // a tree built cleanly, and its home
  let builtHome: string;
  let cache: string; // a cache holding c and its run closure
  const took = { build: 0, substitute: 0, publish: 0 };
  /** when each command starts the work worth killing: before, it has done nothing yet */
  const starts = { build: 0, substitute: 0, publish: 0 };

  /** The tree: a source fetched over HTTP, a package built from it, one built on that, one that needs the second at run time. */
  function writeTree(dir: string): void {
    writeSeedPackage(dir, www.url, seedSha);
    write(dir, {
      'pkg/a/fetch': `url: ${www.url}/src.tar.gz\nsha256: ${srcSha}\n`,
      'pkg/a/build-deps': '../seed\n',
      '!pkg/a/build': '#!/bin/sh\nset -e\ntar xzf src.tar.gz\nmkdir -p "$DESTDIR/share/a"\ncp -r data "$DESTDIR/share/a/"\n',
      'pkg/b/build-deps': '../seed\n../a\n',
      '!pkg/b/build': '#!/bin/sh\nset -e\nmkdir -p "$DESTDIR/share/b"\ncp -r /share/a/data "$DESTDIR/share/b/"\ncat /share/a/data/* | sha256sum >"$DESTDIR/share/b/sum"\n',
      'pkg/c/build-deps': '../seed\n',
      'pkg/c/run-deps': '../b\n',
      '!pkg/c/build': '#!/bin/sh\nset -e\nmkdir -p "$DESTDIR/bin"\nprintf "#!/bin/sh\\necho c\\n" >"$DESTDIR/bin/c"\nchmod 755 "$DESTDIR/bin/c"\n',
    });
  }

  before(async () => {
    shared = scratch();
    const wwwDir = path.join(shared.dir, 'www');
    fs.mkdirSync(wwwDir);
    seedSha = await makeSeedTarball(wwwDir);
    // 2 MB that gzip cannot shrink, in 32 files: enough for each phase to take a while
    const src = path.join(shared.dir, 'src');
    const bytes = generator(1);
    for (let i = 0; i < 32; i++) {
      const b = Buffer.alloc(64 << 10);
      for (let j = 0; j < b.length; j += 4) b.writeUInt32LE(Math.floor(bytes() * 2 ** 32), j);
      write(src, { [`data/f${i}`]: '' });
      fs.writeFileSync(path.join(src, `data/f${i}`), b);
    }
    execFileSync('tar', ['-czf', path.join(wwwDir, 'src.tar.gz'), '-C', src, 'data']);
    srcSha = sha256(fs.readFileSync(path.join(wwwDir, 'src.tar.gz')));
    www = await busyboxHttpd(wwwDir);

    let t = performance.now();
    run(shared.dir, 'peerpkgs', ['--help']);
    starts.build = starts.substitute = performance.now() - t;
    // the reference: a clean build, a cache made from it, and how long each takes
    built = path.join(shared.dir, 'built');
    builtHome = path.join(shared.dir, 'built-home');
    writeTree(built);
    t = performance.now();
    const r = run(built, 'build-packages-ifchange', ['./pkg/c', './pkg/b'], { PEERPKGS_HOME: builtHome });
    took.build = performance.now() - t;
    assert.equal(r.status, 0, r.stderr);
    for (const p of ['seed', 'a', 'b', 'c']) clean.set(p, outputSha(path.join(built, 'pkg', p, '.pkg.tar.gz')));
    t = performance.now();
    run(built, 'build-packages-ifchange', ['./pkg/c'], { PEERPKGS_HOME: builtHome });
    starts.publish = performance.now() - t; // add-to-package-cache builds first: nothing to do here
    cache = path.join(shared.dir, 'cache');
    t = performance.now();
    const pub = run(built, 'add-to-package-cache', ['-o', cache, './pkg/c'], { PEERPKGS_HOME: builtHome });
    took.publish = performance.now() - t;
    assert.equal(pub.status, 0, pub.stderr);
    const other = path.join(shared.dir, 'substituted');
    writeTree(other);
    t = performance.now();
    const sub = run(other, 'build-packages-ifchange', ['./pkg/c'], { PEERPKGS_HOME: path.join(shared.dir, 'sub-home'), PKG_CACHE_URL: `file://${cache}` });
    took.substitute = performance.now() - t;
    assert.equal(sub.status, 0, sub.stderr);
    assert.match(sub.stderr, /substituted from/);
  });

  after(async () => {
    await www?.stop();
    if (shared) {
      removeAll(shared.dir);
      shared.cleanup();
    }
  });

  /** Start a command in its own process group, so that a kill reaches the tools it runs too. */
  function startGroup(cwd: string, cmd: string, args: string[], env: NodeJS.ProcessEnv) {
    const p = spawn(path.join(BIN, cmd), args, { cwd, env: userEnv(env), detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => p.on('close', (code) => r(code)));
    return { p, exited, stderr: () => stderr };
  }

  /** Waits for every process of the group to be gone; one that outlives the
   * build by 30 s is killed, and the test fails rather than hang the run. */
  async function groupGone(pgid: number): Promise<void> {
    const until = Date.now() + 30_000;
    for (;;) {
      try {
        process.kill(-pgid, 0);
      } catch {
        return;
      }
      if (Date.now() > until) {
        const left = execFileSync('ps', ['-o', 'pid=,args=', '-g', String(pgid)], { encoding: 'utf8' }).trim();
        process.kill(-pgid, 'SIGKILL');
        assert.fail(`processes of the stopped build outlived it by 30 s:\n${left}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** What a user sees after the rerun: each output a clean build's, and no half-made file anywhere. */
  function check(what: string, tree: string, home: string, pkgs: string[], caches: string[], rerun: Run): void {
    assert.equal(rerun.status, 0, `${what}: the rerun failed:\n${rerun.stderr}`);
    for (const p of pkgs) {
      const archive = path.join(tree, 'pkg', p, '.pkg.tar.gz');
      assert.equal(outputSha(archive), clean.get(p), `${what}: pkg/${p}'s output is not a clean build's`);
      assert.equal(fs.readFileSync(`${archive}.sha256`, 'utf8').split(' ')[0], clean.get(p), `${what}: pkg/${p}'s recorded sha256`);
    }
    const distfiles = path.join(home, 'distfiles');
    for (const n of fs.existsSync(distfiles) ? fs.readdirSync(distfiles) : []) {
      if (n.startsWith('.')) continue;
      assert.equal(sha256(fs.readFileSync(path.join(distfiles, n))), n, `${what}: distfile ${n} is not what its name says`);
    }
    const outputs = path.join(home, 'outputs');
    for (const n of fs.existsSync(outputs) ? fs.readdirSync(outputs) : []) {
      // an output's tree, and beside it the manifest and archive path it was unpacked from
      const out = n.replace(/\.(manifest|archive)$/, '');
      if (!n.startsWith('.')) assert.ok([...clean.values()].includes(out), `${what}: outputs/${n} is no output of the tree`);
    }
    for (const c of caches) {
      for (const n of fs.readdirSync(c).filter((f) => f.endsWith('.info'))) {
        const info = fs.readFileSync(path.join(c, n), 'utf8');
        const archive = fs.readFileSync(path.join(c, n.replace(/\.info$/, '.tar.gz')));
        assert.equal(archive.length, Number(/^archive-size: (\d+)$/m.exec(info)?.[1]), `${what}: ${n}'s archive is not whole`);
        assert.equal(sha256(archive), /^archive-sha256: ([0-9a-f]{64})$/m.exec(info)?.[1], `${what}: ${n}'s archive`);
      }
    }
    const left = [tree, home, ...caches].flatMap((d) => temporariesUnder(d).map((t) => path.join(path.basename(d), t)));
    assert.deepEqual(left, [], `${what}: temporaries left`);
    // the rerun built again each package whose build was killed: their work directories went with it
    const work = path.join(home, 'build');
    assert.deepEqual(fs.existsSync(work) ? fs.readdirSync(work) : [], [], `${what}: work directories left`);
  }

  it('a writer sweeps the temporaries of dead owners, never those of a live one', () => {
    const home = path.join(shared.dir, 'sweep-home');
    const store = path.join(home, 'distfiles');
    fs.mkdirSync(store, { recursive: true });
    const stat = fs.readFileSync('/proc/self/stat', 'latin1');
    const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    // where our pids mean something, as archive/temporary.ts names it: FNV-1a of the host and pid namespace
    let h = 0x811c9dc5;
    for (const c of Buffer.from(`${os.hostname()} ${fs.readlinkSync('/proc/self/ns/pid')}`)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
    const here = h.toString(16).padStart(8, '0');
    const elsewhere = ((h ^ 1) >>> 0).toString(16).padStart(8, '0');
    const dead = spawnSync('true').pid!; // waited for: gone
    const names = {
      live: `.distfile.tmp-${process.pid}-${start}-${here}-0000000a`,
      dead: `.distfile.tmp-${dead}-${start}-${here}-0000000b`,
      reused: `.distfile.tmp-${process.pid}-${start + 1}-${here}-0000000c`, // our pid, another process's start
      otherHost: `.distfile.tmp-${dead}-${start}-${elsewhere}-0000000d`, // whether it lives cannot be told here
    };
    for (const n of Object.values(names)) fs.writeFileSync(path.join(store, n), 'half');
    const file = path.join(shared.dir, 'some-source');
    fs.writeFileSync(file, 'a source\n');
    const r = run(shared.dir, 'peerpkgs', ['distfiles', 'add', file], { PEERPKGS_HOME: home });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(
      fs
        .readdirSync(store)
        .filter((n) => n.startsWith('.'))
        .sort(),
      [names.live, names.otherHost].sort(),
    );
  });

  it("keeps a failed build's work directory until the package is built again", () => {
    const dir = path.join(shared.dir, 'failed');
    const tree = path.join(dir, 'tree');
    const home = path.join(dir, 'home');
    writeTree(tree);
    write(tree, { '!pkg/c/build': '#!/bin/sh\necho half >made-so-far\nexit 3\n' });
    const env = { PEERPKGS_HOME: home };
    const failed = run(tree, 'build-packages-ifchange', ['./pkg/c'], env);
    assert.equal(failed.status, 3, failed.stderr);
    const kept = /its files are kept in (\S+) until it is built again/.exec(failed.stderr)?.[1];
    assert.ok(kept, failed.stderr);
    assert.equal(fs.readFileSync(path.join(kept, 'home/made-so-far'), 'utf8'), 'half\n');
    assert.equal(run(tree, 'build-packages-ifchange', ['./pkg/b'], env).status, 0);
    assert.ok(fs.existsSync(kept), "another package's build removed it");
    writeTree(tree);
    const again = run(tree, 'build-packages-ifchange', ['./pkg/c'], env);
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(fs.readdirSync(path.join(home, 'build')), []);
    removeAll(dir);
  });

  it('a rerun with nothing to build still removes the worker output a killed build left in .redo/tmp', () => {
    const dir = path.join(shared.dir, 'noop-sweep');
    const tree = path.join(dir, 'tree');
    const env = { PEERPKGS_HOME: path.join(dir, 'home') };
    writeTree(tree);
    const built = run(tree, 'build-packages-ifchange', ['./pkg/c'], env);
    assert.equal(built.status, 0, built.stderr);
    // what a worker's stdout file is named, its engine SIGKILLed after the last build
    const left = deadOwnersTemporary(path.join(tree, '.redo/tmp/out'));
    fs.writeFileSync(left, 'half a line');
    const noop = run(tree, 'build-packages-ifchange', ['./pkg/c'], env);
    assert.equal(noop.status, 0, noop.stderr);
    assert.doesNotMatch(noop.stderr, /: built\b/);
    assert.equal(fs.existsSync(left), false, `${path.basename(left)} is still there`);
    removeAll(dir);
  });

  it("the redo engine's socket directory, left in $TMPDIR by a SIGKILL, goes with the next engine's run", async () => {
    const dir = path.join(shared.dir, 'engine-socket');
    const tmp = path.join(dir, 'tmp');
    fs.mkdirSync(tmp, { recursive: true });
    // all.do runs a real redo-ifchange, which talks to the engine through its socket
    write(dir, {
      'all.do': 'redo-ifchange part\necho "$REDO_ENGINE" >../engine-path\nexec sleep 60\n',
      'part.do': 'echo part\n',
    });
    const killed = startGroup(dir, 'redo', ['all'], { TMPDIR: tmp });
    const told = path.join(shared.dir, 'engine-path');
    while (!fs.existsSync(told) || fs.readFileSync(told, 'utf8') === '') await new Promise((r) => setTimeout(r, 20));
    process.kill(-killed.p.pid!, 'SIGKILL');
    await killed.exited;
    await groupGone(killed.p.pid!);
    const socketDir = path.dirname(fs.readFileSync(told, 'utf8').trim());
    assert.equal(path.dirname(socketDir), tmp, 'the engine did not make its socket in $TMPDIR');
    assert.ok(fs.existsSync(socketDir), 'the SIGKILL left nothing to sweep: the test tests nothing');
    write(dir, { 'all.do': 'redo-ifchange part\necho done\n' });
    const rerun = run(dir, 'redo', ['all'], { TMPDIR: tmp });
    assert.equal(rerun.status, 0, rerun.stderr);
    assert.equal(fs.existsSync(socketDir), false, `${path.basename(socketDir)} is still in $TMPDIR`);
    assert.deepEqual(temporariesUnder(tmp), [], 'left in $TMPDIR');
    fs.rmSync(told);
    removeAll(dir);
  });
  for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
    it(`a build stopped by ${signal} removes its own temporaries before it exits`, async () => {
      const dir = path.join(shared.dir, `signal-${signal}`);
      const tree = path.join(dir, 'tree');
      const home = path.join(dir, 'home');
      writeTree(tree);
      write(tree, { '!pkg/a/build': '#!/bin/sh\nset -e\ntar xzf src.tar.gz\nmkdir -p "$DESTDIR/share/a"\ncp -r data "$DESTDIR/share/a/"\nsleep 60\n' });
      const b = startGroup(tree, 'build-packages-ifchange', ['./pkg/a'], { PEERPKGS_HOME: home });
      const work = path.join(home, 'build');
      while (!(fs.existsSync(work) && fs.readdirSync(work).length > 0)) await new Promise((r) => setTimeout(r, 20));
      // the build is in its sandbox, its work directory made and filled
      b.p.kill(signal);
      const hung = new Promise<'hung'>((r) => setTimeout(() => r('hung'), 60_000).unref());
      const status = await Promise.race([b.exited, hung]);
      if (status === 'hung') process.kill(-b.p.pid!, 'SIGKILL'); // fail, and do not hang the run
      assert.notEqual(status, 'hung', `the build did not exit within 60 s of ${signal}:\n${b.stderr()}`);
      assert.notEqual(status, 0, b.stderr());
      assert.deepEqual(fs.readdirSync(work), [], `the work directory is left:\n${b.stderr()}`);
      assert.deepEqual([...temporariesUnder(tree), ...temporariesUnder(home)], []);
      await groupGone(b.p.pid!);
      removeAll(dir);
    });
  }

  it('a temporary named while the process stops, after its own were removed, goes when it exits', () => {
    // a build whose sandbox starts as the signal comes opens its log then
    const dir = path.join(shared.dir, 'late-temporary');
    fs.mkdirSync(dir, { recursive: true });
    const module = path.resolve('src/archive/temporary.ts');
    const script = `
      import * as fs from 'node:fs';
      const t = await import(${JSON.stringify(module)});
      await t.removeOwnTemporaries();
      const late = t.temporaryName(${JSON.stringify(path.join(dir, 'log.gz'))}, { sweep: false });
      fs.writeFileSync(late, 'half a log');
      console.log(fs.readdirSync(${JSON.stringify(dir)}).length);
      process.exit(143);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 143, r.stderr);
    assert.equal(r.stdout.trim(), '1', 'the temporary was not written');
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('a process started by work under way while the build stops is stopped too, before the build exits', () => {
    // a child that outlives SIGTERM for a moment and starts another then:
    // looked for once, the late one would be left running
    const dir = path.join(shared.dir, 'late-process');
    fs.mkdirSync(dir, { recursive: true });
    const late = path.join(dir, 'late.pid');
    const module = path.resolve('src/engine/stop.ts');
    const child = `trap '' TERM; sleep 0.3; sleep 60 & echo $! > ${late}.tmp; mv ${late}.tmp ${late}; wait`;
    const script = `
      import { spawn } from 'node:child_process';
      import * as fs from 'node:fs';
      const { stopDescendants } = await import(${JSON.stringify(module)});
      spawn('sh', ['-c', ${JSON.stringify(child)}], { stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 100));
      await stopDescendants(); // SIGKILL for what still runs after 2 s: the late one comes at 0.3 s
      console.log(fs.existsSync(${JSON.stringify(late)}) ? fs.readFileSync(${JSON.stringify(late)}, 'utf8').trim() : '');
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const pid = Number(r.stdout.trim());
    assert.ok(pid > 0, 'the late process was not started: the test tests nothing');
    // gone, or a zombie waiting for whoever adopted it to reap it
    const state = processState(pid);
    if (state !== 'gone' && state !== 'Z') process.kill(pid, 'SIGKILL');
    assert.ok(state === 'gone' || state === 'Z', `the process started after the stop began outlived it (state ${state})`);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Runs `script` (which starts sandboxes marked `mark` and stops them)
   * in a process of its own; returns the marked processes still running
   * after it, killed so as not to outlive the test. */
  function stopInChild(script: string, mark: string): string[] {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const left = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes(mark));
    for (const l of left) process.kill(Number(l.trim().split(' ')[0]), 'SIGKILL');
    return left;
  }

  it('a sandbox stopped at any moment of its start leaves none of its processes running', () => {
    // bwrap's sandbox init waits on the outer bwrap through its start, and
    // asks to die with it only after: signalled together, the outer one
    // died first and left the init running, adopted by the system
    const mark = `stopped-sandbox-${process.pid}`;
    const module = path.resolve('src/engine/stop.ts');
    const argv = ['--unshare-user', '--unshare-net', '--unshare-ipc', '--unshare-pid', '--unshare-uts', '--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev'];
    const script = `
      import { spawn } from 'node:child_process';
      const { stopDescendants } = await import(${JSON.stringify(module)});
      for (let i = 0; i < 60; i++) {
        spawn('bwrap', [...${JSON.stringify(argv)}, '--die-with-parent', '--new-session', '--setenv', 'MARK', ${JSON.stringify(mark)}, '--', 'sleep', '60'], { stdio: 'ignore' });
        // stopped 0 to 6 ms into its start: the outer bwrap before, during and after its clone
        const until = performance.now() + (i % 40) * 0.15;
        while (performance.now() < until);
        await stopDescendants();
      }
    `;
    assert.deepEqual(stopInChild(script, mark), [], 'sandbox processes outlived the stop');
  });

  it('a process that traps SIGTERM and starts sandboxes as the build stops leaves none of them running', () => {
    // what it starts after the first signal is as young as any sandbox at
    // the first, and is frozen before it is signalled, as they were
    const mark = `trapping-sandbox-${process.pid}`;
    const module = path.resolve('src/engine/stop.ts');
    const bwrap = `bwrap --unshare-user --unshare-net --unshare-pid --ro-bind / / --proc /proc --dev /dev --die-with-parent --new-session --setenv MARK ${mark} -- sleep 60`;
    const script = `
      import { spawn } from 'node:child_process';
      const { stopDescendants } = await import(${JSON.stringify(module)});
      for (let i = 0; i < 3; i++) {
        spawn('sh', ['-c', ${JSON.stringify(`trap : TERM; while :; do ${bwrap} & sleep 0.01; done`)}], { stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 100));
        await stopDescendants();
      }
    `;
    assert.deepEqual(stopInChild(script, mark), [], 'sandbox processes outlived the stop');
  });

  it('no sandbox starts once the process is stopping on a signal', () => {
    const script = `
      const t = await import(${JSON.stringify(path.resolve('src/archive/temporary.ts'))});
      const { runSandboxed } = await import(${JSON.stringify(path.resolve('src/sandbox/bwrap.ts'))});
      t.interrupting();
      await runSandboxed({ root: '/', work: '/tmp', destdir: '/tmp', argv: ['true'] }).then(
        () => console.log('started'),
        (e) => console.log(e.message),
      );
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'sandbox: not started: peerpkgs is stopping on a signal');
  });

  it(`after each of ${KILLS} kills at random moments, a rerun gives a clean build's outputs and leaves nothing behind`, async () => {
    const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
    process.stdout.write(`      crash seed: ${seed} (replay with CRASH_SEED=${seed})\n`);
    const rand = generator(seed);
    const modes = ['build', 'build', 'substitute', 'publish'] as const;
    for (let i = 0; i < KILLS; i++) {
      const mode = modes[Math.floor(rand() * modes.length)]!;
      const dir = path.join(shared.dir, `run-${i}`);
      let tree = path.join(dir, 'tree');
      let home = path.join(dir, 'home');
      let cmd = 'build-packages-ifchange';
      let args = ['./pkg/c', './pkg/b'];
      let env: NodeJS.ProcessEnv = { PEERPKGS_HOME: home };
      let pkgs = ['seed', 'a', 'b', 'c'];
      const caches: string[] = [];
      if (mode === 'substitute') {
        args = ['./pkg/c'];
        env = { ...env, PKG_CACHE_URL: `file://${cache}` };
        pkgs = ['b', 'c'];
        caches.push(cache);
      }
      if (mode === 'publish') {
        // into a new cache, from the tree built before
        tree = built;
        home = builtHome;
        cmd = 'add-to-package-cache';
        args = ['-o', path.join(dir, 'cache'), './pkg/c'];
        env = { PEERPKGS_HOME: home };
        caches.push(path.join(dir, 'cache'));
      } else {
        writeTree(tree);
      }
      // publishing starts by making the cache directory: its moments are counted from there
      // (a few tens of ms for this small cache, less than the timings' noise)
      const at = mode === 'publish' ? rand() * Math.max(100, took.publish - starts.publish) : starts[mode] + rand() * Math.max(0, took[mode] - starts[mode]);
      const what = `kill ${i + 1} (${mode}, after ${at.toFixed(0)} ms)`;
      const killed = startGroup(tree, cmd, args, env);
      let exited = false;
      void killed.exited.then(() => (exited = true));
      while (mode === 'publish' && !exited && !fs.existsSync(caches[0]!)) await new Promise((r) => setTimeout(r, 2));
      const finished = await Promise.race([killed.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), at))]);
      if (!finished) {
        process.kill(-killed.p.pid!, 'SIGKILL');
        await killed.exited;
        await groupGone(killed.p.pid!);
      }
      // CRASH_VERBOSE=1: what each kill interrupted, by the last line the command wrote
      if (process.env.CRASH_VERBOSE) process.stdout.write(`      ${what}: ${finished ? 'finished first' : JSON.stringify(killed.stderr().trim().split('\n').pop() ?? '')}\n`);
      const rerun = run(tree, cmd, args, env);
      check(what, tree, home, pkgs, caches, rerun);
      if (mode !== 'publish') removeAll(dir);
    }
  });
});
