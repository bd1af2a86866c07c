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

/** A process that waits until `at` (ms since 1970), tries once to take `file`, says whether it got it, and lives on a while. */
function taker(file: string, at: number): Promise<string> {
  const script = `
    const { tryLockFile } = await import(${JSON.stringify(path.join(REPO, 'dist/engine/locks.js'))});
    while (performance.timeOrigin + performance.now() < ${at}) {} // to the microsecond: the window is that narrow
    process.stdout.write(tryLockFile(${JSON.stringify(file)}) === true ? 'got' : 'not');
    // alive, and so holding what it took, until the others have tried
    setTimeout(() => {}, ${at} + 700 - Date.now());`;
  const p = spawn(NODE, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d));
  return new Promise((resolve) => p.once('close', () => resolve(out)));
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
        const got = await Promise.all(Array.from({ length: 4 }, () => taker(f, at)));
        if (got.filter((g) => g === 'got').length > 1) twice.push(i);
      }
      assert.deepEqual(twice, [], 'trials in which two processes took the same lock');
    } finally {
      s.cleanup();
    }
  });
});
