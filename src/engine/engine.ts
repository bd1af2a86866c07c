/**
 * The redo engine: decides what is out of date, runs the rules that make
 * targets, and records what each build depended on.
 *
 * One engine process serves a whole build. .do files run in shell workers
 * and ask for their dependencies over a socket (see worker.ts), so nested
 * builds are scheduled here, with the job slots of jobserver.ts, and not
 * by starting more redo processes. Other redo processes working on the same
 * tree are kept off our targets by the locks of locks.ts.
 *
 * A target is up to date when every dependency it recorded last time still
 * has the identity it had then: a content hash for files (found through a
 * stat signature when the file was not touched), the stamp for stamped
 * targets, and the build sequence for targets that write nothing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as netTypes from 'node:net';
import { net } from './lazy.ts';
import { State, statSig, sameSig, hashFile, type Dep, type Sig, type TargetRecord } from './state.ts';
import { findRule, type DoFile, type Lookup } from './dofile.ts';
import { JobServer, inheritedJobServer, JOBSERVER_R, JOBSERVER_W } from './jobserver.ts';
import { Locks, isAlive } from './locks.ts';
import { WorkerPool, stopDescendants, MessageParser, parseExports, envChanges, envScript, type JobSpec } from './worker.ts';
import type { Rule, BuildContext } from './rules.ts';
import { RuleError } from './rules.ts';
import { PeerpkgsError } from '../errors.ts';
import { Log } from './log.ts';
import { temporaryName, forget, removeOwnTemporaries, interrupting } from '../archive/temporary.ts';

export const STATE_DIR = '.redo';

/** bin/ of this installation, holding the redo-* commands */
export const BIN_DIR = path.resolve(import.meta.dirname, '../../bin');

export interface EngineOptions {
  jobs?: number; // -j; 0 or undefined: 1, or the make jobserver we run under
  keepGoing?: boolean; // -k
  xtrace?: boolean; // -x
  verbose?: boolean; // -v
  debug?: boolean; // -d
  shuffle?: boolean; // --shuffle: build in random order, to find missing dependencies
  rules?: Rule[];
  /** directory whose .redo holds the state; found upward from cwd if unset */
  base?: string;
  /** directory paths are printed relative to (the user's cwd) */
  startDir?: string;
  log?: Log;
  env?: NodeJS.ProcessEnv;
}

export interface Result {
  ok: boolean;
  id: string; // identity for dependents
  status: number; // exit status of a failed build
  missing?: true; // no file and no rule, and nobody was told yet
}

interface Job {
  id: number;
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
  /** the request this job is asking in: once one of its targets fails, the
   * others not yet started are not started (unless -k) */
  batch?: { failed: boolean; keepGoing: boolean };
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

/** Find the directory holding .redo, from `start` upward; else `start`. */
export function findBase(start: string): string {
  for (let d = start; ; ) {
    if (fs.statSync(path.join(d, STATE_DIR), { throwIfNoEntry: false })?.isDirectory()) return d;
    const up = path.dirname(d);
    if (up === d) return start;
    d = up;
  }
}

const OK_SOURCE = (id: string): Result => ({ ok: true, id, status: 0 });
const NO_ENV: Map<string, string | null> = new Map();

export class Engine {
  readonly base: string;
  private readonly basePrefix: string;
  readonly stateDir: string;
  readonly state: State;
  readonly log: Log;
  private readonly opts: EngineOptions;
  private readonly rules: Rule[];
  /** the rules whose names are never sources */
  private readonly targetRules: Rule[];
  private readonly locks: Locks;
  private readonly env: NodeJS.ProcessEnv;
  private jobserver: JobServer | null = null;
  private pool: WorkerPool | null = null;
  private server: netTypes.Server | null = null;
  private sockDir = '';
  private readonly memo = new Map<string, Result | Promise<Result>>();
  private readonly jobs = new Map<number, Job>();
  /** target -> targets it is waiting for, to find cycles */
  private readonly waits = new Map<string, Set<string>>();
  private nextJob = 1;
  /** every target whose rule failed in this run, for the summary at the end */
  readonly failures: Array<{ target: string; status: number }> = [];
  private readonly topBatch: { failed: boolean; keepGoing: boolean };
  private readonly realDirs = new Map<string, string>();
  private readonly shebangs = new Map<string, string[]>();
  /** counts ended jobs: anything cached about the file system before one
   * ended must be checked again */
  private epoch = 0;
  private readonly listings = new Map<string, { names: Set<string> | null; epoch: number; sig: Sig | null; asked: number }>();
  /** redo-ood (outOfDate): decide, build nothing; what would be built */
  private dry: Set<string> | null = null;

  constructor(opts: EngineOptions = {}) {
    this.opts = opts;
    this.env = opts.env ?? process.env;
    this.base = fs.realpathSync(path.resolve(opts.base ?? findBase(process.cwd())));
    this.basePrefix = this.base === '/' ? '/' : this.base + '/';
    this.stateDir = path.join(this.base, STATE_DIR);
    this.rules = opts.rules ?? [];
    this.targetRules = this.rules.filter((r) => r.alwaysTarget);
    this.log = opts.log ?? new Log(opts.startDir ?? process.cwd(), this.base);
    this.state = new State(this.stateDir);
    this.locks = new Locks(this.stateDir);
    this.state.load();
    this.topBatch = { failed: false, keepGoing: opts.keepGoing === true };
  }

  get slots(): number {
    return this.jobserver?.slots ?? this.opts.jobs ?? 1;
  }

  // ---- paths ----

  rel(abs: string): string {
    const r = path.relative(this.base, abs);
    return r === '' ? '.' : r;
  }

  abs(rel: string): string {
    // rel is normalised already: joining is enough, and cheaper than resolve
    return rel === '.' ? this.base : rel.startsWith('../') || rel === '..' ? path.resolve(this.base, rel) : this.basePrefix + rel;
  }

  // ---- public entry points ----

