/**
 * The redo family of commands: argument parsing and what the user sees.
 * Which command runs is the name it was called by (bin/redo-ifchange is a
 * link to bin/redo), passed as the first argument by the bin/ wrapper.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { crypto } from '../engine/lazy.ts';
import { digest } from '../engine/state.ts';
import { Engine, findBase, STATE_DIR } from '../engine/engine.ts';
import { candidates } from '../engine/dofile.ts';
import { queryState, type Query } from '../engine/queries.ts';
import { ask, requestArgs } from '../engine/protocol.ts';
import { Log } from '../engine/log.ts';
import { loadRules } from '../engine/plugins.ts';
import { packageRules } from '../pkgrules/rules.ts';
import { EXIT, UsageError, parse, parseJobs, wantsHelp, report, onSignals } from './frame.ts';

const OPTIONS = `
  -j N, --jobs N   run up to N builds at once (shared with make via the jobserver)
  -k, --keep-going keep building other targets after one fails
  -x               run .do files with sh -x (print each command)
  -v               run .do files with sh -v (print each line as read)
  -d, --debug      say why each target is rebuilt
  --shuffle        build in random order (shows missing dependencies)
  -h, --help       this text
`;

/** What a build reads from the environment: the commands that build say so. */
const BUILD_ENV = `
Environment: MAKEFLAGS (a make jobserver to share: --jobserver-auth=R,W),
REDO_RULES (JavaScript modules of built-in rules, colon-separated); the
package rules read PEERPKGS_HOME and the PKG_* variables (see peerpkgs --help).
`;

/** The commands only a .do runs: what they read is the engine's to set. */
const inBuildEnv = (outside: string) => `
Environment: REDO_ENGINE and REDO_JOB, which redo sets for the .do it runs;
without them (outside a build), ${outside}.
`;
const IN_BUILD_ENV = inBuildEnv('exit status 3');
const IN_BUILD_ENV_NOOP = inBuildEnv('it does nothing');

const HELP: Record<string, string> = {
  redo: `usage: redo [-j N] [-k] [-x] [-v] [-d] [--shuffle] [TARGET...]
Build each TARGET (default: all), even if it is up to date.
${OPTIONS}${BUILD_ENV}`,
  'redo-ifchange': `usage: redo-ifchange [-j N] [-k] [-x] [-v] [-d] [--shuffle] TARGET...
Build each TARGET if it is out of date; inside a .do, also record that the
target being built depends on it.
${OPTIONS}${BUILD_ENV}`,
  'redo-ifcreate': `usage: redo-ifcreate FILE...
Inside a .do: rebuild the current target when FILE comes into existence.
${IN_BUILD_ENV}`,
  'redo-always': `usage: redo-always
Inside a .do: rebuild the current target every run.
${IN_BUILD_ENV}`,
  'redo-stamp': `usage: redo-stamp < DATA
Inside a .do: dependents of the current target rebuild only when DATA changes.
${IN_BUILD_ENV_NOOP}`,
  'redo-flush-cache': `usage: redo-flush-cache
Inside a build: forget which targets were checked, so that the next
redo-ifchange looks at them again.
${IN_BUILD_ENV_NOOP}`,
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

function parseFlags(cmd: string, argv: string[]): Flags {
  if (wantsHelp(argv)) {
    process.stdout.write(HELP[cmd] ?? HELP.redo!);
    process.exit(EXIT.ok);
  }
  // the other commands take names only, whatever they look like
  if (cmd !== 'redo' && cmd !== 'redo-ifchange') {
    const end = argv.indexOf('--');
    const args = end < 0 ? argv : [...argv.slice(0, end), ...argv.slice(end + 1)];
    return { shuffle: false, keepGoing: false, xtrace: false, verbose: false, debug: false, args };
  }
  const { values, positionals } = parse(argv, {
    jobs: { type: 'string', short: 'j' },
    'keep-going': { type: 'boolean', short: 'k' },
    xtrace: { type: 'boolean', short: 'x' },
    verbose: { type: 'boolean', short: 'v' },
    debug: { type: 'boolean', short: 'd' },
    shuffle: { type: 'boolean' },
  });
  return {
    jobs: parseJobs(values.jobs),
    shuffle: values.shuffle ?? false,
    keepGoing: values['keep-going'] ?? false,
    xtrace: values.xtrace ?? false,
    verbose: values.verbose ?? false,
    debug: values.debug ?? false,
    args: positionals,
  };
}

async function listFromState(kind: Query): Promise<number> {
  const base = findBase(process.cwd());
  if (!fs.existsSync(path.join(base, STATE_DIR))) return EXIT.ok;
  // the build's own decisions; what it would say while deciding (warnings,
  // missing rules) is not wanted in a list
  const quiet = new Log(process.cwd(), base, () => {});
  const engine = new Engine({ base, keepGoing: true, log: quiet, rules: [...packageRules, ...(await loadRules())] });
  const found = await queryState(engine, kind);
  engine.state.close();
  const out = found.map((rel) => path.relative(process.cwd(), path.resolve(base, rel)) || '.').sort();
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
  onSignals(() => engine.interrupt());
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
    process.exitCode = report(cmd, e);
  }
}
