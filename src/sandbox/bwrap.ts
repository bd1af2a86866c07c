/**
 * Running one package build in a bubblewrap sandbox.
 *
 * The build sees the closure's root (root.ts) read-only at /, and may write
 * only to its working directory /home/build, to /destdir, and to a fresh
 * /tmp and /dev/shm of bounded size (PKG_SANDBOX_TMP_SIZE). It runs as the
 * unprivileged user `build` on host `build`, in its own user, network, IPC,
 * PID and UTS namespaces: no host path, no network
 * (not even the host's loopback), no host processes. The environment is
 * cleared and set to a fixed list, so a build depends on its inputs only.
 * The engine's job slots reach make inside through the jobserver fds.
 *
 * The build's descriptors are stdin from /dev/null, stdout and stderr as
 * one pipe this process reads line by line, and the jobserver's: never the
 * engine's own stderr, which may be the user's terminal or a log file the
 * build must not read or change. --new-session keeps it from the terminal
 * too (TIOCSTI could type into the user's shell); it costs nothing here,
 * the jobserver being a pipe that knows nothing of sessions.
 * --die-with-parent kills the build if the engine dies.
 */
import { spawn, type StdioOptions } from 'node:child_process';
const fs = process.getBuiltinModule('node:fs');
import { Socket } from 'node:net';
import * as os from 'node:os';
import { stopping } from '../archive/temporary.ts';
import { withFifo } from '../engine/fifo.ts';
import { settings } from '../settings.ts';

export const BUILD_UID = 1000;
export const BUILD_HOME = '/home/build';

/** What bwrap mounts over, so these must exist in a read-only root. */
export const MOUNT_POINTS = {
  dirs: ['dev', 'proc', 'tmp', 'home/build', 'destdir'],
  files: ['etc/passwd', 'etc/group'],
};

const PASSWD = `root:x:0:0:root:/:/bin/sh\nbuild:x:${BUILD_UID}:${BUILD_UID}:build:${BUILD_HOME}:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n`;
const GROUP = `root:x:0:\nbuild:x:${BUILD_UID}:\nnogroup:x:65534:\n`;

export interface SandboxOptions {
  root: string; // read-only at /
  work: string; // read-write at /home/build, the working directory
  destdir: string; // read-write at /destdir
  argv: string[]; // e.g. ['/bin/sh', '-e', './build']
  env?: Record<string, string>; // added to (or replacing) the fixed list, e.g. SOURCE_DATE_EPOCH
  makeflags?: string; // the engine's MAKEFLAGS; only its jobserver flags go in
  fds?: number[]; // passed at the same numbers; default: the fds makeflags names
  /** fds to pass at other numbers: child fd → this process's fd (the engine
   * holds its jobserver at arbitrary numbers; the build must see them where
   * MAKEFLAGS says) */
  fdMap?: Record<number, number>;
  /** bytes /tmp and /dev/shm may each hold; default PKG_SANDBOX_TMP_SIZE */
  tmpBytes?: number;
  /** each line the build writes to stdout or stderr, without its newline;
   * default: copied to this process's stderr */
  onLine?: (line: Buffer) => void;
  bwrap?: string; // the program, default `bwrap` from PATH
  /** `terminal`: the caller's own stdin, stdout and stderr, for `peerpkgs
   * shell`, which is interactive by design; no pipe is read then (onLine
   * is not called). Default: /dev/null and one pipe, as a build gets */
  stdio?: 'build' | 'terminal';
  /** false: stay in the caller's session, so an interactive shell can take
   * the terminal for job control (^C reaches its command, not bwrap).
   * Default true: nothing in the sandbox can type into the terminal */
  newSession?: boolean;
}

/** The jobserver part of MAKEFLAGS. The rest (-k, -s, `VAR=value`
 * overrides …) is the user's and would make the output depend on how the
 * engine was started. A `fifo:` jobserver names a host path the build
 * cannot see, so it is dropped too. */