  /** `redo` (force) or `redo-ifchange` on targets given as paths from cwd. */
  async build(targets: string[], force: boolean, cwd = process.cwd()): Promise<number> {
    const rels = targets.map((t) => this.relFrom(cwd, t));
    if (this.opts.shuffle) shuffle(rels);
    const results = await Promise.all(rels.map((t) => this.noting(this.topBatch, this.ensure(t, force, null))));
    const failed = results.find((r) => !r.ok);
    return failed ? failed.status || 1 : 0;
  }

  /** The signal policy, for the commands' SIGINT, SIGTERM and SIGHUP
   * handlers before they exit: stop every process the build started (a
   * sandboxed build writes into its work directory to the end), remove
   * this process's temporaries, and close. */
  async interrupt(): Promise<void> {
    interrupting(); // a build failing now was stopped: its work directory goes too
    this.pool?.stop();
    await stopDescendants();
    await removeOwnTemporaries();
    await this.close();
  }

  /** Stop workers, fold our journal into the snapshot, drop our locks. */
  async close(): Promise<void> {
    this.pool?.stop();
    this.jobserver?.close();
    this.locks.releaseAll();
    if (this.server) {
      await new Promise<void>((r) => this.server!.close(() => r()));
      fs.rmSync(this.sockDir, { recursive: true, force: true });
    }
    if (fs.existsSync(this.stateDir)) {
      try {
        this.state.compact(isAlive);
      } catch (e) {
        this.log.warn(`could not compact state: ${(e as Error).message}`);
      }
    }
    this.state.close();
  }

  /** redo-flush-cache: forget what this run has checked and built. */
  flush(): void {
    for (const [t, p] of this.memo) if (!(p instanceof Promise)) this.memo.delete(t);
    this.shebangs.clear();
    this.realDirs.clear();
    this.state.refresh();
  }

  /** Base-relative path of `arg` given relative to `cwd`. The common case,
   * a plain name below the base, is sliced rather than resolved. */
  private relFrom(cwd: string, arg: string): string {
    if (arg === '') throw new BuildError('an empty target name', 2);
    if (arg.includes('\n')) throw new BuildError(`${JSON.stringify(arg)}: target names cannot contain a newline`, 2);
    const rcwd = this.realDir(cwd);
    let abs: string;
    if (!arg.includes('/') && arg !== '.' && arg !== '..') {
      abs = rcwd === '/' ? '/' + arg : rcwd + '/' + arg;
    } else {
      // `..` is resolved physically, as the shell's cd -P would: through a
      // symlinked directory it leads to the link target's parent
      const joined = arg[0] === '/' ? arg : rcwd + '/' + arg;
      const trimmed = joined.replace(/\/+$/, '') || '/';
      const slash = trimmed.lastIndexOf('/');
      const name = trimmed.slice(slash + 1);
      const dir = this.realDir(trimmed.slice(0, slash) || '/');
      abs = name === '..' ? path.dirname(dir) : name === '.' || name === '' ? dir : dir === '/' ? '/' + name : dir + '/' + name;
    }
    return abs.startsWith(this.basePrefix) ? abs.slice(this.basePrefix.length) : this.rel(abs);
  }

  /** The physical path of a directory (symlinks resolved), remembered for the run. */
  private realDir(d: string): string {
    const known = this.realDirs.get(d);
    if (known !== undefined) return known;
    let real: string;
    try {
      // realpath(3): plain fs.realpathSync drops `x/..` by name first
      real = fs.realpathSync.native(d);
      this.realDirs.set(d, real);
    } catch {
      // not there (yet): resolve what exists, the rest by name
      const parent = path.dirname(d);
      if (parent === d) return d;
      const name = path.basename(d);
      const rp = this.realDir(parent);
      real = name === '..' ? path.dirname(rp) : name === '.' ? rp : path.join(rp, name);
    }
    return real;
  }

  // ---- deciding ----

  /**
   * Make `t` up to date (or build it, if `force`). The answer is immediate
   * when nothing needs building, which keeps a no-op run free of promises.
   */
  ensure(t: string, force: boolean, from: Job | null, quiet = false): Result | Promise<Result> {
    const prior = this.memo.get(t);
    if (prior !== undefined) {
      if (!(prior instanceof Promise)) {
        // a quiet "no rule" answer is asked again when someone wants the message
        if (!force && !(prior.missing && !quiet)) return prior;
      } else {
        const cycle = from ? this.cycleThrough(from.target, t) : null;
        if (cycle) return this.fail(`dependency cycle: ${cycle.map((c) => this.log.show(c)).join(' -> ')}`, 208);
        if (!force) return this.waitFor(from, t, prior);
        // `redo t` runs t's rule every time it is asked, after any build of t under way
        return this.remember(t, prior.then(() => this.examine(t, true, from)), from);
      }
    }
    let r: Result | Promise<Result>;
    try {
      r = this.examine(t, force, from, quiet);
    } catch (e) {
      // an unreadable file, a vanished directory: say which, do not crash
      r = this.fail(`${this.log.show(t)}: ${(e as Error).message}`, 1);
    }
    if (r instanceof Promise) {
      r = r.catch((e: unknown) => this.fail(`${this.log.show(t)}: ${(e as Error).message}`, 1));
    }
    if (!(r instanceof Promise)) {
      this.memo.set(t, r);
      return r;
    }
    return this.remember(t, r, from);
  }

  private remember(t: string, p: Promise<Result>, from: Job | null): Promise<Result> {
    this.memo.set(t, p);
    void p.then((r) => {
      if (this.memo.get(t) === p) this.memo.set(t, r);
    });
    return this.waitFor(from, t, p);
  }

  private waitFor(from: Job | null, t: string, p: Promise<Result>): Promise<Result> {
    if (!from) return p;
    let w = this.waits.get(from.target);
    if (!w) this.waits.set(from.target, (w = new Set()));
    w.add(t);
    return p.finally(() => w.delete(t));
  }

