/**
 * The redo family of commands: argument parsing and what the user sees.
 * Which command runs is the name it was called by (bin/redo-ifchange is a
 * link to bin/redo), passed as the first argument by the bin/ wrapper.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crypto } from '../engine/lazy.ts';
import { digest } from '../engine/state.ts';
import { Engine, BuildError, findBase, STATE_DIR } from '../engine/engine.ts';
import { candidates } from '../engine/dofile.ts';
import { ask, requestArgs } from '../engine/protocol.ts';
import { Log, printable } from '../engine/log.ts';
import { loadRules } from '../engine/plugins.ts';
import { packageRules } from '../build/rules.ts';

export const EXIT = {
  ok: 0,
  failed: 1, // a build failed (a failing .do's own status is passed on instead)
  usage: 2,
  notInBuild: 3, // a command that only makes sense inside a .do
  interrupted: 130,
} as const;

const HELP: Record<string, string> = {
  redo: `usage: redo [-j N] [-k] [-x] [-v] [-d] [--shuffle] [TARGET...]
Build each TARGET (default: all), even if it is up to date.

  -j N, --jobs N   run up to N builds at once (shared with make via the jobserver)
  -k, --keep-going keep building other targets after one fails
  -x               run .do files with sh -x (print each command)
  -v               run .do files with sh -v (print each line as read)
  -d, --debug      say why each target is rebuilt
  --shuffle        build in random order (shows missing dependencies)
  -h, --help       this text
`,
  'redo-ifchange': `usage: redo-ifchange [-j N] [-k] [-x] [-v] [-d] [--shuffle] TARGET...
Build each TARGET if it is out of date; inside a .do, also record that the
target being built depends on it.
`,
  'redo-ifcreate': `usage: redo-ifcreate FILE...
Inside a .do: rebuild the current target when FILE comes into existence.
`,
  'redo-always': `usage: redo-always
Inside a .do: rebuild the current target every run.
`,
  'redo-stamp': `usage: redo-stamp < DATA
Inside a .do: dependents of the current target rebuild only when DATA changes.
`,
  'redo-flush-cache': `usage: redo-flush-cache
Inside a build: forget which targets were checked, so that the next
redo-ifchange looks at them again.
`,
  'redo-targets': `usage: redo-targets
List every target redo has built, relative to the current directory.
`,
  'redo-sources': `usage: redo-sources
List every source file a target depends on, relative to the current directory.
`,
  'redo-ood': `usage: redo-ood
List every target that is out of date, relative to the current directory.
`,
  'redo-whichdo': `usage: redo-whichdo TARGET
List the .do files that could make TARGET in the order they are tried, up to
and including the one that exists. Exit status 1 if none exists.
`,
};

interface Flags {
  jobs?: number;
  shuffle: boolean;
  keepGoing: boolean;
  xtrace: boolean;
  verbose: boolean;
  debug: boolean;
  args: string[];
}

class UsageError extends Error {}

function parseFlags(cmd: string, argv: string[]): Flags {
  const f: Flags = { shuffle: false, keepGoing: false, xtrace: false, verbose: false, debug: false, args: [] };
  const takesFlags = cmd === 'redo' || cmd === 'redo-ifchange';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      f.args.push(...argv.slice(i + 1));
      break;
    }
    if (a === '-h' || a === '--help') {
      process.stdout.write(HELP[cmd] ?? HELP.redo!);
      process.exit(EXIT.ok);
    }
    if (!takesFlags || !a.startsWith('-') || a === '-') {
      f.args.push(a);
      continue;
    }
    if (a === '--jobs' || a === '-j') {
      f.jobs = parseJobs(argv[++i]);
    } else if (a.startsWith('--jobs=')) {
      f.jobs = parseJobs(a.slice(7));
    } else if (a === '--keep-going') f.keepGoing = true;
    else if (a === '--shuffle') f.shuffle = true;
    else if (a === '--debug') f.debug = true;
    else if (/^-[kxvdj]/.test(a)) {
      // bundled short flags: -kx, -j4
      for (let k = 1; k < a.length; k++) {
        const c = a[k];
        if (c === 'k') f.keepGoing = true;
        else if (c === 'x') f.xtrace = true;
        else if (c === 'v') f.verbose = true;
        else if (c === 'd') f.debug = true;
        else if (c === 'j') {
          f.jobs = parseJobs(a.slice(k + 1) || argv[++i]);
          break;
        } else throw new UsageError(`unknown option -${c}`);
      }
    } else {
      throw new UsageError(`unknown option ${a}`);
    }
  }
  return f;
}

function parseJobs(v: string | undefined): number {
  const n = Number(v);
  if (!v || !Number.isInteger(n) || n < 1) throw new UsageError(`-j needs a positive whole number, not ${JSON.stringify(v ?? '')}`);
  return n;
}

async function listFromState(kind: 'targets' | 'sources' | 'ood'): Promise<number> {
  const base = findBase(process.cwd());
  if (!fs.existsSync(path.join(base, STATE_DIR))) return EXIT.ok;
  const out: string[] = [];
  const show = (rel: string) => {
    const r = path.relative(process.cwd(), path.resolve(base, rel));
    return r === '' ? '.' : r;
  };
  // the build's own decisions; what it would say while deciding (warnings,
  // missing rules) is not wanted in a list
  const quiet = new Log(process.cwd(), base, () => {});
  const engine = new Engine({ base, keepGoing: true, log: quiet, rules: [...packageRules, ...(await loadRules())] });
  const state = engine.state;
  if (kind === 'ood') {
    for (const t of await engine.outOfDate()) out.push(show(t));
  } else {
    if (kind === 'targets') {
      // a target that made nothing is one until a build of it fails
      for (const [t, r] of state.targets) {
        if (fs.existsSync(path.resolve(base, t)) || (r.out === 'n' && !state.intents.has(t))) out.push(show(t));
      }
    } else {
      const srcs = new Set<string>();
      for (const r of state.targets.values())
        for (const d of r.deps) if (d.k === 'c' && !d.p.startsWith('builtin:') && !state.targets.has(d.p)) srcs.add(d.p);
      // a target that never built, replaced by a file made by hand
      for (const t of state.intents.keys()) {
        const st = state.targets.has(t) ? undefined : fs.statSync(path.resolve(base, t), { throwIfNoEntry: false });
        if (st && engine.isSource(t, st)) srcs.add(t);
      }
      for (const s of srcs) if (fs.existsSync(path.resolve(base, s))) out.push(show(s));
    }
  }
  state.close();
  out.sort();
  if (out.length) process.stdout.write(out.join('\n') + '\n');
  return EXIT.ok;
}

function whichdo(args: string[]): number {
  if (args.length !== 1) throw new UsageError('redo-whichdo takes exactly one target');
  const abs = path.resolve(args[0]!);
  for (const c of candidates(abs)) {
    const shown = path.relative(process.cwd(), c.dofile) || c.dofile;
    process.stdout.write(shown + '\n');
    if (fs.statSync(c.dofile, { throwIfNoEntry: false })?.isFile()) return EXIT.ok;
  }
  return EXIT.failed;
}

async function main(cmd: string, argv: string[]): Promise<number> {
  if (!(cmd in HELP)) throw new UsageError(`unknown command ${cmd}`);
  const flags = parseFlags(cmd, argv);
  const sock = process.env.REDO_ENGINE;
  const job = process.env.REDO_JOB ?? '0';

  if (['redo-targets', 'redo-sources', 'redo-ood', 'redo-always', 'redo-flush-cache'].includes(cmd) && flags.args.length) {
    throw new UsageError('takes no arguments');
  }
  // inside a build, what it has done so far must be on disk to be listed
  if (sock && (cmd === 'redo-targets' || cmd === 'redo-sources' || cmd === 'redo-ood')) await ask(sock, job, 'sync', []);
  switch (cmd) {
    case 'redo-targets':
      return listFromState('targets');
    case 'redo-sources':
      return listFromState('sources');
    case 'redo-ood':
      return listFromState('ood');
    case 'redo-whichdo':
      return whichdo(flags.args);
    case 'redo-stamp': {
      const h = crypto().createHash('sha256');
      for await (const chunk of process.stdin) h.update(chunk as Buffer);
      if (!sock) return EXIT.ok; // outside a build a stamp means nothing
      return (await ask(sock, job, 'stamp', [digest(h)])) ?? notInBuild(cmd);
    }
    case 'redo-ifcreate':
    case 'redo-always':
    case 'redo-flush-cache': {
      const req = cmd === 'redo-ifcreate' ? 'ifcreate' : cmd === 'redo-always' ? 'always' : 'flush';
      if (!sock) return cmd === 'redo-ifcreate' || cmd === 'redo-always' ? notInBuild(cmd) : EXIT.ok;
      return (await ask(sock, job, req, flags.args)) ?? notInBuild(cmd);
    }
  }

  // redo, redo-ifchange
  // only a redo the user runs defaults to `all`; inside a build, nothing
  const targets = flags.args.length ? flags.args : cmd === 'redo' && !sock ? ['all'] : [];
  if (targets.length === 0) return EXIT.ok;
  if (sock) {
    const passed = requestArgs({ jobs: flags.jobs, shuffle: flags.shuffle, keepGoing: flags.keepGoing, targets });
    const rc = await ask(sock, job, cmd === 'redo' ? 'redo' : 'ifchange', passed);
    if (rc !== null) return rc;
    // the engine that started us is gone: build on our own
  }
  const engine = new Engine({
    jobs: flags.jobs,
    keepGoing: flags.keepGoing,
    xtrace: flags.xtrace,
    verbose: flags.verbose,
    debug: flags.debug,
    shuffle: flags.shuffle,
    rules: [...packageRules, ...(await loadRules())],
    startDir: process.cwd(),
    log: new Log(process.cwd(), findBase(process.cwd())),
  });
  const stop = (sig: NodeJS.Signals) => {
    void engine.interrupt().finally(() => process.exit(sig === 'SIGINT' ? EXIT.interrupted : 128 + os.constants.signals[sig]));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.once('SIGHUP', stop);
  let rc: number;
  try {
    rc = await engine.build(targets, cmd === 'redo');
    engine.log.summary(engine.failures);
  } finally {
    await engine.close();
  }
  return rc;
}

function notInBuild(cmd: string): number {
  process.stderr.write(`${cmd}: must be run from a .do file (no redo build is running)\n`);
  return EXIT.notInBuild;
}

export async function run(argv: string[]): Promise<void> {
  const cmd = path.basename(argv[0] ?? 'redo');
  try {
    process.exitCode = await main(cmd, argv.slice(1));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`${cmd}: ${printable(e.message, true)} (see ${cmd} --help)\n`);
      process.exitCode = EXIT.usage;
    } else if (e instanceof BuildError) {
      process.stderr.write(`${cmd}: ${printable(e.message, true)}\n`);
      process.exitCode = e.status;
    } else {
      process.stderr.write(`${cmd}: ${printable((e as Error).message, true)}\n`);
      process.exitCode = EXIT.failed;
    }
  }
}
