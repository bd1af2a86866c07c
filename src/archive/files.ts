/**
 * Small file and stream helpers the archive, sandbox, export and cache
 * layers share: comparing two files byte for byte, removing an unpacked
 * tree (read-only directories and all), and waiting for a write stream.
 */
import * as fs from 'node:fs';
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

/** Removes a tree, even one with read-only directories in it (an unpacked output has them). */
export async function removeTree(dir: string): Promise<void> {
  const writable = async (d: string): Promise<void> => {
    await fs.promises.chmod(d, 0o700);
    for (const e of await fs.promises.readdir(d, { withFileTypes: true })) if (e.isDirectory()) await writable(path.join(d, e.name));
  };
  await writable(dir).catch(() => {});
  await fs.promises.rm(dir, { recursive: true, force: true });
}

/** Resolves when `out` can take more, or is gone (destroyed after a failure elsewhere). */
export function drained(out: fs.WriteStream): Promise<void> {
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
