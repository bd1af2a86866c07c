/**
 * Fetching blocks from trustless HTTP gateways (PKG_IPFS_GATEWAYS): a Helia
 * block broker beside bitswap, so that a node that can reach no peer, or
 * sits behind a NAT, still gets blocks from any gateway or HTTP cache that
 * carries them. Helia races it against bitswap for each block it lacks.
 *
 * A block is asked for as the trustless gateway specification says,
 * `GET {gateway}/ipfs/{cid}?format=raw` with `Accept:
 * application/vnd.ipld.raw`, through the one HTTP getter (fetch/http.ts)
 * with its idle, deadline and size bounds; the size bound is the block
 * limit Helia gives (2 MiB). Nothing a gateway sends is trusted: each
 * block is hashed against its CID (Helia's validateFn) before it is
 * returned. A gateway whose block does not match is not asked again by this
 * process; one that fails otherwise is asked after the others next time;
 * a 404 is only a miss. Gateways are tried one after another, not all at
 * once: one gateway that has the block costs one request.
 *
 * This is what `@helia/block-brokers`' trustlessGateway() does, with the
 * project's own HTTP bounds; were that package a dependency, it would take
 * this one's place in node.ts, given the same URLs.
 */
import type { Agent } from 'node:http';
import type { BlockBroker, BlockRetrievalOptions } from '@helia/interface';
import type { CID } from 'multiformats/cid';
import { httpGet, HttpError, keepAliveAgent, type Deadline } from '../fetch/http.ts';
import { IpfsError } from './errors.ts';
import type { CarBlock } from './car-fetch.ts';

/** A gateway's answers to a CAR request that say it serves none, or not this one: no failure of the gateway's. */
const NO_CAR = new Set([400, 404, 406, 410, 501]);

/** The largest block a gateway may send when Helia does not say (its own default). */
const MAX_BLOCK = 2 * 1024 * 1024;

export interface GatewayBrokerOptions {
  /** http(s) URLs of the gateways' roots */
  gateways: string[];
  /** a gateway silent this long has failed */
  idleMs: number;
  deadline: Deadline;
}

export class GatewayBroker implements BlockBroker {
  readonly name = 'trustless-gateway';
  /** every gateway, in the order given */
  private readonly known: string[] = [];
  /** in the order they are asked: a gateway that failed goes last */
  private readonly order: string[] = [];
  /** gateways that sent a block that was not the CID's: never asked again */
  private readonly liars = new Set<string>();
  private readonly opts: GatewayBrokerOptions;
  /** connections kept between requests, by protocol: a block a request, and a new connection for each cost more than the block */
  private readonly agents = new Map<string, Agent>();

  constructor(opts: GatewayBrokerOptions) {
    this.opts = opts;
    this.add(opts.gateways);
  }

  get gateways(): string[] {
    return [...this.known];
  }

