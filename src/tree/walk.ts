/**
 * The dependency tree of a package, depth first, build dependencies before
 * run dependencies, as `peerpkgs graph` prints it: a package met again is
 * named but not walked again; and the other way, the packages of a tree
 * that depend on one (`graph --reverse`).
 */
import type { PackageGraph } from './pkghash.ts';

export interface TreeLine {
  depth: number;
  /** how the package above depends on it ('' for the root) */
  kind: '' | 'build' | 'run';
  dir: string;
  /** already shown above */
  again: boolean;
}

export function dependencyTree(g: PackageGraph, root: string): TreeLine[] {
  g.pkghash(root); // refuses cycles, naming them
  const lines: TreeLine[] = [];
  const seen = new Set<string>();
  const walk = (dir: string, depth: number, kind: TreeLine['kind']) => {
    const pkg = g.load(dir);
    const again = seen.has(pkg.dir);
    lines.push({ depth, kind, dir: pkg.dir, again });
    if (again) return;
    seen.add(pkg.dir);
    for (const d of pkg.buildDeps) walk(d, depth + 1, 'build');
    for (const d of pkg.runDeps) walk(d, depth + 1, 'run');
  };
  walk(root, 0, '');
  return lines;
}

/** A package that depends on another, as `peerpkgs graph --reverse` lists it. */
export interface Dependent {
  dir: string;
  /** 'run': the other is in its run closure (installed with it); 'build': only a build needs it, its own or a dependency's */
  kind: 'build' | 'run';
  /** it names the other in its own build-deps or run-deps */
  direct: boolean;
}

/**
 * The packages among `candidates` (a tree's package directories) that
 * depend on `target` through any chain of build-deps and run-deps: those
 * a change to it rebuilds. In the order of `candidates`.
 */
export function dependents(g: PackageGraph, target: string, candidates: string[]): Dependent[] {
  const goal = g.load(target).dir;
  g.pkghash(goal); // refuses cycles, naming them
  const reaches = new Map<string, boolean>();
  // whether `dir` depends on the target: memoised, as a tree's packages share most of their dependencies
  const dependsOn = (dir: string): boolean => {
    let r = reaches.get(dir);
    if (r === undefined) {
      reaches.set(dir, false);
      r = g.deps(dir).some((d) => d === goal || dependsOn(d));
      reaches.set(dir, r);
    }
    return r;
  };
  const out: Dependent[] = [];
  for (const c of candidates) {
    const dir = g.load(c).dir;
    if (dir === goal || !dependsOn(dir)) continue;
    out.push({ dir, kind: g.closure(dir).includes(goal) ? 'run' : 'build', direct: g.deps(dir).includes(goal) });
  }
  return out;
}
