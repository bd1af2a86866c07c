/**
 * How the benchmarks measure: one copy of the environment a command runs
 * in, of a command timed, and of the median of repeated runs, so that every
 * figure is taken the same way as the reference printed beside it.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const REPO = path.resolve(import.meta.dirname, '../..');

/** The environment of a user with our bin/ on PATH and no build running;
 * with `home`, the $PEERPKGS_HOME the run keeps its store in. */
export function benchEnv(home?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${REPO}/bin:${process.env.PATH}` };
  if (home) env.PEERPKGS_HOME = home;
  for (const k of Object.keys(env)) if (k.startsWith('REDO_') || k === 'MAKEFLAGS') delete env[k];
  return env;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Writes back what earlier steps left dirty, so that no step pays for another's writes. */
export function settle(): void {
  spawnSync('sync');
}

export interface TimedOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** sync first (settle) */
  settle?: boolean;
  /** the command's stderr shown as it runs, rather than kept for a failure's message */
  showStderr?: boolean;
  maxBuffer?: number;
}

/** Seconds `cmd args` takes to run, and what it printed; it must succeed. */
export function timed(cmd: string, args: string[], opts: TimedOptions = {}): { s: number; stdout: string; stderr: string } {
  if (opts.settle) settle();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd,
    env: opts.env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', opts.showStderr ? 'inherit' : 'pipe'],
    maxBuffer: opts.maxBuffer ?? 1 << 26,
  });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const [stdout, stderr] = [r.stdout ?? '', r.stderr ?? ''];
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? r.status ?? r.signal}):\n${(stdout + stderr).slice(-3000)}`);
  return { s, stdout, stderr };
}

/** A fresh directory for one run of benchmark `name`: its package tree,
 * its $PEERPKGS_HOME, the environment naming that home, and a command
 * timed in the tree (seconds). */
export function workspace(name: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bench-${name}-`));
  const tree = path.join(dir, 'tree');
  const home = path.join(dir, 'home');
  const env = benchEnv(home);
  const timedInTree = (cmd: string, args: string[], e: NodeJS.ProcessEnv = env): number => timed(cmd, args, { cwd: tree, env: e }).s;
  return { dir, tree, home, env, timed: timedInTree };
}
