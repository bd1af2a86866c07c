/**
 * Pieces of the redo engine on their own, without running a build: the
 * slot scheduler, the commit step, the wait graph and the protocol. Each
 * step is driven by hand; nothing waits on a clock.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { scratch } from './helpers.ts';
import { SlotScheduler, type SlotJob, type Tokens } from '../src/engine/slots.ts';
import { Waits } from '../src/engine/waits.ts';
import { commit, isMarkedGenerated, type FinishedJob } from '../src/engine/commit.ts';
import { State, hashFile } from '../src/engine/state.ts';
import { MessageParser, parseRequest, parseRequestFlags, requestArgs } from '../src/engine/protocol.ts';

/** A jobserver of `n` tokens whose waiters are served in order. */
class FakeTokens implements Tokens {
  free: number;
  private readonly queue: Array<() => void> = [];
  constructor(n: number) {
    this.free = n;
  }
  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((r) => this.queue.push(r));
  }
  release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.free++;
  }
}

/** Let every promise that can settle, settle. */
const settle = () => new Promise<void>((r) => setImmediate(r));

function job(id: number, target: string, parent: SlotJob | null = null): SlotJob {
  return { id, target, parent, borrowed: 0 };
}

/** A promise's progress, to look at without awaiting it. */
function track(p: Promise<void>): { done: boolean } {
  const t = { done: false };
  void p.then(() => (t.done = true));
  return t;
}

