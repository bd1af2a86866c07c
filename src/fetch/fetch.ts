/**
 * The downloader: gets one distfile into the store, trusting no source.
 *
 * Order: the store, then the extra sources the caller passes (the IPFS
 * mirror), then each URL of the package in the order written. Every
 * source is a `Source`, so a new kind of mirror is a new object and not a
 * change here. A source that fails for a reason that may pass (HTTP 5xx,
 * reset, timeout, truncated body) is tried again after an exponential
 * backoff; one that cannot succeed (404, wrong bytes) is left at once.
 *
 * The bytes are hashed as they stream into the store (store.ts), so a
 * wrong download never appears under the hash's name. When every source
 * has failed, the error lists each one with its reason, because "could not
 * fetch" alone sends the user to find out what we already knew.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { DistfileStore, HashMismatch, checkSha256, type Bytes } from './store.ts';
import { progressFor, type Progress, type Transfer } from './progress.ts';

/** One source archive of a package, as its fetch file names it. */
export interface Distfile {
  file: string;
  sha256: string;
  urls: string[];
}

export interface Opened {
  body: Bytes;
  size?: number;
}

/** A place that may hold a distfile's bytes. It need not verify them: the store does. */
export interface Source {
  /** How the user knows this source in messages: its URL. */
  describe(): string;
  /** Throws SourceError saying why the bytes cannot be had. */
  open(want: Distfile, opts: { timeoutMs: number }): Promise<Opened>;
}

/** Why a source failed; transient when trying it again may succeed. */
export class SourceError extends Error {
  readonly transient: boolean;

  constructor(reason: string, transient: boolean) {
    super(reason);
    this.name = 'SourceError';
    this.transient = transient;
  }
}

export interface Failure {
  want: Distfile;
  tried: Array<{ source: string; reason: string }>;
}

/** Some distfiles could be had from no source; the message says, per source, why. */
export class FetchError extends Error {
  readonly failures: Failure[];

  constructor(failures: Failure[]) {
    const lines = failures.flatMap(({ want, tried }) => [
      `could not fetch ${want.file} (sha256 ${want.sha256}):`,
      ...(tried.length ? tried.map((t) => `  ${t.source}: ${t.reason}`) : ['  no sources: the package lists no url']),
    ]);
    const paths = failures.map((f) => `/path/to/${f.want.file}`).join(' ');
    lines.push(`to work offline, download ${failures.length > 1 ? 'them' : 'it'} by other means and run: peerpkgs distfiles add ${paths}`);
    super(lines.join('\n'));
    this.name = 'FetchError';
    this.failures = failures;
  }
}

export interface FetchOptions {
  store: DistfileStore;
  /** a connection that is silent this long (connecting or mid-body) has failed */
  timeoutMs?: number;
  /** further tries of a source after a transient failure */
  retries?: number;
  /** wait before the first retry; doubled before each next one */
  backoffMs?: number;
  progress?: Progress;
  /** tried before the URLs, in order */
  sources?: Source[];
  /**
   * Sources for this distfile (a mirror that knows it by its sha256), tried
   * after `sources` and before the URLs; asked only when the store lacks it.
   */
  sourcesFor?: (want: Distfile) => Source[];
}

/** The path in the store of a distfile with the wanted hash, fetched if need be. */
export async function fetchDistfile(want: Distfile, opts: FetchOptions): Promise<string> {
  const { store } = opts;
  const progress = opts.progress ?? progressFor();
  const stored = await store.verify(checkSha256(want.sha256));
  if (stored === 'ok') return store.path(want.sha256);
  if (stored !== 'missing') {
    progress.note(`${want.file}: the distfile store's copy had wrong bytes (sha256 ${stored.removed}): removed it, fetching it again`);
  }
  const tried: Failure['tried'] = [];
  const mirrors = opts.sourcesFor?.(want) ?? [];
  for (const source of [...(opts.sources ?? []), ...mirrors, ...want.urls.map(urlSource)]) {
    const got = await withRetries(source, want, { ...opts, progress });
    if (typeof got === 'string') return got;
    tried.push({ source: source.describe(), reason: got.reason });
  }
  throw new FetchError([{ want, tried }]);
}

async function withRetries(source: Source, want: Distfile, opts: FetchOptions & { progress: Progress }): Promise<string | { reason: string }> {
  const { progress } = opts;
  const retries = opts.retries ?? 2;
  const backoffMs = opts.backoffMs ?? 1000;
  for (let n = 1; ; n++) {
    try {
      return await attempt(source, want, opts.store, opts.timeoutMs ?? 30_000, progress);
    } catch (e) {
      const why = reasonOf(e);
      const delay = backoffMs * 2 ** (n - 1);
      const again = e instanceof SourceError && e.transient && n <= retries;
      const wait = delay < 1000 ? `${delay} ms` : `${delay / 1000} s`;
      progress.note(`${want.file}: ${source.describe()}: ${why}${again ? `; trying again in ${wait}` : ''}`);
      if (!again) return { reason: n > 1 ? `${why} (${n} tries)` : why };
      await sleep(delay);
    }
  }
}

