#!/usr/bin/env -S node_modules/.bin/node
/**
 * Benchmark: redo against GNU make on the same tree, in the same run.
 *
 *   npm run bench:redo-tree [-- N [JOBS]]      (default 2000 sources, -j1 and -j2)
 *
 * The tree: N sources src/fI.c and src/common.h; src/default.o.do runs
 * `redo-ifchange "$2.c" common.h` and concatenates them into $3; all.do
 * depends on every object. The Makefile says the same. Timed: the full
 * build, the no-op rebuild and the rebuild after one source changes, each
 * the median of several runs; peak memory of the redo process tree.
 * Targets (issue "Foundation and the redo engine"): full ≤ 1.5× make,
 * no-op ≤ 1.0×, one change ≤ 1.0×, peak memory ≤ 100 MB.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { benchEnv, median } from './measure.ts';

const N = Number(process.argv[2] ?? 2000);
const jobsList = process.argv[3] ? [Number(process.argv[3])] : [1, 2];
const env = benchEnv();

function makeTree(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
  const objs: string[] = [];
  for (let i = 1; i <= N; i++) {
    fs.writeFileSync(path.join(dir, `src/f${i}.c`), `int f${i}(void) { return ${i}; }\n`);
    objs.push(`src/f${i}.o`);
  }
  fs.writeFileSync(path.join(dir, 'src/common.h'), '#define COMMON 1\n');
  fs.writeFileSync(path.join(dir, 'src/default.o.do'), 'redo-ifchange "$2.c" common.h\ncat "$2.c" common.h >"$3"\n');
  fs.writeFileSync(path.join(dir, 'all.do'), `redo-ifchange ${objs.join(' ')}\n`);
  fs.writeFileSync(path.join(dir, 'Makefile'), `all: ${objs.join(' ')}\n\nsrc/%.o: src/%.c src/common.h\n\tcat $^ >$@\n`);
}

const haveTime = fs.existsSync('/usr/bin/time');

/** Wall seconds and peak RSS (MB, whole process tree's largest) of one run. */
function timed(cmd: string[], cwd: string): { s: number; mb: number } {
  const argv = haveTime ? ['/usr/bin/time', '-f', '%M', ...cmd] : cmd;
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd, env, encoding: 'utf8' });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd.join(' ')} failed (${r.status}):\n${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  const mb = haveTime ? Number(lines[lines.length - 1]) / 1024 : NaN;
  return { s, mb };
}

interface Figures {
  full: number;
  noop: number;
  one: number;
  mb: number;
}

function measure(tool: 'make' | 'redo', jobs: number): Figures {
  const dir = path.join(os.tmpdir(), `bench-redo-tree-${tool}`);
  const build = tool === 'make' ? ['make', '-s', `-j${jobs}`] : ['redo-ifchange', `-j${jobs}`, 'all'];
  const fulls: number[] = [];
  let mb = 0;
  for (let rep = 0; rep < 2; rep++) {
    makeTree(dir);
    const r = timed(build, dir);
    fulls.push(r.s);
    mb = Math.max(mb, r.mb);
  }
  const noops: number[] = [];
  for (let rep = 0; rep < 7; rep++) {
    const r = timed(build, dir);
    noops.push(r.s);
    mb = Math.max(mb, r.mb);
  }
  const ones: number[] = [];
  for (let rep = 0; rep < 5; rep++) {
    fs.appendFileSync(path.join(dir, 'src/f7.c'), `/* change ${rep} */\n`);
    const r = timed(build, dir);
    ones.push(r.s);
    mb = Math.max(mb, r.mb);
  }
  const probe = fs.readFileSync(path.join(dir, 'src/f7.o'), 'utf8');
  if (!probe.includes('change 4')) throw new Error(`${tool}: src/f7.o was not rebuilt after the change`);
  fs.rmSync(dir, { recursive: true, force: true });
  return { full: median(fulls), noop: median(noops), one: median(ones), mb };
}

execFileSync('make', ['--version'], { stdio: 'ignore' });
console.log(`redo-tree: ${N} sources, ${os.cpus().length} cores, node ${process.version}`);
console.log('');
const row = (a: string, b: string, c: string, d: string, e: string) => console.log(a.padEnd(22) + b.padStart(10) + c.padStart(10) + d.padStart(9) + e.padStart(10));
row('', 'make', 'redo', 'ratio', 'target');
for (const j of jobsList) {
  const m = measure('make', j);
  const r = measure('redo', j);
  const f = (x: number) => `${x.toFixed(3)}s`;
  row(`full build -j${j}`, f(m.full), f(r.full), (r.full / m.full).toFixed(2), '≤ 1.50');
  row(`no-op -j${j}`, f(m.noop), f(r.noop), (r.noop / m.noop).toFixed(2), '≤ 1.00');
  row(`one change -j${j}`, f(m.one), f(r.one), (r.one / m.one).toFixed(2), '≤ 1.00');
  if (haveTime) row(`peak memory -j${j}`, `${m.mb.toFixed(0)}MB`, `${r.mb.toFixed(0)}MB`, '', '≤ 100MB');
}
if (!haveTime) console.log('(install GNU time, /usr/bin/time, for peak memory)');
