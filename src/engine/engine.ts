/**
 * The redo engine: runs the rules that make targets, for a whole build,
 * and answers the requests of the jobs it runs.
 *
 * One engine process serves a whole build. .do files run in shell workers
 * (worker.ts) and ask for their dependencies over the protocol of
 * protocol.ts, so nested builds are scheduled here, with the job slots of
 * slots.ts, and not by starting more redo processes. Other redo processes
 * working on the same tree are kept off our targets by the locks of
 * locks.ts. What is out of date is decided in ood.ts; a finished job's
 * output is committed by commit.ts; names are resolved by paths.ts.
 */
import type { Stats } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { State, hashFile } from './state.ts';
import { type DoFile, type Lookup } from './dofile.ts';
import { JobServer, inheritedJobServer } from './jobserver.ts';
import { Locks, isAlive } from './locks.ts';
import type { WorkerPool, JobSpec } from './worker.ts';
import { parseExports, envChanges, envScript } from './env.ts';
import type { Rule, BuildContext } from './rules.ts';
import { RuleError, RunContext } from './rules.ts';
import { Log } from './log.ts';
import { temporaryName, forget, removeOwnTemporaries, interrupting, sweep, sweepsDone } from '../archive/temporary.ts';
import { Paths, findBase, STATE_DIR } from './paths.ts';
import { BuildError, OK_SOURCE, newJob, addDep, type Job, type Result, type Batch } from './job.ts';
import { Waits } from './waits.ts';
import { EXIT } from '../errors.ts';
import { SlotScheduler } from './slots.ts';
import { commit, rmTmp } from './commit.ts';
import { Decision } from './ood.ts';
import { Server, parseRequestFlags, type RequestFlags, type Request } from './protocol.ts';

// what the commands and the package rules import from the engine
export { findBase, STATE_DIR, BuildError, type Result };

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
  /** every target is made afresh (BuildContext.afresh): nothing is taken
   * from an earlier build or a cache (seed reproduce's second generation) */
  afresh?: boolean;
  /** what the rules keep for the run, when the log reads it too (a new one if unset) */
  run?: RunContext;
}

export class Engine {
  readonly base: string;
  readonly stateDir: string;
  readonly state: State;
  readonly log: Log;
  private readonly opts: EngineOptions;
  private readonly rules: Rule[];
  private readonly paths: Paths;
  private readonly decision: Decision;
  // a new wait may let a slot lent and free go to a job waiting for one
  private readonly waits = new Waits((from, to) => this.slotsLent.waitsGrew(from, to));
  private readonly slotsLent: SlotScheduler;
  private readonly locks: Locks;
  private readonly env: NodeJS.ProcessEnv;
  private jobserver: JobServer | null = null;
  private pool: WorkerPool | null = null;
  private server: Server | null = null;
  /** the stop on a signal, once begun (interrupt), and the close, once asked */
  private stopping: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private readonly memo = new Map<string, Result | Promise<Result>>();
  /** the targets asked for with `redo` in this run: their rules make them afresh (BuildContext.afresh) */
  private readonly forced = new Set<string>();
  /** what the rules keep for the run, forgotten with the memo: a command reads what its build read (the package graph) */
  readonly run: RunContext;
  private readonly jobs = new Map<number, Job>();
  private nextJob = 1;
  /** every target whose rule failed in this run, for the summary at the end */
  readonly failures: Array<{ target: string; status: number }> = [];
  private readonly topBatch: Batch;
  private readonly shebangs = new Map<string, string[]>();
  /** redo-ood (outOfDate): decide, build nothing; what would be built */
  private dry: Set<string> | null = null;

  constructor(opts: EngineOptions = {}) {
    this.opts = opts;
    this.env = opts.env ?? process.env;
    this.base = fs.realpathSync(path.resolve(opts.base ?? findBase(process.cwd())));
    this.paths = new Paths(this.base);
    this.stateDir = path.join(this.base, STATE_DIR);
    this.rules = opts.rules ?? [];
    this.run = opts.run ?? new RunContext();
    this.log = opts.log ?? new Log(opts.startDir ?? process.cwd(), this.base);
    this.state = new State(this.stateDir);
    this.locks = new Locks(this.stateDir);
    this.state.load();
    // the stdout files of a killed engine's workers: swept here, as a run
    // that starts no worker (a no-op, or built-in rules alone) would
    // otherwise leave them for good (one readdir; close() awaits it)
    void sweep(path.join(this.stateDir, 'tmp'));
    this.topBatch = { failed: false, keepGoing: opts.keepGoing === true };
    this.slotsLent = new SlotScheduler(
      () => this.jobSlots(),
      (from, to) => this.waits.reaches(from, to),
    );
    this.decision = new Decision({
      state: this.state,
      paths: this.paths,
      log: this.log,
      rules: this.rules,
      waits: this.waits,
      debug: opts.debug === true,
      builder: {
        ensure: (t, force, from, quiet) => this.ensure(t, force, from, quiet),
        make: (t, lookup, from) => this.make(t, lookup, from),
        underWay: (t) => this.memo.get(t) instanceof Promise,
        trying: () => this.dry !== null,
        fail: (msg, status) => this.fail(msg, status),
      },
    });
  }

