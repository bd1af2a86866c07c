/**
 * What every command shares: the one argument parser, how `-j` reads, the
 * streams a command writes to (CommandIO), how an error becomes a line and
 * an exit status, the signal policy, and the package directories a
 * command names. The commands themselves are peerpkgs-main.ts's and
 * redo-main.ts's tables.
 */
import * as path from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import { explain, SIGNAL_EXIT, UsageError, type HandledSignal } from '../errors.ts';
import { printable } from '../engine/log.ts';
import { isPackageDir } from '../pkgrules/rules.ts';
import { TreeError } from '../tree/errors.ts';

// node:util as the CommonJS module Node has loaded already: importing it as
// an ES module builds a facade that loads every lazy part of it (its diff,
// TextDecoder, colours...), a few milliseconds every command would pay
const util = (): typeof import('node:util') => process.getBuiltinModule('node:util');

export { EXIT, UsageError } from '../errors.ts';

/** Where a command writes, and the environment it reads; tests pass their own. */
export interface CommandIO {
  out(s: string): void;
  err(s: string): void;
  /** raw bytes to stdout, honouring backpressure (only the commands that write bytes need it) */
  write?(b: Uint8Array): Promise<void>;
  env: NodeJS.ProcessEnv;
}

export const stdio: CommandIO = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
  write: (b) => new Promise((resolve) => (process.stdout.write(b) ? resolve() : process.stdout.once('drain', resolve))),
  env: process.env,
};

export type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * node:util's parseArgs (long and short options, bundled short flags,
 * `-j4`, `--jobs=4`, `--`), with its errors said as our usage errors.
 * Options given more than once keep the last value unless `multiple`.
 */
export function parse<O extends Options>(argv: string[], options: O) {
  try {
    return util().parseArgs({ args: joinValues(argv, options), options, allowPositionals: true, strict: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // "Unknown option '-z'", "Option '-o, --output <value>' argument missing"
    const opt = /'(-[^', ]*)/.exec((e as Error).message)?.[1] ?? '';
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option ${opt}`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') throw new UsageError(`${opt} needs a value`);
    throw new UsageError((e as Error).message);
  }
}

/**
 * `--cmd -c` as `--cmd=-c`: an option that takes a value takes the next
 * word whatever it looks like, where parseArgs alone refuses one that
 * starts with a dash (`--cmd -c`, `-o -`).
 */
function joinValues(argv: string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const long = a.startsWith('--') ? options[a.slice(2)] : undefined;
    const short = /^-[^-]$/.test(a) ? Object.values(options).find((o) => o.short === a[1]) : undefined;
    if ((long ?? short)?.type === 'string' && i + 1 < argv.length) out.push(long ? `${a}=${argv[++i]}` : `${a}${argv[++i]}`);
    else out.push(a);
  }
  return out;
}

/** The value of -j/--jobs: a positive whole number, or not given. */
export function parseJobs(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!v || !Number.isInteger(n) || n < 1) throw new UsageError(`-j needs a positive whole number, not ${JSON.stringify(v)}`);
  return n;
}

/** Whether argv asks for help anywhere (each command's --help is its own). */
export function wantsHelp(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === '-h' || a === '--help');
}

/** Says `e` as `CMD: line` on io.err and returns its exit status; `named`:
 * the words of the command line, whose files are the user's (errors.ts). */
export function report(cmd: string, e: unknown, io: CommandIO = stdio, named: string[] = process.argv.slice(2)): number {
  const { message, exitCode } = explain(e, cmd, named);
  io.err(`${cmd}: ${printable(message, true)}\n`);
  return exitCode;
}

/**
 * The signal policy: on SIGINT, SIGTERM or SIGHUP (a closed terminal: its
 * temporaries must go too) `cleanup` runs once, then the process exits as a
 * shell would report the signal (SIGNAL_EXIT). Returns the uninstaller.
 */
export function onSignals(cleanup: () => Promise<unknown> | unknown): () => void {
  let stopping = false;
  const handlers = new Map<HandledSignal, () => void>();
  for (const sig of Object.keys(SIGNAL_EXIT) as HandledSignal[]) {
    const h = () => {
      if (stopping) return;
      stopping = true;
      void Promise.resolve()
        .then(cleanup)
        .finally(() => process.exit(SIGNAL_EXIT[sig]));
    };
    handlers.set(sig, h);
    process.once(sig, h);
  }
  return () => {
    for (const [sig, h] of handlers) process.off(sig, h);
  };
}

/** A word that names a catalog entry rather than a package directory (which is a path: ./pkg/NAME). */
export function isBareName(a: string): boolean {
  return a !== '' && a !== '.' && a !== '..' && !a.includes('/');
}

/** The package directories a command names: at least one, each a package. */
export function packageDirs(args: string[]): string[] {
  if (args.length === 0) throw new UsageError('name at least one package directory, e.g. ./pkg/make');
  return args.map((a) => {
    const dir = path.resolve(a);
    if (!isPackageDir(dir)) throw new TreeError(`${a}: not a package directory (no build script or .pkg.tar.gz.do)`);
    return dir;
  });
}

/**
 * What a command's --json prints: one JSON document, two-space indented,
 * ending in a newline; the shape of each is in the README (and its schema
 * under test/schemas/).
 */
export function printJson(value: unknown, io: Pick<CommandIO, 'out'> = stdio): void {
  io.out(JSON.stringify(value, null, 2) + '\n');
}

/** A path as the user is shown it: relative to the current directory. */
export function rel(p: string): string {
  return path.relative(process.cwd(), p) || '.';
}
