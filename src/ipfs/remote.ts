/**
 * An IpfsClient that talks to a running `peerpkgs ipfs daemon` over its
 * unix socket (protocol.ts). Cheap: no Helia in this process, and a
 * command that only reads a file costs one connection.
 */
import type * as Http from 'node:http';
import { createRequire } from 'node:module';
import type { AddOptions, CollectedBlocks, Entry, IpfsClient, NodeId, PublishOptions, ReadOptions } from './client.ts';
import { IpfsError } from './errors.ts';
import { decodeError, ERROR_TRAILER } from './protocol.ts';

// not `import 'node:http'`: its WebSocket getter would load undici (see cache/backends.ts)
const http = createRequire(import.meta.url)('node:http') as typeof Http;

type Query = Record<string, string | number | boolean | undefined>;

function qs(q: Query): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
  return p.toString();
}

function addQuery(o: AddOptions): Query {
  return { cidVersion: o.cidVersion, rawLeaves: o.rawLeaves, pin: o.pin, hidden: o.hidden, chunkSize: o.chunkSize, nocopy: o.nocopy };
}

export class RemoteIpfs implements IpfsClient {
  private readonly socket: string;

  constructor(socket: string) {
    this.socket = socket;
  }

  private request(method: string, route: string, q: Query, body?: AsyncIterable<Uint8Array> | Uint8Array | string, signal?: AbortSignal): Promise<Http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath: this.socket, method, path: `/v1/${route}?${qs(q)}`, agent: false, signal });
      req.on('response', resolve);
      req.on('error', (e) => {
        const code = (e as NodeJS.ErrnoException).code;
        if (e.name === 'AbortError') reject(new IpfsError('interrupted'));
        else reject(Object.assign(new IpfsError(`the IPFS daemon on ${this.socket} did not answer (${code ?? e.message})`), { code }));
      });
      if (body === undefined) req.end();
      else if (typeof body === 'string' || body instanceof Uint8Array) req.end(body);
      else {
        void (async () => {
          try {
            for await (const chunk of body) if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
            req.end();
          } catch (e) {
            req.destroy(e as Error);
          }
        })();
      }
    });
  }

  private async json<T>(res: Http.IncomingMessage): Promise<T> {
    const chunks: Buffer[] = [];
    for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
    const text = Buffer.concat(chunks).toString('utf8');
    if (res.statusCode !== 200) throw decodeError(text, `the IPFS daemon answered HTTP ${res.statusCode}`);
    return JSON.parse(text) as T;
  }

  private async call<T>(method: string, route: string, q: Query, body?: AsyncIterable<Uint8Array> | Uint8Array | string, signal?: AbortSignal): Promise<T> {
    return this.json<T>(await this.request(method, route, q, body, signal));
  }

  async addFile(file: string, opts: AddOptions = {}): Promise<string> {
    const { resolve } = process.getBuiltinModule('node:path');
    return (await this.call<{ cid: string }>('POST', 'add', { path: resolve(file), ...addQuery(opts) })).cid;
  }

  async addBytes(data: AsyncIterable<Uint8Array> | Uint8Array, opts: AddOptions = {}): Promise<string> {
    return (await this.call<{ cid: string }>('POST', 'add-bytes', addQuery(opts), data)).cid;
  }

  async *cat(p: string, opts: ReadOptions = {}): AsyncIterable<Uint8Array> {
    const res = await this.request('GET', 'cat', { path: p, timeoutMs: opts.timeoutMs }, undefined, opts.signal);
    if (res.statusCode !== 200) await this.json(res);
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) yield chunk;
    } catch (e) {
      throw new IpfsError(`${p}: the IPFS daemon closed the connection early (${(e as Error).message})`);
    } finally {
      res.destroy();
    }
    const trailer = res.trailers[ERROR_TRAILER];
    if (trailer) throw decodeError(decodeURIComponent(trailer), `${p}: the IPFS daemon failed`);
  }

  stat(p: string, opts: ReadOptions = {}): Promise<Entry> {
    return this.call('GET', 'stat', { path: p, timeoutMs: opts.timeoutMs }, undefined, opts.signal);
  }

  ls(p: string, opts: ReadOptions = {}): Promise<Entry[]> {
    return this.call('GET', 'ls', { path: p, timeoutMs: opts.timeoutMs }, undefined, opts.signal);
  }

  async pin(cid: string, opts: ReadOptions = {}): Promise<void> {
    await this.call('POST', 'pin', { cid, timeoutMs: opts.timeoutMs }, undefined, opts.signal);
  }

  async publish(cid: string, keyName: string, opts: PublishOptions = {}): Promise<string> {
    return (await this.call<{ name: string }>('POST', 'publish', { cid, key: keyName, lifetimeMs: opts.lifetimeMs })).name;
  }

  async resolve(name: string, opts: ReadOptions = {}): Promise<string> {
    return (await this.call<{ cid: string }>('GET', 'resolve', { name, timeoutMs: opts.timeoutMs }, undefined, opts.signal)).cid;
  }

  async connect(addrs: string[]): Promise<{ addr: string; error: string }[]> {
    return (await this.call<{ failed: { addr: string; error: string }[] }>('POST', 'connect', {}, JSON.stringify({ addrs }))).failed;
  }

  async useGateways(urls: string[]): Promise<void> {
    await this.call('POST', 'gateways', {}, JSON.stringify({ urls }));
  }

  collectGarbage(opts: { dryRun?: boolean } = {}): Promise<CollectedBlocks> {
    return this.call('POST', 'gc', { dryRun: opts.dryRun });
  }

  id(signal?: AbortSignal): Promise<NodeId> {
    return this.call('GET', 'id', {}, undefined, signal);
  }

  async close(): Promise<void> {
    // nothing held between requests
  }
}

/** A client of the daemon on `socket`, or null when none answers there (no socket, or a stale one). */
export async function connectDaemon(socket: string): Promise<RemoteIpfs | null> {
  const c = new RemoteIpfs(socket);
  try {
    await c.id(AbortSignal.timeout(10_000));
    return c;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'ENOTSOCK') return null;
    if ((e as Error).message === 'interrupted')
      throw new IpfsError(`the IPFS daemon on ${socket} accepts connections but does not answer within 10 s (stop it, or remove the socket if no daemon runs)`);
    throw e;
  }
}