  get slots(): number {
    return this.jobserver?.slots ?? this.opts.jobs ?? 1;
  }

  // ---- public entry points ----

  /** `redo` (force) or `redo-ifchange` on targets given as paths from cwd. */
  async build(targets: string[], force: boolean, cwd = process.cwd()): Promise<number> {
    const rels = targets.map((t) => this.paths.relFrom(cwd, t));
    if (this.opts.shuffle) shuffle(rels);
    // Node ends a process whose event loop empties, even with this build's
    // promise pending: then every job waits on another and nothing runs
    // (a deadlock of the engine's). Said as such, naming the jobs, rather
    // than as Node's "unsettled top-level await" and its exit status 13.
    const stalled = () => {
      const jobs = [...this.jobs.values()].map((j) => this.log.show(j.target));
      const slot = this.slotsLent.waiting().map((t) => this.log.show(t));
      process.stderr.write(
        `redo: internal error: the build stalled, every job waiting on another (jobs: ${jobs.join(' ') || 'none'}; waiting for a slot: ${slot.join(' ') || 'none'})\n`,
      );
      process.exit(EXIT.stalled);
    };
    process.once('beforeExit', stalled);
    try {
      const results = await Promise.all(rels.map((t) => this.noting(this.topBatch, this.ensure(t, force, null))));
      const failed = results.find((r) => !r.ok);
      return failed ? failed.status || 1 : 0;
    } finally {
      process.off('beforeExit', stalled);
    }
  }

  /** The signal policy, for the commands' SIGINT, SIGTERM and SIGHUP
   * handlers before they exit: stop every process the build started (a
   * sandboxed build writes into its work directory to the end), remove
   * this process's temporaries, and close. */
  async interrupt(): Promise<void> {
    interrupting(); // a build failing now was stopped: its work directory goes too
    this.stopping ??= (async () => {
      // the workers' jobs first, with all else below us (a worker stopped
      // first would leave its job's processes to the system's init)
      const { stopDescendants } = await import('./stop.ts');
      await stopDescendants();
      this.pool?.stop();
      await removeOwnTemporaries();
    })();
    await this.stopping;
    await this.close();
  }

  /** Stop workers, fold our journal into the snapshot, drop our locks;
   * once, whoever asks. A build whose jobs failed because a signal stopped
   * them returns, and its command closes the engine, while the stop may
   * still be at work: the locks and the state wait for it. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      await this.stopping;
      await this.closeNow();
    })());
  }

  private async closeNow(): Promise<void> {
    await sweepsDone();
    this.pool?.stop();
    this.jobserver?.close();
    this.locks.releaseAll();
    await this.server?.close();
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
    this.run.forget();
    this.paths.forget();
    this.state.refresh();
  }

  // ---- deciding ----

  /**
   * Make `t` up to date (or build it, if `force`). The answer is immediate
   * when nothing needs building, which keeps a no-op run free of promises.
   */
  ensure(t: string, force: boolean, from: Job | null, quiet = false): Result | Promise<Result> {
    if (force) this.forced.add(t);
    const prior = this.memo.get(t);
    if (prior !== undefined) {
      if (!(prior instanceof Promise)) {
        // a quiet "no rule" answer is asked again when someone wants the message
        if (!force && !(prior.missing && !quiet)) return prior;
      } else {
        const cycle = from ? this.waits.cycleThrough(from.target, t) : null;
        if (cycle) return this.fail(`dependency cycle: ${cycle.map((c) => this.log.show(c)).join(' -> ')}`, 208);
        if (!force) return this.waitFor(from, t, prior);
        // `redo t` runs t's rule every time it is asked, after any build of t under way
        return this.remember(
          t,
          prior.then(() => this.decision.examine(t, true, from)),
          from,
        );
      }
    }
    let r: Result | Promise<Result>;
    try {
      r = this.decision.examine(t, force, from, quiet);
    } catch (e) {
      // an unreadable file, a vanished directory: say which, do not crash
      r = this.fail(`${this.log.show(t)}: ${(e as Error).message}`, 1);
    }
    if (r instanceof Promise) {
      r = r.catch((e: unknown) => this.fail(`${this.log.show(t)}: ${(e as Error).message}`, 1));
    }
    if (!(r instanceof Promise)) {
      this.memo.set(t, r);
      this.log.settled(t, r.ok);
      return r;
    }
    return this.remember(t, r, from);
  }