  /** If `to` (transitively) waits for `from`, the path from→to→…→from. */
  private cycleThrough(from: string, to: string): string[] | null {
    if (from === to) return [from, to];
    const seen = new Set<string>();
    const walk = (n: string, trail: string[]): string[] | null => {
      if (n === from) return trail;
      if (seen.has(n)) return null;
      seen.add(n);
      for (const m of this.waits.get(n) ?? []) {
        const r = walk(m, [...trail, m]);
        if (r) return r;
      }
      return null;
    };
    return walk(to, [from, to]);
  }

  private examine(t: string, force: boolean, from: Job | null, quiet = false): Result | Promise<Result> {
    const abs = this.abs(t);
    const st = fs.statSync(abs, { throwIfNoEntry: false });
    const rec = this.state.targets.get(t);
    if (rec) {
      const hand = this.modifiedByHand(t, abs, rec, st, from?.err);
      if (hand) return hand;
      // not what the record describes: missing, changed, or (where it made
      // nothing) something redo wrote since, its record lost
      if (force || this.state.intents.has(t) || (rec.out !== 'n' && !st) || (rec.out === 'f' && st && !sameSig(st, rec.sig)) || (rec.out === 'n' && st))
        return this.rebuild(t, abs, st, from);
      const changed = this.depsChanged(rec, from);
      if (changed === false) return OK_SOURCE(rec.id);
      if (changed === true) return this.rebuild(t, abs, st, from);
      return changed.then((c) => (c ? this.rebuild(t, abs, st, from) : OK_SOURCE(rec.id)));
    }
    if (st) {
      if (!this.isSource(t, st)) {
        const lookup = this.lookup(abs, t);
        if (lookup.found) {
          if (this.opts.debug) this.log.debug(`${this.log.show(t)}: rebuild, no record of the build that made it`);
          return this.make(t, lookup, from);
        }
      }
      if (force && this.lookup(abs, t).found) {
        // a file redo did not make is a source, whatever .do matches it
        this.log.warn(`${this.log.show(t)}: exists and not marked as generated; not redoing (remove it to rebuild)`, from?.err);
      }
      return OK_SOURCE(st.isDirectory() ? 'dir' : 'h:' + this.state.fileHash(t, abs, st));
    }
    const lookup = this.lookup(abs, t);
    if (!lookup.found) {
      if (quiet) return { ok: false, id: '', status: 1, missing: true };
      return this.fail(`no rule to make ${this.log.show(t)} (no .do file and no such file)`, 1);
    }
    return this.make(t, lookup, from);
  }

  private rebuild(t: string, abs: string, st: fs.Stats | undefined, from: Job | null): Result | Promise<Result> {
    const lookup = this.lookup(abs, t);
    if (!lookup.found) {
      if (st) {
        // its .do is gone: what is left is a source now
        if (this.dry) return OK_SOURCE('h:' + this.state.fileHash(t, abs, st));
        this.state.forgetTarget(t);
        this.log.info(`${this.log.show(t)}: its .do file is gone; it is a source now`);
        return OK_SOURCE('h:' + this.state.fileHash(t, abs, st));
      }
      return this.fail(`no rule to make ${this.log.show(t)} (its .do file is gone)`, 1);
    }
    return this.make(t, lookup, from);
  }

  private modifiedByHand(t: string, abs: string, rec: TargetRecord, st: fs.Stats | undefined, to?: string): Result | null {
    if (!st) return null;
    if (rec.out === 'd') return null;
    if (rec.out === 'f') {
      if (st.isDirectory()) return null;
      if (sameSig(st, rec.sig)) return null;
      const h = hashFile(abs);
      if ((rec.oh ?? rec.id.slice(2)) === h) return null;
      // redo wrote it and crashed before recording it, or only rules make it
      if (!this.isSource(t, st)) return null;
      this.log.warn(`${this.log.show(t)} - you modified it; skipping (remove it to rebuild)`, to);
      return OK_SOURCE('h:' + h);
    }
    // made nothing last time, but something is there now: ours if marked
    if (!this.isSource(t, st)) return null;
    this.log.warn(`${this.log.show(t)} - you modified it; skipping (remove it to rebuild)`, to);
    return OK_SOURCE(st.isDirectory() ? 'dir' : 'h:' + this.state.fileHash(t, abs, st));
  }

  /** Has any dependency of `rec` changed? Synchronous until a dependency
   * needs building; then the rest is checked once it is built. */
  private depsChanged(rec: TargetRecord, asker: Job | null, start = 0, self?: Job): boolean | Promise<boolean> {
    const deps = rec.deps;
    for (let i = start; i < deps.length; i++) {
      const d = deps[i]!;
      if (d.k === 'a') return true;
      if (d.k === 'n') {
        if (this.exists(this.abs(d.p))) return this.why(rec, d.p, 'now exists');
        continue;
      }
      if (d.p.startsWith('builtin:')) {
        const rule = this.rules.find((r) => `builtin:${r.name}` === d.p);
        if (!rule || rule.version !== d.id) return this.why(rec, d.p, 'is a new version');
        continue;
      }
      const pending = this.memo.get(d.p);
      if (pending instanceof Promise && this.cycleThrough(rec.t, d.p)) return true; // stale record; the rule decides
      // dependencies are built on behalf of whoever asked for rec.t (its
      // slots, its environment, its place in the output); quiet: a
      // dependency gone without a rule just means "changed"
      self ??= this.standIn(rec.t, asker);
      const r = this.ensure(d.p, false, self, true);
      if (r instanceof Promise) {
        const me = self;
        return r.then((res) =>
          !res.ok || res.id !== d.id ? this.why(rec, d.p, 'changed') : this.depsChanged(rec, asker, i + 1, me),
        );
      }
      if (!r.ok || r.id !== d.id) return this.why(rec, d.p, 'changed');
    }
    return false;
  }

