/**
 * Job slots lent by blocked jobs (src/engine/slots.ts), driven through
 * bin/redo with built-in rules: nothing runs in a worker, so a deadlock
 * of the engine's empties the event loop and shows as its exit 12 at
 * once, not as a hang.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { scratch, write, run, read } from './helpers.ts';

describe('redo slots', function () {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = scratch()));
  afterEach(() => cleanup());

  it('lends a blocked job its slot to a build it comes to wait for only after lending (found by a later check)', () => {
    // a: always rebuilt, asks for b. b: checked, not rebuilt: its record
    // says m, then c. m: always rebuilt, same stamp. c: always rebuilt,
    // named on the command line after a, so its job holds its lock and
    // waits for the one slot while a runs. a lends its slot when it asks
    // for b; then nothing a waits for reaches c: m borrows the slot and
    // gives it back, and only then does b's check go on to c. a's slot,
    // lent and free, must go to c now, or nothing ever runs again.
    write(dir, {
      'rules.mjs': `
        import * as fs from 'node:fs';
        const made = (name, build) => ({ name, version: '1', matches: (rel) => rel === name, build });
        const out = (ctx, text) => fs.writeFileSync(ctx.out, text);
        export const rules = [
          made('a', async (ctx) => { ctx.always(); await ctx.ifchange(['b']); out(ctx, 'a'); }),
          made('b', async (ctx) => { await ctx.ifchange(['m']); await ctx.ifchange(['c']); out(ctx, 'b'); }),
          made('m', async (ctx) => { ctx.always(); ctx.stamp('m'); out(ctx, 'm'); }),
          made('c', async (ctx) => { ctx.always(); ctx.stamp('c'); out(ctx, 'c'); }),
        ];
      `,
    });
    const env = { REDO_RULES: path.join(dir, 'rules.mjs') };
    const first = run(dir, 'redo-ifchange', ['a'], env);
    assert.equal(first.status, 0, first.stderr);
    const again = run(dir, 'redo-ifchange', ['-j1', 'a', 'c'], env, 30_000);
    assert.equal(again.status, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /stalled/);
    assert.equal(read(dir, 'a'), 'a');
    assert.equal(read(dir, 'c'), 'c');
  });

  it("lends to the job a top-level target's check started, waiting for a slot, that a package's check reaches after building its hash", () => {
    // the shape of the package tree: NAME.out asks for NAME.hash (always
    // made, stamped), then for its dependencies' .out. py.out is made again
    // (always); tar.out is checked, and its hash's job, started by that
    // check, holds its lock and waits for the slot py.out has. bu.out's
    // check builds bu.hash on the slot py.out lent, and only then comes to
    // tar.out: py.out's slot, free again, must go to tar.hash.
    write(dir, {
      'rules.mjs': `
        import * as fs from 'node:fs';
        const deps = { py: ['bu'], bu: ['tar'], tar: [] };
        const name = (rel) => rel.slice(0, rel.lastIndexOf('.'));
        export const rules = [
          { name: 'hash', version: '1', quiet: true, matches: (rel) => rel.endsWith('.hash'),
            build: async (ctx) => { ctx.always(); ctx.stamp(name(ctx.rel)); fs.writeFileSync(ctx.out, name(ctx.rel)); } },
          { name: 'out', version: '1', matches: (rel) => rel.endsWith('.out'),
            build: async (ctx) => {
              const n = name(ctx.rel);
              if (n === 'py') ctx.always();
              await ctx.ifchange([n + '.hash']);
              await ctx.ifchange(deps[n].map((d) => d + '.out'));
              fs.writeFileSync(ctx.out, n);
            } },
        ];
      `,
    });
    const env = { REDO_RULES: path.join(dir, 'rules.mjs') };
    const first = run(dir, 'redo-ifchange', ['py.out'], env);
    assert.equal(first.status, 0, first.stderr);
    const again = run(dir, 'redo-ifchange', ['-j1', 'py.out', 'tar.out'], env, 30_000);
    assert.equal(again.status, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /stalled/);
    assert.equal(read(dir, 'py.out'), 'py');
  });

  it('runs the builds of a job that asks for two targets at once (redo-ifchange x & redo-ifchange y & wait) one at a time at -j1', () => {
    // all's one slot is lent once, not once a request: at -j1 x and y do not
    // overlap, and all resumes once both are answered (before the fix both
    // ran at once, and the second answer found the slot taken back: a crash)
    write(dir, {
      'rules.mjs': `
        import * as fs from 'node:fs';
        let running = 0;
        let most = 0;
        const leaf = (name) => ({ name, version: '1', matches: (rel) => rel === name, build: async (ctx) => {
          most = Math.max(most, ++running);
          await new Promise((r) => setTimeout(r, 100));
          running--;
          fs.writeFileSync(ctx.out, name);
        } });
        export const rules = [
          { name: 'all', version: '1', matches: (rel) => rel === 'all', build: async (ctx) => {
            await Promise.all([ctx.ifchange(['x']), ctx.ifchange(['y'])]);
            fs.writeFileSync(ctx.out, 'at most ' + most + ' at once');
          } },
          leaf('x'),
          leaf('y'),
        ];
      `,
    });
    const env = { REDO_RULES: path.join(dir, 'rules.mjs') };
    const r = run(dir, 'redo-ifchange', ['-j1', 'all'], env, 30_000);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(read(dir, 'all'), 'at most 1 at once');
    assert.equal(read(dir, 'y'), 'y');
  });
});