  /** Asks these gateways too from now on; one it has already keeps its place. */
  add(urls: string[]): void {
    for (const u of urls) {
      let url: URL;
      try {
        url = new URL(u);
      } catch {
        throw new IpfsError(`${u}: not a gateway URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new IpfsError(`${u}: not an http(s) gateway URL`);
      const root = url.href.replace(/\/+$/, '');
      if (this.known.includes(root)) continue;
      this.known.push(root);
      this.order.push(root);
    }
  }

  async retrieve(cid: CID, options: BlockRetrievalOptions = {}): Promise<Uint8Array> {
    const maxBytes = options.maxSize ?? MAX_BLOCK;
    const failures: string[] = [];
    for (const gateway of [...this.order]) {
      if (this.liars.has(gateway)) continue;
      options.signal?.throwIfAborted();
      let block: Uint8Array;
      try {
        block = await this.fetchBlock(gateway, cid, maxBytes, options.signal);
      } catch (e) {
        if (options.signal?.aborted) throw e;
        failures.push(`${gateway}: ${(e as Error).message}`);
        if (!(e instanceof HttpError && (e.status === 404 || e.status === 410))) this.demote(gateway);
        continue;
      }
      if (options.validateFn) {
        try {
          await options.validateFn(block);
        } catch (e) {
          if (options.signal?.aborted) throw e;
          failures.push(`${gateway}: sent a block that is not ${cid}`);
          this.distrust(gateway, `a block that is not ${cid}`);
          continue;
        }
      }
      return block;
    }
    throw new IpfsError(`${cid}: no gateway has it (${failures.join('; ') || 'every gateway sent a wrong block earlier'})`);
  }

  /**
   * The blocks of the file or directory `root` as one CAR from the first
   * gateway that answers (car-fetch.ts checks each block), or null when
   * none does: then the blocks are asked for one at a time. `maxBytes`
   * bounds the CAR. A gateway is given half the idle time for it, so that
   * a silent one leaves the time to ask for the blocks otherwise; a
   * gateway that answers that it has no CAR (400, 404, 406, 410, 501) is
   * not held against it.
   */
  async car(root: CID, maxBytes: number, signal?: AbortSignal): Promise<{ gateway: string; blocks: AsyncIterable<CarBlock>; close: () => void } | null> {
    for (const gateway of [...this.order]) {
      if (this.liars.has(gateway)) continue;
      const url = new URL(`${gateway}/ipfs/${root}`);
      try {
        const got = await requestCar(url, root, {
          agent: this.agentFor(url),
          idleMs: Math.max(1, Math.floor(this.opts.idleMs / 2)),
          deadline: this.opts.deadline,
          maxBytes,
          signal,
        });
        return { gateway, ...got };
      } catch (e) {
        if (signal?.aborted) throw e;
        if (!(e instanceof HttpError && e.status !== null && NO_CAR.has(e.status))) this.demote(gateway);
      }
    }
    return null;
  }

  /** A gateway that sent `what` (a wrong block, a CAR of another root): warned of, and asked for nothing again by this process. */
  distrust(gateway: string, what: string): void {
    this.liars.add(gateway);
    process.stderr.write(`ipfs: warning: ${gateway} sent ${what}; not asking it again\n`);
  }

  /** A gateway that failed: asked after the others from now on. */
  demote(gateway: string): void {
    const i = this.order.indexOf(gateway);
    if (i >= 0) this.order.push(...this.order.splice(i, 1));
  }

  /** Helia stops its brokers when the node closes: the kept connections go with it */
  stop(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }

  private agentFor(url: URL): Agent {
    const protocol = url.protocol === 'https:' ? 'https:' : 'http:';
    let a = this.agents.get(protocol);
    if (!a) this.agents.set(protocol, (a = keepAliveAgent(protocol)));
    return a;
  }

  private async fetchBlock(gateway: string, cid: CID, maxBytes: number, signal?: AbortSignal): Promise<Uint8Array> {
    const url = new URL(`${gateway}/ipfs/${cid}?format=raw`);
    const got = await httpGet(url, {
      agent: this.agentFor(url),
      idleMs: this.opts.idleMs,
      deadline: this.opts.deadline,
      maxBytes,
      maxWhat: `the ${maxBytes} bytes a block may have`,
      headers: { accept: 'application/vnd.ipld.raw' },
      signal,
    });
    const parts: Buffer[] = [];
    for await (const chunk of got.body) parts.push(chunk);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}

/**
 * GET the CAR of the file or directory `url` names (`…/ipfs/{root}`)
 * (through `agent`, if given), as the trustless gateway specification asks for it:
 * its blocks as they come, each checked by car-fetch.ts, and a close that
 * gives up the transfer. An answer other than 200 is an HttpError.
 */
export async function requestCar(
  url: URL,
  root: CID,
  o: { agent?: Agent; idleMs: number; deadline: Deadline; maxBytes: number; maxRedirects?: number; signal?: AbortSignal },
): Promise<{ blocks: AsyncIterable<CarBlock>; close: () => void }> {
  const { carBlocks } = await import('./car-fetch.ts');
  url.search = '?format=car&dag-scope=entity';
  const got = await httpGet(url, {
    ...(o.agent ? { agent: o.agent } : {}),
    idleMs: o.idleMs,
    deadline: o.deadline,
    maxBytes: o.maxBytes,
    maxWhat: `the ${o.maxBytes} bytes the file's CAR may have`,
    headers: { accept: 'application/vnd.ipld.car; version=1; order=dfs; dups=y' },
    signal: o.signal,
    ...(o.maxRedirects !== undefined ? { maxRedirects: o.maxRedirects } : {}),
  });
  return { blocks: carBlocks(got.body, root), close: got.close };
}
