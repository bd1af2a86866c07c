/**
 * Where a build's time went, from its kept log and times (store/logs.ts):
 * the engine's phases (assembling the sandbox, laying out the sources,
 * packing the output) and, within the build script, its steps. A step is
 * what the script's shell trace (`set -x`) names: each top-level `+ CMD`
 * line starts one, which lasts until the next; a step is counted by what
 * CMD does (unpacking, configuring, compiling, testing, installing).
 */
import * as path from 'node:path';
import { logLines, logTimes } from './logs.ts';

export const STEPS = ['unpack', 'configure', 'compile', 'test', 'install', 'other'] as const;
export type Step = (typeof STEPS)[number];

/** A build's time by phase and step, in milliseconds. */
export interface BuildTime {
  total: number;
  sandbox: number;
  sources: number;
  pack: number;
  steps: Record<Step, number>;
}

const MAKES = new Set(['make', 'gmake', 'ninja', 'samu']);
const UNPACKERS = new Set(['tar', 'xz', 'unxz', 'gzip', 'gunzip', 'bzip2', 'bunzip2', 'zstd', 'unzstd', 'unzip', 'untar-v7', 'cpio', 'patch']);
const COMPILERS = new Set(['cc', 'gcc', 'c++', 'g++', 'tcc', 'clang', 'ld', 'ar', 'as']);

/** What the traced command `line` (the text after `+ `) does. */
export function stepOf(line: string): Step {
  const words = line
    .trim()
    .split(/\s+/)
    .map((w) => w.replace(/^'(.*)'$/, '$1'));
  // VAR=value assignments before the command, and env(1) with its own
  while (words.length > 0 && (/^[A-Za-z_][A-Za-z0-9_]*=/.test(words[0]!) || words[0] === 'env')) words.shift();
  const cmd = path.basename(words[0] ?? '');
  const args = words.slice(1);
  const targets = args.filter((a) => !a.startsWith('-') && !a.includes('='));
  if (UNPACKERS.has(cmd)) return 'unpack';
  if (/configure$/i.test(cmd) || cmd === 'config' || cmd === 'bootstrap' || cmd === 'autoreconf' || cmd === 'meson') return 'configure';
  if (cmd === 'cmake') {
    if (args.includes('--build')) return 'compile';
    if (args.includes('--install')) return 'install';
    return 'configure';
  }
  // a test runner, or a test program run by name: ctest, runtest, test.out, testfixture, ninja_test, python -m test
  if (cmd === 'ctest' || /^run-?tests?|^test|(^|[_.-])tests?([_.-]|$)/.test(cmd) || args.some((a) => /\.test$/.test(a)) || args.join(' ').includes('-m test')) return 'test';
  if (MAKES.has(cmd)) {
    if (targets.some((t) => /^(check|test)/.test(t) || /-(check|tests?)$/.test(t))) return 'test';
    if (targets.some((t) => t.startsWith('install'))) return 'install';
    return 'compile';
  }
  if (cmd === 'perl' && args.some((a) => /(^|\/)(harness|TEST)$/.test(a))) return 'test';
  if (COMPILERS.has(cmd) || cmd === 'build.sh') return 'compile';
  if (cmd === 'install') return 'install';
  return 'other';
}

/** The time of the build that wrote the log `file`, or null when the log has no times kept. */
export function buildTime(file: string): BuildTime | null {
  const times = logTimes(file);
  if (!times) return null;
  const lines = logLines(file);
  const steps = Object.fromEntries(STEPS.map((s) => [s, 0])) as Record<Step, number>;
  const build = times.phases.build ?? times.lines.at(-1) ?? 0;
  let step: Step = 'other';
  let since = 0;
  times.lines.forEach((at, i) => {
    const text = lines[i] ?? '';
    // the script's own trace: `+ ` at the top level (`++` is a command substitution's)
    if (!text.startsWith('+ ')) return;
    steps[step] += at - since;
    step = stepOf(text.slice(2));
    since = at;
  });
  steps[step] += Math.max(0, build - since);
  const [sandbox, sources, pack] = [times.phases.sandbox ?? 0, times.phases.sources ?? 0, times.phases.pack ?? 0];
  return { total: sandbox + sources + build + pack, sandbox, sources, pack, steps };
}
