/**
 * The downloader: gets one distfile into the store, trusting no source.
 *
 * Order: the store, then the extra sources the caller passes (the IPFS
 * mirror), then each URL of the package in the order written. Every
 * source is a `Source`, so a new kind of mirror is a new object and not a
 * change here. A source that fails for a reason that may pass (HTTP 5xx,
 * reset, timeout, truncated body) is tried again after an exponential
 * backoff; one that cannot succeed (404, wrong bytes, too slow) is left
 * at once. Every download is bounded (http.ts): a distfile's length by its
 * fetch record's `size:`, or by PKG_MAX_DOWNLOAD_SIZE, and its time by a
 * deadline sized to that length.
 *
 * The bytes are hashed as they stream into the store (store.ts), so a
 * wrong download never appears under the hash's name. When every source
 * has failed, the error lists each one with its reason, because "could not
 * fetch" alone sends the user to find out what we already knew.
 */
const fs = process.getBuiltinModule('node:fs');
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatSize, settings } from '../settings.ts';
import { DistfileStore, HashMismatch, checkSha256, type Bytes } from './store.ts';
import { errnoReason, httpGet, HttpError, type Deadline } from './http.ts';
import { progressFor, type Progress, type Transfer } from './progress.ts';
import { moving } from '../engine/rules.ts';
import { PeerpkgsError, EXIT } from '../errors.ts';

/** One source archive of a package, as its fetch file names it. */
export interface Distfile {
  file: string;
  sha256: string;
  urls: string[];
  /** its length in bytes, when the fetch record says */
  size?: number;
}

export interface Opened {
  body: Bytes;
  size?: number;
  /** stops the transfer, when the caller gives up on it before the end */
  close?(): void;
}

/** What a source may send: more than maxBytes is refused, and it must be in before the deadline. */
export interface OpenOptions {
  timeoutMs: number;
  maxBytes: number;
  /** what maxBytes is, for messages */
  maxWhat: string;
  deadline: Deadline;
}

/** A place that may hold a distfile's bytes. It need not verify them: the store does. */
export interface Source {
  /** How the user knows this source in messages: its URL. */
  describe(): string;
  /** Throws SourceError saying why the bytes cannot be had. */
  open(want: Distfile, opts: OpenOptions): Promise<Opened>;
}

/** Why a source failed; transient when trying it again may succeed. */
export class SourceError extends PeerpkgsError {
  readonly transient: boolean;

  constructor(reason: string, transient: boolean) {
    super(reason, EXIT.failed, 'SourceError');
    this.transient = transient;
  }
}

export interface Failure {
  want: Distfile;
  tried: Array<{ source: string; reason: string }>;
}

/** Some distfiles could be had from no source; the message says, per source, why. */
export class FetchError extends PeerpkgsError {
  readonly failures: Failure[];

