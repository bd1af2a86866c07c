/**
 * The dependency tree of a package, depth first, build dependencies before
 * run dependencies, as `peerpkgs graph` prints it: a package met again is
 * named but not walked again.
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
