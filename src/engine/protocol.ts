/**
 * The protocol between the engine and the jobs it runs, both ways it
 * travels: fd 9 of a shell worker (worker.ts) and the unix socket that real
 * redo-* commands reach through $REDO_ENGINE (cli/redo-main.ts). This module
 * owns the message format, the socket's server and its client.
 *
 * Messages to the engine: NUL-terminated fields,
 *   J jobid                     (socket only) the job the requests that
 *                               follow come from: $REDO_JOB
 *   Q cmd cwd n arg1 … argn env err
 *                               a request from the running job, with its
 *                               environment then (`export -p` from a
 *                               worker, JSON from a real command: a .do
 *                               that exports a variable before
 *                               `redo-ifchange x` passes it on to x's .do,
 *                               as separate processes would) and, if the
 *                               call's stderr was redirected, where to
 *                               (/proc/PID/fd/2): x's output goes there
 *   E env                       (worker only) the job's environment as it
 *                               starts (`export -p`)
 *   D status                    (worker only) the job has ended
 * The answer to Q is "<status>\n". The shell side of Q, E and D is written
 * in the worker's script (worker.ts).
 *
 * A Q's cmd is ifchange, redo, ifcreate, always, stamp, flush or sync; the
 * arguments of ifchange and redo carry the flags of a nested `redo -j4 x`
 * (requestArgs, parseRequestFlags).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import type * as netTypes from 'node:net';
import { net } from './lazy.ts';
import { BuildError } from './job.ts';
import { temporaryDir, removeTemporaryFile } from '../archive/temporary.ts';

/** A request from a running job, as sent in a Q message. */
export interface Request {
  cmd: string;
  cwd: string;
  args: string[];
  env: string;
  err: string;
}

/** The request a Q message carries. */
export function parseRequest(msg: string[]): Request {
  const [, cmd, cwd, , ...args] = msg;
  const err = args.pop()!;
  const env = args.pop()!;
  return { cmd: cmd!, cwd: cwd!, args, env, err };
}

/** Answer a request with its exit status, once known (1 if it threw). */
export function answer(conn: { write(s: string): unknown }, rc: Promise<number>): void {
  rc.then(
    (n) => conn.write(`${n}\n`),
    () => conn.write('1\n'),
  );
}

/**
 * Splits the byte stream from a worker or a client into messages of
 * NUL-terminated fields: `D status`, `E env`, `J jobid`, `Q cmd cwd n arg… env err`.
 */
export class MessageParser {
  private buf: Buffer = Buffer.alloc(0);

  *push(d: Buffer): Generator<string[]> {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      const msg = this.parseOne();
      if (!msg) return;
      yield msg;
    }
  }

  private parseOne(): string[] | null {
    let pos = 0;
    const take = (): string | null => {
      const z = this.buf.indexOf(0, pos);
      if (z < 0) return null;
      const s = this.buf.toString('utf8', pos, z);
      pos = z + 1;
      return s;
    };
    const kind = take();
    if (kind === null) return null;
    const fields = [kind];
    const fixed = kind === 'Q' ? 3 : 1;
    for (let i = 0; i < fixed; i++) {
      const f = take();
      if (f === null) return null;
      fields.push(f);
    }
    if (kind === 'Q') {
      const n = Number(fields[3]) + 2; // the arguments, then the environment and stderr
      for (let i = 0; i < n; i++) {
        const f = take();
        if (f === null) return null;
        fields.push(f);
      }
    }
    this.buf = this.buf.subarray(pos);
    return fields;
  }
}

/** The engine's socket, in a private directory of its own. */
export class Server {
  readonly path: string;
  private readonly dir: string;
  private readonly server: netTypes.Server;

  private constructor(dir: string, server: netTypes.Server) {
    this.dir = dir;
    this.path = path.join(dir, 'engine.sock');
    this.server = server;
  }

  /**
   * Listen for real redo-* commands. `job` names the job a connection's J
   * message means (null: none of ours); `handle` answers its requests.
   */
  static async listen<J>(job: (id: string) => J | null, handle: (job: J | null, req: Request) => Promise<number>): Promise<Server> {
    // named as our temporaries are: one a SIGKILL leaves is swept by the next engine to start
    const dir = temporaryDir(path.join(os.tmpdir(), 'redo-engine'));
    const server = net().createServer((conn) => {
      const parser = new MessageParser();
      let asker: J | null = null;
      conn.on('data', (d: Buffer) => {
        for (const msg of parser.push(d)) {
          if (msg[0] === 'J') asker = job(msg[1]!);
          else if (msg[0] === 'Q') answer(conn, handle(asker, parseRequest(msg)));
        }
      });
      conn.on('error', () => conn.destroy());
    });
    server.unref();
    const s = new Server(dir, server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(s.path, () => resolve());
    });
    return s;
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.server.close(() => r()));
    removeTemporaryFile(this.dir);
  }
}

/** Ask the engine at `sock`, for job `job`, to run request `cmd` with this
 * process's directory, environment and stderr. null: no engine answered. */
export async function ask(sock: string, job: string, cmd: string, args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const conn = net().createConnection(sock);
    let reply = '';
    conn.on('connect', () => {
      const fields = ['J', job, 'Q', cmd, process.cwd(), String(args.length), ...args, JSON.stringify(process.env), `/proc/${process.pid}/fd/2`];
      conn.write(fields.map((f) => f + '\0').join(''));
    });
    conn.on('data', (d) => {
      reply += d.toString();
      const nl = reply.indexOf('\n');
      if (nl >= 0) {
        conn.end();
        resolve(Number(reply.slice(0, nl)));
      }
    });
    conn.on('error', () => resolve(null));
    conn.on('close', () => resolve(null));
  });
}

export interface RequestFlags {
  targets: string[];
  jobs?: number;
  shuffle?: boolean;
  keepGoing?: boolean;
}

/** The arguments of an ifchange or redo request: the flags a nested run
 * passes on to the engine, then its targets. */
export function requestArgs(f: RequestFlags): string[] {
  return [...(f.jobs ? [`-j${f.jobs}`] : []), ...(f.shuffle ? ['--shuffle'] : []), ...(f.keepGoing ? ['-k'] : []), '--', ...f.targets];
}

/** Flags a nested `redo -j4 --shuffle x` passes with its targets. Flags
 * that only shape the top-level run (-k, -x, -v, -d) are accepted and left
 * to it. */
export function parseRequestFlags(args: string[]): RequestFlags {
  const f: RequestFlags = { targets: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      f.targets.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') f.targets.push(a);
    else if (a === '--shuffle') f.shuffle = true;
    else if (a === '-j' || a === '--jobs') f.jobs = Number(args[++i]);
    else if (a.startsWith('--jobs=')) f.jobs = Number(a.slice(7));
    else if (/^-[kxvd]*j\d*$/.test(a)) {
      if (a.includes('k')) f.keepGoing = true;
      f.jobs = Number(a.slice(a.indexOf('j') + 1) || args[++i]);
    } else if (a === '--keep-going') f.keepGoing = true;
    else if (/^-[kxvd]+$/.test(a)) {
      if (a.includes('k')) f.keepGoing = true;
    } else if (a === '--debug') continue;
    else throw new BuildError(`unknown option ${a}`, 2);
    if (f.jobs !== undefined && !(Number.isInteger(f.jobs) && f.jobs > 0)) throw new BuildError(`-j needs a positive whole number`, 2);
  }
  return f;
}