describe('engine units', function () {
  describe('slot scheduler', () => {
    let tokens: FakeTokens;
    let waits: Waits;
    let slots: SlotScheduler;
    beforeEach(() => {
      tokens = new FakeTokens(1);
      waits = new Waits((from, to) => slots.waitsGrew(from, to));
      slots = new SlotScheduler(
        () => tokens,
        (from, to) => waits.reaches(from, to),
      );
    });

    it('runs a job on a token of its own when one is free', async () => {
      const a = job(1, 'a');
      await slots.acquire(a);
      assert.equal(a.borrowed, 0);
      assert.equal(tokens.free, 0);
      slots.release(a);
      assert.equal(tokens.free, 1);
    });

    it('a blocked job lends its slot to its own descendants, not to a sibling in the queue', async () => {
      const a = job(1, 'a');
      await slots.acquire(a);
      const sibling = track(slots.acquire(job(2, 'b')));
      slots.lend(a);
      await settle();
      assert.equal(sibling.done, false, 'a sibling waits for a token of its own');
      const child = job(3, 'a1', a);
      await slots.acquire(child);
      assert.equal(child.borrowed, a.id, 'the child runs on the slot its parent lent');
    });

    it('a blocked job lends its slot to a build it waits for that another job started', async () => {
      const a = job(1, 'a');
      await slots.acquire(a);
      const other = job(2, 'x');
      const waiting = track(slots.acquire(other));
      void waits.waitFor('a', 'x', new Promise(() => {}));
      slots.lend(a);
      await settle();
      assert.equal(waiting.done, true);
      assert.equal(other.borrowed, a.id);
    });

    it('a slot lent and free goes to a waiter its lender comes to wait for only later', async () => {
      const a = job(1, 'a');
      await slots.acquire(a);
      const other = job(2, 'x');
      const waiting = track(slots.acquire(other));
      slots.lend(a); // a waits for nothing yet that reaches x: the slot stays free
      await settle();
      assert.equal(waiting.done, false);
      const never = new Promise<void>(() => {});
      void waits.waitFor('a', 'b', never);
      await settle();
      assert.equal(waiting.done, false, 'b is no way to x');
      void waits.waitFor('b', 'x', never); // b's check went on, to x
      await settle();
      assert.equal(waiting.done, true);
      assert.equal(other.borrowed, a.id);
      const resumed = track(slots.reclaim(a));
      await settle();
      assert.equal(resumed.done, false, 'x runs on the slot');
      slots.release(other);
      await settle();
      assert.equal(resumed.done, true);
    });

    it('the lender resumes on its slot only once the borrower gives it back', async () => {
      const a = job(1, 'a');
      await slots.acquire(a);
      slots.lend(a);
      const child = job(2, 'a1', a);
      await slots.acquire(child);
      const resumed = track(slots.reclaim(a));
      await settle();
      assert.equal(resumed.done, false, 'the child still runs on the slot');
      slots.release(child);
      await settle();
      assert.equal(resumed.done, true);
      assert.equal(child.borrowed, 0);
      slots.release(a);
      assert.equal(tokens.free, 1, 'the token went home once, not twice');
    });

    it('a waiter takes a lent slot that comes first, and the token it gets later goes back', async () => {
      const a = job(1, 'a');
      await slots.acquire(a);
      const child = job(2, 'a1', a);
      const waiting = track(slots.acquire(child)); // a has not lent yet: it asks for a token
      slots.lend(a);
      await settle();
      assert.equal(waiting.done, true);
      assert.equal(child.borrowed, a.id);
      slots.release(child);
      await slots.reclaim(a);
      slots.release(a); // the token goes to the child's request, which gives it back
      await settle();
      assert.equal(tokens.free, 1);
    });
    it('a job blocked on two requests at once lends its one slot once, and resumes on it after the last', async () => {
      // redo-ifchange x & redo-ifchange y & wait: at -j1, x and y one at a time
      const a = job(1, 'a');
      await slots.acquire(a);
      slots.lend(a);
      slots.lend(a);
      const x = job(2, 'x', a);
      const y = job(3, 'y', a);
      await slots.acquire(x);
      const yRuns = track(slots.acquire(y));
      await settle();
      assert.equal(yRuns.done, false, 'one slot, lent once: y waits for x');
      slots.release(x);
      await settle();
      assert.equal(yRuns.done, true);
      assert.equal(y.borrowed, a.id);
      await slots.reclaim(a); // x's request answered: y's still waits, on the slot
      const resumed = track(slots.reclaim(a));
      await settle();
      assert.equal(resumed.done, false, 'y still runs on the slot');
      slots.release(y);
      await settle();
      assert.equal(resumed.done, true);
      slots.release(a); // the token goes to y's request for one, which gives it back
      await settle();
      assert.equal(tokens.free, 1, 'one token, home once');
    });
  });

  describe('wait graph', () => {
    it('finds the cycle a new wait would close, with its path', () => {
      const waits = new Waits();
      const never = new Promise<void>(() => {});
      void waits.waitFor('a', 'b', never);
      void waits.waitFor('b', 'c', never);
      assert.deepEqual(waits.cycleThrough('c', 'a'), ['c', 'a', 'b', 'c']);
      assert.equal(waits.cycleThrough('a', 'c'), null);
      assert.deepEqual(waits.cycleThrough('a', 'a'), ['a', 'a']);
      assert.equal(waits.reaches('a', 'c'), true);
      assert.equal(waits.reaches('c', 'a'), false);
    });

    it('keeps a wait two requests make until both have settled', async () => {
      const waits = new Waits();
      let settleFirst!: () => void;
      const first = waits.waitFor('a', 'b', new Promise<void>((r) => (settleFirst = r)));
      void waits.waitFor('a', 'b', new Promise<void>(() => {}));
      settleFirst();
      await first;
      assert.equal(waits.reaches('a', 'b'), true, 'the second request still waits for b');
    });

    it('forgets a wait once what it waited for settles', async () => {
      const waits = new Waits();
      await waits.waitFor('a', 'b', Promise.resolve());
      assert.equal(waits.reaches('a', 'b'), false);
    });
  });

  describe('commit', () => {
    let dir: string;
    let cleanup: () => void;
    let state: State;
    beforeEach(() => {
      ({ dir, cleanup } = scratch());
      state = new State(path.join(dir, '.redo'));
    });
    afterEach(() => {
      state.close();
      cleanup();
    });

    const finished = (over: Partial<FinishedJob> = {}): FinishedJob => ({
      target: 't',
      rule: 't.do',
      deps: [{ k: 'c', p: 't.do', id: 'h:x' }],
      stamp: null,
      ...over,
    });
    const outputs = (over: { stdout?: string | null; before?: fs.Stats } = {}) => ({
      abs: path.join(dir, 't'),
      tmp3: path.join(dir, 't.tmp3'),
      stdout: over.stdout ?? null,
      before: over.before,
    });

    it('puts $3 in place, marks it as generated and records its content hash', () => {
      fs.writeFileSync(path.join(dir, 't.tmp3'), 'out\n');
      const r = commit(state, finished(), outputs());
      const abs = path.join(dir, 't');
      assert.deepEqual(r, { ok: true, id: 'h:' + hashFile(abs) });
      assert.equal(fs.readFileSync(abs, 'utf8'), 'out\n');
      assert.equal(fs.existsSync(path.join(dir, 't.tmp3')), false);
      assert.equal(isMarkedGenerated(fs.statSync(abs)), true);
      const rec = state.targets.get('t')!;
      assert.equal(rec.out, 'f');
      assert.equal(rec.rule, 't.do');
      assert.deepEqual(rec.deps, [{ k: 'c', p: 't.do', id: 'h:x' }]);
    });

    it('puts what the job wrote to stdout in place', () => {
      fs.writeFileSync(path.join(dir, 'stdout'), 'printed\n');
      const r = commit(state, finished(), outputs({ stdout: path.join(dir, 'stdout') }));
      assert.equal(r.ok, true);
      assert.equal(fs.readFileSync(path.join(dir, 't'), 'utf8'), 'printed\n');
    });

    it('keeps the old file when the new output has the same bytes', () => {
      fs.writeFileSync(path.join(dir, 't.tmp3'), 'same\n');
      const first = commit(state, finished(), outputs());
      const before = fs.statSync(path.join(dir, 't'));
      fs.writeFileSync(path.join(dir, 't.tmp3'), 'same\n');
      const again = commit(state, finished(), outputs({ before }));
      assert.deepEqual(again, first);
      const after = fs.statSync(path.join(dir, 't'));
      assert.equal(after.ino, before.ino);
      assert.equal(after.mtimeMs, before.mtimeMs);
      assert.equal(fs.existsSync(path.join(dir, 't.tmp3')), false);
    });

    it('refuses an output written to both $3 and stdout, and removes $3', () => {
      fs.writeFileSync(path.join(dir, 't.tmp3'), 'a\n');
      fs.writeFileSync(path.join(dir, 'stdout'), 'b\n');
      const r = commit(state, finished(), outputs({ stdout: path.join(dir, 'stdout') }));
      assert.deepEqual(r, { ok: false, status: 207, why: 'wrote to both $3 and stdout' });
      assert.equal(fs.existsSync(path.join(dir, 't.tmp3')), false);
      assert.equal(state.targets.has('t'), false);
    });

    it('refuses a job that wrote the target itself', () => {
      fs.writeFileSync(path.join(dir, 't'), 'by hand\n');
      const r = commit(state, finished(), outputs());
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.status, 206);
      assert.equal(state.targets.has('t'), false);
    });

    it('a job that wrote nothing leaves no target, and gets a new sequence number', () => {
      fs.writeFileSync(path.join(dir, 't.tmp3'), 'old\n');
      commit(state, finished(), outputs());
      const before = fs.statSync(path.join(dir, 't'));
      const r = commit(state, finished(), outputs({ before }));
      assert.equal(fs.existsSync(path.join(dir, 't')), false);
      assert.match(r.ok ? r.id : '', /^r:\d+$/);
      assert.equal(state.targets.get('t')!.out, 'n');
    });

    it('a stamp is the identity dependents see', () => {
      fs.writeFileSync(path.join(dir, 't.tmp3'), 'x\n');
      assert.deepEqual(commit(state, finished({ stamp: 'v1' }), outputs()), { ok: true, id: 's:v1' });
    });

    it('a rule that keeps the target as it stands records it as the output', () => {
      fs.writeFileSync(path.join(dir, 't'), 'kept\n');
      const before = fs.statSync(path.join(dir, 't'));
      const r = commit(state, finished({ keep: true }), outputs({ before }));
      assert.deepEqual(r, { ok: true, id: 'h:' + hashFile(path.join(dir, 't')) });
      assert.equal(fs.readFileSync(path.join(dir, 't'), 'utf8'), 'kept\n');
    });
  });

  describe('protocol', () => {
    it('parses a request split across reads', () => {
      const p = new MessageParser();
      const bytes = Buffer.from(['J', '7', 'Q', 'ifchange', '/w', '2', 'a', 'b', '{}', ''].map((f) => f + '\0').join(''));
      const first = [...p.push(bytes.subarray(0, 9))];
      const rest = [...p.push(bytes.subarray(9))];
      assert.deepEqual(first, [['J', '7']]);
      assert.equal(rest.length, 1);
      assert.deepEqual(parseRequest(rest[0]!), { cmd: 'ifchange', cwd: '/w', args: ['a', 'b'], env: '{}', err: '' });
    });

    it('a nested run passes its flags in a form the engine reads back', () => {
      const f = { jobs: 4, shuffle: true, keepGoing: true, targets: ['-odd', 'x'] };
      assert.deepEqual(parseRequestFlags(requestArgs(f)), f);
    });
  });
});
