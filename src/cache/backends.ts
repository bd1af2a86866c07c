/**
 * Where binary packages are looked up: the caches of PKG_CACHE_URL, each
 * behind one small interface, so that a new kind (ipfs://, ipns://) is a
 * new backend registered by scheme and not a change to substitution.
 *
 * A backend only moves bytes and says which of three things happened: the
 * name is there (a stream), it is not (a miss: HTTP 404 or 410, ENOENT),
 * or asking failed (an error: 5xx, a reset, a timeout, a refused
 * connection). A miss is normal and silent; an error is worth a warning.
 * It checks nothing about the bytes: substitute.ts does, against the .info.
 *
 * PKG_CACHE_URL is a space-separated list of URLs, tried in order. A URL
 * may end in a fragment that sets the cache's trust policy (a fragment is
 * never sent to a server, so it cannot change what is fetched):
 *   #unsigned  accept entries without a signature by a trusted key
 *   #signed    require one
 * http(s):// caches require signatures unless marked #unsigned. file://
 * caches do not unless marked #signed: a local directory is written by
 * someone who can already write the tree being built; mark a shared mount
 * #signed. Whatever the policy, every byte is checked against the .info.
 */
import * as fs from 'node:fs';
import type * as Http from 'node:http';
import type * as Https from 'node:https';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

// Not `import 'node:http'`: an ES import reads every export of the module,
// and node:http's WebSocket getter then loads undici, some 12 MB of memory
// in every process that only wanted http.get. https is loaded on first use.
const builtin = createRequire(import.meta.url);
const httpGet = (url: URL): typeof Http.get =>
  url.protocol === 'https:' ? (builtin('node:https') as typeof Https).get : (builtin('node:http') as typeof Http).get;

/** Bytes of one cached file, as they arrive. */
export interface Fetched {
  /** the length the server announced, if it did */
  size?: number;
  /** errors are CacheErrors saying why (reset, timeout, truncated) */
  body: AsyncIterable<Buffer>;
  /** stops the transfer: the caller gives up on it */
  close(): void;
}

export interface GetOptions {
  /** an upper bound the caller knows, beyond which reading is pointless */
  maxBytes?: number;
}

export interface Cache {
  /** as the user wrote it in PKG_CACHE_URL: how messages name it */
  readonly url: string;
  /** whether an entry must be signed by a trusted key */
  readonly requireSignature: boolean;
  /** `name` (e.g. `<pkghash>.info`) from the cache, or null if it is not there; throws CacheError */
  get(name: string, opts?: GetOptions): Promise<Fetched | null>;
}

/** Asking a cache failed for a reason other than "not there". */
export class CacheError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'CacheError';
  }
}

/** PKG_CACHE_URL does not parse. */
export class CacheConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CacheConfigError';
  }
}

export interface CacheOptions {
  /** a connection silent this long (connecting, or mid-body) has failed */
  timeoutMs?: number;
  /** a cache that could not be reached, or did not answer, is skipped for this long afterwards */
  downForMs?: number;
}

export interface BackendArgs {
  /** the URL as written, fragment included */
  spec: string;
  /** parsed, without the fragment */
  url: URL;
  requireSignature: boolean;
  opts: Required<CacheOptions>;
}

export type Backend = (args: BackendArgs) => Cache;

const DEFAULTS: Required<CacheOptions> = { timeoutMs: 30_000, downForMs: 60_000 };

const backends = new Map<string, { backend: Backend; signedByDefault: boolean }>();

/** Makes `scheme:` URLs (e.g. 'ipfs:') usable in PKG_CACHE_URL. */
export function registerBackend(scheme: string, backend: Backend, signedByDefault = true): void {
  backends.set(scheme, { backend, signedByDefault });
}

/** The caches of a PKG_CACHE_URL value, in order. */
export function parseCacheUrls(value: string, options: CacheOptions = {}): Cache[] {
  const opts = { ...DEFAULTS, ...options };
  return value
    .split(/\s+/)
    .filter(Boolean)
    .map((spec) => {
      let url: URL;
      try {
        url = new URL(spec);
      } catch {
        throw new CacheConfigError(`PKG_CACHE_URL: ${spec} is not a URL (for a directory write file:///absolute/path)`);
      }
      const b = backends.get(url.protocol);
      if (!b) {
        const known = [...backends.keys()].map((s) => `${s}//`).join(', ');
        throw new CacheConfigError(`PKG_CACHE_URL: ${spec}: ${url.protocol}// caches are not supported (supported: ${known})`);
      }
      const fragment = url.hash.slice(1);
      if (fragment !== '' && fragment !== 'signed' && fragment !== 'unsigned') {
        throw new CacheConfigError(`PKG_CACHE_URL: ${spec}: unknown fragment #${fragment} (use #signed or #unsigned, or none)`);
      }
      url.hash = '';
      const requireSignature = fragment === '' ? b.signedByDefault : fragment === 'signed';
      return b.backend({ spec, url, requireSignature, opts });
    });
}

