/**
 * The one exit-code table, the base class of every error a command reports
 * by its message alone, and the one mapping from any error to what the user
 * sees: a line and a status.
 *
 * It sits below every layer and imports nothing of ours, so that any layer
 * (tree/ included) may throw an error that says its own status without
 * reaching up into the engine or the CLI.
 */
import * as path from 'node:path';

/** Exit statuses, the same for every command (README: "Exit status"). */
export const EXIT = {
  ok: 0,
  failed: 1, // a build failed (a failing build's own status is passed on instead)
  usage: 2,
  notInBuild: 3, // a redo-* command that only makes sense inside a .do
  badTree: 4, // a package directory, dependency list, fetch file or mirror database is wrong
  fetch: 5, // a source could be had from no source
  notReproducible: 6, // peerpkgs check: two builds differ; seed reproduce: two generations differ
  ipfsNotFound: 7, // the path is not in a directory that was reached
  ipfsUnreachable: 8, // no connected peer had the blocks or the record in time
  damaged: 9, // peerpkgs verify: an output or venv is not as its manifest says; verify-provenance: not of this archive
  untrusted: 10, // verify-provenance: a signature that does not verify, or none by a trusted key; a catalog refused
  notFound: 11, // peerpkgs log: no build of the package is logged; info/install NAME: no catalog has it
  stalled: 12, // internal: every job of a build waits on another and nothing runs (the jobs are named)
} as const;

/**
 * Signals end a command as a shell reports them, 128 + the signal's number,
 * after the build's temporaries and children are cleaned up: 129 for SIGHUP
 * (a closed terminal), 130 for SIGINT (^C), 143 for SIGTERM.
 */
export const SIGNAL_EXIT = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 } as const;
export type HandledSignal = keyof typeof SIGNAL_EXIT;

/**
 * An error that explains itself: its message is the one line the user
 * reads (no stack), `name` is stable for callers that match on it across
 * module copies, and `exitCode` is its row of EXIT.
 */
export class PeerpkgsError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT.failed, name?: string, options?: ErrorOptions) {
    super(message, options);
    // the class's own name unless told: what callers match on, across module copies
    this.name = name ?? new.target.name;
    this.exitCode = exitCode;
  }
}

/**
 * A PeerpkgsError class of its own name and status, for the errors that
 * are no more than that: `class CacheError extends errorClass('CacheError') {}`.
 */
export function errorClass(name: string, exitCode: number = EXIT.failed) {
  return class extends PeerpkgsError {
    constructor(message: string, options?: ErrorOptions) {
      super(message, exitCode, name, options);
    }
  };
}

/** The command line is wrong: the message ends with "see CMD --help". */
export class UsageError extends PeerpkgsError {
  /** the command whose --help to see, when not the one reporting it */
  command?: string;
  constructor(message: string) {
    super(message, EXIT.usage, 'UsageError');
  }
}

/** What each file error means, in the words of the C library's strerror. */
const FILE_ERRORS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'is a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'already exists',
  ENOSPC: 'no space left on device',
  EROFS: 'read-only file system',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
};

/**
 * A system call's error on a file, as one line: the path, then what is
 * wrong with it (Node's own message repeats the code and the call:
 * "ENOENT: no such file or directory, open 'x'"). `named` are the
 * arguments of the command line: a path among them is the user's mistake,
 * a usage error, said with the path as the user wrote it; any other file
 * is a failure.
 */
function fileError(e: NodeJS.ErrnoException, named: string[]): { message: string; exitCode: number } | null {
  const what = e.code && FILE_ERRORS[e.code];
  if (!what || typeof e.path !== 'string') return null;
  const cwd = process.cwd();
  const given = named.find((a) => a !== '' && path.resolve(cwd, a) === path.resolve(cwd, e.path!));
  if (given !== undefined) return { message: `${given}: ${what}`, exitCode: EXIT.usage };
  return { message: `${e.path}: ${what}`, exitCode: EXIT.failed };
}

/**
 * What a command prints for `e` (after "CMD: ") and the status it exits
 * with. An error that is not a PeerpkgsError is a failure (1), but for a
 * file the command line named (see fileError).
 */
export function explain(e: unknown, cmd: string, named: string[] = []): { message: string; exitCode: number } {
  const message = (e as Error)?.message ?? String(e);
  if (e instanceof UsageError) return { message: `${message} (see ${e.command ?? cmd} --help)`, exitCode: EXIT.usage };
  if (e instanceof PeerpkgsError) return { message, exitCode: e.exitCode };
  return fileError(e as NodeJS.ErrnoException, named) ?? { message, exitCode: EXIT.failed };
}
