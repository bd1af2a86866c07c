/**
 * Where binary packages are looked up: the caches of PKG_CACHE_URL, each
 * behind one small interface, so that a new kind (ipfs://, ipns://) is a
 * new backend registered by scheme and not a change to substitution.
 *
 * A backend only moves bytes and says which of three things happened: the
 * name is there (a stream), it is not (a miss: HTTP 404 or 410, ENOENT),
 * or asking failed (an error: 5xx, a reset, a timeout, a refused
 * connection, a deadline missed). A miss is normal and silent; an error is
 * worth a warning. HTTP caches download through fetch/http.ts, so each
 * request has the deadline and byte bound every download has; a cache that
 * did not answer, or too slowly, is skipped for a while. It checks nothing
 * about the bytes: substitute.ts does, against the .info.
 *
 * PKG_CACHE_URL is a space-separated list of URLs, tried in order. A URL
 * may end in a fragment that sets the cache's trust policy (a fragment is
 * never sent to a server, so it cannot change what is fetched):
 *   #unsigned  accept entries without a signature by a trusted key
 *   #signed    require one
 *   #provenance  require a provenance a trusted key signed (provenance.ts),
 *              with either of the above: #signed,provenance
 * http(s):// caches require signatures unless marked #unsigned. file://
 * caches do not unless marked #signed: a local directory is written by
 * someone who can already write the tree being built; mark a shared mount
 * #signed. Whatever the policy, every byte is checked against the .info.
 */
import type { FileHandle } from 'node:fs/promises';
const fs = process.getBuiltinModule('node:fs');
import { fileURLToPath } from 'node:url';
import { errnoReason, httpGet, HttpError, type Deadline } from '../fetch/http.ts';
import { CacheConfigError, parseCacheUrl, settings, type CacheUrl } from '../settings.ts';
import { errorClass } from '../errors.ts';

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
  /** an upper bound the caller knows, beyond which reading is pointless; an exact size gives the tightest deadline */
  maxBytes?: number;
}

export interface Cache {
  /** as the user wrote it in PKG_CACHE_URL: how messages name it */
  readonly url: string;
  /** whether an entry must be signed by a trusted key */
  readonly requireSignature: boolean;
  /** whether an entry must come with a provenance a trusted key signed */
  readonly requireProvenance: boolean;
  /** `name` (e.g. `<pkghash>.info`) from the cache, or null if it is not there; throws CacheError */
  get(name: string, opts?: GetOptions): Promise<Fetched | null>;
}

/** Asking a cache failed for a reason other than "not there". */
export class CacheError extends errorClass('CacheError') {}

export { CacheConfigError };

export interface CacheOptions {
  /** a connection silent this long (connecting, or mid-body) has failed */
  timeoutMs?: number;
  /** a cache that could not be reached, or did not answer, is skipped for this long afterwards */
  downForMs?: number;
  /** how long a request may take, by its size (default: PKG_DOWNLOAD_BASE_TIME, PKG_DOWNLOAD_MIN_RATE) */
  deadline?: Deadline;
}

export interface BackendArgs {
  /** the URL as written, fragment included */
  spec: string;
  /** parsed, without the fragment */
  url: URL;
  requireSignature: boolean;
  requireProvenance: boolean;
  opts: Required<CacheOptions>;
}

export type Backend = (args: BackendArgs) => Cache;

const DEFAULTS = { timeoutMs: 30_000, downForMs: 60_000 };

const backends = new Map<string, { backend: Backend; signedByDefault: boolean }>();

/** Makes `scheme:` URLs (e.g. 'ipfs:') usable in PKG_CACHE_URL. */
export function registerBackend(scheme: string, backend: Backend, signedByDefault = true): void {
  backends.set(scheme, { backend, signedByDefault });
}

/** The caches of a PKG_CACHE_URL value, in order; its syntax is settings.ts's to check. */
export function parseCacheUrls(value: string, options: CacheOptions = {}, env: NodeJS.ProcessEnv = process.env): Cache[] {
  return cachesOf(value.split(/\s+/).filter(Boolean).map(parseCacheUrl), options, env);
}