  /**
   * Does `abs` exist? A directory asked about often is listed once instead
   * of being asked once a name (2000 ifcreate checks become one readdir).
   * A listing stays good while no job ends; after one, it is kept if the
   * directory's mtime and ctime show nothing was added or removed.
   */
  private exists(abs: string): boolean {
    const slash = abs.lastIndexOf('/');
    const dir = abs.slice(0, slash);
    const name = abs.slice(slash + 1);
    let l = this.listings.get(dir);
    if (!l) this.listings.set(dir, (l = { names: null, epoch: this.epoch, sig: null, asked: 0 }));
    if (l.epoch !== this.epoch) {
      l.epoch = this.epoch;
      l.asked = 0;
      if (l.names) {
        const st = fs.statSync(dir, { throwIfNoEntry: false });
        if (!st || !l.sig || !sameSig(st, l.sig)) l.names = null;
      }
    }
    if (l.names) return l.names.has(name);
    if (++l.asked < 8) return fs.existsSync(abs);
    const st = fs.statSync(dir, { throwIfNoEntry: false });
    try {
      l.names = new Set(st ? fs.readdirSync(dir) : []);
    } catch {
      l.names = new Set();
    }
    // a directory changed within the timestamp granularity may change again unseen
    l.sig = st && Date.now() - Math.max(st.mtimeMs, st.ctimeMs) > 50 ? statSig(st) : null;
    return l.names.has(name);
  }

  private why(rec: TargetRecord, dep: string, what: string): true {
    if (this.opts.debug) this.log.debug(`${this.log.show(rec.t)}: rebuild, ${this.log.show(dep)} ${what}`);
    return true;
  }

  /** `t` being checked for `asker`: the parent of what its check builds. */
  private standIn(t: string, asker: Job | null): Job {
    return {
      id: 0,
      target: t,
      depth: asker ? asker.depth + 1 : 0,
      deps: [],
      seen: new Set(),
      stamp: null,
      parent: asker,
      rule: '',
      env: asker?.env ?? NO_ENV,
      envBase: null,
      err: asker?.err,
      batch: asker?.batch,
      borrowed: 0,
    };
  }

  /**
   * Is the file `t` (stat `st`), which no record describes, a source? Not
   * if redo made it (the mark in its mtime), nor if a rule says only rules
   * make its name (Rule.alwaysTarget, for when `cp -r` or `touch` took the
   * mark): then its record was lost (state deleted, damaged, copied, a
   * crash) and it is rebuilt. Never a wrong "up to date" rests on this.
   */
  isSource(t: string, st: fs.Stats): boolean {
    if (isMarkedGenerated(st)) return false;
    if (this.targetRules.length === 0) return true;
    const abs = this.abs(t);
    for (const r of this.targetRules) if (r.matches(t, abs)) return false;
    return true;
  }

  private lookup(abs: string, t: string): Lookup {
    return findRule(abs, this.rules, t);
  }

  private fail(msg: string, status: number): Result {
    this.log.error(msg);
    return { ok: false, id: '', status };
  }

  // ---- redo-ood: the same decision, building nothing ----

  /**
   * The targets a build would rebuild, of `targets` (default: every target
   * the state knows) and what they depend on. The decision is the build's
   * own (examine, depsChanged); only where a build would run a rule, make
   * calls trial instead. A target whose rule is gone (its directory
   * deleted) would fail, not be rebuilt, and is not listed.
   */
  async outOfDate(targets = [...this.state.targets.keys()]): Promise<string[]> {
    this.dry = new Set();
    await Promise.all(targets.map((t) => this.ensure(t, false, null, true)));
    return [...this.dry].sort();
  }

  /**
   * What a build would do with `t` at this point, without doing it. A
   * quiet built-in rule (cheap, run every run, like a package's .pkghash)
   * is run aside, its output thrown away, to learn whether its identity
   * moves: when it does not, its dependents are not out of date. Any other
   * rule would run, so `t` is listed and counts as changed to its dependents.
   */
  private async trial(t: string, lookup: Lookup, from: Job | null): Promise<Result> {
    const found = lookup.found!;
    const changed: Result = { ok: true, id: '?would-rebuild', status: 0 };
    if (found.kind !== 'builtin' || !found.rule.quiet) {
      this.dry!.add(t);
      return changed;
    }
    const job: Job = {
      id: 0,
      target: t,
      depth: from ? from.depth + 1 : 0,
      deps: [],
      seen: new Set(),
      stamp: null,
      parent: from,
      rule: `builtin:${found.rule.name}`,
      env: from?.env ?? NO_ENV,
      envBase: null,
      borrowed: 0,
    };
    const tmpDir = path.join(this.stateDir, 'tmp');
    fs.mkdirSync(tmpDir, { recursive: true });
    const out = path.join(tmpDir, `trial.${process.pid}.${this.nextJob++}`);
    const abs = this.abs(t);
    try {
      // a failure, or a dependency that would change first: the build would
      // run the rule again on what that dependency becomes
      if ((await this.runBuiltin(job, found.rule, abs, out)) !== 0 || job.deps.some((d) => d.k === 'c' && d.id === changed.id)) {
        this.dry!.add(t);
        return changed;
      }
      const st = fs.statSync(out, { throwIfNoEntry: false });
      // the identity commit would record; an unstamped output that is no
      // file would get a new sequence number: changed
      const id =
        job.stamp !== null
          ? 's:' + job.stamp
          : st?.isFile()
            ? 'h:' + hashFile(out)
            : job.keep && fs.statSync(abs, { throwIfNoEntry: false })?.isFile()
              ? 'h:' + hashFile(abs)
              : changed.id;
      if (id !== this.state.targets.get(t)?.id) this.dry!.add(t);
      return { ok: true, id, status: 0 };
    } finally {
      rmTmp(out);
    }
  }

  // ---- building ----

