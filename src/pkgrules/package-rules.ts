/**
 * What the package rules do (loaded by rules.ts on first use).
 *
 *   .pkghash     the canonical hash of the package's inputs: recomputed every
 *                run (cheap) and stamped, so dependents rebuild only when it
 *                really changes, whatever file was added under files/
 *   .closure     the transitive run-deps, one directory a line (relative)
 *   .bclosure    the build closure: build-deps and their closures
 *   .pkg.tar.gz  the build: sources fetched into the distfile store, the
 *                build closure built and unpacked, the build script run in
 *                a sandbox whose root is that closure, DESTDIR packed into
 *                a deterministic archive whose identity is recorded beside it
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RuleError, type BuildContext } from '../engine/rules.ts';
import { plural } from '../engine/log.ts';
import { PackageGraph } from '../tree/pkghash.ts';
import { TreeError } from '../tree/errors.ts';
import { homeLayout, peerpkgsHome } from '../store/home.ts';
import { formatSize, settings } from '../settings.ts';
import type { PackageTarget } from './rules.ts';
import { temporaryName, forget, keep, removeTemporary, sweepNow } from '../archive/temporary.ts';
import { PeerpkgsError, EXIT } from '../errors.ts';
// fetch, archive and sandbox are imported by the build itself: .pkghash runs
// every time and must not pay for them

/** One graph a run: packages are read once however many rules ask. */
let graph: PackageGraph | null = null;
let graphAt = 0;

export function packageGraph(): PackageGraph {
  // a long-lived engine (or a test) must see edits: a graph lives 2 seconds
  if (!graph || Date.now() - graphAt > 2000) {
    graph = new PackageGraph();
    graphAt = Date.now();
  }
  return graph;
}

/** Run a rule, turning the layers' errors into one-line rule failures. */
export async function buildTarget(target: PackageTarget, ctx: BuildContext): Promise<void> {
  const dir = path.dirname(ctx.target);
  try {
    switch (target) {
      case '.pkghash':
        return writePkghash(dir, ctx);
      case '.closure':
      case '.bclosure':
        return await writeClosure(dir, target, ctx);
      case '.pkg.tar.gz':
        return await buildPackage(dir, ctx);
    }
  } catch (e) {
    if (e instanceof RuleError) throw e;
    // a bad tree fails the target with its line alone and its own status
    if (e instanceof TreeError) throw new RuleError(e.message, e.exitCode);
    // one line for errors that explain themselves; a stack for the rest
    if (['FetchError', 'ArchiveError', 'RootConflictError', 'MergeError'].includes((e as Error).name)) {
      throw new RuleError((e as Error).message);
    }
    // bad input that says its own status: a variable (settings.ts), a trust list
    if (e instanceof PeerpkgsError && e.exitCode === EXIT.usage) throw new RuleError(e.message, e.exitCode);
    throw e;
  }
}

function writePkghash(dir: string, ctx: BuildContext): void {
  const hash = packageGraph().pkghash(dir);
  ctx.always();
  ctx.stamp(hash);
  let old = '';
  try {
    old = fs.readFileSync(ctx.target, 'utf8');
  } catch {
    /* not made yet */
  }
  if (old === hash + '\n') ctx.keep();
  else fs.writeFileSync(ctx.out, hash + '\n');
}

async function writeClosure(dir: string, which: '.closure' | '.bclosure', ctx: BuildContext): Promise<void> {
  await ctx.ifchange([path.join(dir, '.pkghash')]);
  const g = packageGraph();
  const dirs = which === '.closure' ? g.closure(dir) : g.bclosure(dir);
  fs.writeFileSync(ctx.out, dirs.map((d) => path.relative(dir, d) + '\n').join(''));
}

/** The binary caches of this run (PKG_CACHE_URL), read once. */
let caches: Promise<import('../cache/substitute.ts').CacheConfig | null> | null = null;

function cacheSetup(home: string) {
  caches ??= (async () => {
    const s = settings();
    if (!s.cacheUrls.length && !s.forceBinary) return null;
    const { cacheConfig } = await import('../cache/substitute.ts');
    return cacheConfig(home);
  })();
  return caches;
}