  constructor(failures: Failure[]) {
    const lines = failures.flatMap(({ want, tried }) => [
      `could not fetch ${want.file}${want.sha256 ? ` (sha256 ${want.sha256})` : ''}:`,
      ...(tried.length ? tried.map((t) => `  ${t.source}: ${t.reason}`) : ['  no sources: the package lists no url']),
    ]);
    const paths = failures.map((f) => `/path/to/${f.want.file}`).join(' ');
    lines.push(`to work offline, download ${failures.length > 1 ? 'them' : 'it'} by other means and run: peerpkgs distfiles add ${paths}`);
    super(lines.join('\n'), EXIT.fetch, 'FetchError');
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
  /** bytes a distfile without a size may have (default: PKG_MAX_DOWNLOAD_SIZE) */
  maxBytes?: number;
  /** how long a download may take (default: PKG_DOWNLOAD_BASE_TIME and PKG_DOWNLOAD_MIN_RATE) */
  deadline?: Deadline;
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

/**
 * A URL's bytes into the store before any fetch record names their hash
 * (new-package --url, as nix-prefetch-url): the same bounds, retries and
 * progress as a distfile's. Returns the stored path, named by its sha256.
 */
export async function prefetchUrl(url: string, file: string, opts: FetchOptions): Promise<string> {
  const want: Distfile = { file, sha256: '', urls: [url] };
  const source = urlSource(url);
  const got = await withRetries(source, want, { ...opts, progress: opts.progress ?? progressFor() });
  if (typeof got === 'string') return got;
  throw new FetchError([{ want, tried: [{ source: source.describe(), reason: got.reason }] }]);
}

async function withRetries(source: Source, want: Distfile, opts: FetchOptions & { progress: Progress }): Promise<string | { reason: string }> {
  const { progress } = opts;
  const retries = opts.retries ?? 2;
  const backoffMs = opts.backoffMs ?? 1000;
  for (let n = 1; ; n++) {
    try {
      return await attempt(source, want, opts, progress);
    } catch (e) {
      const why = reasonOf(e);
      const delay = backoffMs * 2 ** (n - 1);
      // an HttpError comes from the body, after the source was opened
      const again = (e instanceof SourceError || e instanceof HttpError) && e.transient && n <= retries;
      const wait = delay < 1000 ? `${delay} ms` : `${delay / 1000} s`;
      progress.note(`${want.file}: ${source.describe()}: ${why}${again ? `; trying again in ${wait}` : ''}`);
      if (!again) return { reason: n > 1 ? `${why} (${n} tries)` : why };
      await sleep(delay);
    }
  }
}

/**
 * One download of a distfile. Its length is checked here, for every kind of
 * source: a fetch record's size exactly, and a distfile without one against
 * the cap, so that a body that never ends cannot fill the disk.
 */
async function attempt(source: Source, want: Distfile, opts: FetchOptions, progress: Progress): Promise<string> {
  const s = settings();
  const cap = opts.maxBytes ?? s.maxDownloadBytes;
  const maxBytes = want.size ?? cap;
  const maxWhat =
    want.size !== undefined ? `the ${want.size} bytes its fetch record says` : `the ${formatSize(cap)} that PKG_MAX_DOWNLOAD_SIZE allows a source whose fetch record gives no size`;
  const deadline = opts.deadline ?? { baseMs: s.downloadBaseMs, minRate: s.downloadMinRate };
  const opened = await source.open(want, { timeoutMs: opts.timeoutMs ?? 30_000, maxBytes, maxWhat, deadline });
  if (want.size !== undefined && opened.size !== undefined && opened.size !== want.size) {
    opened.close?.();
    throw new SourceError(`is ${opened.size} bytes, its fetch record says ${want.size}`, false);
  }
  const transfer = progress.begin(want.file, source.describe(), opened.size);
  try {
    return await moving(transfer, () => {
      const body = counted(opened.body, transfer, want, maxBytes, maxWhat);
      return want.sha256 ? opts.store.put(want.sha256, body) : opts.store.putNew(body);
    });
  } catch (e) {
    opened.close?.();
    throw e;
  }
}

async function* counted(body: Bytes, transfer: Transfer, want: Distfile, maxBytes: number, maxWhat: string): AsyncIterable<Uint8Array> {
  let got = 0;
  for await (const chunk of body) {
    got += chunk.length;
    if (got > maxBytes) throw new SourceError(`longer than ${maxWhat}`, false);
    transfer.advance(chunk.length);
    yield chunk;
  }
  if (want.size !== undefined && got !== want.size) throw new SourceError(`is ${got} bytes, its fetch record says ${want.size}`, false);
}

function reasonOf(e: unknown): string {
  if (e instanceof SourceError || e instanceof HttpError || e instanceof HashMismatch) return e.message;
  return errnoReason(e);
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
    return httpSource(parsed, describe);
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
    throw new SourceError(errnoReason(e), false);
  });
  if (!stat.isFile()) throw new SourceError('not a regular file', false);
  const body = fs.createReadStream(file);
  return { size: stat.size, body, close: () => body.destroy() };
}

function httpSource(url: URL, describe: () => string): Source {
  return {
    describe,
    open: async (_want, { timeoutMs, maxBytes, maxWhat, deadline }) => {
      try {
        return await httpGet(url, { idleMs: timeoutMs, maxBytes, maxWhat, deadline });
      } catch (e) {
        throw e instanceof HttpError ? new SourceError(e.message, e.transient) : e;
      }
    },
  };
}
