/**
 * What garbage collection must keep, besides profiles: the registrations
 * of venvs and trees, and the processes using the store right now.
 *
 *   gcroots/venvs/KEY   symlink to a venv bin/venv made: its record names
 *                       outputs to keep; stale once the venv is gone
 *   gcroots/trees/KEY   symlink to a tree (the directory holding pkg/) that
 *                       a command built from: its fetch files name the
 *                       distfiles to keep; stale once pkg/ is gone
 *   gcroots/users/      one temporary file a process using the store (a
 *                       build, a venv, an install): gc waits until none
 *                       is left, and a killed user's is swept as any
 *                       dead owner's temporary is
 *   gcroots/gc.lock     held by a running gc (engine/locks.ts's lock
 *                       file): a new user waits until it is released
 *
 * KEY is a hash of the registered path, so registering again replaces
 * the link (under a temporary name, renamed into place) and a registry
 * never grows with repetition. A stale registration is dropped by gc.
 *
 * The two sides meet in that order: a user first says so, then looks for
 * a gc; gc first takes its lock, then looks for users. Whichever comes
 * second sees the other and backs off (gc releases its lock while it
 * waits, so that a user's own children may still start), so gc never
 * removes what a running build, venv or install uses.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { homeLayout } from '../home.ts';
import { temporaryName, removeTemporaryFile, sweepNow } from '../archive/temporary.ts';
import { isAlive, withLockFile } from '../engine/locks.ts';
// node:crypto, loaded when a registration is made: a rollback has no use for it
import { crypto } from '../engine/lazy.ts';
import { namesIn } from '../archive/files.ts';

export type Registry = 'venvs' | 'trees';

const usersDir = (home: string) => path.join(homeLayout.gcroots(home), 'users');
const lockFile = (home: string) => path.join(homeLayout.gcroots(home), 'gc.lock');

/** Registers `target` (made absolute) in `registry`, replacing an older link to it. */
export function register(home: string, registry: Registry, target: string): void {
  const abs = path.resolve(target);
  const dir = path.join(homeLayout.gcroots(home), registry);
  fs.mkdirSync(dir, { recursive: true });
  const link = path.join(dir, crypto().createHash('sha256').update(abs).digest('hex').slice(0, 32));
  if (readLink(link) === abs) return;
  const tmp = temporaryName(link);
  try {
    fs.symlinkSync(abs, tmp);
    fs.renameSync(tmp, link);
  } finally {
    removeTemporaryFile(tmp);
  }
}

function readLink(link: string): string | null {
  try {
    return fs.readlinkSync(link);
  } catch {
    return null;
  }
}

/** The registrations of `registry`: each link and the path it names. */
export function registrations(home: string, registry: Registry): Array<{ link: string; target: string }> {
  const dir = path.join(homeLayout.gcroots(home), registry);
  const names = namesIn(dir);
  const out: Array<{ link: string; target: string }> = [];
  for (const n of names) {
    if (n.startsWith('.')) continue; // a temporary
    const target = readLink(path.join(dir, n));
    if (target !== null) out.push({ link: path.join(dir, n), target });
  }
  return out;
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

/** The pid of a running gc, or null. */
function collector(home: string): number | null {
  const pid = Number(readLink(lockFile(home)));
  return Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid) ? pid : null;
}

/**
 * Runs `f` as a user of the store: no gc runs meanwhile. Waits for a
 * running gc to finish first (told through `onWait`, once).
 */
export async function usingStore<T>(home: string, f: () => Promise<T> | T, onWait: (pid: number) => void = () => {}): Promise<T> {
  const dir = usersDir(home);
  fs.mkdirSync(dir, { recursive: true });
  let told = false;
  for (;;) {
    const me = temporaryName(path.join(dir, 'use'));
    fs.writeFileSync(me, '');
    const gc = collector(home);
    if (gc === null) {
      try {
        return await f();
      } finally {
        removeTemporaryFile(me);
      }
    }
    removeTemporaryFile(me);
    if (!told) onWait(gc);
    told = true;
    await sleep(50);
  }
}

/** The pid of each live process using the store (dead users' marks are swept first). */
async function liveUsers(home: string): Promise<number[]> {
  const dir = usersDir(home);
  try {
    await sweepNow(dir);
    return fs
      .readdirSync(dir)
      .map((n) => Number(/\.tmp-(\d+)-/.exec(n)?.[1]))
      .filter((pid) => pid > 0 && pid !== process.pid);
  } catch {
    return [];
  }
}

/**
 * Runs `f` with no user of the store running, and none starting until it
 * is done: the gc's side of usingStore. `onWait` is told, once, of a
 * process it waits for.
 */
export async function exclusively<T>(home: string, f: () => Promise<T> | T, onWait: (pid: number, what: 'gc' | 'user') => void = () => {}): Promise<T> {
  fs.mkdirSync(homeLayout.gcroots(home), { recursive: true });
  let told = false;
  const tellOnce = (pid: number, what: 'gc' | 'user') => {
    if (!told) onWait(pid, what);
    told = true;
  };
  for (;;) {
    const done = await withLockFile(
      lockFile(home),
      (pid) => tellOnce(pid, 'gc'),
      async () => {
        const users = await liveUsers(home);
        if (users.length > 0) {
          tellOnce(users[0]!, 'user');
          return null; // the lock goes, so that the user's own children start and it can finish
        }
        return { value: await f() };
      },
    );
    if (done !== null) return done.value;
    await sleep(100);
  }
}