  private async make(t: string, lookup: Lookup, from: Job | null): Promise<Result> {
    if (this.dry) return this.trial(t, lookup, from);
    const batch = from ? from.batch : this.topBatch;
    if (batch?.failed && !batch.keepGoing) return { ok: false, id: '', status: 1 };
    const abs = this.abs(t);
    this.locks.register();
    const waited = await this.locks.lock(t, (pid) =>
      this.log.info(`${this.log.show(t)}: waiting for redo process ${pid}, which is building it`),
    );
    try {
      if (waited) {
        // someone else built it while we waited: look again
        this.state.refresh();
        const rec = this.state.targets.get(t);
        if (rec && !this.state.intents.has(t) && !(await this.depsChanged(rec, from))) {
          return OK_SOURCE(rec.id);
        }
      }
      const job: Job = {
        id: this.nextJob++,
        target: t,
        depth: from ? from.depth + 1 : 0,
        deps: [],
        seen: new Set(),
        stamp: null,
        parent: from,
        rule: lookup.found!.kind === 'do' ? this.rel(lookup.found!.dofile) : `builtin:${lookup.found!.rule.name}`,
        env: from?.env ?? NO_ENV,
        envBase: null,
        err: from?.err,
        borrowed: 0,
      };
      this.jobs.set(job.id, job);
      try {
        return await this.runJob(job, abs, lookup);
      } finally {
        this.jobs.delete(job.id);
      }
    } finally {
      if (this.locks.othersAlive()) this.state.flush();
      this.locks.unlock(t);
    }
  }

  private async runJob(job: Job, abs: string, lookup: Lookup): Promise<Result> {
    const found = lookup.found!;
    const t = job.target;
    for (const m of lookup.missing) this.addDep(job, { k: 'n', p: this.rel(m) });
    if (found.kind === 'do') {
      const dofile = this.rel(found.dofile);
      const st = fs.statSync(found.dofile);
      this.addDep(job, { k: 'c', p: dofile, id: 'h:' + this.state.fileHash(dofile, found.dofile, st) });
    } else {
      this.addDep(job, { k: 'c', p: `builtin:${found.rule.name}`, id: found.rule.version });
    }
    let ran: { status: number; out: string | null; done: () => void };
    await this.acquireSlot(job);
    const batch = job.parent ? job.parent.batch : this.topBatch;
    if (batch?.failed && !batch.keepGoing) {
      // another target of the same request failed while this one waited
      this.releaseSlot(job);
      return { ok: false, id: '', status: 1 };
    }
    // named once the slot is ours; what a crash left beside it is swept
    const tmp3 = temporaryName(abs);
    const before = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (found.kind === 'do' || !found.rule.quiet) this.log.start(t, job.depth, job.err);
    try {
      if (found.kind === 'do') {
        ran = await this.runDo(job, found, tmp3);
      } else {
        ran = { status: await this.runBuiltin(job, found.rule, abs, tmp3), out: null, done: () => {} };
      }
      // before the slot goes to a sibling waiting for it
      if (ran.status !== 0 && batch) batch.failed = true;
    } catch (e) {
      rmTmp(tmp3);
      forget(tmp3);
      throw e;
    } finally {
      this.releaseSlot(job);
      this.epoch++;
    }
    try {
      if (ran.status !== 0) {
        // it failed: the next run builds it again, whatever its dependencies say
        this.state.markFailed(t);
        // a target whose file is gone and whose build failed is no target:
        // a file put there by hand afterwards is a source
        if (this.state.targets.has(t) && !fs.existsSync(abs)) this.state.forgetTarget(t);
        rmTmp(tmp3);
        this.log.failed(t, ran.status, undefined, job.err);
        this.failures.push({ target: t, status: ran.status });
        return { ok: false, id: '', status: ran.status };
      }
      return this.commit(job, abs, tmp3, ran.out, before);
    } finally {
      ran.done();
      rmTmp(tmp3); // nothing there once committed
      forget(tmp3);
    }
  }

  // ---- job slots ----
  //
  // A job holds a slot (a jobserver token) while it runs. Blocked on
  // redo-ifchange, it lends that slot to what it waits for: its own
  // descendants, or a build it waits on that another job started. Never to
  // a sibling waiting in the queue: so -j1 runs one thing at a time, in
  // depth-first order, as redo users expect.

  /** slots lent by blocked jobs (by id), with how many are free right now */
  private readonly lent = new Map<number, { target: string; free: number }>();
  private readonly slotWaiters: Array<{ job: Job; take: (lender: number) => void }> = [];
  private readonly reclaimers = new Map<number, () => void>();

  /** May `job` run on the slot `lender` (blocked on `target`) lent? */
  private mayBorrow(job: Job, lender: number, target: string): boolean {
    for (let p = job.parent; p; p = p.parent) if (p.id === lender) return true;
    return this.reaches(target, job.target);
  }

  /** Does `from` (transitively) wait for `to`? */
  private reaches(from: string, to: string): boolean {
    const seen = new Set<string>();
    const stack = [from];
    while (stack.length) {
      const n = stack.pop()!;
      for (const m of this.waits.get(n) ?? []) {
        if (m === to) return true;
        if (!seen.has(m)) {
          seen.add(m);
          stack.push(m);
        }
      }
    }
    return false;
  }

  private lenderFor(job: Job): number {
    for (let p = job.parent; p; p = p.parent) if ((this.lent.get(p.id)?.free ?? 0) > 0) return p.id;
    for (const [id, l] of this.lent) if (l.free > 0 && this.reaches(l.target, job.target)) return id;
    return 0;
  }

  private async acquireSlot(job: Job): Promise<void> {
    const lender = this.lenderFor(job);
    if (lender) {
      this.lent.get(lender)!.free--;
      job.borrowed = lender;
      return;
    }
    // a lent slot may come back before a token: take whichever is first
    await new Promise<void>((resolve) => {
      let done = false;
      const entry = {
        job,
        take: (from: number) => {
          done = true;
          job.borrowed = from;
          resolve();
        },
      };
      this.slotWaiters.push(entry);
      void this.jobSlots()
        .acquire()
        .then(() => {
          if (done) return this.jobSlots().release();
          done = true;
          this.slotWaiters.splice(this.slotWaiters.indexOf(entry), 1);
          job.borrowed = 0;
          resolve();
        });
    });
  }

  private releaseSlot(job: Job): void {
    if (job.borrowed) this.giveBack(job.borrowed);
    else this.jobSlots().release();
    job.borrowed = 0;
  }

