/**
 * The one HTTP getter: sources (fetch.ts) and binary caches
 * (cache/backends.ts) both download through it, so every download has the
 * same bounds and says the same things when it fails.
 *
 * A download is bounded three ways. Idle: a connection silent for `idleMs`
 * has failed. Bytes: a body longer than `maxBytes` is refused, announced
 * or counted. Total time: a server that sends one byte every few seconds is
 * never idle, so each request also has a deadline, sized to what it
 * fetches: the answer must start within the base time, and the whole body
 * must be in by the base time plus its size at the minimum rate (its size:
 * `maxBytes` when the caller knows the exact size, else what the server
 * announces, else `maxBytes`). Redirects count against the same deadline.
 *
 * It checks nothing about the bytes themselves; the callers do.
 */
import type * as Http from 'node:http';
import type * as Https from 'node:https';
import { createRequire } from 'node:module';
import { PeerpkgsError, EXIT } from '../errors.ts';

// Not `import 'node:http'`: an ES import reads every export of the module,
// and node:http's WebSocket getter then loads undici, some 12 MB of memory
// in every process that only wanted http.get. https is loaded on first use.
const builtin = createRequire(import.meta.url);
const getFor = (url: URL): typeof Http.get => (url.protocol === 'https:' ? (builtin('node:https') as typeof Https).get : (builtin('node:http') as typeof Http).get);

/** How long a download may take: `baseMs`, plus its bytes at `minRate` bytes a second. */
export interface Deadline {
  baseMs: number;
  minRate: number;
}

export interface HttpGetOptions {
  /** a connection silent this long (connecting, or mid-body) has failed */
  idleMs: number;
  deadline: Deadline;
  /** more bytes than this are refused */
  maxBytes: number;
  /** what `maxBytes` is, for messages: "the 287 bytes its .info says" */
  maxWhat?: string;
  /** request headers besides ours (an IPFS gateway is asked for a block by Accept) */
  headers?: Record<string, string>;
  /** gives up on the request, before or during its body */
  signal?: AbortSignal;
  /** a keep-alive agent (keepAliveAgent) whose connections serve many requests; by default a connection a request */
  agent?: Http.Agent;
  /** redirects followed at most (default 5); 0 for a server that must answer itself (a peer over libp2p, whose redirect would send us to any host) */
  maxRedirects?: number;
}

/**
 * An agent that keeps connections open between requests, for a client
 * that asks one server many small things (an IPFS gateway, a block a
 * request): a new TCP connection for each cost more than the block. Its
 * idle connections do not keep the process alive (Node unrefs them);
 * destroy() closes them.
 */
export function keepAliveAgent(protocol: 'http:' | 'https:'): Http.Agent {
  const mod = protocol === 'https:' ? (builtin('node:https') as typeof Https) : (builtin('node:http') as typeof Http);
  return new mod.Agent({ keepAlive: true });
}

/** The body of a 200 answer, as it arrives. Errors while reading it are HttpErrors. */
export interface HttpBody {
  /** the length the server announced, if it did */
  size?: number;
  body: AsyncIterable<Buffer>;
  /** stops the transfer: the caller gives up on it */
  close(): void;
}

/** A request that failed: an answer other than 200, a network error, or a bound crossed. */
export class HttpError extends PeerpkgsError {
  /** the status of an answer other than 200 */
  readonly status: number | null;
  /** trying the same URL again soon may succeed */
  readonly transient: boolean;
  /** the server did not answer, or too slowly to be of use: not worth asking again for a while */
  readonly unreachable: boolean;

  constructor(message: string, how: { status?: number; transient: boolean; unreachable?: boolean }) {
    super(message, EXIT.failed, 'HttpError');
    this.status = how.status ?? null;
    this.transient = how.transient;
    this.unreachable = how.unreachable ?? false;
  }
}

const ERRNO_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found (DNS lookup failed)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
  EIO: 'I/O error',
};

/** What an error from the network or the file system means, in a few words. */
export function errnoReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  return (code && ERRNO_REASONS[code]) ?? (e instanceof Error ? e.message : String(e));
}

// as curl's --retry: a host that refuses, or is not there, will not be there a moment later
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
/** The longest delay setTimeout takes as it is. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/** GETs `url`, following redirects; resolves once a 200 answer's headers are in. */
export function httpGet(url: URL, opts: HttpGetOptions): Promise<HttpBody> {
  return request(url, opts, 0, Date.now());
}

