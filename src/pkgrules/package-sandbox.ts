/**
 * A package's sandbox, as its build and `peerpkgs shell` both enter it:
 * the root assembled from its build closure's outputs (which must hold the
 * /bin/sh that runs the build), a work directory with the sources (from the
 * distfile store), files/ and the build script in place, and the bwrap run
 * with the build's environment, mounts and jobserver. One piece of code for
 * both, so that a shell sees what the build saw.
 *
 * A work directory is `$PEERPKGS_HOME/build/NAME.tmp-…`, a visible
 * temporary: removed when the build succeeds, kept when it fails, with a
 * record of the failure (`failed`: the package directory, then the error)
 * beside the sandbox's `home/` and `dest/`. The record says whose it is,
 * since packages of one name in two trees share the prefix: `shell` finds
 * the last failed build by it, and a build sweeps only its own.
 *
 * Loaded by the build rule on first use (the fetch, archive and sandbox
 * layers cost a no-op run their load time).
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { DistfileStore } from '../fetch/store.ts';
import { fetchAll } from '../fetch/fetchfile.ts';
import { fetchWithMirror } from '../mirrors/fetching.ts';
import type { Progress } from '../fetch/progress.ts';
import { assembleRoot } from '../sandbox/root.ts';
import { runSandboxed, type SandboxOptions } from '../sandbox/bwrap.ts';
import { OutputStore } from '../store/outputs.ts';
import { homeLayout } from '../home.ts';
import { temporaryName, removeTemporary, sweepNow, withTemporaryFile } from '../archive/temporary.ts';
import { TreeError, display } from '../tree/errors.ts';
import type { PackageGraph } from '../tree/pkghash.ts';
import type { Package } from '../tree/package.ts';

/** What runs the build, and any command in a shell: a shell. */
const SHELL = '/bin/sh';
/** The record a failed build's work directory keeps (see above). */
const FAILED = 'failed';

/** The build closure of `dir`, refused when it cannot hold the shell that
 * runs the build: bwrap would say only "execvp /bin/sh: No such file". */
export function buildClosure(g: PackageGraph, dir: string): string[] {
  const pkg = g.load(dir);
  const deps = g.bclosure(dir);
  if (deps.length === 0) {
    throw new TreeError(`${pkg.name} has no build-deps, so its sandbox has no ${SHELL} to run the build: ${addSeed(pkg)}`);
  }
  return deps;
}

/** How to fix a closure without a shell: the tree's seed, if it has one beside the package. */
function addSeed(pkg: Package): string {
  const file = display(path.join(pkg.dir, 'build-deps'));
  const seed = path.join(path.dirname(pkg.dir), 'seed');
  return fs.existsSync(path.join(seed, '.pkg.tar.gz.do')) || fs.existsSync(path.join(seed, 'build'))
    ? `add ../seed to ${file}`
    : `add a package that provides ${SHELL} (the tree's seed) to ${file}`;
}

/**
 * The sandbox root of `dir`: its build closure's outputs (built already)
 * unpacked and merged, as sandbox/root.ts caches them.
 */
export async function packageRoot(g: PackageGraph, dir: string, home: string): Promise<{ root: string; layers: number; layerIds: string[]; reused: boolean; ms: number }> {
  const deps = buildClosure(g, dir);
  const outputs = new OutputStore(home);
  const layers = [];
  for (const d of deps) {
    const u = await outputs.unpacked(path.join(d, '.pkg.tar.gz'));
    layers.push({ dir: u.dir, id: u.sha256 });
  }
  const root = assembleRoot(home, layers);
  if (!isExecutable(root.root, SHELL)) {
    const pkg = g.load(dir);
    const names = deps.map((d) => g.load(d).name).join(', ');
    throw new TreeError(`${pkg.name}: its build closure (${names}) has no ${SHELL} to run the build: ${addSeed(pkg)}`);
  }
  return { ...root, layers: layers.length, layerIds: layers.map((l) => l.id) };
}

/** Is `file` (absolute in the sandbox) an executable file in `root`,
 * its symlinks followed as the sandbox would, never out of the root? */
function isExecutable(root: string, file: string): boolean {
  let at = root;
  let todo = file.split('/').filter(Boolean);
  for (let links = 0; todo.length > 0;) {
    const part = todo.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      if (at !== root) at = path.dirname(at);
      continue;
    }
    const next = path.join(at, part);
    const st = fs.lstatSync(next, { throwIfNoEntry: false });
    if (!st) return false;
    if (st.isSymbolicLink()) {
      if (++links > 40) return false;
      const target = fs.readlinkSync(next);
      if (target.startsWith('/')) at = root;
      todo = [...target.split('/').filter(Boolean), ...todo];
      continue;
    }
    at = next;
  }
  const st = fs.statSync(at);
  return st.isFile() && (st.mode & 0o111) !== 0;
}

/** A work directory: `home` is /home/build in the sandbox, `dest` /destdir. */
export interface WorkDir {
  dir: string;
  home: string;
  dest: string;
}

/**
 * A fresh work directory for `pkg`, its sources fetched through the
 * distfile store and copied in with files/ and the build script; nothing
 * run. Removed again if that fails.
 */