  private lendSlot(job: Job): void {
    if (!this.lent.has(job.id)) this.lent.set(job.id, { target: job.target, free: 0 });
    this.giveBack(job.id);
  }

  /** A slot lent by `lender` is free again: to a waiter it may go to, or home. */
  private giveBack(lender: number): void {
    const l = this.lent.get(lender)!;
    const i = this.slotWaiters.findIndex((w) => this.mayBorrow(w.job, lender, l.target));
    if (i >= 0) {
      const [w] = this.slotWaiters.splice(i, 1);
      w!.take(lender);
      return;
    }
    l.free++;
    this.reclaimers.get(lender)?.();
  }

  /** The blocked job resumes on the slot it lent, once it is back. */
  private async reclaimSlot(job: Job): Promise<void> {
    while (!((this.lent.get(job.id)?.free ?? 0) > 0)) {
      await new Promise<void>((r) => this.reclaimers.set(job.id, r));
      this.reclaimers.delete(job.id);
    }
    this.lent.delete(job.id);
  }

  private jobSlots(): JobServer {
    if (!this.jobserver) {
      const inh = this.opts.jobs ? null : inheritedJobServer(this.env.MAKEFLAGS);
      this.jobserver = inh ? new JobServer(inh.slots, inh) : new JobServer(this.opts.jobs ?? 1);
    }
    return this.jobserver;
  }

  /** Move the output into place and record what it was made from. */
  private commit(job: Job, abs: string, tmp3: string, stdout: string | null, before: fs.Stats | undefined): Result {
    const t = job.target;
    const st3 = fs.lstatSync(tmp3, { throwIfNoEntry: false });
    const stOut = stdout ? fs.statSync(stdout, { throwIfNoEntry: false }) : undefined;
    const wroteStdout = stOut !== undefined && stOut.size > 0;
    const refuse = (status: number, why: string): Result => {
      rmTmp(tmp3);
      this.log.failed(t, status, why, job.err);
      this.failures.push({ target: t, status });
        return { ok: false, id: '', status };
    };
    if (st3 && wroteStdout) return refuse(207, 'wrote to both $3 and stdout');
    const now = fs.lstatSync(abs, { throwIfNoEntry: false });
    const touched = now && !now.isDirectory() && (!before || !sameSig(now, statSig(before)));
    if (touched) return refuse(206, 'the .do wrote to $1 (the target) itself; write to $3 or stdout');
    let out: 'f' | 'd' | 'n' = 'n';
    let sig: Sig | null = null;
    let oh: string | undefined;
    const seqId = () => 'r:' + this.state.nextSeq();
    let id: string;
    const prev = this.state.targets.get(t);
    const prevHash = prev?.out === 'f' ? (prev.oh ?? (prev.id.startsWith('h:') ? prev.id.slice(2) : '')) : '';
    // the old output, untouched since it was recorded
    const intact = prevHash !== '' && now?.isFile() === true && sameSig(now, prev!.sig);
    if (!st3 && !wroteStdout && job.keep && now?.isFile()) {
      // the rule says the target as it stands is its output
      out = 'f';
      sig = intact ? prev!.sig : statSig(now);
      oh = intact ? prevHash : hashFile(abs);
      id = 'h:' + oh;
    } else if ((st3?.isFile() || (!st3 && wroteStdout)) && intact && (st3 ?? stOut)!.size === now!.size && ((st3 ?? stOut)!.mode & 0o7777) === (now!.mode & 0o7777) && hashFile(st3 ? tmp3 : stdout!) === prevHash) {
      // the same bytes as before: keep the old file (and its mtime, and
      // the cost of renaming over it, which journalled file systems make
      // wait for the new data to reach the disk)
      if (st3) rmTmp(tmp3);
      out = 'f';
      sig = prev!.sig;
      oh = prevHash;
      id = 'h:' + oh;
    } else if (st3 || wroteStdout) {
      const isDir = st3?.isDirectory() ?? false;
      if (isDir) {
        fs.rmSync(abs, { recursive: true, force: true });
      } else {
        const old = fs.lstatSync(abs, { throwIfNoEntry: false });
        if (old?.isDirectory()) fs.rmSync(abs, { recursive: true, force: true });
      }
      const from = st3 ? tmp3 : stdout!;
      const stFrom = st3 ?? stOut!;
      // marked before it takes the target's name: see markGenerated
      if (stFrom.isFile()) markGenerated(from, stFrom);
      try {
        if (st3) fs.renameSync(tmp3, abs);
        else moveInto(stdout!, abs, tmp3);
      } catch (e) {
        return refuse(209, `cannot put the output in place: ${(e as Error).message}`);
      }
      const st = fs.statSync(abs, { throwIfNoEntry: false });
      if (isDir) {
        out = 'd';
        id = seqId();
      } else if (st) {
        out = 'f';
        sig = statSig(st);
        oh = hashFile(abs);
        id = 'h:' + oh;
      } else {
        id = seqId(); // a dangling symlink
      }
    } else if (now?.isDirectory()) {
      // the .do made (or kept) the target as a directory of its own
      out = 'd';
      id = seqId();
    } else {
      // wrote nothing: there is no target file (a previous one is removed)
      if (now) fs.rmSync(abs, { force: true });
      id = seqId();
    }
    if (job.stamp !== null) id = 's:' + job.stamp;
    else oh = undefined; // the id holds it
    const rec: Omit<TargetRecord, 'seq'> = {
      t,
      rule: job.rule,
      deps: job.deps,
      out,
      sig,
      id,
    };
    if (oh) rec.oh = oh;
    this.state.recordTarget(rec);
    return { ok: true, id, status: 0 };
  }

