/**
 * The IPFS API the rest of peerpkgs uses, and how to get one.
 *
 *   const ipfs = await openIpfs({ home });       // the daemon's, or a node of our own
 *   const cid = await ipfs.addFile('dir', { pin: true });
 *   for await (const chunk of ipfs.cat(`${cid}/sub/file`)) ...
 *   await ipfs.close();
 *
 * `openIpfs` talks to `peerpkgs ipfs daemon` over its unix socket
 * ($PEERPKGS_HOME/ipfs/api.sock) when one runs (and asks it to dial
 * PKG_IPFS_PEERS and to use PKG_IPFS_GATEWAYS), and otherwise starts a node in this process for as long
 * as the client is open, which dials PKG_IPFS_PEERS (and listens only if
 * PKG_IPFS_LISTEN is set). Either way the same interface, the same errors:
 *
 *   IpfsNotFound     the path is not in a directory that was reached
 *   IpfsUnreachable  blocks did not arrive from any connected peer in time
 *                    (timeoutMs, PKG_IPFS_TIMEOUT, 30 s by default: without
 *                    progress, not in total, so big files are not cut short)
 *   IpfsError        anything else (bad CID, not a file, a broken repo)
 *
 * A path is "CID", "CID/sub/path", or either after "/ipfs/". CIDs are
 * printed as kubo prints them: base58 for CIDv0, base32 for CIDv1; IPNS
 * names as CIDv1 libp2p-key in base36 (k51…).
 *
 * This module imports nothing heavy: Helia and libp2p are loaded by
 * node.ts, only when a node is started, so commands that never touch IPFS
 * do not pay for them.
 */
const fs = process.getBuiltinModule('node:fs');
import { ipfsPaths } from './config.ts';
import { UsageError } from '../errors.ts';

export interface AddOptions {
  /** 0 (kubo's default) or 1 */
  cidVersion?: 0 | 1;
  /** leaves as raw blocks; implied by cidVersion 1, as in kubo */
  rawLeaves?: boolean;
  /** pin the result (recursive) */
  pin?: boolean;
  /** include names starting with '.' in directories (kubo: --hidden) */
  hidden?: boolean;
  /** chunk size in bytes (kubo: --chunker size-N); 262144 by default */
  chunkSize?: number;
  /** a file's leaves stay in the file, referred to rather than copied (kubo: --nocopy; filestore.ts) */
  nocopy?: boolean;
}

export interface ReadOptions {
  signal?: AbortSignal;
  /** give up when no block has arrived for this long */
  timeoutMs?: number;
}

export interface Entry {
  name: string;
  cid: string;
  /** bytes of file content; 0 for a directory */
  size: number;
  type: 'file' | 'dir' | 'symlink';
  /** a symlink's target */
  target?: string;
}

export interface NodeId {
  peerId: string;
  /** listen addresses, each ending in /p2p/<peer id> */
  addrs: string[];
  /** peers connected now */
  peers: string[];
}

export interface PublishOptions {
  /** how long the record is valid; 48 h by default, as kubo */
  lifetimeMs?: number;
}

/** What a garbage collection of the blockstore found unpinned (and, unless a dry run, removed). */
export interface CollectedBlocks {
  /** each block no pin reaches: its CID (CIDv1, raw: the block's multihash), its file (or, `packed`, the pack that held it), the bytes it took */
  removed: Array<{ cid: string; file: string; bytes: number; packed?: boolean }>;
  /** blocks kept because a pin reaches them */
  kept: number;
}

export interface IpfsClient {
  /** a file or a directory (recursively, as `ipfs add -r`) → the CID kubo prints for it */
  addFile(path: string, opts?: AddOptions): Promise<string>;
  addBytes(data: AsyncIterable<Uint8Array> | Uint8Array, opts?: AddOptions): Promise<string>;
  /** the bytes of a file */
  cat(path: string, opts?: ReadOptions): AsyncIterable<Uint8Array>;
  /** what a path is */
  stat(path: string, opts?: ReadOptions): Promise<Entry>;
  /** a directory's entries, sorted by name */
  ls(path: string, opts?: ReadOptions): Promise<Entry[]>;
  /** pins a DAG (recursive), fetching what is missing */
  pin(cid: string, opts?: ReadOptions): Promise<void>;
  /** signs an IPNS record pointing at /ipfs/CID with the key NAME (made on first use) → the k51… name */
  publish(cid: string, keyName: string, opts?: PublishOptions): Promise<string>;
  /** an IPNS name (k51…, or /ipns/k51…) → the CID its record points at, validated against the name's key */
  resolve(name: string, opts?: ReadOptions): Promise<string>;
  /** dials peers (multiaddrs ending in /p2p/<id>); failures are returned, not thrown */
  connect(addrs: string[]): Promise<{ addr: string; error: string }[]>;
  /** fetches blocks from these trustless HTTP gateways too, from now on (gateway-broker.ts) */
  useGateways(urls: string[]): Promise<void>;
  /**
   * Removes every block that no pin reaches (dryRun: only says which). The
   * caller keeps writers away meanwhile (store/roots.ts's exclusively): a
   * block added and not yet pinned would go too.
   */
  collectGarbage(opts?: { dryRun?: boolean }): Promise<CollectedBlocks>;
  id(): Promise<NodeId>;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** $PEERPKGS_HOME */
  home: string;
  env?: NodeJS.ProcessEnv;
  /** 'auto' (default): the daemon if one answers, else a node of our own */
  use?: 'auto' | 'daemon' | 'local';
}

