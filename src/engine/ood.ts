/**
 * The out-of-date decision: is a target up to date, or must its rule run?
 * One decision serves both the build and `redo-ood`; for redo-ood the
 * engine answers "run the rule" with a trial instead (Engine.outOfDate).
 *
 * A target is up to date when every dependency it recorded last time still
 * has the identity it had then: a content hash for files (found through a
 * stat signature when the file was not touched), the stamp for stamped
 * targets, and the build sequence for targets that write nothing. A
 * dependency that is itself a target is brought up to date first, on
 * behalf of whoever asked.
 */
import type { Stats } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import { statSig, sameSig, hashFile, type State, type TargetRecord, type Sig } from './state.ts';
import { findRule, type Lookup } from './dofile.ts';
import { isMarkedGenerated } from './commit.ts';
import { newJob, OK_SOURCE, type Job, type Result } from './job.ts';
import type { Paths } from './paths.ts';
import type { Waits } from './waits.ts';
import type { Rule } from './rules.ts';
import type { Log } from './log.ts';

/** What the decision asks of the engine that builds. */
export interface Builder {
  /** the engine's own entry: `t` up to date (remembered for the run) */
  ensure(t: string, force: boolean, from: Job | null, quiet?: boolean): Result | Promise<Result>;
  /** run `t`'s rule (a trial of it, for redo-ood) */
  make(t: string, lookup: Lookup, from: Job | null): Promise<Result>;
  /** is a check or build of `t` under way? */
  underWay(t: string): boolean;
  /** redo-ood: nothing is changed, not even the state */
  trying(): boolean;
  fail(msg: string, status: number): Result;
}

export interface DecisionOptions {
  state: State;
  paths: Paths;
  log: Log;
  rules: Rule[];
  waits: Waits;
  debug: boolean;
  builder: Builder;
}

export class Decision {
  private readonly state: State;
  private readonly paths: Paths;
  private readonly log: Log;
  private readonly rules: Rule[];
  /** the rules whose names are never sources */
  private readonly targetRules: Rule[];
  private readonly waits: Waits;
  private readonly debug: boolean;
  private readonly builder: Builder;
  /** counts ended jobs: anything cached about the file system before one
   * ended must be checked again */
  private epoch = 0;
  private readonly listings = new Map<string, { names: Set<string> | null; epoch: number; sig: Sig | null; asked: number }>();

  constructor(o: DecisionOptions) {
    this.state = o.state;
    this.paths = o.paths;
    this.log = o.log;
    this.rules = o.rules;
    this.targetRules = o.rules.filter((r) => r.alwaysTarget);
    this.waits = o.waits;
    this.debug = o.debug;
    this.builder = o.builder;
  }

  /** A job ended: it may have made or removed files. */
  jobEnded(): void {
    this.epoch++;
  }

  /** Is `t` up to date (its identity), or what does making it give? */
  examine(t: string, force: boolean, from: Job | null, quiet = false): Result | Promise<Result> {
    const abs = this.paths.abs(t);
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
          if (this.debug) this.log.debug(`${this.log.show(t)}: rebuild, no record of the build that made it`);
          return this.builder.make(t, lookup, from);
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
      return this.builder.fail(`no rule to make ${this.log.show(t)} (no .do file and no such file)`, 1);
    }
    return this.builder.make(t, lookup, from);
  }

  private rebuild(t: string, abs: string, st: Stats | undefined, from: Job | null): Result | Promise<Result> {
    const lookup = this.lookup(abs, t);
    if (!lookup.found) {
      if (st) {
        // its .do is gone: what is left is a source now
        if (this.builder.trying()) return OK_SOURCE('h:' + this.state.fileHash(t, abs, st));
        this.state.forgetTarget(t);
        this.log.info(`${this.log.show(t)}: its .do file is gone; it is a source now`);
        return OK_SOURCE('h:' + this.state.fileHash(t, abs, st));
      }
      return this.builder.fail(`no rule to make ${this.log.show(t)} (its .do file is gone)`, 1);
    }
    return this.builder.make(t, lookup, from);
  }

  private modifiedByHand(t: string, abs: string, rec: TargetRecord, st: Stats | undefined, to?: string): Result | null {
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
  depsChanged(rec: TargetRecord, asker: Job | null, start = 0, self?: Job): boolean | Promise<boolean> {
    const deps = rec.deps;
    for (let i = start; i < deps.length; i++) {
      const d = deps[i]!;
      if (d.k === 'a') return true;
      if (d.k === 'n') {
        if (this.exists(this.paths.abs(d.p))) return this.why(rec, d.p, 'now exists');
        continue;
      }
      if (d.p.startsWith('builtin:')) {
        const rule = this.rules.find((r) => `builtin:${r.name}` === d.p);
        if (!rule || rule.version !== d.id) return this.why(rec, d.p, 'is a new version');
        continue;
      }
      if (this.builder.underWay(d.p) && this.waits.cycleThrough(rec.t, d.p)) return true; // stale record; the rule decides
      // dependencies are built on behalf of whoever asked for rec.t (its
      // slots, its environment, its place in the output); quiet: a
      // dependency gone without a rule just means "changed"
      self ??= this.standIn(rec.t, asker);
      const r = this.builder.ensure(d.p, false, self, true);
      if (r instanceof Promise) {
        const me = self;
        return r.then((res) => (!res.ok || res.id !== d.id ? this.why(rec, d.p, 'changed') : this.depsChanged(rec, asker, i + 1, me)));
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
    if (this.debug) this.log.debug(`${this.log.show(rec.t)}: rebuild, ${this.log.show(dep)} ${what}`);
    return true;
  }

  /** `t` being checked for `asker`: the parent of what its check builds. */
  private standIn(t: string, asker: Job | null): Job {
    const job = newJob(0, t, '', asker, asker?.err);
    job.batch = asker?.batch;
    return job;
  }

  /**
   * Is the file `t` (stat `st`), which no record describes, a source? Not
   * if redo made it (the mark in its mtime), nor if a rule says only rules
   * make its name (Rule.alwaysTarget, for when `cp -r` or `touch` took the
   * mark): then its record was lost (state deleted, damaged, copied, a
   * crash) and it is rebuilt. Never a wrong "up to date" rests on this.
   */
  isSource(t: string, st: Stats): boolean {
    if (isMarkedGenerated(st)) return false;
    if (this.targetRules.length === 0) return true;
    const abs = this.paths.abs(t);
    for (const r of this.targetRules) if (r.matches(t, abs)) return false;
    return true;
  }

  private lookup(abs: string, t: string): Lookup {
    return findRule(abs, this.rules, t);
  }
}
