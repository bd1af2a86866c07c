/**
 * Shell workers: long-lived /bin/sh processes that run .do files for the
 * engine, so that a build forks a small shell, not Node (a Node spawn costs
 * ~1.5 ms; a dash subshell a fifth of that).
 *
 * A worker waits for a newline on fd 9 (a socket to the engine), then runs
 * the job the engine wrote to its job file (dash reads a socket a byte at a
 * time, a file in blocks: a job line of 100 bytes would cost 100 reads), and reports `D\0<status>\0` on fd 9. Each job runs in a subshell with
 * its stdout sent to the worker's own output file, truncated for each job:
 * when a job writes to stdout the engine renames that file onto the target,
 * and when it does not (most .do files write $3) no file was created. Inside it `redo-ifchange`,
 * `redo-ifcreate`, `redo-always`, `redo` and `redo-flush-cache` are aliases
 * for a shell function that writes the request to fd 9 and reads the
 * answer: no process is started for the hot call. .do files run by another
 * interpreter (#!) use the real commands, which reach the engine through
 * the unix socket named by $REDO_ENGINE.
 *
 * The messages on fd 9 (Q, E, D) are those of protocol.ts. To a worker: a
 * newline (run the job in the job file), or "<status>\n" answering Q.
 */
import type { ChildProcess } from 'node:child_process';
import { childProcess } from './lazy.ts';
import type { Socket } from 'node:net';
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { JOBSERVER_R, JOBSERVER_W } from './jobserver.ts';
import { temporaryName, removeTemporaryFile, stopping } from '../archive/temporary.ts';
import { MessageParser, parseRequest, answer, type Request } from './protocol.ts';
import { shQuote } from './env.ts';
import { descendants, tryKill } from './stop.ts';

export const CHANNEL_FD = 9;
/** the job's stderr as it started, kept to tell when a .do redirects the
 * stderr of a `redo-ifchange` (its output then goes there) */
const ERR_FD = 6;

/** Job files are rewritten for every job: memory-backed /dev/shm when
 * there is one, since on a journalled disk each rewrite costs a metadata
 * update that two busy cores wait on. */
const JOB_DIR = (() => {
  try {
    fs.accessSync('/dev/shm', fs.constants.W_OK);
    return '/dev/shm';
  } catch {
    return process.env.TMPDIR || '/tmp';
  }
})();

const WORKER_SCRIPT = `exec </dev/null
_redo_call() {
  _redo_c=$1; shift
  _redo_e=
  if ! [ /proc/self/fd/2 -ef /proc/self/fd/${ERR_FD} ]; then
    IFS=' ' read -r _redo_p _redo_x </proc/self/stat && _redo_e=/proc/$_redo_p/fd/2
  fi
  { printf '%s\\0' Q "$_redo_c" "$PWD" $# "$@"; export -p; printf '\\0%s\\0' "$_redo_e"; } >&${CHANNEL_FD} || return 99
  IFS= read -r _redo_rc <&${CHANNEL_FD} || return 99
  return "$_redo_rc"
}
alias redo='_redo_call redo' redo-ifchange='_redo_call ifchange' redo-ifcreate='_redo_call ifcreate' redo-always='_redo_call always' redo-flush-cache='_redo_call flush'
_redo_do() {
  ( cd "$1" || exit 201; [ -z "$_redo_err" ] || exec 2>>"$_redo_err"; exec ${ERR_FD}>&2
    eval "$_redo_env"; export REDO_JOB="$3" REDO_DEPTH="$4" REDO_TARGET="$7"
    { printf 'E\\0'; export -p; printf '\\0'; } >&${CHANNEL_FD}
    _redo_f=$5 _redo_s=$6; shift 6; set -$_redo_f; . "$_redo_s"
  ) >"$2"
  printf '%s\\0' D $? >&${CHANNEL_FD}
}
_redo_exec() {
  ( cd "$1" || exit 201; [ -z "$_redo_err" ] || exec 2>>"$_redo_err"
    eval "$_redo_env"; export REDO_JOB="$3" REDO_DEPTH="$4" REDO_TARGET="$5"; shift 5; exec "$@"
  ) >"$2"
  printf '%s\\0' D $? >&${CHANNEL_FD}
}
_redo_jobfile=$1
while IFS= read -r _redo_go <&${CHANNEL_FD}; do . "$_redo_jobfile"; done
`;

export interface JobSpec {
  dir: string; // working directory
  job: number; // $REDO_JOB: names the job to the engine
  depth: number; // $REDO_DEPTH
  argv: string[] | null; // interpreter command line, or null to source `script` in sh
  script: string; // the .do file (path relative to dir or absolute)
  args: [string, string, string];
  shellFlags: string; // e.g. "e", "ex", "ev"
  envScript: string; // shell run first: exports and unsets that differ from the worker's environment
  err: string; // where the job's stderr goes ('' for the engine's own)
}

export interface JobHandlers {
  onRequest(req: Request): Promise<number>;
  onEnv(env: string): void;
}

export class Worker {
  readonly proc: ChildProcess;
  private readonly chan: Socket;
  private readonly parser = new MessageParser();
  private handlers: JobHandlers | null = null;
  private finish: ((status: number) => void) | null = null;
  private dead = false;

  /** receives the stdout of each job */
  readonly out: string;
  readonly jobFile: string;
  private readonly jobFd: number;