  private remember(t: string, p: Promise<Result>, from: Job | null): Promise<Result> {
    this.memo.set(t, p);
    void p.then((r) => {
      if (this.memo.get(t) === p) this.memo.set(t, r);
      this.log.settled(t, r.ok);
    });
    return this.waitFor(from, t, p);
  }

  private waitFor(from: Job | null, t: string, p: Promise<Result>): Promise<Result> {
    return from ? this.waits.waitFor(from.target, t, p) : p;
  }

  /** Is the file `t` (stat `st`), which no record describes, a source? */
  isSource(t: string, st: Stats): boolean {
    return this.decision.isSource(t, st);
  }

  private fail(msg: string, status: number): Result {
    this.log.error(msg);
    return { ok: false, id: '', status };
  }

  // ---- redo-ood: the same decision, building nothing ----

  /**
   * The targets a build would rebuild, of `targets` (default: every target
   * the state knows) and what they depend on. The decision is the build's
   * own (ood.ts); only where a build would run a rule, make calls trial
   * instead. A target whose rule is gone (its directory deleted) would
   * fail, not be rebuilt, and is not listed.
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
    const job = newJob(0, t, `builtin:${found.rule.name}`, from, undefined);
    const tmpDir = path.join(this.stateDir, 'tmp');
    fs.mkdirSync(tmpDir, { recursive: true });
    const out = path.join(tmpDir, `trial.${process.pid}.${this.nextJob++}`);
    const abs = this.paths.abs(t);
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
    const abs = this.paths.abs(t);
    this.locks.register();
    const waited = await this.locks.lock(t, (pid) => this.log.info(`${this.log.show(t)}: waiting for redo process ${pid}, which is building it`));
    try {
      // Another redo process may have built it since our state was read:
      // while we waited for the lock, or before we asked for it (one that
      // started first and finished it, or has exited since). Its records
      // are on disk by now (it flushes before it unlocks while another
      // process is registered, and when it exits): look again. A refresh
      // reads only what other processes appended; a record of our own
      // that was there all along is not looked at twice (`redo` builds
      // what it is asked to whatever is up to date).
      this.state.refresh();
      const rec = this.state.targets.get(t);
      if (rec && !this.state.intents.has(t) && (waited || this.state.builtElsewhere.has(t)) && !(await this.decision.depsChanged(rec, from))) {
        return OK_SOURCE(rec.id);
      }
      const rule = lookup.found!.kind === 'do' ? this.paths.rel(lookup.found!.dofile) : `builtin:${lookup.found!.rule.name}`;
      const job = newJob(this.nextJob++, t, rule, from, from?.err);
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
    for (const m of lookup.missing) addDep(job, { k: 'n', p: this.paths.rel(m) });
    if (found.kind === 'do') {
      const dofile = this.paths.rel(found.dofile);
      const st = fs.statSync(found.dofile);
      addDep(job, { k: 'c', p: dofile, id: 'h:' + this.state.fileHash(dofile, found.dofile, st) });
    } else {
      addDep(job, { k: 'c', p: `builtin:${found.rule.name}`, id: found.rule.version });
    }
    let ran: { status: number; out: string | null; done: () => void };
    await this.slotsLent.acquire(job);
    const batch = job.parent ? job.parent.batch : this.topBatch;
    if (batch?.failed && !batch.keepGoing) {
      // another target of the same request failed while this one waited
      this.slotsLent.release(job);
      return { ok: false, id: '', status: 1 };
    }
    // named once the slot is ours; what a crash left beside it is swept,
    // but by a quiet built-in rule's (run every time, it mostly keeps its
    // target): the next target built there sweeps, and a no-op lists nothing
    const tmp3 = temporaryName(abs, { sweep: found.kind === 'do' || !found.rule.quiet });
    const before = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (found.kind === 'do' || !found.rule.quiet) this.log.start(t, job.depth, job.err, job.rule);
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
      this.slotsLent.release(job);
      this.decision.jobEnded();
    }
    try {
      if (ran.status !== 0) {
        // it failed: the next run builds it again, whatever its dependencies say
        this.state.markFailed(t);
        // a target whose file is gone and whose build failed is no target:
        // a file put there by hand afterwards is a source
        if (this.state.targets.has(t) && !fs.existsSync(abs)) this.state.forgetTarget(t);
        rmTmp(tmp3);
        return this.jobFailed(job, ran.status);
      }
      const done = commit(this.state, job, { abs, tmp3, stdout: ran.out, before });
      return done.ok ? { ok: true, id: done.id, status: 0 } : this.jobFailed(job, done.status, done.why);
    } finally {
      ran.done();
      rmTmp(tmp3); // nothing there once committed
      forget(tmp3);
    }
  }

  /** Say that `job` failed (and why, if its status does not say), for
   * the summary too. */
  private jobFailed(job: Job, status: number, why?: string): Result {
    this.log.failed(job.target, status, why, job.err);
    this.failures.push({ target: job.target, status });
    return { ok: false, id: '', status };
  }