export function jobserverOf(makeflags: string | undefined): { makeflags: string; fds: [number, number] } | null {
  const words = (makeflags ?? '').split(/\s+/);
  for (const w of words) {
    const m = /^--jobserver-(?:auth|fds)=(\d+),(\d+)$/.exec(w);
    if (!m) continue;
    const j = words.find((x) => /^-j\d*$/.test(x)) ?? '-j';
    return { makeflags: `${j} --jobserver-auth=${m[1]},${m[2]}`, fds: [Number(m[1]), Number(m[2])] };
  }
  return null;
}

export function sandboxEnv(opts: Pick<SandboxOptions, 'env' | 'makeflags'>): Record<string, string> {
  const env: Record<string, string> = {
    HOME: BUILD_HOME,
    PATH: '/bin:/usr/bin',
    TMPDIR: '/tmp',
    DESTDIR: '/destdir',
    SOURCE_DATE_EPOCH: '0',
  };
  const js = jobserverOf(opts.makeflags);
  if (js) {
    env.MAKEFLAGS = js.makeflags;
    env.PKG_JOBSERVER = js.fds.join(',');
  }
  return { ...env, ...opts.env };
}

/** fds for passwd and group, above every fd the build is given */
function dataFds(opts: SandboxOptions, covered: number[] = []): [number, number] {
  const given = opts.fdMap ? Object.keys(opts.fdMap).map(Number) : (opts.fds ?? jobserverOf(opts.makeflags)?.fds ?? []);
  const top = Math.max(2, ...given, ...covered);
  return [top + 1, top + 2];
}

/** The arguments to bwrap (not including the program). `covered`: the
 * inherited fds runSandboxed blanks, which passwd and group must not take. */
export function bwrapArgs(opts: SandboxOptions, covered: number[] = []): string[] {
  const [passwdFd, groupFd] = dataFds(opts, covered);
  // a tmpfs takes half the machine's memory unless told
  const tmp = String(opts.tmpBytes ?? settings().sandboxTmpBytes);
  const args = [
    '--unshare-user',
    '--unshare-net',
    '--unshare-ipc',
    '--unshare-pid',
    '--unshare-uts',
    '--hostname',
    'build',
    '--uid',
    String(BUILD_UID),
    '--gid',
    String(BUILD_UID),
    '--ro-bind',
    opts.root,
    '/',
    // --dev's own tmpfs is unbounded, so it is made read-only; /dev/shm,
    // which some builds need, gets a bounded one
    '--dev',
    '/dev',
    '--size',
    tmp,
    '--tmpfs',
    '/dev/shm',
    '--remount-ro',
    '/dev',
    '--proc',
    '/proc',
    '--size',
    tmp,
    '--tmpfs',
    '/tmp',
    '--bind',
    opts.work,
    BUILD_HOME,
    '--bind',
    opts.destdir,
    '/destdir',
    '--ro-bind-data',
    String(passwdFd),
    '/etc/passwd',
    '--ro-bind-data',
    String(groupFd),
    '/etc/group',
    '--chdir',
    BUILD_HOME,
    '--die-with-parent',
    ...(opts.newSession === false ? [] : ['--new-session']),
    '--clearenv',
  ];
  for (const [k, v] of Object.entries(sandboxEnv(opts))) args.push('--setenv', k, v);
  return [...args, '--', ...opts.argv];
}

/** Fds this process holds without close-on-exec: left over from whoever
 * started the engine, or make's jobserver. Spawn hands such fds on
 * unasked, and an open directory would let the build out of its root, so
 * the build gets /dev/null at those numbers instead. */
