/**
 * Slot lending over the jobserver.
 *
 * A job holds a slot (a jobserver token) while it runs. Blocked on
 * redo-ifchange, it lends that slot to what it waits for: its own
 * descendants, or a build it waits on that another job started. Never to
 * a sibling waiting in the queue: so -j1 runs one thing at a time, in
 * depth-first order, as redo users expect. What it waits for may come to
 * light only after it lent the slot (waitsGrew): the wait graph tells.
 */

/** What the scheduler needs of a job. */
export interface SlotJob {
  id: number;
  target: string;
  parent: SlotJob | null;
  /** the job whose lent slot this one runs on (0: a slot of its own) */
  borrowed: number;
}

/** The tokens slots are made of (a JobServer). */
export interface Tokens {
  acquire(): Promise<void>;
  release(): void;
}

export class SlotScheduler {
  /** slots lent by blocked jobs (by id), with how many are free right now and
   * how many of the job's requests are waiting (a .do may run several at once,
   * `redo-ifchange a & redo-ifchange b & wait`: its one slot is lent once) */
  private readonly lent = new Map<number, { target: string; free: number; requests: number }>();
  private readonly waiters: Array<{ job: SlotJob; take: (lender: number) => void }> = [];
  private readonly reclaimers = new Map<number, () => void>();
  private readonly tokens: () => Tokens;
  private readonly reaches: (from: string, to: string) => boolean;

  /**
   * @param tokens the jobserver, asked for on first use (made lazily)
   * @param reaches does a target (transitively) wait for another? (Waits)
   */
  constructor(tokens: () => Tokens, reaches: (from: string, to: string) => boolean) {
    this.tokens = tokens;
    this.reaches = reaches;
  }

  /** Wait for a slot for `job`: a lent one it may use, or a token. */
  async acquire(job: SlotJob): Promise<void> {
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
      this.waiters.push(entry);
      void this.tokens()
        .acquire()
        .then(() => {
          if (done) return this.tokens().release();
          done = true;
          this.waiters.splice(this.waiters.indexOf(entry), 1);
          job.borrowed = 0;
          resolve();
        });
    });
  }

  /** The jobs waiting for a slot (for a report of a stalled build). */
  waiting(): string[] {
    return this.waiters.map((w) => w.job.target);
  }

  release(job: SlotJob): void {
    if (job.borrowed) this.giveBack(job.borrowed);
    else this.tokens().release();
    job.borrowed = 0;
  }

  /** `job` blocks on a request: what it waits for may run on its slot (lent already when another of its requests waits). */
  lend(job: SlotJob): void {
    const l = this.lent.get(job.id);
    if (l) {
      l.requests++;
      return;
    }
    this.lent.set(job.id, { target: job.target, free: 0, requests: 1 });
    this.giveBack(job.id);
  }

  /** A request of the blocked job is answered: once its last is, the job resumes on the slot it lent, when that is back. */
  async reclaim(job: SlotJob): Promise<void> {
    const l = this.lent.get(job.id);
    if (l && l.requests > 1) {
      l.requests--;
      return;
    }
    while (!((this.lent.get(job.id)?.free ?? 0) > 0)) {
      await new Promise<void>((r) => this.reclaimers.set(job.id, r));
      this.reclaimers.delete(job.id);
    }
    this.lent.delete(job.id);
  }

  /** May `job` run on the slot `lender` (blocked on `target`) lent? */
  private mayBorrow(job: SlotJob, lender: number, target: string): boolean {
    for (let p = job.parent; p; p = p.parent) if (p.id === lender) return true;
    return this.reaches(target, job.target);
  }

  private lenderFor(job: SlotJob): number {
    for (let p = job.parent; p; p = p.parent) if ((this.lent.get(p.id)?.free ?? 0) > 0) return p.id;
    for (const [id, l] of this.lent) if (l.free > 0 && this.reaches(l.target, job.target)) return id;
    return 0;
  }

  /** A slot lent by `lender` is free again: to a waiter it may go to, or home. */
  private giveBack(lender: number): void {
    const l = this.lent.get(lender)!;
    const i = this.waiters.findIndex((w) => this.mayBorrow(w.job, lender, l.target));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      w!.take(lender);
      return;
    }
    l.free++;
    this.reclaimers.get(lender)?.();
  }

  /**
   * `from` has come to wait for `to` (Waits). A blocked job's wait for a
   * build may be found after it lent its slot, and after that slot came
   * back free: when what it asked for is checked, not built, the check
   * goes on once an earlier dependency is built (on that very slot), and
   * only then reaches a build another job started, which waits for a slot
   * (holding its target's lock, as the top-level targets of a -j1 run do).
   * No slot is given back then, so the lent one, free, goes to that waiter
   * here, or neither would ever run. Only a path through the new wait can
   * be new: a lender that reaches `from`, a waiter that `to` reaches.
   */
  waitsGrew(from: string, to: string): void {
    if (this.waiters.length === 0) return;
    for (const [lender, l] of this.lent) {
      if (l.free === 0 || (l.target !== from && !this.reaches(l.target, from))) continue;
      for (let i = 0; l.free > 0 && i < this.waiters.length;) {
        const w = this.waiters[i]!;
        if (w.job.target !== to && !this.reaches(to, w.job.target)) {
          i++;
          continue;
        }
        this.waiters.splice(i, 1);
        l.free--;
        w.take(lender);
      }
    }
  }
}