  private jobSlots(): JobServer {
    if (!this.jobserver) {
      const inh = this.opts.jobs ? null : inheritedJobServer(this.env.MAKEFLAGS);
      this.jobserver = inh ? new JobServer(inh.slots, inh) : new JobServer(this.opts.jobs ?? 1);
    }
    return this.jobserver;
  }

  private async runDo(job: Job, found: DoFile, tmp3: string) {
    await this.ensureServer();
    if (!this.pool) {
      // loaded once something is to be built: a no-op run starts without it
      const { WorkerPool } = await import('./worker.ts');
      const js = this.jobSlots();
      this.pool ??= new WorkerPool(
        () => this.childEnv(),
        () => js.childFds,
        path.join(this.stateDir, 'tmp'),
      );
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
      onRequest: (req) => this.request(job, req),
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
      afresh: this.opts.afresh === true || this.forced.has(job.target),
      ifchange: async (paths) => {
        const rc = await this.request(job, { cmd: 'ifchange', cwd: this.base, args: paths });
        if (rc !== 0) throw new RuleError(`dependencies of ${this.log.show(job.target)} failed`, rc);
      },
      ifcreate: (paths) => {
        for (const p of paths) addDep(job, { k: 'n', p: this.paths.rel(path.resolve(this.base, p)) });
      },
      always: () => addDep(job, { k: 'a' }),
      stamp: (v) => {
        job.stamp = v;
      },
      keep: () => {
        job.keep = true;
      },
      log: (line) => this.log.note(job.depth, line, job.err, job.target),
      began: () => this.log.began(job.target),
      output: (line) => this.log.output(job.target, line),
      substituted: (how) => this.log.substituted(job.target, job.depth, how, job.err),
      transfer: (total) => this.log.transfer(job.target, total),
      progressOutput: this.log.progressOutput(),
      jobserver: () => this.jobSlots().forChild(),
      run: this.run,
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
  async request(job: Job | null, req: Partial<Request> & Pick<Request, 'cmd' | 'cwd' | 'args'>): Promise<number> {
    const { cmd, cwd, args, env, err } = req;
    const slots = this.jobSlots();
    switch (cmd) {
      case 'ifchange':
      case 'redo': {
        let rels: string[];
        let flags: RequestFlags;
        try {
          flags = parseRequestFlags(args);
          rels = flags.targets.map((a) => this.paths.relFrom(cwd, a));
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
            this.slotsLent.lend(job);
            lending = true;
          }
          results = await Promise.all(asked);
        } finally {
          if (extra) slots.shrink(extra);
          if (lending) await this.slotsLent.reclaim(job!);
        }
        if (job && !force) {
          rels.forEach((t, i) => {
            if (results[i]!.ok) addDep(job, { k: 'c', p: t, id: results[i]!.id });
          });
        }
        const bad = results.find((r) => !r.ok);
        return bad ? bad.status || 1 : 0;
      }
      case 'ifcreate': {
        for (const a of args) {
          const abs = path.resolve(cwd, a);
          if (fs.existsSync(abs)) {
            this.log.error(`redo-ifcreate: ${this.log.show(this.paths.rel(abs))} already exists`);
            return 1;
          }
          if (job) addDep(job, { k: 'n', p: this.paths.rel(abs) });
        }
        return 0;
      }
      case 'always':
        if (job) addDep(job, { k: 'a' });
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
  private noting(batch: Batch, r: Result | Promise<Result>): Result | Promise<Result> {
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
    this.server = await Server.listen(
      (id) => this.jobs.get(Number(id)) ?? null,
      (job, req) => this.request(job, req),
    );
    this.env.REDO_ENGINE = this.server.path;
  }

  private childEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...this.env };
    env.REDO_ENGINE = this.server?.path ?? 'engine.sock';
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

function shuffle<T>(xs: T[]): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
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
