/**
 * A job: one build of one target, as the engine tracks it while it runs,
 * and the Result a target gives the targets that depend on it.
 */
import { PeerpkgsError } from '../errors.ts';
import type { Dep } from './state.ts';

export interface Result {
  ok: boolean;
  id: string; // identity for dependents
  status: number; // exit status of a failed build
  missing?: true; // no file and no rule, and nobody was told yet
}

/** Whether a request's targets go on after one of them failed: once one
 * fails, the others not yet started are not started (unless -k). */
export interface Batch {
  failed: boolean;
  keepGoing: boolean;
}

export interface Job {
  id: number; // 0: not a build of its own (a stand-in, a trial)
  target: string; // base-relative
  depth: number;
  deps: Dep[];
  seen: Set<string>; // dependency keys already recorded
  stamp: string | null;
  /** a built-in rule said: the target as it stands is the output */
  keep?: boolean;
  parent: Job | null;
  rule: string; // the .do file (base-relative) or builtin:NAME
  /** environment changes this job runs with, relative to the engine's */
  env: Map<string, string | null>;
  /** its environment as it started (`export -p`), to see what it changes */
  envBase: string | null;
  /** where its stderr goes, if not the engine's: a /proc/PID/fd/2 path */
  err?: string;
  /** the request this job is asking in */
  batch?: Batch;
  /** the job whose lent slot this one runs on (0: a slot of its own) */
  borrowed: number;
}

export class BuildError extends PeerpkgsError {
  constructor(msg: string, status = 1) {
    super(msg, status, 'BuildError');
  }

  get status(): number {
    return this.exitCode;
  }
}

export const OK_SOURCE = (id: string): Result => ({ ok: true, id, status: 0 });
const NO_ENV: Map<string, string | null> = new Map();

/** A job for `target` asked for by `from` (null: the top of the run),
 * in the asker's environment, its stderr going to `err`. */
export function newJob(id: number, target: string, rule: string, from: Job | null, err: string | undefined): Job {
  return {
    id,
    target,
    depth: from ? from.depth + 1 : 0,
    deps: [],
    seen: new Set(),
    stamp: null,
    parent: from,
    rule,
    env: from?.env ?? NO_ENV,
    envBase: null,
    err,
    batch: undefined,
    borrowed: 0,
  };
}

/** Record that `job` depended on `d`, once. */
export function addDep(job: Job, d: Dep): void {
  const key = d.k === 'a' ? 'a' : `${d.k}:${d.p}`;
  if (job.seen.has(key)) {
    if (d.k === 'c') {
      // the newest identity wins (a target rebuilt after a flush)
      const i = job.deps.findIndex((x) => x.k === 'c' && x.p === d.p);
      if (i >= 0) job.deps[i] = d;
    }
    return;
  }
  job.seen.add(key);
  job.deps.push(d);
}