/** An IPFS client: through the running daemon if there is one, else an in-process node. */
export async function openIpfs(opts: OpenOptions): Promise<IpfsClient> {
  const env = opts.env ?? process.env;
  const use = opts.use ?? 'auto';
  const socket = ipfsPaths(opts.home).socket;
  if (use !== 'local' && fs.existsSync(socket)) {
    const { connectDaemon } = await import('./remote.ts');
    const client = await connectDaemon(socket);
    if (client) {
      // the daemon dials what this command was asked to dial, and asks its gateways
      const { nodeSettings } = await import('./config.ts');
      const { peers, gateways } = nodeSettings(env);
      if (peers.length) await client.connect(peers);
      if (gateways.length) await client.useGateways(gateways);
      return client;
    }
    // a stale socket: no daemon behind it; the next daemon replaces it
  }
  if (use === 'daemon') {
    const { IpfsError } = await import('./errors.ts');
    throw new IpfsError(`no IPFS daemon answers on ${socket} (start one: peerpkgs ipfs daemon)`);
  }
  const { startNode } = await import('./node.ts');
  return startNode({ home: opts.home, env });
}

/** Where an address points: an IPFS path (`ipfs`, root a CID) or one under an IPNS name (`ipns`). */
export interface IpfsAddress {
  scheme: 'ipfs' | 'ipns';
  /** the CID, or the IPNS name */
  root: string;
  /** the path under it, without leading or trailing slashes ('' for the root) */
  path: string;
}

/**
 * Every form of address the tool takes, in PKG_CACHE_URL and on the
 * command line alike: "CID[/PATH]", "/ipfs/CID[/PATH]", "ipfs://CID[/PATH]",
 * "/ipns/NAME[/PATH]", "ipns://NAME[/PATH]" (a URL's path %-decoded).
 */
export function parseIpfsAddress(address: string): IpfsAddress {
  const m = /^(?:(ipfs|ipns):\/\/|\/(ipfs|ipns)\/)?(.*)$/s.exec(address)!;
  const scheme = (m[1] ?? m[2] ?? 'ipfs') as 'ipfs' | 'ipns';
  const parts = (m[1] ? decodeOr(m[3]!) : m[3]!).split('/').filter(Boolean);
  const root = parts[0] ?? '';
  // "/x/..." is neither a bare CID nor under /ipfs/ or /ipns/
  if (!root || (!m[1] && !m[2] && address.startsWith('/'))) {
    throw new UsageError(`${address}: not an IPFS address (CID[/PATH], /ipfs/CID[/PATH], ipfs://CID[/PATH], /ipns/NAME[/PATH] or ipns://NAME[/PATH])`);
  }
  return { scheme, root, path: parts.slice(1).join('/') };
}

/** A URL's path %-decoded, or as written when it does not decode (a lone "%"). */
function decodeOr(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The IPFS path ("CID/a/b") an address names today: an IPNS name resolved (and checked against its key) first. */
export async function resolveAddress(ipfs: Pick<IpfsClient, 'resolve'>, address: string, opts?: ReadOptions): Promise<string> {
  const a = parseIpfsAddress(address);
  const cid = a.scheme === 'ipns' ? await ipfs.resolve(a.root, opts) : a.root;
  return a.path ? `${cid}/${a.path}` : cid;
}

/** An IPFS path ("CID/a/b", "/ipfs/CID/a/b", "ipfs://CID/a/b") → { cid: "CID", rest: "a/b" }; an IPNS one is resolveAddress's. */
export function splitPath(p: string): { cid: string; rest: string } {
  const a = parseIpfsAddress(p);
  if (a.scheme === 'ipns') throw new UsageError(`${p}: an IPNS name, to be resolved first`);
  return { cid: a.root, rest: a.path };
}
