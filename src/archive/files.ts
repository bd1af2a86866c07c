/**
 * Small file and stream helpers the archive, sandbox, export and cache
 * layers share: comparing two files byte for byte, removing an unpacked
 * tree (read-only directories and all), and waiting for a write stream.
 */
import type { Dirent, Stats } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';

/** Do the two files hold the same bytes? (Sizes are the caller's to check.) */
export function sameContent(a: string, b: string): boolean {
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  try {
    const ba = Buffer.alloc(1 << 16);
    const bb = Buffer.alloc(1 << 16);
    for (;;) {
      const n = fs.readSync(fa, ba);
      if (n === 0) return true;
      if (fs.readSync(fb, bb, 0, n, null) !== n || !ba.subarray(0, n).equals(bb.subarray(0, n))) return false;
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
}

/**
 * Removes a tree, even one with read-only directories in it (an unpacked
 * output, a venv); anything else at `dir` (a file, a symlink, never
 * followed) as it is; nothing when nothing is there. The engine takes this
 * asynchronous form, so that removing a large build directory does not
 * keep it from the jobs running beside it.
 */
export async function removeTree(dir: string): Promise<void> {
  const steps = removal(dir);
  for (let step = steps.next(); !step.done;) {
    const [op, p] = step.value;
    try {
      step = steps.next(await asynchronously[op](p));
    } catch (e) {
      step = steps.throw(e);
    }
  }
}

/** removeTree for callers that cannot wait: an exit handler, a write under a lock. */
export function removeTreeSync(dir: string): void {
  const steps = removal(dir);
  for (let step = steps.next(); !step.done;) {
    const [op, p] = step.value;
    try {
      step = steps.next(synchronously[op](p));
    } catch (e) {
      step = steps.throw(e);
    }
  }
}

const RECURSIVE = { recursive: true, force: true } as const;
const asynchronously = {
  rm: (p: string) => fs.promises.rm(p, RECURSIVE),
  chmod: (p: string) => fs.promises.chmod(p, 0o700),
  readdir: (p: string) => fs.promises.readdir(p, { withFileTypes: true }),
  lstat: (p: string) => fs.promises.lstat(p),
};
const synchronously = {
  rm: (p: string) => fs.rmSync(p, RECURSIVE),
  chmod: (p: string) => fs.chmodSync(p, 0o700),
  readdir: (p: string) => fs.readdirSync(p, { withFileTypes: true }),
  lstat: (p: string) => fs.lstatSync(p),
};
type Step = [keyof typeof synchronously, string];
type Steps = Generator<Step, void, Dirent[] | Stats | void>;

/**
 * How a tree is removed, written once for both forms: the file operations
 * in order, each answered (a readdir with its entries, an lstat with its
 * stats) or its error thrown back here by the form that carries it out. rm
 * alone first, as most trees are writable; a read-only directory in one
 * makes it fail, and then every directory is made writable and rm tried
 * again. Only directories are: a symlink's chmod would change its target.
 */
function* removal(dir: string): Steps {
  try {
    yield ['rm', dir];
    return;
  } catch {
    // a read-only directory somewhere
  }
  function* writable(d: string): Steps {
    yield ['chmod', d];
    for (const e of (yield ['readdir', d]) as Dirent[]) if (e.isDirectory()) yield* writable(path.join(d, e.name));
  }
  try {
    if (((yield ['lstat', dir]) as Stats).isDirectory()) yield* writable(dir);
  } catch {
    // gone already, or not ours to change: the second rm says which
  }
  yield ['rm', dir];
}

/** Resolves when `out` (a file, or an HTTP response) can take more, or is gone (destroyed after a failure elsewhere). */
export function drained(out: Pick<NodeJS.WritableStream, 'on' | 'off'>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}

/** The names in directory `dir`; none when it does not exist (yet): the
 * stores' registries, profiles and logs are made on first use. */
export function namesIn(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}