/** Take the package from a binary cache if one has it (signed as required). */
async function substituteFromCache(dir: string, ctx: BuildContext, home: string): Promise<boolean> {
  const config = await cacheSetup(home);
  if (!config) return false;
  const g = packageGraph();
  const pkg = g.load(dir);
  const pkghash = g.pkghash(dir);
  const { substitute, NoBinaryError } = await import('../cache/substitute.ts');
  const { recordSha256 } = await import('../store/outputs.ts');
  const r = await substitute({
    pkghash,
    name: pkg.name,
    target: ctx.target,
    caches: config.caches,
    trusted: config.trusted,
    outputsDir: homeLayout.outputs(home),
    closure: g.closure(dir).map((d) => g.pkghash(d)),
    log: (line) => ctx.log(line),
  });
  if ('hit' in r) {
    recordSha256(r.hit.tmp, r.hit.sha256, ctx.target);
    fs.renameSync(r.hit.tmp, ctx.out);
    forget(r.hit.tmp);
    ctx.substituted(`from ${r.hit.cache}${r.hit.signer ? ` (signed by ${r.hit.signer})` : ''}`);
    return true;
  }
  if (config.forceBinary) throw new RuleError(new NoBinaryError(pkg.name, pkghash, r.tried).message);
  return false;
}

async function buildPackage(dir: string, ctx: BuildContext): Promise<void> {
  await ctx.ifchange([path.join(dir, '.pkghash')]);
  const g = packageGraph();
  const pkg = g.load(dir);
  const home = peerpkgsHome();
  // the work directory of an earlier failed build goes once the package is
  // built again (unless its owner still runs)
  await sweepNow(homeLayout.build(home), (n) => n.startsWith(`${pkg.name}.tmp-`)).catch(() => {});
  // the run closure first: the package is of no use without it, and a
  // package from a cache needs nothing else
  await ctx.ifchange(g.closure(dir).map((d) => path.join(d, '.pkg.tar.gz')));
  if (await substituteFromCache(dir, ctx, home)) return;

  const [{ DistfileStore }, { fetchAll }, { progressFor }, { fetchWithMirror }, { packDir }, { assembleRoot }, { runSandboxed }, { OutputStore, recordSha256 }] =
    await Promise.all([
      import('../fetch/store.ts'),
      import('../fetch/fetchfile.ts'),
      import('../fetch/progress.ts'),
      import('../mirrors/fetching.ts'),
      import('../archive/pack.ts'),
      import('../sandbox/root.ts'),
      import('../sandbox/bwrap.ts'),
      import('../store/outputs.ts'),
    ]);
  if (!pkg.buildScript) throw new RuleError(`${pkg.name}: no build script`);
  const deps = g.bclosure(dir);
  await ctx.ifchange(deps.map((d) => path.join(d, '.pkg.tar.gz')));

  const store = new DistfileStore(home);
  const sources = pkg.fetch.length
    ? await fetchWithMirror(dir, home, (sourcesFor) => fetchAll(pkg.fetch, { store, sourcesFor, progress: progressFor(ctx.progressOutput) }))
    : new Map<string, string>();

  const outputs = new OutputStore(home);
  const layers = [];
  for (const d of deps) {
    const u = await outputs.unpacked(path.join(d, '.pkg.tar.gz'));
    layers.push({ dir: u.dir, id: u.sha256 });
  }
  const root = assembleRoot(home, layers);
  ctx.log(`sandbox root: ${plural(layers.length, 'package')}, ${root.reused ? 'reused' : `assembled in ${root.ms.toFixed(0)} ms`}`);

  const work = temporaryName(path.join(homeLayout.build(home), pkg.name), { visible: true });
  const wd = path.join(work, 'home');
  const dest = path.join(work, 'dest');
  fs.mkdirSync(wd, { recursive: true });
  fs.mkdirSync(dest);
  // Copies, not hardlinks: in its user namespace the build owns what it is
  // given, and could chmod and rewrite the store's file through a link. A
  // read-only bind mount would cost nothing, but builds remove their
  // tarball once unpacked, and a mount point cannot be removed. A reflink
  // where the filesystem has them; test/bench/source-handover.ts has the cost.
  for (const [file, stored] of sources) await fs.promises.copyFile(stored, path.join(wd, file), fs.constants.COPYFILE_FICLONE);
  for (const f of pkg.files) copyEntry(path.join(dir, 'files', f.path), path.join(wd, f.path), f.mode);
  fs.copyFileSync(pkg.buildScript, path.join(wd, 'build'));
  fs.chmodSync(path.join(wd, 'build'), 0o755);

  const js = ctx.jobserver();
  const first = fs.readFileSync(pkg.buildScript, 'utf8').split('\n', 1)[0] ?? '';
  // the umask is the engine's otherwise, and would change the output's modes
  const run = first.startsWith('#!') ? 'exec ./build' : 'exec /bin/sh -e ./build';
  const argv = ['/bin/sh', '-c', `umask 022 && ${run}`];
  const { BuildLog } = await import('../store/logs.ts');
  const log = new BuildLog(home, dir);
  const output = buildOutput(ctx, log);
  const tmpBytes = settings().sandboxTmpBytes;
  ctx.began();
  // a log that cannot be kept (a full disk) does not fail the build
  const keepLog = (ok: boolean) => log.end(ok).catch((e: Error) => ctx.log(`its log could not be kept: ${e.message}`));
  let r: Awaited<ReturnType<typeof runSandboxed>>;
  try {
    r = await runSandboxed({
      root: root.root,
      work: wd,
      destdir: dest,
      argv,
      onLine: output.line,
      tmpBytes,
      ...(js ? { makeflags: js.makeflags, fdMap: js.fds } : {}),
    });
  } catch (e) {
    await keepLog(false);
    throw e;
  }
  await keepLog(r.status === 0);
  if (r.status !== 0) {
    const why = output.noSpace ? `; ${noSpaceReason(work, tmpBytes)}` : '';
    // kept to be looked into, until the package is built again
    const kept = keep(work) ? `; its files are kept in ${work} until it is built again` : '';
    throw new RuleError(`${pkg.name}: build failed (${r.signal ?? `exit ${r.status}`})${why}${kept}`, r.status || 1);
  }
  const packed = await packDir(dest, ctx.out, { relativeSymlinks: true });
  // The record names the file by inode: the new archive's, which the rename
  // keeps; or, when the bytes are the same as the target's (the engine then
  // keeps the old file), the target's
  const same = sameBytes(ctx.target, packed.size, packed.compressedSha256);
  recordSha256(same ? ctx.target : ctx.out, packed.sha256, ctx.target);
  ctx.log(`${plural(packed.files, 'file')}, output ${packed.sha256.slice(0, 16)}…`);
  // a build may leave read-only directories: removed as temporaries are, write bits restored
  await removeTemporary(work);
}