function inheritedFds(): number[] {
  const fds: number[] = [];
  for (const name of fs.readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    if (fd < 3) continue;
    try {
      const flags = /^flags:\s*([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      if (flags && (parseInt(flags[1]!, 8) & 0o2000000) === 0) fds.push(fd);
    } catch {
      /* the fd of readdir itself, closed by now */
    }
  }
  return fds;
}

/** A line longer than this is passed on in pieces: a build that writes
 * megabytes without a newline must not make the engine hold them. */
const MAX_LINE = 64 * 1024;
const NEWLINE = Buffer.from('\n');

function toStderr(line: Buffer): void {
  process.stderr.write(Buffer.concat([line, NEWLINE]));
}

/** Reads the build's output pipe to its end, a line at a time. */
function readLines(fd: number, onLine: (line: Buffer) => void): Promise<void> {
  return new Promise((resolve) => {
    const pipe = new Socket({ fd, readable: true, writable: false });
    let held: Buffer[] = [];
    let heldBytes = 0;
    const flush = (last: Buffer) => {
      onLine(held.length ? Buffer.concat([...held, last]) : last);
      held = [];
      heldBytes = 0;
    };
    pipe.on('data', (chunk: Buffer) => {
      let start = 0;
      for (let nl; (nl = chunk.indexOf(10, start)) >= 0; start = nl + 1) flush(chunk.subarray(start, nl));
      if (start < chunk.length) {
        held.push(chunk.subarray(start));
        heldBytes += chunk.length - start;
        if (heldBytes > MAX_LINE) flush(Buffer.alloc(0));
      }
    });
    pipe.on('end', () => {
      if (held.length) flush(Buffer.alloc(0));
    });
    pipe.on('error', () => {}); // 'close' follows: what came is passed on
    pipe.on('close', () => resolve());
  });
}

export async function runSandboxed(opts: SandboxOptions): Promise<{ status: number; signal: string | null }> {
  // a build that was setting up as the signal came starts nothing the
  // stopping process would then have to look for and stop
  if (stopping()) throw new Error('sandbox: not started: peerpkgs is stopping on a signal');
  for (const p of [...MOUNT_POINTS.dirs, ...MOUNT_POINTS.files]) {
    if (!fs.existsSync(`${opts.root}/${p}`)) throw new Error(`sandbox: ${opts.root} has no /${p} to mount on: make the root with assembleRoot()`);
  }
  const mapped = Object.entries(opts.fdMap ?? {}).map(([c, p]) => [Number(c), p] as const);
  const given = opts.fdMap ? mapped.map(([c]) => c) : (opts.fds ?? jobserverOf(opts.makeflags)?.fds ?? []);
  const covered = inheritedFds().filter((fd) => !given.includes(fd));
  const [passwdFd, groupFd] = dataFds(opts, covered);
  const args = bwrapArgs(opts, covered);
  const devnull = covered.length > 0 ? fs.openSync('/dev/null', 'r') : -1;
  const terminal = opts.stdio === 'terminal';
  // one pipe for stdout and stderr keeps their lines in the order written
  const [outR, outW] = terminal
    ? [-1, -1]
    : withFifo((fifo) => {
        const r = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
        return [r, fs.openSync(fifo, fs.constants.O_WRONLY)];
      });
  // every index filled: spawn drops holes in the array and renumbers the rest
  // ('ignore' is /dev/null at 0 to 2, and leaves the fd alone above)
  const stdio: Array<'ignore' | 'pipe' | 'inherit' | number> = Array(groupFd + 1).fill('ignore');
  if (terminal) stdio[0] = stdio[1] = stdio[2] = 'inherit';
  else stdio[1] = stdio[2] = outW;
  for (const fd of covered) stdio[fd] = devnull;
  if (opts.fdMap) for (const [child, parent] of mapped) stdio[child] = parent;
  else for (const fd of given) stdio[fd] = fd;
  stdio[passwdFd] = stdio[groupFd] = 'pipe';
  return new Promise((resolve, reject) => {
    let child;
    try {
      child = spawn(opts.bwrap ?? 'bwrap', args, { stdio: stdio as StdioOptions });
    } catch (e) {
      if (outR >= 0) fs.closeSync(outR);
      throw e;
    } finally {
      // the build holds the write end now: the pipe ends when it (and all it started) is done
      if (outW >= 0) fs.closeSync(outW);
      if (devnull >= 0) fs.closeSync(devnull);
    }
    const output = terminal ? Promise.resolve() : readLines(outR, opts.onLine ?? toStderr);
    child.on('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? new Error('bwrap not found: install bubblewrap (apt-get install bubblewrap)') : e));
    child.on('close', (status, signal) => void output.then(() => resolve({ status: status ?? 128 + (signal ? os.constants.signals[signal] : 0), signal })));
    const pipes = child.stdio as unknown as Array<Socket | null>;
    // bwrap reads both before the build starts; if it fails first, no matter
    pipes[passwdFd]?.on('error', () => {}).end(PASSWD);
    pipes[groupFd]?.on('error', () => {}).end(GROUP);
  });
}