/** The caches PKG_CACHE_URL names (none when it is unset). */
export function cachesFromEnv(env: NodeJS.ProcessEnv = process.env, options: CacheOptions = {}): Cache[] {
  return parseCacheUrls(env.PKG_CACHE_URL ?? '', options);
}

const ERRNO_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found (DNS lookup failed)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
  EIO: 'I/O error',
};

function reasonOf(e: unknown): string {
  if (e instanceof CacheError) return e.message;
  const code = (e as NodeJS.ErrnoException)?.code;
  return (code && ERRNO_REASONS[code]) ?? (e instanceof Error ? e.message : String(e));
}

/** A directory: `<dir>/<name>`. */
class FileCache implements Cache {
  readonly url: string;
  readonly requireSignature: boolean;
  private readonly dir: string;

  constructor({ spec, url, requireSignature }: BackendArgs) {
    this.url = spec;
    this.requireSignature = requireSignature;
    try {
      this.dir = fileURLToPath(url);
    } catch (e) {
      throw new CacheConfigError(`PKG_CACHE_URL: ${spec}: ${(e as Error).message} (write file:///absolute/path)`);
    }
  }

  async get(name: string): Promise<Fetched | null> {
    const file = `${this.dir.replace(/\/+$/, '')}/${name}`;
    let fd: fs.promises.FileHandle;
    try {
      fd = await fs.promises.open(file, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new CacheError(reasonOf(e));
      // a mistyped or unmounted cache is worth a warning; a name it lacks is not
      if (fs.statSync(this.dir, { throwIfNoEntry: false })?.isDirectory()) return null;
      throw new CacheError(`${this.dir}: no such directory`);
    }
    const st = await fd.stat();
    if (!st.isFile()) {
      await fd.close();
      throw new CacheError(`${name} is not a regular file`);
    }
    const stream = fd.createReadStream({ highWaterMark: 1 << 20 });
    async function* body(): AsyncIterable<Buffer> {
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) yield chunk;
      } catch (e) {
        throw new CacheError(reasonOf(e));
      } finally {
        stream.destroy();
      }
    }
    return { size: st.size, body: body(), close: () => stream.destroy() };
  }
}

const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
// as curl's --retry: a host that refuses, or is not there, will not be there a moment later
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** An HTTP or HTTPS server: `<url>/<name>`. */
class HttpCache implements Cache {
  readonly url: string;
  readonly requireSignature: boolean;
  private readonly base: URL;
  private readonly opts: Required<CacheOptions>;
  /** why and until when the cache is skipped, after it could not be reached */
  private down: { reason: string; until: number } | null = null;

  constructor({ spec, url, requireSignature, opts }: BackendArgs) {
    this.url = spec;
    this.requireSignature = requireSignature;
    this.base = new URL(url.href.endsWith('/') ? url.href : url.href + '/');
    this.opts = opts;
  }

  async get(name: string, opts: GetOptions = {}): Promise<Fetched | null> {
    // a dead or black-holed cache would otherwise cost every package a timeout
    if (this.down && Date.now() < this.down.until) throw new CacheError(`${this.down.reason} (earlier; not asked again for now)`);
    try {
      return await this.request(new URL(encodeURIComponent(name), this.base), 0, opts);
    } catch (e) {
      const err = e as CacheError & { unreachable?: boolean };
      if (err.unreachable) this.down = { reason: err.message, until: Date.now() + this.opts.downForMs };
      throw e;
    }
  }

