/**
 * Cross-process target locks, so two redo processes never build one target
 * at once. Node has no flock(2): a lock is a symlink whose text is the
 * owner's pid, made atomically by symlink(2) (one system call to take, one
 * to drop); a lock whose owner is dead is stale and taken over.
 *
 * Locks live in memory-backed /dev/shm when there is one, keyed by the
 * tree's state directory: taking and dropping 2000 locks on a journalled
 * disk costs a build of 2000 small targets a fifth of its time.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { crypto } from './lazy.ts';

export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockDir(stateDir: string): string {
  const shm = '/dev/shm';
  try {
    fs.accessSync(shm, fs.constants.W_OK);
    const real = fs.realpathSync(path.dirname(stateDir));
    const key = crypto()
      .createHash('sha1')
      .update(path.join(real, path.basename(stateDir)))
      .digest('hex')
      .slice(0, 16);
    const uid = process.getuid?.() ?? 0;
    return path.join(shm, `redo-${uid}-${key}`);
  } catch {
    return path.join(stateDir, 'lock');
  }
}

/**
 * Try once to take the lock `file`: a symlink naming our pid, in a
 * directory made if missing. Returns true if taken, else the pid holding
 * it (-1 when it changed hands while we looked).
 */
export function tryLockFile(f: string): true | number {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.symlinkSync(String(process.pid), f);
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        fs.mkdirSync(path.dirname(f), { recursive: true });
        continue;
      }
      if (code !== 'EEXIST') throw e;
    }
    let owner: number;
    try {
      owner = Number(fs.readlinkSync(f));
    } catch {
      continue; // released meanwhile
    }
    if (owner === process.pid) return owner;
    if (Number.isNaN(owner) || isAlive(owner)) {
      if (!Number.isNaN(owner)) return owner;
      // being written right now: look again
      continue;
    }
    // stale: its owner died without unlocking
    breakStale(f, owner);
  }
  return -1;
}

/**
 * Removes the lock `f` if it still names the dead `owner`. Two takers may
 * both find it stale; were each to remove what is there, the second would
 * remove the lock the first has just taken, and both would hold it. So one
 * breaker at a time, under a lock of its own, looks again before removing.
 * (A breaker that dies in those few instructions leaves that lock stale,
 * and it is removed the plain way: a race there needs a crash as well.)
 */
function breakStale(f: string, owner: number): void {
  const breaker = `${f}.break`;
  try {
    fs.symlinkSync(String(process.pid), breaker);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    let other: number;
    try {
      other = Number(fs.readlinkSync(breaker));
    } catch {
      return; // released meanwhile: look again
    }
    if (!Number.isNaN(other) && !isAlive(other)) fs.rmSync(breaker, { force: true });
    return; // another taker is breaking it: look again
  }
  try {
    let now: number;
    try {
      now = Number(fs.readlinkSync(f));
    } catch {
      return; // gone already
    }
    if (now === owner) fs.rmSync(f, { force: true });
  } finally {
    fs.rmSync(breaker, { force: true });
  }
}

/** Polls `tryOnce` with backoff until it succeeds; true if it had to wait. */
async function waitFor(tryOnce: () => true | number, what: string, onWait: (pid: number) => void): Promise<boolean> {
  let delay = 5;
  let told = false;
  for (;;) {
    const r = tryOnce();
    if (r === true) return told;
    if (r === process.pid) throw new Error(`internal: ${what} locked twice by one process`);
    if (!told && r > 0) {
      onWait(r);
      told = true;
    }
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 200);
  }
}

/**
 * Runs `f` holding the lock `file`, for one writer at a time to something
 * shared outside a redo tree (a venv, a cache directory). A holder that
 * dies, even by SIGKILL, leaves a lock naming a dead pid, which the next
 * taker removes; one that exits normally removes it, on process exit too.
 */
export async function withLockFile<T>(file: string, onWait: (pid: number) => void, f: () => Promise<T> | T): Promise<T> {
  await waitFor(() => tryLockFile(file), file, onWait);
  const release = () => fs.rmSync(file, { force: true });
  process.once('exit', release);
  try {
    return await f();
  } finally {
    process.off('exit', release);
    release();
  }
}

export class Locks {
  private readonly stateDir: string;
  private dirCache: string | null = null;
  private readonly held = new Set<string>();

  constructor(stateDir: string) {
    this.stateDir = stateDir;
  }

  /** Worked out on first use: a no-op build takes no lock. */
  private get dir(): string {
    return (this.dirCache ??= lockDir(this.stateDir));
  }

  private file(target: string): string {
    return path.join(this.dir, crypto().createHash('sha1').update(target).digest('hex'));
  }

  /** Try once. Returns true if taken, else the pid holding it. */
  tryLock(target: string): true | number {
    const f = this.file(target);
    const r = tryLockFile(f);
    if (r === true) this.held.add(f);
    return r;
  }

  /** Wait until the lock is ours, polling with backoff. */
  async lock(target: string, onWait: (pid: number) => void): Promise<boolean> {
    return waitFor(() => this.tryLock(target), target, onWait);
  }

  /** Say that this process works on the tree, for othersAlive(). */
  register(): void {
    if (this.registered) return;
    fs.mkdirSync(this.enginesDir, { recursive: true });
    const me = path.join(this.enginesDir, String(process.pid));
    fs.rmSync(me, { force: true });
    fs.symlinkSync(String(process.pid), me);
    this.registered = true;
  }

  /** Is another redo process working on this tree? It decides whether our
   * records must reach the disk before we let go of a target, so that a
   * process waiting for it sees them. (One readdir of a small in-memory
   * directory; a process that registers between this look and the unlock
   * may build the target a second time, never wrongly.) */
  othersAlive(): boolean {
    // a directory of its own: the lock directory holds a lock per target asked for
    for (const n of fs.readdirSync(this.enginesDir)) {
      const pid = Number(n);
      if (pid === process.pid) continue;
      if (isAlive(pid)) return true;
      fs.rmSync(path.join(this.enginesDir, n), { force: true });
    }
    return false;
  }

  private get enginesDir(): string {
    return path.join(this.dir, 'engines');
  }

  private registered = false;

  unlock(target: string): void {
    const f = this.file(target);
    if (this.held.delete(f)) fs.rmSync(f, { force: true });
  }

  releaseAll(): void {
    for (const f of this.held) fs.rmSync(f, { force: true });
    this.held.clear();
    if (this.registered) {
      fs.rmSync(path.join(this.enginesDir, String(process.pid)), { force: true });
      // leave no empty directories behind in /dev/shm
      for (const d of [this.enginesDir, this.dir]) {
        try {
          fs.rmdirSync(d);
        } catch {
          break; // another engine still works here
        }
      }
    }
    this.registered = false;
  }
}
