/**
 * Package caches on IPFS: `ipfs://CID[/path]` is a directory added to IPFS
 * (peerpkgs cache publish), `ipns://NAME[/path]` the directory an IPNS name
 * points at, both in the layout of any cache (`<pkghash>.info`,
 * `<pkghash>.tar.gz`). Loaded only when PKG_CACHE_URL names one (see the
 * end of backends.ts), and Helia only with the first request.
 *
 * As for an HTTP cache: a name the directory lacks is a miss (the
 * directory was reached, the name is not in it); a directory or a file
 * whose blocks no connected peer sends in time (PKG_IPFS_TIMEOUT, else the
 * cache timeout, without progress) is an error, and the cache is not asked
 * again for a while. Both kinds require signed entries unless marked
 * #unsigned: an ipfs:// root fixes the bytes but not who made them, and an
 * ipns:// record is checked against its name's key before it is used.
 * An IPNS name is resolved once a process.
 */
import { peerpkgsHome } from '../home.ts';
import { settings } from '../settings.ts';
import { IpfsNotFound, IpfsUnreachable } from '../ipfs/errors.ts';
import { acquireIpfs } from '../ipfs/shared.ts';
import { parseIpfsAddress, type IpfsClient } from '../ipfs/client.ts';
import { CacheError, type BackendArgs, type Cache, type CacheOptions, type Fetched, type GetOptions } from './backends.ts';

export class IpfsCache implements Cache {
  readonly url: string;
  readonly requireSignature: boolean;
  readonly requireProvenance: boolean;
  private readonly scheme: 'ipfs' | 'ipns';
  private readonly root: string;
  private readonly sub: string;
  private readonly opts: Required<CacheOptions>;
  private readonly env: NodeJS.ProcessEnv;
  private resolved: Promise<string> | null = null;
  private down: { reason: string; until: number } | null = null;

  constructor({ spec, url, requireSignature, requireProvenance, opts }: BackendArgs, env: NodeJS.ProcessEnv = process.env) {
    this.url = spec;
    this.requireSignature = requireSignature;
    this.requireProvenance = requireProvenance;
    ({ scheme: this.scheme, root: this.root, path: this.sub } = parseIpfsAddress(url.href));
    this.opts = opts;
    this.env = env;
  }

  private timeoutMs(): number {
    return settings(this.env).ipfsTimeoutMs;
  }

  private rootCid(ipfs: IpfsClient): Promise<string> {
    if (this.scheme === 'ipfs') return Promise.resolve(this.root);
    this.resolved ??= ipfs.resolve(this.root, { timeoutMs: this.timeoutMs() }).catch((e) => {
      this.resolved = null;
      throw Object.assign(new CacheError(`could not resolve the IPNS name: ${(e as Error).message}`), { unreachable: e instanceof IpfsUnreachable });
    });
    return this.resolved;
  }

  async get(name: string, opts: GetOptions = {}): Promise<Fetched | null> {
    if (this.down && Date.now() < this.down.until) throw new CacheError(`${this.down.reason} (earlier; not asked again for now)`);
    let lease: Awaited<ReturnType<typeof acquireIpfs>>;
    try {
      lease = await acquireIpfs(peerpkgsHome(this.env), this.env);
    } catch (e) {
      throw new CacheError(`could not start an IPFS node: ${(e as Error).message}`);
    }
    const { ipfs } = lease;
    let handedOver = false;
    try {
      const cid = await this.rootCid(ipfs);
      const p = [cid, this.sub, name].filter(Boolean).join('/');
      const timeoutMs = this.timeoutMs();
      const st = await ipfs.stat(p, { timeoutMs });
      if (st.type !== 'file') throw new CacheError(`${name} is not a file`);
      if (opts.maxBytes !== undefined && st.size > opts.maxBytes) throw new CacheError(`${name} is ${st.size} bytes, more than the ${opts.maxBytes} expected`);
      const ac = new AbortController();
      const release = lease.release;
      async function* body(): AsyncIterable<Buffer> {
        try {
          for await (const chunk of ipfs.cat(p, { signal: ac.signal, timeoutMs })) yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        } catch (e) {
          throw e instanceof CacheError ? e : new CacheError((e as Error).message);
        } finally {
          release();
        }
      }
      handedOver = true;
      return {
        size: st.size,
        body: body(),
        close: () => {
          ac.abort();
          release();
        },
      };
    } catch (e) {
      if (e instanceof IpfsNotFound) return null;
      const unreachable = e instanceof IpfsUnreachable || (e as { unreachable?: boolean }).unreachable === true;
      const err = e instanceof CacheError ? e : new CacheError((e as Error).message);
      if (unreachable) this.down = { reason: err.message, until: Date.now() + this.opts.downForMs };
      throw err;
    } finally {
      if (!handedOver) lease.release();
    }
  }
}

export function ipfsBackend(args: BackendArgs): Cache {
  return new IpfsCache(args);
}

/**
 * Publishes a cache directory: adds DIR to IPFS, pinned, then points the
 * IPNS name of `key` at it if given. `say` gets each URL to put in
 * PKG_CACHE_URL as soon as it is known (ipfs://CID, then ipns://NAME).
 */
export async function publishCacheDir(
  client: IpfsClient,
  dir: string,
  opts: { key?: string; cidVersion?: 0 | 1; say(url: string): void },
): Promise<{ cid: string; name?: string }> {
  const cid = await client.addFile(dir, { pin: true, cidVersion: opts.cidVersion });
  opts.say(`ipfs://${cid}`);
  if (!opts.key) return { cid };
  const name = await client.publish(cid, opts.key);
  opts.say(`ipns://${name}`);
  return { cid, name };
}