async function attempt(source: Source, want: Distfile, store: DistfileStore, timeoutMs: number, progress: Progress): Promise<string> {
  const opened = await source.open(want, { timeoutMs });
  const transfer = progress.begin(want.file, source.describe(), opened.size);
  try {
    const stored = await store.put(want.sha256, counted(opened.body, transfer));
    transfer.done();
    return stored;
  } catch (e) {
    transfer.abort();
    throw e;
  }
}

async function* counted(body: Bytes, transfer: Transfer): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    transfer.advance(chunk.length);
    yield chunk;
  }
}

function reasonOf(e: unknown): string {
  if (e instanceof SourceError || e instanceof HashMismatch) return e.message;
  return networkReason(e);
}

const ERRNO_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found (DNS lookup failed)',
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
};

function networkReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  return (code && ERRNO_REASONS[code]) ?? (e instanceof Error ? e.message : String(e));
}

// as curl's --retry: a host that is not there, or refuses, will not be there in a second
const LASTING = new Set(['ENOTFOUND', 'ECONNREFUSED']);

function networkError(e: unknown): SourceError {
  return new SourceError(networkReason(e), !LASTING.has((e as NodeJS.ErrnoException)?.code ?? ''));
}

/** The source for a URL of a fetch file: http, https or file. */
export function urlSource(url: string): Source {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    // reported when opened, so that it is listed with the other sources
  }
  const describe = () => url;
  if (parsed?.protocol === 'http:' || parsed?.protocol === 'https:') {
    const u = parsed;
    return { describe, open: (_want, { timeoutMs }) => httpGet(u, timeoutMs, 0) };
  }
  if (parsed?.protocol === 'file:') {
    const u = parsed;
    return { describe, open: () => openFile(u) };
  }
  const why = parsed ? `unsupported URL scheme ${parsed.protocol}` : 'not a URL';
  return { describe, open: () => Promise.reject(new SourceError(why, false)) };
}

async function openFile(url: URL): Promise<Opened> {
  let file: string;
  try {
    file = fileURLToPath(url);
  } catch {
    throw new SourceError('not a local file URL', false);
  }
  const stat = await fs.promises.stat(file).catch((e: unknown) => {
    throw new SourceError(networkReason(e), false);
  });
  if (!stat.isFile()) throw new SourceError('not a regular file', false);
  return { size: stat.size, body: fs.createReadStream(file) };
}

const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

function httpGet(url: URL, timeoutMs: number, redirects: number): Promise<Opened> {
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const timeout = () => new SourceError(`timed out (no data for ${timeoutMs} ms)`, true);
    const get = url.protocol === 'https:' ? https.get : http.get;
    // agent: false: one connection a download, closed after it, so no idle socket outlives a fetch
    const headers = { 'user-agent': 'peerpkgs', 'accept-encoding': 'identity' };
    const req = get(url, { agent: false, timeout: timeoutMs, headers }, (res) => {
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (REDIRECTS.has(status) && location) {
        res.resume();
        if (redirects >= MAX_REDIRECTS) return reject(new SourceError(`too many redirects (more than ${MAX_REDIRECTS})`, false));
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          return reject(new SourceError(`redirect to a bad URL: ${location}`, false));
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          return reject(new SourceError(`redirect to a URL that is not http(s): ${next.href}`, false));
        }
        return resolve(httpGet(next, timeoutMs, redirects + 1));
      }
      if (status !== 200) {
        res.resume();
        const where = redirects ? ` from ${url.href}` : '';
        return reject(new SourceError(`HTTP ${status}${where}`, status >= 500 || status === 408 || status === 429));
      }
      const header = res.headers['content-length'];
      const size = header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
      async function* body(): AsyncIterable<Uint8Array> {
        let got = 0;
        const short = () => new SourceError(`truncated (got ${got} of ${size} bytes)`, true);
        try {
          for await (const chunk of res as AsyncIterable<Buffer>) {
            got += chunk.length;
            yield chunk;
          }
        } catch (e) {
          if (timedOut) throw timeout();
          if (size !== undefined && got < size) throw short();
          throw networkError(e);
        } finally {
          req.destroy();
        }
        if (timedOut) throw timeout();
        if (size !== undefined && got < size) throw short();
      }
      resolve({ size, body: body() });
    });
    req.on('timeout', () => {
      timedOut = true;
      req.destroy();
    });
    req.on('error', (e) => reject(timedOut ? timeout() : networkError(e)));
  });
}