  private addDep(job: Job, d: Dep): void {
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

  private async runDo(job: Job, found: DoFile, tmp3: string) {
    await this.ensureServer();
    if (!this.pool) {
      const js = this.jobSlots();
      this.pool = new WorkerPool(() => this.childEnv(), () => js.childFds, path.join(this.stateDir, 'tmp'));
    }
    const argv = this.interpreter(found.dofile);
    const spec: JobSpec = {
      dir: found.dir,
      job: job.id,
      depth: job.depth,
      argv,
      script: path.basename(found.dofile),
      args: [found.arg1, found.arg2, path.relative(found.dir, tmp3)],
      shellFlags: 'e' + (this.opts.xtrace ? 'x' : '') + (this.opts.verbose ? 'v' : ''),
      envScript: envScript(job.env),
      err: job.err ?? '',
    };
    return this.pool.run(spec, {
      onRequest: (cmd, cwd, args, env, err) => this.request(job, cmd, cwd, args, env, err),
      onEnv: (env) => {
        job.envBase = env;
      },
    });
  }

  /** The #! command line of a .do file, or null to run it with sh -e.
   * Read once a run: the .do's content hash is checked anyway. */
  private interpreter(dofile: string): string[] | null {
    let argv = this.shebangs.get(dofile);
    if (argv === undefined) {
      const first = readFirstLine(dofile);
      argv = first.startsWith('#!') ? first.slice(2).trim().split(/\s+/).filter(Boolean) : [];
      this.shebangs.set(dofile, argv);
    }
    return argv.length ? argv : null;
  }

  private async runBuiltin(job: Job, rule: Rule, abs: string, tmp3: string): Promise<number> {
    const ctx: BuildContext = {
      target: abs,
      rel: job.target,
      out: tmp3,
      jobs: this.slots,
      ifchange: async (paths) => {
        const rc = await this.request(job, 'ifchange', this.base, paths);
        if (rc !== 0) throw new RuleError(`dependencies of ${this.log.show(job.target)} failed`, rc);
      },
      ifcreate: (paths) => {
        for (const p of paths) this.addDep(job, { k: 'n', p: this.rel(path.resolve(this.base, p)) });
      },
      always: () => this.addDep(job, { k: 'a' }),
      stamp: (v) => {
        job.stamp = v;
      },
      keep: () => {
        job.keep = true;
      },
      log: (line) => this.log.note(job.depth, line, job.err),
      jobserver: () => {
        const js = this.jobSlots();
        const makeflags = js.makeflags(undefined);
        if (!js.childFds || !makeflags) return null;
        return { makeflags, fds: { [JOBSERVER_R]: js.childFds[0], [JOBSERVER_W]: js.childFds[1] } };
      },
    };
    try {
      await rule.build(ctx);
      return 0;
    } catch (e) {
      if (e instanceof RuleError) {
        this.log.error(`${this.log.show(job.target)}: ${e.message}`);
        return e.status;
      }
      this.log.error(`${this.log.show(job.target)}: ${(e as Error).stack ?? e}`);
      return 1;
    }
  }

  /** A request from a running job (its .do or a real redo-* command). */
  async request(job: Job | null, cmd: string, cwd: string, args: string[], env?: string, err?: string): Promise<number> {
    const slots = this.jobSlots();
    switch (cmd) {
      case 'ifchange':
      case 'redo': {
        let rels: string[];
        let flags: RequestFlags;
        try {
          flags = parseRequestFlags(args);
          rels = flags.targets.map((a) => this.relFrom(cwd, a));
        } catch (e) {
          this.log.error((e as Error).message);
          return 2;
        }
        if (flags.shuffle || this.opts.shuffle) shuffle(rels);
        const force = cmd === 'redo';
        // a nested -jN asks for more parallelism below this point
        const extra = flags.jobs && flags.jobs > slots.slots ? flags.jobs - slots.slots : 0;
        if (extra) slots.grow(extra);
        // builds started for this request get its environment
        const batch = { failed: false, keepGoing: this.opts.keepGoing || flags.keepGoing === true };
        const asker = job ? { ...(env !== undefined ? this.withEnv(job, env) : job), batch } : null;
        if (asker && err && this.otherStderr(err, job!.err)) asker.err = err;
        let results: Result[];
        let lending = false;
        try {
          const asked = rels.map((t) => this.noting(batch, this.ensure(t, force, asker)));
          // a blocked job lends its slot to the builds it waits for (now
          // that the waits are known: one may be a build another job started)
          if (job?.id) {
            this.lendSlot(job);
            lending = true;
          }
          results = await Promise.all(asked);
        } finally {
          if (extra) slots.shrink(extra);
          if (lending) await this.reclaimSlot(job!);
        }
        if (job && !force) {
          rels.forEach((t, i) => {
            if (results[i]!.ok) this.addDep(job, { k: 'c', p: t, id: results[i]!.id });
          });
        }
        const bad = results.find((r) => !r.ok);
        return bad ? bad.status || 1 : 0;
      }
      case 'ifcreate': {
        for (const a of args) {
          const abs = path.resolve(cwd, a);
          if (fs.existsSync(abs)) {
            this.log.error(`redo-ifcreate: ${this.log.show(this.rel(abs))} already exists`);
            return 1;
          }
          if (job) this.addDep(job, { k: 'n', p: this.rel(abs) });
        }
        return 0;
      }
      case 'always':
        if (job) this.addDep(job, { k: 'a' });
        return 0;
      case 'stamp':
        if (job) job.stamp = args[0] ?? '';
        return 0;
      case 'flush':
        this.flush();
        return 0;
      case 'sync':
        // redo-targets & co. read the state from disk: give them this run's
        this.state.flush();
        return 0;
      default:
        this.log.error(`unknown request ${JSON.stringify(cmd)}`);
        return 2;
    }
  }

  /** Is `err` (a /proc/PID/fd/2) somewhere else than `current` (or ours)? */
  private otherStderr(err: string, current: string | undefined): boolean {
    const a = fs.statSync(err, { throwIfNoEntry: false });
    if (!a) return false;
    const b = current ? fs.statSync(current, { throwIfNoEntry: false }) : fs.fstatSync(2);
    return !b || a.dev !== b.dev || a.ino !== b.ino;
  }

  /** Mark the batch failed as soon as one of its targets fails. */
  private noting(batch: { failed: boolean; keepGoing: boolean }, r: Result | Promise<Result>): Result | Promise<Result> {
    if (!(r instanceof Promise)) {
      if (!r.ok) batch.failed = true;
      return r;
    }
    return r.then((res) => {
      if (!res.ok) batch.failed = true;
      return res;
    });
  }

  /** `job` as the asker of a request made with environment `env`: the same
   * job when nothing changed (the usual case: one string comparison). */
  private withEnv(job: Job, env: string): Job {
    let changes: Map<string, string | null>;
    if (env.startsWith('{')) {
      // a real redo-* command: its whole environment, as JSON
      let given: Record<string, string>;
      try {
        given = JSON.parse(env) as Record<string, string>;
      } catch {
        return job;
      }
      const base = new Map<string, string | null>(Object.entries(this.childEnv()) as Array<[string, string]>);
      changes = envChanges(base, new Map(Object.entries(given)));
      for (const k of ['REDO_ENGINE', 'REDO_BASE', 'REDO', 'REDO_STARTDIR']) changes.delete(k);
    } else {
      if (job.envBase === null || env === job.envBase) return job;
      changes = new Map([...job.env, ...envChanges(parseExports(job.envBase), parseExports(env))]);
    }
    if (changes.size === 0 && job.env.size === 0) return job;
    return { ...job, env: changes };
  }

  // ---- the socket for real redo-* commands run from jobs ----

  private async ensureServer(): Promise<void> {
    if (this.server) return;
    this.sockDir = fs.mkdtempSync(path.join(os.tmpdir(), 'redo-'));
    const sock = path.join(this.sockDir, 'engine.sock');
    const server = net().createServer((conn) => {
      const parser = new MessageParser();
      let job: Job | null = null;
      conn.on('data', (d: Buffer) => {
        for (const msg of parser.push(d)) {
          if (msg[0] === 'J') {
            job = this.jobs.get(Number(msg[1])) ?? null;
          } else if (msg[0] === 'Q') {
            const [, cmd, cwd, , ...args] = msg;
            const err = args.pop();
            const env = args.pop();
            this.request(job, cmd!, cwd!, args, env, err).then(
              (rc) => conn.write(`${rc}\n`),
              () => conn.write('1\n'),
            );
          }
        }
      });
      conn.on('error', () => conn.destroy());
    });
    server.unref();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(sock, () => resolve());
    });
    this.server = server;
    this.env.REDO_ENGINE = sock;
  }

