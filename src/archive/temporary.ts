/**
 * Temporaries: the files and trees written under a name of their own and
 * renamed into place once complete, named so that anyone can tell whose
 * they are and whether that process still lives.
 *
 *   .NAME.tmp-PID-START-SPACE-RAND
 *
 * PID is the owner's, START its start time (clock ticks since boot, from
 * /proc/PID/stat) so that a reused pid is not taken for the owner, and
 * SPACE names where that pid means something: a hash of the host name
 * and the pid namespace. A temporary from another machine (a cache
 * directory on a shared file system) or another container is never taken
 * for a dead owner's; one from before a reboot is.
 *
 * The owner removes its own on error (removeTemporary, or withTemporaryFile
 * around the write) and, through the engine's signal policy, on SIGINT,
 * SIGTERM and SIGHUP (removeOwnTemporaries). What a SIGKILL leaves is swept
 * by the next process that writes into the same directory: the first time
 * a process names a temporary there, the temporaries of dead owners go.
 * A live owner's are never touched, whoever asks.
 */
const fs = process.getBuiltinModule('node:fs');
import * as os from 'node:os';
import * as path from 'node:path';
import { removeTree } from './files.ts';

/** `.tmp-PID-START-SPACE-RAND` at the end of a name; PID, START and SPACE captured. */
const PATTERN = /\.tmp-(\d+)-(\d+)-([0-9a-f]{8})-[0-9a-f]{8}$/;

