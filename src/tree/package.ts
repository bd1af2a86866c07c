/**
 * Reading one package directory, pkg/NAME, as p2pkgs lays it out:
 *
 *   build        the script that builds the package in the sandbox
 *   build-deps   relative paths of build dependencies, one a line
 *   run-deps     relative paths of runtime dependencies, one a line
 *   fetch        rec records: url (one or more mirrors), sha256, size, file
 *   files/       files copied into the build directory
 *   meta         what the package is (meta.ts): checked here, not hashed
 *   *.do         overrides of the built-in rules; a package may be made by
 *                its .pkg.tar.gz.do alone and have no build script
 *
 * Everything the pkghash needs is read and hashed here, once, and every
 * mistake is reported with the file and line that holds it.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { TreeError, at, display } from './errors.ts';
import { parseRec, type RecRecord } from './rec.ts';
import { isSeedDir, SEED_DO } from './seed-dir.ts';
import { readMeta, type Meta } from './meta.ts';

// Loaded on first hash, as engine/lazy.ts does for the engine: a no-op build
// loads packages but must not pay for node:crypto. Kept here so that the
// package model does not depend on the engine.
const crypto = (): typeof import('node:crypto') => process.getBuiltinModule('node:crypto');

/** A file whose content and mode are inputs of the build. */
export interface FileEntry {
  path: string; // relative, '/'-separated
  /** 0o100644, 0o100755 or 0o120000 (symlink): only what survives a git checkout */
  mode: number;
  sha256: string; // of the content; of the target text for a symlink
}

export interface FetchEntry {
  file: string; // name of the downloaded file in the build directory
  sha256: string;
  urls: string[]; // mirrors of the one file, in the order given
  /** bytes, when the record says: checked when fetching, not an input of the pkghash */
  size?: number;
  line: number; // of the record in the fetch file
}

/** Where a dependency was named, for errors that must point at it. */
export interface DepRef {
  dir: string; // the dependency, absolute and real
  file: string; // absolute path of the build-deps or run-deps file
  line: number;
}

export interface Package {
  dir: string; // absolute and real
  name: string;
  /** absolute path of `build`; null when a .pkg.tar.gz.do makes the package */
  buildScript: string | null;
  /** `build` and every *.do of the package, sorted: what turns inputs into the output */
  scripts: FileEntry[];
  buildDeps: string[]; // absolute, real, in file order
  runDeps: string[];
  depRefs: DepRef[]; // build-deps then run-deps
  fetch: FetchEntry[];
  files: FileEntry[]; // under files/, sorted by path
  /** pkg/NAME/meta; no input of the pkghash */
  meta: Meta;
}

const OVERRIDE = SEED_DO;
const SHA256 = /^[0-9a-f]{64}$/;

export function loadPackage(dir: string): Package {
  const real = realDir(dir);
  if (!real) throw new TreeError(`${display(path.resolve(dir))}: no such package directory`);
  const scripts = readScripts(real);
  const has = (name: string) => scripts.some((s) => s.path === name);
  if (!has('build') && !has(OVERRIDE)) {
    throw new TreeError(`${display(real)}: not a package: it has neither a build script nor a ${OVERRIDE}`);
  }
  const hostScripts = scripts.filter((s) => s.path !== 'build').map((s) => s.path);
  if (hostScripts.length > 0 && (hostScripts.some((s) => s !== SEED_DO) || !isSeedDir(real))) {
    throw new TreeError(
      `${display(
        path.join(
          real,
          hostScripts.find((s) => s !== SEED_DO || !isSeedDir(real))!,
        ),
      )}: only a seed (a package with no build script, build-deps or run-deps) may have a .do file, and only ${SEED_DO}: a .do runs on the host, outside the sandbox`,
    );
  }
  const buildRefs = readDeps(real, 'build-deps');
  const runRefs = readDeps(real, 'run-deps');
  const pkg: Package = {
    dir: real,
    name: path.basename(real),
    buildScript: has('build') ? path.join(real, 'build') : null,
    scripts,
    buildDeps: buildRefs.map((r) => r.dir),
    runDeps: runRefs.map((r) => r.dir),
    depRefs: [...buildRefs, ...runRefs],
    fetch: readFetch(path.join(real, 'fetch')),
    files: readFiles(path.join(real, 'files')),
    meta: readMeta(real),
  };
  checkWorkNames(pkg);
  return pkg;
}