export async function makeWorkDir(pkg: Package, home: string, progress?: Progress): Promise<WorkDir> {
  const store = new DistfileStore(home);
  const sources = pkg.fetch.length
    ? await fetchWithMirror(pkg.dir, home, (sourcesFor) => fetchAll(pkg.fetch, { store, sourcesFor, ...(progress ? { progress } : {}) }))
    : new Map<string, string>();
  const dir = temporaryName(path.join(homeLayout.build(home), pkg.name), { visible: true });
  const work = { dir, home: path.join(dir, 'home'), dest: path.join(dir, 'dest') };
  try {
    fs.mkdirSync(work.home, { recursive: true });
    fs.mkdirSync(work.dest);
    // Copies, not hardlinks: in its user namespace the build owns what it is
    // given, and could chmod and rewrite the store's file through a link. A
    // read-only bind mount would cost nothing, but builds remove their
    // tarball once unpacked, and a mount point cannot be removed. A reflink
    // where the filesystem has them; test/bench/source-handover.ts has the cost.
    for (const [file, stored] of sources) await fs.promises.copyFile(stored, path.join(work.home, file), fs.constants.COPYFILE_FICLONE);
    for (const f of pkg.files) copyEntry(path.join(pkg.dir, 'files', f.path), path.join(work.home, f.path), f.mode);
    if (pkg.buildScript) {
      fs.copyFileSync(pkg.buildScript, path.join(work.home, 'build'));
      fs.chmodSync(path.join(work.home, 'build'), 0o755);
    }
  } catch (e) {
    await removeTemporary(dir);
    throw e;
  }
  return work;
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

/** Note beside a kept work directory whose failed build it holds. */
export function recordFailure(work: WorkDir, pkg: Package, message: string): void {
  // whole or not at all: a torn record would name no package, and no build would sweep the directory
  const file = path.join(work.dir, FAILED);
  withTemporaryFile(file, (tmp) => {
    fs.writeFileSync(tmp, `${pkg.dir}\n${message}\n`);
    fs.renameSync(tmp, file);
  });
}

/** The package a work directory's record names, or null (none: running, or killed before it could fail). */
function failedFor(dir: string): { pkg: string; message: string; at: Date } | null {
  try {
    const file = path.join(dir, FAILED);
    const [pkg = '', message = ''] = fs.readFileSync(file, 'utf8').split('\n');
    return { pkg, message, at: fs.statSync(file).mtime };
  } catch {
    return null;
  }
}

const workPrefix = (pkg: Package) => `${pkg.name}.tmp-`;

/** The kept work directory of `pkg`'s last failed build, if one is there. */
export function lastFailedWorkDir(pkg: Package, home: string): (WorkDir & { message: string; at: Date }) | null {
  const build = homeLayout.build(home);
  let names: string[];
  try {
    names = fs.readdirSync(build);
  } catch {
    return null;
  }
  const failed = names
    .filter((n) => n.startsWith(workPrefix(pkg)))
    .map((n) => ({ dir: path.join(build, n), record: failedFor(path.join(build, n)) }))
    .filter((w) => w.record?.pkg === pkg.dir)
    .sort((a, b) => b.record!.at.getTime() - a.record!.at.getTime());
  const last = failed[0];
  if (!last) return null;
  return { dir: last.dir, home: path.join(last.dir, 'home'), dest: path.join(last.dir, 'dest'), message: last.record!.message, at: last.record!.at };
}

/** Remove the work directories of `pkg`'s earlier builds whose owner is gone
 * (its kept failures, what a crash left), not another tree's package of the
 * same name. */
export async function sweepWorkDirs(pkg: Package, home: string): Promise<void> {
  const build = homeLayout.build(home);
  await sweepNow(build, (n) => n.startsWith(workPrefix(pkg)) && (failedFor(path.join(build, n))?.pkg ?? pkg.dir) === pkg.dir).catch(() => {});
}

/** The command that runs the build script: a shebang's interpreter, or sh -e. */
export function buildArgv(pkg: Package): string[] {
  const first = fs.readFileSync(pkg.buildScript!, 'utf8').split('\n', 1)[0] ?? '';
  return inShell(first.startsWith('#!') ? 'exec ./build' : `exec ${SHELL} -e ./build`);
}

/** A shell's argv for `peerpkgs shell`: CMD, or an interactive shell. */
export function shellArgv(cmd: string[]): string[] {
  return cmd.length ? [...inShell('exec "$@"'), 'sh', ...cmd] : inShell(`exec ${SHELL} -i`);
}

// the umask is the caller's otherwise, and would change the output's modes
const inShell = (line: string) => [SHELL, '-c', `umask 022 && ${line}`];

/** How a package's sandbox is entered: by its build, or by a user's shell. */
export interface PackageSandbox {
  root: string;
  work: WorkDir;
  argv: string[];
  /** the jobserver's MAKEFLAGS and fds, null with one slot */
  jobserver: { makeflags: string; fds: Record<number, number> } | null;
  onLine?: SandboxOptions['onLine'];
  /** `shell`'s: the terminal, and for an interactive shell the session too */
  terminal?: 'command' | 'interactive';
}

export function runPackageSandbox(s: PackageSandbox): Promise<{ status: number; signal: string | null }> {
  return runSandboxed({
    root: s.root,
    work: s.work.home,
    destdir: s.work.dest,
    argv: s.argv,
    ...(s.onLine ? { onLine: s.onLine } : {}),
    ...(s.jobserver ? { makeflags: s.jobserver.makeflags, fdMap: s.jobserver.fds } : {}),
    ...(s.terminal ? { stdio: 'terminal', newSession: s.terminal !== 'interactive' } : {}),
  });
}
