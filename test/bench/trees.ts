/**
 * The package tree the benchmarks share: a seed (the host's busybox-static,
 * as example/pkg/seed packs it) and N packages p1…pN, each writing 50 files
 * into $DESTDIR, each run-depending on the two before it, all
 * build-depending on the seed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO, timed } from './measure.ts';

export function writePkgTree(tree: string, n: number): void {
  const pkg = path.join(tree, 'pkg');
  fs.mkdirSync(path.join(pkg, 'seed'), { recursive: true });
  fs.copyFileSync(path.join(REPO, 'example/pkg/seed/.pkg.tar.gz.do'), path.join(pkg, 'seed/.pkg.tar.gz.do'));
  for (let i = 1; i <= n; i++) {
    const p = path.join(pkg, `p${i}`);
    fs.mkdirSync(p);
    fs.writeFileSync(
      path.join(p, 'build'),
      `#!/bin/sh\nset -e\nmkdir -p "$DESTDIR/share/p${i}"\nfor f in $(seq 1 50); do echo "p${i} file $f" >"$DESTDIR/share/p${i}/$f"; done\n`,
      { mode: 0o755 },
    );
    fs.writeFileSync(path.join(p, 'build-deps'), '../seed\n');
    const runDeps = [i - 1, i - 2].filter((d) => d >= 1).map((d) => `../p${d}\n`);
    fs.writeFileSync(path.join(p, 'run-deps'), runDeps.join(''));
  }
}

/**
 * writePkgTree's tree of `n` packages at `tree`, built, and a venv of
 * ./pkg/pN made once at `venvDir`, which unpacks the outputs as the builds
 * of dependents already would have. Returns ./pkg/pN.
 */
export function builtPkgTree(tree: string, env: NodeJS.ProcessEnv, n: number, venvDir: string): string {
  writePkgTree(tree, n);
  const target = `./pkg/p${n}`;
  timed('build-packages-ifchange', ['./pkg/seed'], { cwd: tree, env });
  timed('build-packages-ifchange', ['-j2', target], { cwd: tree, env });
  timed('venv', ['-o', venvDir, target], { cwd: tree, env });
  return target;
}