/** The sources, files/ and `build` all go to the top of the build directory:
 * one name taken twice would have one replace (or write into) the other,
 * and a source there is the distfile store's own copy. */
function checkWorkNames(pkg: Package): void {
  const fetchFile = path.join(pkg.dir, 'fetch');
  const taken = new Map<string, string>(); // name in the build directory → where it comes from
  if (pkg.buildScript) taken.set('build', `the build script ${display(pkg.buildScript)}`);
  for (const e of pkg.fetch) {
    const other = taken.get(e.file);
    if (other) throw at(fetchFile, e.line, `file '${e.file}' is also ${other}: both would be ${e.file} in the build directory; rename one ('file:' names a source)`);
    taken.set(e.file, `fetched by ${display(fetchFile)}:${e.line}`);
  }
  for (const f of pkg.files) {
    const top = f.path.split('/', 1)[0]!;
    const other = taken.get(top);
    if (other) throw new TreeError(`${display(path.join(pkg.dir, 'files', f.path))}: ${top} is also ${other}: both would be ${top} in the build directory; rename one`);
  }
}

/**
 * The tree a package directory belongs to: the nearest directory upward
 * that holds a `pkg/` directory (for pkg/NAME, the parent of pkg/), or null.
 */
export function treeRoot(start: string): string | null {
  for (let dir = path.resolve(start); ;) {
    if (fs.statSync(path.join(dir, 'pkg'), { throwIfNoEntry: false })?.isDirectory()) return dir;
    const up = path.dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/** The real path of the tree around the (real) package directory `dir`;
 * a package outside any pkg/ has its siblings for a tree. */
function treeOf(dir: string): string {
  const parent = path.dirname(dir);
  // from the parent: a package's own pkg/ subdirectory does not make it a tree
  return realDir(treeRoot(parent) ?? parent) ?? parent;
}

function realDir(p: string): string | null {
  try {
    const real = fs.realpathSync.native(p);
    return fs.statSync(real).isDirectory() ? real : null;
  } catch {
    return null;
  }
}

function isFile(p: string): boolean {
  return fs.statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;
}

function readOptional(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new TreeError(`${display(file)}: ${(e as Error).message}`);
  }
}

/** Dependencies named in `kind`, unique; each must be a package directory. */
function readDeps(dir: string, kind: 'build-deps' | 'run-deps'): DepRef[] {
  const file = path.join(dir, kind);
  const text = readOptional(file);
  if (text === null) return [];
  const refs: DepRef[] = [];
  let tree: string | undefined;
  text.split('\n').forEach((raw, i) => {
    const rel = raw.trim();
    if (!rel || rel.startsWith('#')) return;
    const dep = realDir(path.resolve(dir, rel));
    if (!dep) throw at(file, i + 1, `${rel}: no such package directory (${display(path.resolve(dir, rel))})`);
    // a build would rewrite that other tree's outputs, and its pkghash
    // would not say where the package came from
    tree ??= treeOf(dir);
    if (!dep.startsWith(tree + '/')) throw at(file, i + 1, `${rel}: leaves the package tree ${display(tree)} (it is ${display(dep)})`);
    if (!isFile(path.join(dep, 'build')) && !isFile(path.join(dep, OVERRIDE))) {
      throw at(file, i + 1, `${rel}: not a package: ${display(dep)} has neither a build script nor a ${OVERRIDE}`);
    }
    if (!refs.some((r) => r.dir === dep)) refs.push({ dir: dep, file, line: i + 1 });
  });
  return refs;
}

function readScripts(dir: string): FileEntry[] {
  const out: FileEntry[] = [];
  for (const name of fs.readdirSync(dir)) {
    if (name !== 'build' && !name.endsWith('.do')) continue;
    const p = path.join(dir, name);
    const st = fs.statSync(p, { throwIfNoEntry: false });
    if (st?.isFile()) out.push({ path: name, mode: fileMode(st.mode), sha256: sha256(fs.readFileSync(p)) });
  }
  return out.sort((a, b) => byBytes(a.path, b.path));
}

export function readFetch(file: string): FetchEntry[] {
  const text = readOptional(file);
  if (text === null) return [];
  const entries = parseRec(text, display(file)).map((rec) => fetchEntry(rec, file));
  const seen = new Map<string, number>();
  for (const e of entries) {
    const first = seen.get(e.file);
    if (first !== undefined) throw at(file, e.line, `file '${e.file}' is already fetched by the record at line ${first}`);
    seen.set(e.file, e.line);
  }
  return entries;
}

// values are trimmed: no url, hash or file name we accept holds blanks
function fetchEntry(rec: RecRecord, file: string): FetchEntry {
  const urls: string[] = [];
  const sha = rec.fields.filter((f) => f.name === 'sha256');
  const names = rec.fields.filter((f) => f.name === 'file');
  const sizes = rec.fields.filter((f) => f.name === 'size');
  for (const f of rec.fields) {
    const value = f.value.trim();
    if (f.name === 'url') {
      if (!URL.canParse(value)) throw at(file, f.line, `not a url: ${JSON.stringify(value)}`);
      urls.push(value);
    } else if (f.name !== 'sha256' && f.name !== 'file' && f.name !== 'size') {
      throw at(file, f.line, `unknown field '${f.name}'; a fetch record has url, sha256, size and file`);
    }
  }
  if (urls.length === 0) throw at(file, rec.line, 'record has no url');
  if (sha.length !== 1) throw at(file, (sha[1] ?? rec).line, sha.length ? 'record has more than one sha256' : 'record has no sha256');
  const sha256 = sha[0].value.trim();
  if (!SHA256.test(sha256)) throw at(file, sha[0].line, `sha256 must be 64 lowercase hex digits, not ${JSON.stringify(sha256)}`);
  if (sizes.length > 1) throw at(file, sizes[1].line, 'record has more than one size');
  const size = sizes.length ? sizes[0].value.trim() : undefined;
  if (size !== undefined && !(/^(0|[1-9][0-9]*)$/.test(size) && Number.isSafeInteger(Number(size)))) {
    throw at(file, sizes[0].line, `size must be a number of bytes, not ${JSON.stringify(size)}`);
  }
  if (names.length > 1) throw at(file, names[1].line, 'record has more than one file');
  const name = names.length ? names[0].value.trim() : path.posix.basename(new URL(urls[0]).pathname);
  const where = names.length ? names[0].line : rec.line;
  if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw at(file, where, names.length ? `bad file name ${JSON.stringify(name)}` : `cannot name the file after ${urls[0]}; add a 'file:' field`);
  }
  return { file: name, sha256, urls, ...(size !== undefined ? { size: Number(size) } : {}), line: rec.line };
}

