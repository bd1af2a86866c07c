/**
 * The package tree the benchmarks share: a seed (the host's busybox-static,
 * as example/pkg/seed packs it) and N packages p1…pN, each writing 50 files
 * into $DESTDIR, each run-depending on the two before it, all
 * build-depending on the seed.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const REPO = path.resolve(import.meta.dirname, '../..');

/** The environment of a user with our bin/ on PATH and no build running. */
export function benchEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${REPO}/bin:${process.env.PATH}`, PEERPKGS_HOME: home };
  for (const k of Object.keys(env)) if (k.startsWith('REDO_') || k === 'MAKEFLAGS') delete env[k];
  return env;
}

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

/** Seconds `cmd args` takes to run in `cwd`; it must succeed. */
export function timedCommand(cwd: string, env: NodeJS.ProcessEnv, cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8' });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return s;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * writePkgTree's tree of `n` packages at `tree`, built, and a venv of
 * ./pkg/pN made once at `venvDir`, which unpacks the outputs as the builds
 * of dependents already would have. Returns ./pkg/pN.
 */
export function builtPkgTree(tree: string, env: NodeJS.ProcessEnv, n: number, venvDir: string): string {
  writePkgTree(tree, n);
  const target = `./pkg/p${n}`;
  timedCommand(tree, env, 'build-packages-ifchange', ['./pkg/seed']);
  timedCommand(tree, env, 'build-packages-ifchange', ['-j2', target]);
  timedCommand(tree, env, 'venv', ['-o', venvDir, target]);
  return target;
}