  private request(url: URL, redirects: number, opts: GetOptions): Promise<Fetched | null> {
    const { timeoutMs } = this.opts;
    return new Promise((resolve, reject) => {
      let timedOut = false;
      let answered = false;
      // silent before any answer: as dead as a refused connection, and as costly to ask again
      const timeout = () => Object.assign(new CacheError(`timed out (no data for ${timeoutMs} ms)`), { unreachable: !answered });
      const get = httpGet(url);
      // agent: false: a connection a request, closed after it, so no idle socket outlives a build
      const headers = { 'user-agent': 'peerpkgs', 'accept-encoding': 'identity' };
      const req = get(url, { agent: false, timeout: timeoutMs, headers }, (res) => {
        answered = true;
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        const from = redirects ? ` from ${url.href}` : '';
        if (REDIRECTS.has(status) && location) {
          res.resume();
          req.destroy();
          if (redirects >= MAX_REDIRECTS) return reject(new CacheError(`too many redirects (more than ${MAX_REDIRECTS})`));
          let next: URL;
          try {
            next = new URL(location, url);
          } catch {
            return reject(new CacheError(`redirect to a bad URL: ${location}`));
          }
          if (next.protocol !== 'http:' && next.protocol !== 'https:') return reject(new CacheError(`redirect to a URL that is not http(s): ${next.href}`));
          return resolve(this.request(next, redirects + 1, opts));
        }
        if (status === 404 || status === 410) {
          res.resume();
          req.destroy();
          return resolve(null);
        }
        if (status !== 200) {
          res.resume();
          req.destroy();
          return reject(new CacheError(`HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}${from}`));
        }
        const header = res.headers['content-length'];
        const size = header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
        if (size !== undefined && opts.maxBytes !== undefined && size > opts.maxBytes) {
          req.destroy();
          return reject(new CacheError(`the server announces ${size} bytes, more than the ${opts.maxBytes} expected`));
        }
        async function* body(): AsyncIterable<Buffer> {
          let got = 0;
          const short = () => new CacheError(`truncated (got ${got} of ${size} bytes)`);
          try {
            for await (const chunk of res as AsyncIterable<Buffer>) {
              got += chunk.length;
              yield chunk;
            }
          } catch (e) {
            if (timedOut) throw timeout();
            // Node says 'aborted' for a body cut short, by a reset (which the socket saw) or by a plain close
            const why = (e as Error).message !== 'aborted' ? reasonOf(e) : socketError ? reasonOf(socketError) : 'connection closed early';
            if (size !== undefined && got < size) throw new CacheError(`${why}; truncated (got ${got} of ${size} bytes)`);
            throw new CacheError(reasonOf(e));
          } finally {
            req.destroy();
          }
          if (timedOut) throw timeout();
          if (size !== undefined && got < size) throw short();
        }
        resolve({ size, body: body(), close: () => req.destroy() });
      });
      let socketError: Error | undefined;
      req.on('socket', (s) => s.on('error', (e) => (socketError ??= e)));
      req.on('timeout', () => {
        timedOut = true;
        req.destroy();
      });
      req.on('error', (e) => {
        if (timedOut) return reject(timeout());
        const code = (e as NodeJS.ErrnoException).code ?? '';
        reject(Object.assign(new CacheError(reasonOf(e)), { unreachable: CONNECT_FAILURES.has(code) }));
      });
    });
  }
}

registerBackend('file:', (a) => new FileCache(a), false);
registerBackend('http:', (a) => new HttpCache(a));
registerBackend('https:', (a) => new HttpCache(a));

/**
 * ipfs://CID and ipns://NAME (ipfs-cache.ts), loaded with the first request
 * to one, so that a build without them never loads the IPFS code.
 */
class LazyCache implements Cache {
  readonly url: string;
  readonly requireSignature: boolean;
  private readonly args: BackendArgs;
  private impl: Promise<Cache> | null = null;

  constructor(args: BackendArgs) {
    this.args = args;
    this.url = args.spec;
    this.requireSignature = args.requireSignature;
    if (!args.url.host) throw new CacheConfigError(`PKG_CACHE_URL: ${args.spec}: name the ${args.url.protocol === 'ipns:' ? 'IPNS name (ipns://k51…)' : 'CID (ipfs://CID)'}`);
  }

  async get(name: string, opts?: GetOptions): Promise<Fetched | null> {
    this.impl ??= import('./ipfs-cache.ts').then((m) => m.ipfsBackend(this.args));
    return (await this.impl).get(name, opts);
  }
}

registerBackend('ipfs:', (a) => new LazyCache(a));
registerBackend('ipns:', (a) => new LazyCache(a));

/** Reads a whole small file from a cache, refusing more than `max` bytes. */
export async function readAll(f: Fetched, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of f.body) {
      n += chunk.length;
      if (n > max) throw new CacheError(`longer than ${max} bytes`);
      chunks.push(chunk);
    }
  } finally {
    f.close();
  }
  return Buffer.concat(chunks);
}
