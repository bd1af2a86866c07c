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
 *                a sandbox whose root is that closure (package-sandbox.ts,
 *                which `peerpkgs shell` enters too), DESTDIR packed into
 *                a deterministic archive whose identity is recorded beside
 *                it, the pkghash texts it was made from kept for `why`, and
 *                what its provenance needs (store/build-record.ts)
 */
const crypto = process.getBuiltinModule('node:crypto');
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { RuleError, type BuildContext, type RunContext } from '../engine/rules.ts';
import { plural } from '../engine/log.ts';
import { PackageGraph } from '../tree/pkghash.ts';
import { TreeError, display } from '../tree/errors.ts';
import { homeLayout, peerpkgsHome } from '../home.ts';
import { formatSize, settings } from '../settings.ts';
import type { PackageTarget } from './rules.ts';
import { forget, keep, removeTemporary } from '../archive/temporary.ts';
import { recordTexts } from '../store/pkghash-texts.ts';
import { BUILT_SUFFIX, PROVENANCE_SUFFIX } from '../store/build-record.ts';
import { PeerpkgsError, EXIT } from '../errors.ts';
// fetch, archive and sandbox are imported by the build itself: .pkghash runs
// every time and must not pay for them

const GRAPH = Symbol('package graph');

/** One graph a run: packages are read once however many rules ask, and
 * a run that follows (a test's, or after redo-flush-cache) reads them again. */
export function packageGraph(run: RunContext): PackageGraph {
  return run.once(GRAPH, () => new PackageGraph());
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
  const hash = packageGraph(ctx.run).pkghash(dir);
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
  const g = packageGraph(ctx.run);
  const dirs = which === '.closure' ? g.closure(dir) : g.bclosure(dir);
  fs.writeFileSync(ctx.out, dirs.map((d) => path.relative(dir, d) + '\n').join(''));
}

const CACHES = Symbol('binary caches');

/** The binary caches of this run (PKG_CACHE_URL), read once. */
function cacheSetup(run: RunContext, home: string): Promise<import('../cache/substitute.ts').CacheConfig | null> {
  return run.once(CACHES, async () => {
    const s = settings();
    if (!s.cacheUrls.length && !s.forceBinary) return null;
    const { cacheConfig } = await import('../cache/substitute.ts');
    return cacheConfig(home);
  });
}

/** The records kept beside an archive (build-record.ts), which go with it into and out of the store's index of earlier builds. */
const RECORDS = [BUILT_SUFFIX, PROVENANCE_SUFFIX];

/** Take the package's archive from this home, if a build (or a substitution) here made it before from the same pkghash. */
async function takeBuiltBefore(dir: string, ctx: BuildContext, home: string): Promise<boolean> {
  const { findBuilt, takeBuilt } = await import('../store/built.ts');
  const found = findBuilt(home, packageGraph(ctx.run).pkghash(dir));
  if (!found) return false;
  takeBuilt(found, ctx.out, ctx.target, RECORDS);
  ctx.substituted('from this store, built before');
  return true;
}

/** Take the package from a binary cache if one has it (signed as required). */
async function substituteFromCache(dir: string, ctx: BuildContext, home: string): Promise<boolean> {
  const config = await cacheSetup(ctx.run, home);
  if (!config) return false;
  const g = packageGraph(ctx.run);
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
    transfer: (total) => ctx.transfer(total),
  });
  if ('hit' in r) {
    recordSha256(r.hit.tmp, r.hit.sha256, ctx.target);
    (await import('../store/build-record.ts')).recordSubstitution(ctx.target, r.hit.provenance);
    fs.renameSync(r.hit.tmp, ctx.out);
    forget(r.hit.tmp);
    (await import('../store/built.ts')).recordBuilt(home, pkghash, ctx.out, r.hit.sha256, ctx.target, RECORDS);
    ctx.substituted(`from ${r.hit.cache}${r.hit.signer ? ` (signed by ${r.hit.signer})` : ''}`);
    return true;
  }
  if (config.forceBinary) throw new RuleError(new NoBinaryError(pkg.name, pkghash, r.tried).message);
  return false;
}