function request(url: URL, opts: HttpGetOptions, redirects: number, start: number): Promise<HttpBody> {
  const { idleMs, deadline, maxBytes } = opts;
  const maxWhat = opts.maxWhat ?? `the ${maxBytes} bytes expected`;
  return new Promise((resolve, reject) => {
    let idle = false;
    let late: string | null = null;
    let answered = false;
    let socketError: Error | undefined;
    // silent before any answer: as dead as a refused connection, and as costly to ask again
    const idleError = () => new HttpError(`timed out (no data for ${idleMs} ms)`, { transient: true, unreachable: !answered });
    const lateError = () => new HttpError(late!, { transient: false, unreachable: true });
    let timer: NodeJS.Timeout | undefined;
    const expireAt = (at: number, why: string) => {
      clearTimeout(timer);
      // Node fires a delay beyond 2^31-1 ms after 1 ms: wait in steps below it
      const left = at - Date.now();
      timer = setTimeout(
        () => {
          if (Date.now() < at) return expireAt(at, why);
          late = why;
          req.destroy();
        },
        Math.min(Math.max(0, left), MAX_TIMER_MS),
      );
      timer.unref();
    };
    const done = () => clearTimeout(timer);
    const headers = { 'user-agent': 'peerpkgs', 'accept-encoding': 'identity', ...opts.headers };
    // agent: false: a connection a request, closed after it, so no idle socket outlives a download;
    // a keep-alive agent given serves only its own protocol (a redirect may change it)
    const agent = opts.agent && (opts.agent as { protocol?: string }).protocol === url.protocol ? opts.agent : false;
    const req = getFor(url)(url, { agent, timeout: idleMs, headers, signal: opts.signal }, (res) => {
      answered = true;
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      const from = redirects ? ` from ${url.href}` : '';
      const refuse = (e: HttpError) => {
        done();
        res.resume();
        req.destroy();
        reject(e);
      };
      if (REDIRECTS.has(status) && location) {
        const most = opts.maxRedirects ?? MAX_REDIRECTS;
        if (redirects >= most)
          return refuse(new HttpError(most ? `too many redirects (more than ${most})` : `redirected to ${location}, which is not followed here`, { transient: false }));
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          return refuse(new HttpError(`redirect to a bad URL: ${location}`, { transient: false }));
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          return refuse(new HttpError(`redirect to a URL that is not http(s): ${next.href}`, { transient: false }));
        }
        done();
        res.resume();
        req.destroy();
        return resolve(request(next, opts, redirects + 1, start));
      }
      if (status !== 200) {
        const why = `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}${from}`;
        return refuse(new HttpError(why, { status, transient: status >= 500 || status === 408 || status === 429 }));
      }
      const header = res.headers['content-length'];
      const size = header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
      if (size !== undefined && size > maxBytes) {
        return refuse(new HttpError(`the server announces ${size} bytes, more than ${maxWhat}`, { transient: false }));
      }
      const bytes = size ?? maxBytes;
      const total = deadline.baseMs + Math.ceil((bytes / deadline.minRate) * 1000);
      expireAt(start + total, `too slow: not done in ${seconds(total)}, the time allowed for ${bytes} bytes (PKG_DOWNLOAD_MIN_RATE)`);
      async function* body(): AsyncIterable<Buffer> {
        let got = 0;
        try {
          for await (const chunk of res as AsyncIterable<Buffer>) {
            got += chunk.length;
            if (got > maxBytes) throw new HttpError(`longer than ${maxWhat}`, { transient: false });
            yield chunk;
          }
        } catch (e) {
          if (e instanceof HttpError) throw e;
          if (late) throw lateError();
          if (idle) throw idleError();
          // Node says 'aborted' for a body cut short, by a reset (which the socket saw) or by a plain close
          const why = (e as Error).message !== 'aborted' ? errnoReason(e) : socketError ? errnoReason(socketError) : 'connection closed early';
          if (size !== undefined && got < size) throw new HttpError(`${why}; truncated (got ${got} of ${size} bytes)`, { transient: true });
          throw new HttpError(why, { transient: true });
        } finally {
          done();
          req.destroy();
        }
        if (late) throw lateError();
        if (idle) throw idleError();
        if (size !== undefined && got < size) throw new HttpError(`truncated (got ${got} of ${size} bytes)`, { transient: true });
      }
      resolve({
        ...(size !== undefined ? { size } : {}),
        body: body(),
        close: () => {
          done();
          req.destroy();
        },
      });
    });
    // the headers must come within the base time, however large the body
    expireAt(start + deadline.baseMs, `too slow: no answer in ${seconds(deadline.baseMs)} (PKG_DOWNLOAD_BASE_TIME)`);
    req.on('socket', (s) => {
      // a kept connection serves many requests: each listens to it only while it lasts
      const onError = (e: Error) => (socketError ??= e);
      s.on('error', onError);
      req.once('close', () => s.off('error', onError));
    });
    req.on('timeout', () => {
      idle = true;
      req.destroy();
    });
    req.on('error', (e) => {
      done();
      if (late) return reject(lateError());
      if (idle) return reject(idleError());
      const code = (e as NodeJS.ErrnoException).code ?? '';
      reject(new HttpError(errnoReason(e), { transient: !['ECONNREFUSED', 'ENOTFOUND'].includes(code), unreachable: CONNECT_FAILURES.has(code) }));
    });
  });
}
