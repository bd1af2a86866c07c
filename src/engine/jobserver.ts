/**
 * Job slots, shared with make through the GNU make jobserver protocol.
 *
 * With -jN the engine owns N slots: one implicit, N-1 as bytes in a pipe
 * whose ends are handed to every job as fds 7 and 8 with
 * MAKEFLAGS=--jobserver-auth=7,8, so `make` run from a .do draws from the
 * same pool. The engine takes bytes with non-blocking reads and gives them
 * back when a job ends or blocks on a redo-ifchange. When redo itself runs
 * under make (MAKEFLAGS names a jobserver and no -j was given) it joins that
 * pool instead.
 *
 * The pipe is a FIFO (fifo.ts): Node has no pipe(2).
 */
const fs = process.getBuiltinModule('node:fs');
import { withFifo } from './fifo.ts';

export const JOBSERVER_R = 7;
export const JOBSERVER_W = 8;

export class JobServer {
  slots: number;
  /** slots given back by shrink() that are still in use: dropped on release */
  private debt = 0;
  /** fds to give jobs at JOBSERVER_R / JOBSERVER_W (blocking), or null */
  childFds: [number, number] | null = null;
  private pollFd = -1; // our own non-blocking read/write end
  private implicitFree = true;
  private held: number[] = []; // token bytes taken from the pipe
  private waiting: Array<() => void> = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(slots: number, inherited?: { r: number; w: number } | null) {
    this.slots = slots;
    if (inherited) {
      // reopen through /proc for a non-blocking description of our own
      this.pollFd = fs.openSync(`/proc/self/fd/${inherited.r}`, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
      this.childFds = [inherited.r, inherited.w];
      this.inherited = true;
      return;
    }
    if (slots > 1) this.makePipe(slots - 1);
  }

  private makePipe(tokens: number): void {
    withFifo((fifo) => {
      this.pollFd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
      // blocking ends for make; opening does not block, pollFd is a writer
      const r = fs.openSync(fifo, fs.constants.O_RDONLY);
      const w = fs.openSync(fifo, fs.constants.O_WRONLY);
      this.childFds = [r, w];
    });
    fs.writeSync(this.pollFd, Buffer.alloc(tokens, 0x2b));
  }

  /** More slots, for a nested `redo -jN` with N above ours. Jobs started
   * from now on (and make in them) can use them. */
  grow(n: number): void {
    if (n <= 0) return;
    this.slots += n;
    if (this.pollFd < 0) this.makePipe(n);
    else fs.writeSync(this.pollFd, Buffer.alloc(n, 0x2b));
    while (this.waiting.length > 0 && this.tryTake()) this.waiting.shift()!();
  }

  /** Undo a grow(): slots in use are dropped as they come back. */
  shrink(n: number): void {
    this.slots -= n;
    this.debt += n;
    const b = Buffer.alloc(1);
    while (this.debt > 0 && this.pollFd >= 0) {
      try {
        if (fs.readSync(this.pollFd, b, 0, 1, null) !== 1) break;
      } catch {
        break;
      }
      this.debt--;
    }
  }

  private inherited = false;

  /** MAKEFLAGS value for children, keeping flags the caller already had. */
  makeflags(existing: string | undefined): string | undefined {
    if (!this.childFds) return existing;
    const kept = (existing ?? '').split(' ').filter((w) => w && !/^--jobserver-(auth|fds)=/.test(w) && !/^-j\d*$/.test(w));
    return [...kept, `-j${this.slots}`, `--jobserver-auth=${JOBSERVER_R},${JOBSERVER_W}`].join(' ').trim();
  }

  /** What a tool run with these slots is given (a rule's make, a package
   * shell): MAKEFLAGS, and which of our fds it gets at which numbers; null
   * with one slot, which needs no jobserver. */
  forChild(): { makeflags: string; fds: Record<number, number> } | null {
    const makeflags = this.makeflags(undefined);
    if (!this.childFds || !makeflags) return null;
    return { makeflags, fds: { [JOBSERVER_R]: this.childFds[0], [JOBSERVER_W]: this.childFds[1] } };
  }

  /** Take a slot, in turn. */
  acquire(): Promise<void> {
    if (this.tryTake()) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.schedulePoll();
    });
  }

  release(): void {
    if (this.debt > 0 && this.held.length > 0) {
      this.held.pop();
      this.debt--;
      return;
    }
    const next = this.waiting.shift();
    if (next) {
      next(); // hand the slot over directly
      return;
    }
    if (this.held.length > 0) {
      const b = this.held.pop()!;
      try {
        fs.writeSync(this.pollFd, Buffer.of(b));
      } catch {
        /* pipe gone: the slot is simply lost */
      }
    } else {
      this.implicitFree = true;
    }
  }

  private tryTake(): boolean {
    if (this.implicitFree) {
      this.implicitFree = false;
      return true;
    }
    // every token is with us: the pipe is empty, and reading it would only
    // raise EAGAIN (an exception apiece)
    if (this.pollFd < 0 || this.held.length >= this.slots - 1 + this.debt) return false;
    const b = Buffer.alloc(1);
    try {
      if (fs.readSync(this.pollFd, b, 0, 1, null) === 1) {
        this.held.push(b[0]!);
        return true;
      }
    } catch {
      /* EAGAIN: none free */
    }
    return false;
  }

  /** Slots come back either through release() or from make writing the
   * pipe, which nothing tells us about: poll while someone waits. */
  private schedulePoll(): void {
    if (this.timer || this.pollFd < 0 || this.held.length >= this.slots - 1) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      while (this.waiting.length > 0 && this.tryTake()) this.waiting.shift()!();
      if (this.waiting.length > 0) this.schedulePoll();
    }, 3);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    const fds = this.inherited ? [this.pollFd] : [this.pollFd, ...(this.childFds ?? [])];
    for (const fd of fds) {
      if (fd < 0) continue;
      try {
        fs.closeSync(fd);
      } catch {
        /* already closed */
      }
    }
  }
}

/** The jobserver of a make (or redo) we run under, from MAKEFLAGS. */
export function inheritedJobServer(makeflags: string | undefined): { r: number; w: number; slots: number } | null {
  if (!makeflags) return null;
  const m = /--jobserver-(?:auth|fds)=(\d+),(\d+)/.exec(makeflags);
  if (!m) return null;
  const r = Number(m[1]);
  const w = Number(m[2]);
  try {
    fs.fstatSync(r);
    fs.fstatSync(w);
  } catch {
    return null; // make did not pass the fds on (a recipe without '+')
  }
  const j = /(?:^|\s)-j(\d+)/.exec(makeflags);
  return { r, w, slots: j ? Number(j[1]) : 2 };
}
