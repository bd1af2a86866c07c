/**
 * Built-in rules: TypeScript functions that make targets, checked, locked and
 * recorded exactly like .do files. The package tree registers its rules
 * (.pkghash, .closure, .pkg.tar.gz …) through this interface.
 */
import { PeerpkgsError } from '../errors.ts';

/** What a built-in rule can do while it builds, the same calls a .do makes. */
export interface BuildContext {
  /** target path, absolute */
  readonly target: string;
  /** target path relative to the engine's base directory */
  readonly rel: string;
  /** temporary output path (absolute), renamed onto the target on success */
  readonly out: string;
  /** job slots the engine was given, for rules that run parallel tools */
  readonly jobs: number;
  /** asked for with `redo` (forced) in this run: made afresh here, not
   * taken from what an earlier build or a cache has */
  readonly afresh: boolean;
  /** redo-ifchange: make these up to date and depend on them (absolute or base-relative) */
  ifchange(paths: string[]): Promise<void>;
  /** redo-ifcreate: rebuild if any of these comes into existence */
  ifcreate(paths: string[]): void;
  /** redo-always */
  always(): void;
  /** redo-stamp: dependents rebuild only when this value changes */
  stamp(value: string): void;
  /** the target as it stands is this build's output: nothing to rename
   * (for a rule that finds its output unchanged, cheaper than rewriting it) */
  keep(): void;
  /** a line for the user, shown under the target */
  log(line: string): void;
  /** the rule's own work begins (its dependencies are made): for progress */
  began(): void;
  /** a line of output of the tool the rule runs (a build's), as it came */
  output(line: Buffer): void;
  /** the target was taken from a cache, not built; `how`: "from URL …" */
  substituted(how: string): void;
  /** bytes of the target coming from elsewhere (a cache's archive of
   * `total` bytes), told as they come: for progress */
  transfer(total: number): Transfer;
  /** where the rule's own progress goes (a download's), through the run's
   * Log: a terminal to redraw a line on, or not */
  readonly progressOutput: ProgressOutput;
  /** the jobserver for tools the rule runs (make -j shares the engine's
   * slots): MAKEFLAGS as the tool should see it, and which of the engine's
   * fds the tool must get at which numbers; null when running -j1 */
  jobserver(): { makeflags: string; fds: Record<number, number> } | null;
  /** what the rules keep for the rest of this run */
  readonly run: RunContext;
}

/**
 * What the rules keep for one run of the engine: what they read once a run
 * (the package tree's graph, the binary caches to ask) and share between
 * the targets they build in it. A rule keeps it here, not in its module,
 * since a module outlives the run in a process that runs several (a test,
 * `seed reproduce`'s two trees), and there a second run must see the tree
 * as it is now. redo-flush-cache forgets it with the rest of what the run
 * has checked.
 */
export class RunContext {
  private readonly values = new Map<symbol, unknown>();

  /** The value `make` gives, made the first time `key` is asked for in this run. */
  once<T>(key: symbol, make: () => T): T {
    if (this.values.has(key)) return this.values.get(key) as T;
    const value = make();
    this.values.set(key, value);
    return value;
  }

  forget(): void {
    this.values.clear();
  }
}

/** Bytes moving, told as they move: a download's (fetch/progress.ts), a cache's archive's (BuildContext.transfer). */
export interface Transfer {
  advance(bytes: number): void;
  done(): void;
  /** it failed; whoever moved it says why */
  abort(): void;
}

/** A transfer nobody watches. */
export const NO_TRANSFER: Transfer = Object.freeze({ advance() {}, done() {}, abort() {} });

/** Runs `work`, then ends `transfer` as it went: done, or aborted and the error passed on. */
export async function moving<T>(transfer: Transfer, work: () => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await work();
  } catch (e) {
    transfer.abort();
    throw e;
  }
  transfer.done();
  return result;
}

/** A stream progress is written to (fetch/progress.ts's Output). */
export interface ProgressOutput {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface Rule {
  /** shown in logs and recorded; changing it rebuilds what the rule made */
  readonly name: string;
  /** bump to rebuild every target the rule made */
  readonly version: string;
  /** no "redo  target" line when it runs (a rule run every time, cheaply);
   * redo-ood runs it, its output thrown away, to learn whether its identity
   * moved, so it must do nothing but write ctx.out */
  readonly quiet?: boolean;
  /** every name this rule matches is a target, never a source, even where a
   * .do file overrides the rule: a file there that has no record of its
   * build (state lost, its mtime's mark with it) or that changed since is
   * rebuilt, not kept */
  readonly alwaysTarget?: boolean;
  /** may a .do file in the target's own directory make it in this rule's
   * place? (default: yes, as in redo). Where the rule says no, it is used
   * whatever .do files are there: a .do runs unsandboxed, and whoever loads
   * that directory says what is wrong with it */
  overridable?(rel: string, abs: string): boolean;
  /** does this rule make the target? (path relative to base, and absolute) */
  matches(rel: string, abs: string): boolean;
  /** write the output to ctx.out (file or directory), or nothing */
  build(ctx: BuildContext): Promise<void>;
}

/** Thrown by a rule to fail with a message and exit status, not a stack. */
export class RuleError extends PeerpkgsError {
  constructor(message: string, status = 1) {
    super(message, status, 'RuleError');
  }

  /** the exit status the target fails with */
  get status(): number {
    return this.exitCode;
  }
}
