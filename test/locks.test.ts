/**
 * Cross-process locks (engine/locks.ts): a lock whose holder died is taken
 * over by exactly one of the processes that find it stale.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO, scratch } from './helpers.ts';

const NODE = path.join(REPO, 'node_modules/node/bin/node');

/**
 * A process that waits until `at` (ms since 1970), tries once to take
 * `file` and says whether it got it, then lives on, holding what it took,
 * until `release` (its stdin closed): however long the machine makes the
 * others wait, none of them finds the lock of a taker that has exited.
 */
function taker(file: string, at: number): { answer: Promise<string>; release: () => Promise<void> } {
  const script = `
    const { tryLockFile } = await import(${JSON.stringify(path.join(REPO, 'dist/engine/locks.js'))});
    while (performance.timeOrigin + performance.now() < ${at}) {} // to the microsecond: the window is that narrow
    process.stdout.write(tryLockFile(${JSON.stringify(file)}) === true ? 'got\\n' : 'not\\n');
    process.stdin.resume();
    process.stdin.on('end', () => process.exit(0));`;
  const p = spawn(NODE, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const closed = new Promise<void>((resolve) => p.once('close', () => resolve()));
  const answer = new Promise<string>((resolve) => {
    p.stdout.on('data', (d: Buffer) => {
      out += d;
      if (out.endsWith('\n')) resolve(out.trim());
    });
    void closed.then(() => resolve(out.trim()));
  });
  return {
    answer,
    release: () => {
      p.stdin.end();
      return closed;
    },
  };
}

describe('locks', function () {
  this.timeout(120_000);

  it('a stale lock found by four takers at once is taken by one of them at most', async () => {
    const s = scratch();
    try {
      const twice: number[] = [];
      for (let i = 0; i < 20; i++) {
        const f = path.join(s.dir, `lock${i}`);
        fs.symlinkSync('99999999', f); // above any pid_max: a holder that is dead
        const at = Date.now() + 400;
        const takers = Array.from({ length: 4 }, () => taker(f, at));
        const got = await Promise.all(takers.map((t) => t.answer));
        await Promise.all(takers.map((t) => t.release()));
        if (got.filter((g) => g === 'got').length > 1) twice.push(i);
      }
      assert.deepEqual(twice, [], 'trials in which two processes took the same lock');
    } finally {
      s.cleanup();
    }
  });
});