  constructor(env: NodeJS.ProcessEnv, jobFds: [number, number] | null, out: string, jobFile: string) {
    this.out = out;
    const stdio: Array<'ignore' | 'inherit' | 'pipe' | number> = ['ignore', 2, 'inherit'];
    while (stdio.length < CHANNEL_FD) stdio.push('ignore');
    if (jobFds) {
      stdio[JOBSERVER_R] = jobFds[0];
      stdio[JOBSERVER_W] = jobFds[1];
    }
    stdio.push('pipe');
    this.jobFile = jobFile;
    this.jobFd = fs.openSync(this.jobFile, 'w');
    this.proc = childProcess().spawn('/bin/sh', ['-c', WORKER_SCRIPT, 'redo-worker', this.jobFile], { stdio, env });
    this.chan = (this.proc.stdio as unknown as Socket[])[CHANNEL_FD]!;
    this.chan.on('data', (d: Buffer) => this.onData(d));
    this.chan.on('error', () => this.onExit());
    this.proc.on('exit', () => this.onExit());
  }

  get busy(): boolean {
    return this.finish !== null;
  }

  get alive(): boolean {
    return !this.dead;
  }

  run(spec: JobSpec, handlers: JobHandlers): Promise<number> {
    if (this.busy) throw new Error('internal: worker busy');
    this.handlers = handlers;
    // one line (callers refuse names with newlines)
    const head = [spec.dir, this.out, String(spec.job), String(spec.depth)];
    const words = spec.argv
      ? ['_redo_exec', ...head, spec.args[0], ...spec.argv, spec.script, ...spec.args]
      : ['_redo_do', ...head, spec.shellFlags, spec.script.includes('/') ? spec.script : './' + spec.script, ...spec.args];
    // written over the last job in place, never truncated (ext4 flushes a
    // file rewritten after truncation on close); `return` ends the job
    const text =
      `_redo_env=${shQuote(spec.envScript)} _redo_err=${shQuote(spec.err)}\n` + words.map((w, i) => (i === 0 || /^[\w./-]+$/.test(w) ? w : shQuote(w))).join(' ') + '\nreturn\n';
    fs.writeSync(this.jobFd, text, 0);
    return new Promise((resolve) => {
      this.finish = resolve;
      this.chan.write('\n');
    });
  }

  private onData(d: Buffer): void {
    for (const msg of this.parser.push(d)) {
      if (msg[0] === 'D') {
        const f = this.finish;
        this.finish = null;
        this.handlers = null;
        f?.(Number(msg[1]));
      } else if (msg[0] === 'E') {
        this.handlers?.onEnv(msg[1]!);
      } else if (msg[0] === 'Q') {
        const h = this.handlers;
        if (!h) {
          this.chan.write('98\n');
          continue;
        }
        answer(this.chan, h.onRequest(parseRequest(msg)));
      }
    }
  }

  private onExit(): void {
    if (this.dead) return;
    this.dead = true;
    const f = this.finish;
    this.finish = null;
    f?.(255);
  }

  /** End the worker and, if a job is running, everything it started: a
   * .do's processes share our process group, and a redo killed by a signal
   * (not by the terminal's ^C, which reaches them all) must not leave them. */
  stop(): void {
    fs.closeSync(this.jobFd);
    if (!this.dead) {
      if (this.busy && this.proc.pid) for (const pid of descendants(this.proc.pid)) tryKill(pid);
      this.chan.end();
      this.chan.destroy();
      this.proc.kill('SIGTERM');
      this.dead = true;
    }
  }
}

/** Workers are made on demand and reused; a nested build needs one more. */
export class WorkerPool {
  private idle: Worker[] = [];
  private all = new Set<Worker>();

  private readonly env: () => NodeJS.ProcessEnv;
  private readonly jobFds: () => [number, number] | null;
  private readonly outDir: string;

  constructor(env: () => NodeJS.ProcessEnv, jobFds: () => [number, number] | null, outDir: string) {
    this.env = env;
    this.jobFds = jobFds;
    this.outDir = outDir;
  }

  /** Run a job; `out` is the file holding what it wrote to stdout. Call
   * `done()` once that file has been used: the worker is reused after. */
  async run(spec: JobSpec, handlers: JobHandlers): Promise<{ status: number; out: string; done: () => void }> {
    // a job that comes as the process stops on a signal starts no shell the
    // stop would then have to find; it fails, as a worker killed under it
    // does, and does not throw, which would end the build while the stop
    // is still freezing the others
    if (stopping()) return { status: 255, out: '', done: () => {} };
    let w = this.idle.pop();
    while (w && !w.alive) w = this.idle.pop();
    if (!w) {
      fs.mkdirSync(this.outDir, { recursive: true });
      // temporaries: a killed engine's are swept by the next one
      w = new Worker(this.env(), this.jobFds(), temporaryName(path.join(this.outDir, 'out')), temporaryName(path.join(JOB_DIR, 'redo-job')));
      this.all.add(w);
    }
    const worker = w;
    let status: number;
    try {
      status = await worker.run(spec, handlers);
    } catch (e) {
      this.give(worker);
      throw e;
    }
    return { status, out: worker.out, done: () => this.give(worker) };
  }

  private give(w: Worker): void {
    if (w.alive) this.idle.push(w);
    else this.all.delete(w);
  }

  stop(): void {
    for (const w of this.all) {
      w.stop();
      removeTemporaryFile(w.out);
      removeTemporaryFile(w.jobFile);
    }
    this.all.clear();
    this.idle = [];
  }
}
