/**
 * The IPFS mirror as a fetch `Source`: for a distfile whose sha256 the
 * mirror database knows, the bytes of its CID, tried before the urls.
 *
 * The node is the costly part (a libp2p stack, a repo, dials), so it is
 * started only when a source is opened: a distfile already in the store, or
 * one no CID is recorded for, never starts it. Who passes the opener closes
 * the node (fetching.ts: when the package's fetches are over).
 *
 * Bitswap does not fail when no peer has a block, it waits; so a transfer
 * that brings no data for a while (none at first, or a peer gone in the
 * middle) is given up and the urls are tried. The mirror is not trusted:
 * the store checks the sha256 as for any source, and wrong bytes send the
 * fetch on to the urls too. No failure here is retried: the urls are the
 * better next try.
 */
import type { Distfile, Opened, Source } from '../fetch/fetch.ts';
import { SourceError } from '../fetch/fetch.ts';
import { formatBytes } from '../fetch/progress.ts';
import { MirrorDb, mirrorDbPath } from './db.ts';
import { settings } from '../settings.ts';

/** What the mirror needs of an IPFS node. */
export interface MirrorNode {
  /** The bytes of a UnixFS file; stops (throwing) when signal aborts or nothing arrives for timeoutMs. */
  cat(cid: string, opts: { signal: AbortSignal; timeoutMs: number }): AsyncIterable<Uint8Array>;
  /** The file's size, if the node can tell it cheaply. */
  size?(cid: string, opts: { signal: AbortSignal; timeoutMs: number }): Promise<number | undefined>;
  close(): Promise<void>;
}

export const DEFAULT_IDLE_MS = 30_000;

export interface IpfsMirrorOptions {
  /** the database file; read on the first lookup */
  dbFile: string;
  /** starts (or reaches) the node; called at most once */
  open: () => Promise<MirrorNode>;
  /** a transfer silent this long is given up */
  idleMs?: number;
}

/** The IPFS mirror of one run: lookups, and the node started on the first transfer (its opener closes it). */
export class IpfsMirror {
  readonly dbFile: string;
  private readonly openNode: () => Promise<MirrorNode>;
  private readonly idleMs: number;
  private db: MirrorDb | null = null;
  private node: Promise<MirrorNode> | null = null;

  constructor(opts: IpfsMirrorOptions) {
    this.dbFile = opts.dbFile;
    this.openNode = opts.open;
    this.idleMs = opts.idleMs ?? DEFAULT_IDLE_MS;
  }

  /** One source per CID recorded for the distfile's sha256; none when there is none. */
  sourcesFor = (want: Distfile): Source[] => {
    this.db ??= MirrorDb.load(this.dbFile);
    return this.db.lookup(want.sha256).map((r) => this.source(r.cid));
  };

  nodeNow(): Promise<MirrorNode> {
    this.node ??= this.openNode();
    return this.node;
  }

  private source(cid: string): Source {
    return {
      describe: () => `ipfs://${cid}`,
      open: () => this.openCid(cid),
    };
  }

  private async openCid(cid: string): Promise<Opened> {
    let node: MirrorNode;
    try {
      node = await this.nodeNow();
    } catch (e) {
      throw new SourceError(`the IPFS node did not start: ${(e as Error).message}`, false);
    }
    const idle = new Idle(this.idleMs);
    try {
      const opts = { signal: idle.signal, timeoutMs: this.idleMs };
      const size = node.size ? await idle.race(node.size(cid, opts), 0) : undefined;
      const it = node.cat(cid, opts)[Symbol.asyncIterator]();
      // the first bytes before the transfer is announced: a CID nobody has fails here
      const first = await idle.race(it.next(), 0);
      return { size, body: body(first, it, idle) };
    } catch (e) {
      idle.stop();
      throw asSourceError(e);
    }
  }
}

async function* body(first: IteratorResult<Uint8Array>, it: AsyncIterator<Uint8Array>, idle: Idle): AsyncIterable<Uint8Array> {
  let got = 0;
  try {
    for (let r = first; !r.done; r = await idle.race(it.next(), got)) {
      got += r.value.length;
      idle.reset();
      yield r.value;
    }
  } catch (e) {
    throw asSourceError(e, got);
  } finally {
    idle.stop();
    void it.return?.()?.catch(() => undefined);
  }
}

function asSourceError(e: unknown, got = 0): SourceError {
  if (e instanceof SourceError) return e;
  const why = (e as Error)?.message ?? String(e);
  if (!got) return new SourceError(why, false);
  // blocks stopped coming part-way: the peer that had the first ones is gone, or has no more
  const stalled = (e as Error)?.name === 'IpfsUnreachable';
  return new SourceError(stalled ? `stalled after ${formatBytes(got)} (the peer went away or lacks the rest): ${why}` : `failed after ${formatBytes(got)}: ${why}`, false);
}

const IDLE = new Error('no data in time');

/** A deadline that moves on with every chunk; what waits on it loses the race when it passes. */
class Idle {
  private readonly ms: number;
  private readonly ac = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private expired: Promise<never>;
  private fire: (e: Error) => void = () => {};

  constructor(ms: number) {
    this.ms = ms;
    this.expired = new Promise<never>((_, reject) => (this.fire = reject));
    this.expired.catch(() => undefined);
    this.reset();
  }

  get signal(): AbortSignal {
    return this.ac.signal;
  }

  reset(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fire(IDLE), this.ms);
  }

  stop(): void {
    clearTimeout(this.timer);
    if (!this.ac.signal.aborted) this.ac.abort();
  }

  /** p, or a SourceError saying how long nothing came, after `got` bytes. */
  async race<T>(p: Promise<T>, got: number): Promise<T> {
    try {
      return await Promise.race([p, this.expired]);
    } catch (e) {
      if (e !== IDLE) throw e;
      this.stop();
      const secs = `${this.ms / 1000} s`;
      throw new SourceError(
        got ? `stalled after ${formatBytes(got)}: no data for ${secs} (the peer went away or lacks the rest)` : `no data for ${secs}: no reachable peer has it`,
        false,
      );
    }
  }
}

export interface MirrorSetup {
  /** where the package's fetch file lies; its tree's mirrors/ipfs.csv is used */
  packageDir: string;
  open: () => Promise<MirrorNode>;
  env?: NodeJS.ProcessEnv;
}

/**
 * The IPFS mirror for a package's fetches, or null when there is none to
 * use: PKG_MIRROR_IPFS=no, or no database (no tree around the package and no
 * PKG_MIRROR_DB). A transfer silent for PKG_IPFS_TIMEOUT seconds (the
 * node's own bound on a block's wait) is given up.
 */
export function ipfsMirrorFor(setup: MirrorSetup): IpfsMirror | null {
  const env = setup.env ?? process.env;
  const s = settings(env);
  if (!s.mirrorIpfs) return null;
  const dbFile = mirrorDbPath(setup.packageDir, env);
  if (!dbFile) return null;
  return new IpfsMirror({ dbFile, open: setup.open, idleMs: s.ipfsTimeoutMs });
}