/** Where the build's lines go: its kept log, raw, and the engine's log,
 * which shows them as it shows the run (not the build's own stderr: that
 * may be a terminal or a log file the build must not reach). What a
 * failure's message needs from them is noted on the way. */
function buildOutput(ctx: BuildContext, log: import('../store/logs.ts').BuildLog) {
  const out = {
    noSpace: false,
    line: (line: Buffer) => {
      if (line.includes('No space left on device')) out.noSpace = true;
      log.line(line);
      ctx.output(line);
    },
  };
  return out;
}

/** A failed build that said "No space left on device" filled either the
 * disk under its work directory or the sandbox's bounded /tmp (or
 * /dev/shm); the disk keeps the build's files, so it still shows which. */
function noSpaceReason(work: string, tmpBytes: number): string {
  const disk = fs.statfsSync(work);
  if (disk.bavail * disk.bsize < 64 * 1024 * 1024) return `the disk holding ${work} is full`;
  return `it ran out of space in /tmp or /dev/shm, which hold at most ${formatSize(tmpBytes)} each: raise the limit with PKG_SANDBOX_TMP_SIZE=${formatSize(tmpBytes * 2)}`;
}

function sameBytes(file: string, size: number, sha256: string): boolean {
  const st = fs.statSync(file, { throwIfNoEntry: false });
  if (!st || st.size !== size) return false;
  return sha256File(file) === sha256;
}

function sha256File(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 16);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Copies a `files/` entry with the mode the pkghash counted (0755 or
 * 0644), not the checkout's, which follows its umask. */
function copyEntry(from: string, to: string, mode: number): void {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  const st = fs.lstatSync(from);
  if (st.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(from), to);
  else {
    fs.copyFileSync(from, to);
    fs.chmodSync(to, mode & 0o777);
  }
}