function cachesOf(urls: CacheUrl[], options: CacheOptions, env: NodeJS.ProcessEnv): Cache[] {
  const s = settings(env);
  const opts = { ...DEFAULTS, deadline: { baseMs: s.downloadBaseMs, minRate: s.downloadMinRate }, ...options };
  return urls.map(({ spec, url, signed, provenance }) => {
    const b = backends.get(url.protocol);
    if (!b) throw new CacheConfigError(`PKG_CACHE_URL: ${spec}: ${url.protocol}// caches are not supported`);
    return b.backend({ spec, url, requireSignature: signed ?? b.signedByDefault, requireProvenance: provenance, opts });
  });
}

/** The caches PKG_CACHE_URL names (none when it is unset). */
export function cachesFromEnv(env: NodeJS.ProcessEnv = process.env, options: CacheOptions = {}): Cache[] {
  return cachesOf(settings(env).cacheUrls, options, env);
}

function reasonOf(e: unknown): string {
  return e instanceof CacheError ? e.message : errnoReason(e);
}

/** A directory: `<dir>/<name>`. */
class FileCache implements Cache {
  readonly url: string;
  readonly requireSignature: boolean;
  readonly requireProvenance: boolean;
  private readonly dir: string;

  constructor({ spec, url, requireSignature, requireProvenance }: BackendArgs) {
    this.url = spec;
    this.requireSignature = requireSignature;
    this.requireProvenance = requireProvenance;
    this.dir = fileURLToPath(url); // settings.ts made sure it is a path
  }

  async get(name: string): Promise<Fetched | null> {
    const file = `${this.dir.replace(/\/+$/, '')}/${name}`;
    let fd: FileHandle;
    try {
      // a FIFO or a device would block the open itself, out of reach of any
      // deadline or signal; a symlink could lead to one: open none of them
      fd = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new CacheError(`${name} is not a regular file (a symlink)`);
      if (code !== 'ENOENT') throw new CacheError(reasonOf(e));
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

/** An HTTP or HTTPS server: `<url>/<name>`. */
class HttpCache implements Cache {
  readonly url: string;
  readonly requireSignature: boolean;
  readonly requireProvenance: boolean;
  private readonly base: URL;
  private readonly opts: Required<CacheOptions>;
  /** why and until when the cache is skipped, after it could not be reached */
  private down: { reason: string; until: number } | null = null;

  constructor({ spec, url, requireSignature, requireProvenance, opts }: BackendArgs) {
    this.url = spec;
    this.requireSignature = requireSignature;
    this.requireProvenance = requireProvenance;
    this.base = new URL(url.href.endsWith('/') ? url.href : url.href + '/');
    this.opts = opts;
  }

  async get(name: string, opts: GetOptions = {}): Promise<Fetched | null> {
    // a dead, black-holed or crawling cache would otherwise cost every package its timeout
    if (this.down && Date.now() < this.down.until) throw new CacheError(`${this.down.reason} (earlier; not asked again for now)`);
    const { timeoutMs, deadline } = this.opts;
    try {
      const got = await httpGet(new URL(encodeURIComponent(name), this.base), {
        idleMs: timeoutMs,
        deadline,
        maxBytes: opts.maxBytes ?? settings().maxDownloadBytes,
      });
      return { ...got, body: this.watched(got.body) };
    } catch (e) {
      if (e instanceof HttpError && (e.status === 404 || e.status === 410)) return null;
      throw this.failed(e);
    }
  }

  /** The body, its errors CacheErrors; a cache too slow to finish is marked down too. */
  private async *watched(body: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
    try {
      yield* body;
    } catch (e) {
      throw this.failed(e);
    }
  }

  private failed(e: unknown): unknown {
    if (!(e instanceof HttpError)) return e;
    if (e.unreachable) this.down = { reason: e.message, until: Date.now() + this.opts.downForMs };
    return new CacheError(e.message);
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
  readonly requireProvenance: boolean;
  private readonly args: BackendArgs;
  private impl: Promise<Cache> | null = null;

  constructor(args: BackendArgs) {
    this.args = args;
    this.url = args.spec;
    this.requireSignature = args.requireSignature;
    this.requireProvenance = args.requireProvenance;
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