  private childEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...this.env };
    env.REDO_ENGINE = path.join(this.sockDir, 'engine.sock');
    env.REDO_BASE = this.base;
    env.REDO = path.join(BIN_DIR, 'redo');
    env.REDO_STARTDIR = this.opts.startDir ?? process.cwd();
    // the real redo-* commands, for .do files run by other interpreters and
    // for redo-stamp, whichever way the user started redo
    if (!(env.PATH ?? '').split(':').includes(BIN_DIR)) env.PATH = `${BIN_DIR}:${env.PATH ?? '/usr/bin:/bin'}`;
    const mf = this.jobSlots().makeflags(this.env.MAKEFLAGS);
    if (mf !== undefined) env.MAKEFLAGS = mf;
    return env;
  }
}

/**
 * Files redo makes carry a mark in their mtime: the microseconds are set to
 * GENERATED_US. When the state directory is lost, a marked file with a rule
 * is known to be an output and is rebuilt, while a file without the mark is
 * a source and is never overwritten (a default.do may match sources).
 */
const GENERATED_US = 777;

function markGenerated(abs: string, st: fs.Stats): void {
  const secs = Math.floor(st.mtimeMs / 1000);
  fs.utimesSync(abs, st.atime, secs + GENERATED_US / 1e6);
}

export function isMarkedGenerated(st: fs.Stats): boolean {
  return st.isFile() && Math.round((st.mtimeMs % 1000) * 1000) === GENERATED_US;
}

/** Rename `from` onto `to`; across file systems, copy next to `to` first
 * (as `via`) so that the target still appears in one step. */
function moveInto(from: string, to: string, via: string): void {
  try {
    fs.renameSync(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    fs.copyFileSync(from, via);
    fs.renameSync(via, to);
    fs.rmSync(from, { force: true });
  }
}

interface RequestFlags {
  targets: string[];
  jobs?: number;
  shuffle?: boolean;
  keepGoing?: boolean;
}

/** Flags a nested `redo -j4 --shuffle x` passes with its targets. Flags
 * that only shape the top-level run (-k, -x, -v, -d) are accepted and left
 * to it. */
export function parseRequestFlags(args: string[]): RequestFlags {
  const f: RequestFlags = { targets: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      f.targets.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') f.targets.push(a);
    else if (a === '--shuffle') f.shuffle = true;
    else if (a === '-j' || a === '--jobs') f.jobs = Number(args[++i]);
    else if (a.startsWith('--jobs=')) f.jobs = Number(a.slice(7));
    else if (/^-[kxvd]*j\d*$/.test(a)) {
      if (a.includes('k')) f.keepGoing = true;
      f.jobs = Number(a.slice(a.indexOf('j') + 1) || args[++i]);
    } else if (a === '--keep-going') f.keepGoing = true;
    else if (/^-[kxvd]+$/.test(a)) {
      if (a.includes('k')) f.keepGoing = true;
    } else if (a === '--debug') continue;
    else throw new BuildError(`unknown option ${a}`, 2);
    if (f.jobs !== undefined && !(Number.isInteger(f.jobs) && f.jobs > 0)) throw new BuildError(`-j needs a positive whole number`, 2);
  }
  return f;
}

function shuffle<T>(xs: T[]): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
}

function rmTmp(p: string): void {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (st) fs.rmSync(p, { recursive: st.isDirectory(), force: true });
}

function readFirstLine(file: string): string {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(256);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const s = buf.toString('utf8', 0, n);
    const nl = s.indexOf('\n');
    return nl < 0 ? s : s.slice(0, nl);
  } finally {
    fs.closeSync(fd);
  }
}
