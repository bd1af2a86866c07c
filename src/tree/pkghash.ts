/**
 * The package graph: pkghashes and closures over packages read once.
 *
 * A pkghash names everything that can change a package's output, so that
 * two machines with the same tree agree on it and a cache can be trusted:
 * the scripts, the sha256 of each fetched file (never its urls, so adding
 * a mirror rebuilds nothing), files/, the pkghashes of all dependencies and
 * the builder version. Nothing machine-specific enters it: no absolute
 * paths, no mode bits beyond the executable one.
 *
 * A PackageGraph is a snapshot: it reads each package once and remembers
 * every answer, so make a new one when the tree may have changed.
 */
import * as path from 'node:path';
import { display, at } from './errors.ts';
import { loadPackage, sha256, byBytes, type Package, type FileEntry } from './package.ts';

/** Bump when the builder changes what it makes from the same inputs. */
export const BUILDER_VERSION = 'peerpkgs-builder-1';
/** Bump when the canonical text below changes. */
export const PKGHASH_FORMAT = 1;

export class PackageGraph {
  private readonly packages = new Map<string, Package>();
  private readonly texts = new Map<string, string>();
  private readonly hashes = new Map<string, string>();
  private readonly closures = new Map<string, string[]>();
  private readonly acyclic = new Set<string>();

  /** The package at `dir` (any spelling of it), read once. */
  load(dir: string): Package {
    const abs = path.resolve(dir);
    let pkg = this.packages.get(abs);
    if (!pkg) {
      pkg = loadPackage(abs);
      this.packages.set(abs, pkg);
      this.packages.set(pkg.dir, pkg);
    }
    return pkg;
  }

  /** The direct dependencies, build-deps then run-deps: whose pkghashes this one's depends on. */
  deps(dir: string): string[] {
    return [...new Set(this.load(dir).depRefs.map((r) => r.dir))];
  }

  pkghash(dir: string): string {
    const pkg = this.load(dir);
    let hash = this.hashes.get(pkg.dir);
    if (hash === undefined) {
      hash = sha256(this.pkghashText(pkg.dir));
      this.hashes.set(pkg.dir, hash);
    }
    return hash;
  }

  /** The canonical text whose sha256 is the pkghash (format in the README). */
  pkghashText(dir: string): string {
    const pkg = this.load(dir);
    let text = this.texts.get(pkg.dir);
    if (text !== undefined) return text;
    this.checkAcyclic(pkg.dir);
    const q = (s: string) => JSON.stringify(s);
    const file = (kind: string, f: FileEntry) => `${kind} ${q(f.path)} ${f.mode.toString(8)} ${f.sha256}`;
    const deps = (kind: string, dirs: string[]) =>
      dirs
        .map((d) => ({ name: this.load(d).name, hash: this.pkghash(d) }))
        .sort((a, b) => byBytes(a.name, b.name) || byBytes(a.hash, b.hash))
        .map((d) => `${kind} ${q(d.name)} ${d.hash}`);
    const lines = [
      `pkghash-format ${PKGHASH_FORMAT}`,
      `builder ${q(BUILDER_VERSION)}`,
      ...pkg.scripts.map((f) => file('script', f)),
      ...[...pkg.fetch].sort((a, b) => byBytes(a.file, b.file)).map((f) => `fetch ${q(f.file)} ${f.sha256}`),
      ...pkg.files.map((f) => file('file', f)),
      ...deps('build-dep', pkg.buildDeps),
      ...deps('run-dep', pkg.runDeps),
    ];
    text = lines.map((l) => l + '\n').join('');
    this.texts.set(pkg.dir, text);
    return text;
  }

  /** The pkghash texts `dir`'s depends on, by pkghash: its own, its
   * dependencies', theirs, and so on (what `peerpkgs why` follows). */
  pkghashTexts(dir: string): Map<string, string> {
    const texts = new Map<string, string>();
    const visit = (d: string): void => {
      const hash = this.pkghash(d);
      if (texts.has(hash)) return;
      texts.set(hash, this.pkghashText(d));
      for (const dep of this.deps(d)) visit(dep);
    };
    visit(dir);
    return texts;
  }

  /** Transitive run-deps of `dir`, without it, each after its own run-deps. */
  closure(dir: string): string[] {
    const pkg = this.load(dir);
    let closure = this.closures.get(pkg.dir);
    if (closure) return closure;
    this.checkAcyclic(pkg.dir);
    closure = this.closeOver(pkg.runDeps);
    this.closures.set(pkg.dir, closure);
    return closure;
  }

  /** What a build of `dir` needs installed: its build-deps and their closures, each after its own run-deps. */
  bclosure(dir: string): string[] {
    const pkg = this.load(dir);
    this.checkAcyclic(pkg.dir);
    return this.closeOver(pkg.buildDeps);
  }

  private closeOver(dirs: string[]): string[] {
    const out = new Set<string>();
    for (const d of dirs) {
      for (const c of this.closure(d)) out.add(c);
      out.add(d);
    }
    return [...out];
  }

  /** Throws, naming the cycle and the line that closes it, if one is reachable from `root`. */
  private checkAcyclic(root: string): void {
    const stack: string[] = [];
    const visit = (dir: string): void => {
      if (this.acyclic.has(dir)) return;
      stack.push(dir);
      for (const ref of this.load(dir).depRefs) {
        const i = stack.indexOf(ref.dir);
        if (i >= 0) {
          const cycle = [...stack.slice(i), ref.dir].map(display).join(' -> ');
          throw at(ref.file, ref.line, `dependency cycle: ${cycle}`);
        }
        visit(ref.dir);
      }
      stack.pop();
      this.acyclic.add(dir);
    };
    visit(root);
  }
}
