/**
 * Pipes for child processes. Node has no pipe(2); a FIFO made with
 * mkfifo(1) in a private directory, opened, and unlinked is the same thing.
 * The jobserver's slots and a sandboxed build's output both travel in one.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { childProcess } from './lazy.ts';
import { temporaryDir, removeTemporaryFile } from '../archive/temporary.ts';

/** Calls `open` with the path of a new FIFO, which is gone once it returns:
 * the ends it opened are all that is left of it. */
export function withFifo<T>(open: (fifo: string) => T): T {
  // a temporary's name: one a SIGKILL leaves is swept by the next to make one
  const dir = temporaryDir(path.join(os.tmpdir(), 'redo-fifo'));
  const fifo = path.join(dir, 'fifo');
  try {
    childProcess().execFileSync('mkfifo', ['-m', '600', fifo]);
    return open(fifo);
  } finally {
    removeTemporaryFile(dir);
  }
}