/** The start time of process `pid` (clock ticks since boot), or null if there is none. */
function startTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // the command name, in parentheses, may hold spaces and parentheses itself
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** The host and pid namespace this process's pids belong to, as 8 hex digits (FNV-1a). */
function pidSpace(): string {
  let ns = '';
  try {
    ns = fs.readlinkSync('/proc/self/ns/pid');
  } catch {
    /* no /proc: the host alone */
  }
  let h = 0x811c9dc5;
  for (const c of Buffer.from(`${os.hostname()} ${ns}`)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

let self: { pid: string; start: string; space: string } | null = null;

/** This process, as its temporaries name it. */
function me(): { pid: string; start: string; space: string } {
  return (self ??= { pid: String(process.pid), start: startTime(process.pid) ?? '0', space: pidSpace() });
}

/**
 * Does the process that named `name` still run? True too when that cannot
 * be told (another host's or container's); false for a name that is no
 * temporary.
 */
function ownerAlive(name: string): boolean {
  const m = PATTERN.exec(name);
  if (!m) return false;
  const [, pid, start, space] = m;
  if (space !== me().space) return true;
  return startTime(Number(pid)) === start;
}

/** Is `name` a temporary, whoever owns it? */
function isTemporary(name: string): boolean {
  return PATTERN.test(name);
}

// unique enough beside the owner's pid and start time; node:crypto would
// cost every redo process its load time
const random = () =>
  Math.floor(Math.random() * 2 ** 32)
    .toString(16)
    .padStart(8, '0');

const live = new Set<string>();
const swept = new Map<string, Promise<void>>();

/**
 * A fresh temporary name beside `final` (in its directory), this process's
 * until forgotten or removed; the directory is swept of dead owners'. With
 * `visible`, neither hidden nor swept: a failed build's work directory is
 * there to be looked into, and its owner says when it goes (sweepNow).
 * With `sweep: false`, not swept now: a writer that rarely writes (a quiet
 * rule run every time) leaves the sweep of its directory to the next one
 * that does, and a no-op run lists no directory.
 */
export function temporaryName(final: string, opts: { visible?: boolean; sweep?: boolean } = {}): string {
  const dir = path.dirname(final);
  const base = path.basename(final);
  const hidden = opts.visible || base.startsWith('.') ? base : `.${base}`;
  const { pid, start, space } = me();
  const name = path.join(dir, `${hidden}.tmp-${pid}-${start}-${space}-${random()}`);
  live.add(name);
  if (!opts.visible && opts.sweep !== false) void sweep(dir);
  return name;
}

/** The temporary was renamed into place: it is no longer ours to remove. */
export function forget(tmp: string): void {
  live.delete(tmp);
}

let interrupted = false;

/**
 * The temporary is to stay, to be looked into (a failed build's work
 * directory); false, and it goes all the same, once the process is being
 * interrupted: a build that fails because it was stopped has nothing to show.
 */
export function keep(tmp: string): boolean {
  if (interrupted) return false;
  live.delete(tmp);
  return true;
}

/** Whether the process is stopping on a signal: nothing new is to be started. */
export function stopping(): boolean {
  return interrupted;
}

/** From now on nothing is kept: the process is stopping (see removeOwnTemporaries). */
export function interrupting(): void {
  if (interrupted) return;
  interrupted = true;
  // Work already under way goes on while the process stops, and may name a
  // temporary after removeOwnTemporaries has looked (a build's log, opened
  // as its sandbox starts): whatever is still ours when the process exits
  // goes then, synchronously, as nothing runs after 'exit'.
  process.once('exit', () => {
    for (const t of live) {
      try {
        fs.rmSync(t, { recursive: true, force: true });
      } catch {
        /* a read-only tree of someone not root: the next writer's sweep takes it */
      }
    }
  });
}

/** Remove the temporary, a file or a tree (read-only directories and all), if it is there. */
export async function removeTemporary(tmp: string): Promise<void> {
  await removeTree(tmp);
  live.delete(tmp);
}

/** Remove a temporary file now, for writers that cannot wait; or a
 * directory of our own (writable, as temporaryDir makes one), and what is in it. */
export function removeTemporaryFile(tmp: string): void {
  fs.rmSync(tmp, { recursive: true, force: true });
  live.delete(tmp);
}

/** A new private directory (0700) under a temporary name beside `final`:
 * removed by its owner (removeTemporaryFile), or on a signal, or swept by
 * the next writer in its directory once its owner is dead. */
export function temporaryDir(final: string): string {
  const dir = temporaryName(final);
  fs.mkdirSync(dir, 0o700);
  return dir;
}

/**
 * Run `write` on a temporary file beside `final`; whatever it leaves at that
 * name (all of it on an error, nothing after a rename) is removed.
 */
export function withTemporaryFile<T>(final: string, write: (tmp: string) => T): T {
  const tmp = temporaryName(final);
  try {
    return write(tmp);
  } finally {
    removeTemporaryFile(tmp);
  }
}

/** Remove every temporary this process has not finished with: the engine does on a signal. */
export async function removeOwnTemporaries(): Promise<void> {
  interrupting();
  await Promise.all([...live].map((t) => removeTemporary(t).catch(() => {})));
}

/**
 * Remove the temporaries in `dir` whose owner is dead, once a process (the
 * first call; later ones wait for it).
 */
/** Every sweep this process started, finished: a process that exits
 * waits for them, or a short run (everything taken from the store) would
 * leave the dead owners' temporaries it had begun to remove. */
export async function sweepsDone(): Promise<void> {
  await Promise.all(swept.values());
}

export function sweep(dir: string): Promise<void> {
  let done = swept.get(dir);
  if (!done) {
    done = sweepNow(dir).catch(() => {
      swept.delete(dir); // a directory not made yet: the next writer there sweeps it
    });
    swept.set(dir, done);
  }
  return done;
}

/** Remove, in `dir`, the temporaries for which `which` holds and whose owner is dead. */
export async function sweepNow(dir: string, which: (name: string) => boolean = () => true): Promise<void> {
  for (const p of deadTemporaries(dir, which)) await removeTree(p).catch(() => {});
}

/** The temporaries in `dir` for which `which` holds and whose owner is dead (what a sweep removes), by path. */
export function deadTemporaries(dir: string, which: (name: string) => boolean = () => true): string[] {
  return fs
    .readdirSync(dir)
    .filter((name) => isTemporary(name) && !ownerAlive(name) && which(name))
    .map((name) => path.join(dir, name));
}