async function buildPackage(dir: string, ctx: BuildContext): Promise<void> {
  await ctx.ifchange([path.join(dir, '.pkghash')]);
  const g = packageGraph(ctx.run);
  const pkg = g.load(dir);
  const home = peerpkgsHome();
  const sandbox = await import('./package-sandbox.ts');
  // the work directory of an earlier failed build goes once the package is
  // built again (unless its owner still runs)
  await sandbox.sweepWorkDirs(pkg, home);
  // the run closure first: the package is of no use without it, and a
  // package from a cache needs nothing else
  await ctx.ifchange(g.closure(dir).map((d) => path.join(d, '.pkg.tar.gz')));
  // the texts of this pkghash and its dependencies', for `peerpkgs why` to compare with the tree's later
  if (!ctx.afresh && ((await takeBuiltBefore(dir, ctx, home)) || (await substituteFromCache(dir, ctx, home)))) return recordTexts(home, g.pkghashTexts(dir));
  const startedOn = new Date().toISOString();

  const [{ packDir }, { recordSha256 }, { progressFor }] = await Promise.all([import('../archive/pack.ts'), import('../store/outputs.ts'), import('../fetch/progress.ts')]);
  if (!pkg.buildScript) throw new RuleError(`${pkg.name}: no build script`);
  const deps = sandbox.buildClosure(g, dir);
  await ctx.ifchange(deps.map((d) => path.join(d, '.pkg.tar.gz')));

  // each phase timed for the log's times (store/logs.ts): where a build's time goes
  let t = performance.now();
  const lap = (): number => {
    const now = performance.now();
    const ms = now - t;
    t = now;
    return ms;
  };
  const root = await sandbox.packageRoot(g, dir, home);
  ctx.log(`sandbox root: ${plural(root.layers, 'package')}, ${root.reused ? 'reused' : `assembled in ${root.ms.toFixed(0)} ms`}`);
  const phases: import('../store/logs.ts').BuildPhases = { sandbox: lap(), sources: 0, build: 0 };
  const work = await sandbox.makeWorkDir(pkg, home, progressFor(ctx.progressOutput));
  phases.sources = lap();

  const { BuildLog } = await import('../store/logs.ts');
  const log = new BuildLog(home, dir);
  const output = buildOutput(ctx, log);
  ctx.began();
  log.began();
  // a log that cannot be kept (a full disk) does not fail the build
  const keepLog = (ok: boolean) => log.end(ok, phases).catch((e: Error) => ctx.log(`its log could not be kept: ${e.message}`));
  let r: Awaited<ReturnType<typeof sandbox.runPackageSandbox>>;
  try {
    r = await sandbox.runPackageSandbox({
      root: root.root,
      work,
      argv: sandbox.buildArgv(pkg),
      onLine: output.line,
      jobserver: ctx.jobserver(),
    });
  } catch (e) {
    phases.build = lap();
    await keepLog(false);
    throw e;
  }
  phases.build = lap();
  if (r.status !== 0) {
    await keepLog(false);
    const why = output.noSpace ? `; ${noSpaceReason(work.dir, settings().sandboxTmpBytes)}` : '';
    const failed = `${pkg.name}: build failed (${r.signal ?? `exit ${r.status}`})${why}`;
    // kept to be looked into, until the package is built again
    const kept = keep(work.dir) ? `; its files are kept in ${work.dir} until it is built again (peerpkgs shell ${display(pkg.dir)} enters them)` : '';
    if (kept) sandbox.recordFailure(work, pkg, failed);
    throw new RuleError(`${failed}${kept}`, r.status || 1);
  }
  // the log is of the build script, which succeeded, whether packing does or not
  let packed: Awaited<ReturnType<typeof packDir>>;
  try {
    packed = await packDir(work.dest, ctx.out, { relativeSymlinks: true });
  } finally {
    phases.pack = lap();
    await keepLog(true);
  }
  // The record names the file by inode: the new archive's, which the rename
  // keeps; or, when the bytes are the same as the target's (the engine then
  // keeps the old file), the target's
  const same = sameBytes(ctx.target, packed.size, packed.compressedSha256);
  recordSha256(same ? ctx.target : ctx.out, packed.sha256, ctx.target);
  const [{ recordBuild }, { PEERPKGS_VERSION }] = await Promise.all([import('../store/build-record.ts'), import('../version.ts')]);
  const buildClosure = deps.map((d, i) => ({ name: g.load(d).name, pkghash: g.pkghash(d), sha256: root.layerIds[i]! }));
  recordBuild(ctx.target, { archiveSha256: packed.compressedSha256, peerpkgs: PEERPKGS_VERSION, startedOn, finishedOn: new Date().toISOString(), buildClosure });
  ctx.log(`${plural(packed.files, 'file')}, output ${packed.sha256.slice(0, 16)}…`);
  (await import('../store/built.ts')).recordBuilt(home, g.pkghash(dir), same ? ctx.target : ctx.out, packed.sha256, ctx.target, RECORDS);
  // a build may leave read-only directories: removed as temporaries are, write bits restored
  await removeTemporary(work.dir);
  recordTexts(home, g.pkghashTexts(dir));
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
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}