/** Regular files and symlinks under files/, sorted by path; directories only contain them. */
function readFiles(root: string): FileEntry[] {
  const st = fs.lstatSync(root, { throwIfNoEntry: false });
  if (!st) return [];
  if (!st.isDirectory()) throw new TreeError(`${display(root)}: not a directory`);
  const out: FileEntry[] = [];
  const walk = (dir: string, rel: string): void => {
    for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, d.name);
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) walk(p, r);
      else if (d.isSymbolicLink()) out.push({ path: r, mode: 0o120000, sha256: sha256(fs.readlinkSync(p)) });
      else if (d.isFile()) out.push({ path: r, mode: fileMode(fs.statSync(p).mode), sha256: sha256(fs.readFileSync(p)) });
      else throw new TreeError(`${display(p)}: not a regular file, symlink or directory`);
    }
  };
  walk(root, '');
  return out.sort((a, b) => byBytes(a.path, b.path));
}

// group and other bits follow the umask of whoever checked the tree out
function fileMode(mode: number): number {
  return mode & 0o100 ? 0o100755 : 0o100644;
}

export function sha256(data: string | Buffer): string {
  return crypto().createHash('sha256').update(data).digest('hex');
}

/** Order by UTF-8 bytes, as `sort` in the C locale does, whatever the characters. */
export function byBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
