/**
 * The IPFS node: Helia on a lean libp2p, with its state under
 * $PEERPKGS_HOME/ipfs, as an IpfsClient. Used in-process by a command when
 * no daemon runs, and by the daemon itself.
 *
 * The node is assembled from the parts it needs, not from createHelia's
 * defaults (which bring WebRTC, WebSockets, UPnP, AutoTLS, a DHT, HTTP
 * gateways and delegated routing, and take ~1 s to load): TCP, Noise,
 * Yamux, identify, bitswap for blocks and libp2p-fetch for IPNS records
 * (ipns-peers.ts). Peers are the ones named in PKG_IPFS_PEERS (or `ipfs
 * connect`) and those that dial us; bitswap asks every connected peer.
 * With PKG_IPFS_DHT the node also joins the Kademlia DHT (and its ping):
 * bitswap asks it for providers of a block no connected peer has, and a
 * daemon announces the roots it adds and pins. With PKG_IPFS_MDNS it
 * finds peers on the local network by multicast DNS, dials each it finds
 * (libp2p only files them away), and a node that listens answers others'
 * queries with its addresses. The gateways of PKG_IPFS_GATEWAYS, if any, are a
 * second source of blocks (gateway-broker.ts). A whole file is asked for
 * as one CAR, of a gateway or else of a connected peer that serves the
 * gateway over libp2p (the daemon does: http-p2p.ts), before bitswap asks
 * for what it did not bring. Only the Helia class is
 * loaded from the `helia` package, not its index, which would load all of
 * the above.
 *
 * State: blocks in packs (packs.ts; block files of blockstore-fs, one a
 * block, from before the packs are still read), the datastore (pins,
 * the keychain holding IPNS keys, IPNS records) in datastore-fs, the peer
 * identity as a protobuf private key in `identity` (0600), made on first
 * use. Blocks stay until `peerpkgs gc` (collectGarbage) removes those no
 * pin reaches.
 */
import type { Stats } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import type { Helia } from '@helia/interface';
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface';
import type * as Http from 'node:http';
import type { Fetch } from '@libp2p/fetch';
import type { IPNS } from '@helia/ipns';
import type { CID } from 'multiformats/cid';
import type { UnixFSEntry } from 'ipfs-unixfs-exporter';
import type { PBNode } from '@ipld/dag-pb';
import type { AddOptions, CollectedBlocks, Entry, IpfsClient, NodeId, PublishOptions, ReadOptions } from './client.ts';
import { splitPath } from './client.ts';
import { ipfsPaths, nodeSettings, type NodeSettings } from './config.ts';
import { settings as readSettings } from '../settings.ts';
import { IpfsError, IpfsNotFound, IpfsUnreachable } from './errors.ts';
import { addBytes, addPath, toEntry } from './unixfs.ts';
import { listBlockFiles, withPacks } from './blockfiles.ts';
import { BlockPacks } from './packs.ts';
import { Filestore } from './filestore.ts';
import { frame, type LeafPlace } from './leaves.ts';
import { RAW } from './codes.ts';
import { noiseCrypto } from './noise-crypto.ts';
import { fileContent, wholeBlock } from './file-content.ts';
import { recordBitswapMatches, sha256HashedOnce } from './hashed-once.ts';
import type { GatewayBroker } from './gateway-broker.ts';
import type { CarBlock, CarPrefetch } from './car-fetch.ts';
import { temporaryName, removeTemporaryFile } from '../archive/temporary.ts';

const VERSION = '0.1.0';
const DEFAULT_LIFETIME_MS = 48 * 3600_000;
/** how long a daemon leaves a peer's gateway that failed before asking it again */
const GATEWAY_RETRY_MS = 10 * 60_000;

type Node = Libp2p<{ fetch: Fetch; identify: unknown }>;

export interface StartOptions {
  home: string;
  env?: NodeJS.ProcessEnv;
  /**
   * A node that serves (the daemon): it listens (PKG_IPFS_LISTEN, or
   * loopback on any port), serves IPNS records and republishes its own.
   * A command's node only dials out, unless PKG_IPFS_LISTEN is set: nobody
   * could know its address, and a listener would hold the process ~1 s
   * past its end (libp2p's address manager debounces its close).
   */
  serve?: boolean;
  /** overrides PKG_IPFS_LISTEN */
  listen?: string[];
  /** addresses peers are told besides the listen addresses: the /http ones of the daemon's gateway */
  announce?: string[];
}

/** The private key in `file`, made (and written, 0600) on first use; two processes starting at once agree on one. */
async function loadIdentity(file: string): Promise<PrivateKey> {
  const { keys } = await import('./deps-node.ts');
  try {
    return keys.privateKeyFromProtobuf(fs.readFileSync(file));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new IpfsError(`${file}: not a private key (${(e as Error).message}); remove it to make a new identity`);
  }
  const key = await keys.generateKeyPair('Ed25519');
  const tmp = temporaryName(file);
  fs.writeFileSync(tmp, keys.privateKeyToProtobuf(key), { mode: 0o600, flush: true });
  try {
    fs.linkSync(tmp, file); // never replaces one another process made meanwhile
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return keys.privateKeyFromProtobuf(fs.readFileSync(file));
  } finally {
    removeTemporaryFile(tmp);
  }
  return key;
}

/** An abort signal that fires when nothing has happened for `ms` (kick() says something did). */
class Watchdog {
  readonly signal: AbortSignal;
  timedOut = false;
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout;
  private readonly ms: number;

  constructor(ms: number, parent?: AbortSignal) {
    this.ms = ms;
    this.signal = parent ? AbortSignal.any([this.controller.signal, parent]) : this.controller.signal;
    this.timer = this.arm();
  }

  private arm(): NodeJS.Timeout {
    return setTimeout(() => {
      this.timedOut = true;
      this.controller.abort(new Error('timed out'));
    }, this.ms);
  }

  kick(): void {
    clearTimeout(this.timer);
    this.timer = this.arm();
  }

  done(): void {
    clearTimeout(this.timer);
  }
}

function isNotFound(e: unknown): boolean {
  const name = (e as Error)?.name;
  return name === 'NotFoundError' || name === 'BadPathError';
}

export class LocalNode implements IpfsClient {
  readonly helia: Helia & { libp2p: Node };
  readonly libp2p: Node;
  private readonly settings: NodeSettings;
  private readonly mods: Mods;
  private ipnsApi: IPNS | null = null;
  private readonly republish: boolean;
  private closed = false;
  /** where blocks go, added or fetched (packs.ts) */
  private readonly packs: BlockPacks;
  /** block files of before the packs, still read and collected */
  private readonly blocksDir: string;
  /** the blocks this node holds, never asked of the network: what its gateway serves (gateway.ts) */
  readonly localBlocks: LocalBlocks;
  /** blocks from HTTP gateways, once there is one to ask */
  private gatewayBroker: GatewayBroker | null = null;

  /** where the leaves of files added with nocopy are */
  private readonly filestore: Filestore;

  constructor(
    helia: Helia & { libp2p: Node },
    settings: NodeSettings,
    mods: Mods,
    republish: boolean,
    blocksDir: string,
    packs: BlockPacks,
    localBlocks: LocalBlocks,
    filestore: Filestore,
  ) {
    this.helia = helia;
    this.filestore = filestore;
    this.localBlocks = localBlocks;
    this.packs = packs;
    this.blocksDir = blocksDir;
    this.libp2p = helia.libp2p;
    this.settings = settings;
    this.mods = mods;
    this.republish = republish;
  }

  private cid(s: string): CID {
    try {
      return this.mods.CID.parse(s);
    } catch {
      throw new IpfsError(`${s || '(empty)'}: not a CID`);
    }
  }

  private peerList(): string {
    const peers = this.libp2p.getConnections().map((c) => c.remotePeer.toString());
    const gateways = this.gatewayBroker ? `; gateways: ${this.gatewayBroker.gateways.join(' ')}` : '';
    return (peers.length ? [...new Set(peers)].join(' ') : 'none connected; name some in PKG_IPFS_PEERS') + gateways;
  }

  private unreachable(what: string, ms: number): IpfsUnreachable {
    const where = this.gatewayBroker ? 'connected peer or gateway' : 'connected peer';
    return new IpfsUnreachable(`could not find ${what} on any ${where} within ${Math.round(ms / 100) / 10} s (peers: ${this.peerList()})`);
  }

  /** what an error during a read means, for `p` */
  private readError(e: unknown, p: string, wd: Watchdog, ms: number): Error {
    if (e instanceof IpfsError) return e;
    if (wd.timedOut) return this.unreachable(p, ms);
    if (isNotFound(e)) return new IpfsNotFound(`${p}: no such file or directory`);
    if ((e as Error)?.name === 'AbortError') return new IpfsError(`${p}: interrupted`);
    return new IpfsError(`${p}: ${(e as Error)?.message ?? String(e)}`);
  }

  private async entry(p: string, wd: Watchdog, ms: number): Promise<UnixFSEntry> {
    const { cid, rest } = splitPath(p);
    const root = this.cid(cid);
    try {
      return await this.mods.exporter.exporter(rest ? `${root}/${rest}` : root, this.helia.blockstore, { signal: wd.signal });
    } catch (e) {
      throw this.readError(e, p, wd, ms);
    }
  }

  async addFile(file: string, opts: AddOptions = {}): Promise<string> {
    const cid = await addToRepo(file, opts, this.packs, this.filestore);
    if (opts.pin) await this.pin(cid);
    else await this.announce(cid);
    return cid;
  }

  async addBytes(data: AsyncIterable<Uint8Array> | Uint8Array, opts: AddOptions = {}): Promise<string> {
    const cid = await addBytes(data, this.packs, opts);
    if (opts.pin) await this.pin(cid);
    else await this.announce(cid);
    return cid;
  }

  /**
   * Tells the DHT that this node has the DAG under `cid`, when it serves
   * (a node that does not listen could not be dialled). The root alone:
   * bitswap asks a provider it found for the root for the rest; the DHT
   * reprovides what was announced. With no DHT peer yet there is nobody to
   * tell, and asking would wait out the timeout: `ipfs pin CID` announces
   * it again once there is one.
   */
  private async announce(cid: string): Promise<void> {
    if (!this.settings.dht || !this.republish) return;
    const dht = (this.libp2p.services as { dht?: { routingTable: { size: number } } }).dht;
    if (!dht?.routingTable.size) return;
    try {
      await this.helia.routing.provide(this.cid(cid), { signal: AbortSignal.timeout(this.settings.timeoutMs) });
    } catch (e) {
      process.stderr.write(`ipfs: warning: could not announce ${cid} on the DHT: ${(e as Error).message}\n`);
    }
  }

  async *cat(p: string, opts: ReadOptions = {}): AsyncIterable<Uint8Array> {
    const ms = opts.timeoutMs ?? this.settings.timeoutMs;
    const wd = new Watchdog(ms, opts.signal);
    let car: CarPrefetch | null = null;
    try {
      const e = await this.entry(p, wd, ms);
      if (e.type === 'directory') throw new IpfsError(`${p}: is a directory`);
      if (e.type === 'object') throw new IpfsError(`${p}: not a UnixFS file`);
      try {
        // blocks asked for ahead of the one being read: the sender reads all it
        // was asked for before sending any, so a long want-list waits longer;
        // and the more are asked for, the bigger the messages that carry them
        // and the more memory they hold (256 MB over bitswap: a peak RSS of
        // 181 MB with 16, 140 MB with 8, at the same speed; 4 was slower)
        const opts = { signal: wd.signal, window: 8 };
        const plainFile = e.type === 'raw' || (e.type === 'file' && (e.unixfs.type === 'file' || e.unixfs.type === 'raw'));
        if (plainFile && e.type === 'file') car = await this.carFor(e.cid, e.node.Links[0]?.Hash, Number(e.size), wd.signal);
        const get = async (cid: CID, signal?: AbortSignal): Promise<Uint8Array> => {
          const fromCar = await car?.get(cid);
          if (!fromCar) return wholeBlock(this.helia.blockstore.get(cid, { signal }));
          await this.helia.blockstore.put(cid, fromCar, { signal });
          return fromCar;
        };
        const content = plainFile ? fileContent(this.mods, e.node as PBNode | Uint8Array, get, opts) : e.content({ signal: wd.signal, blockReadConcurrency: opts.window });
        for await (const chunk of content) {
          wd.kick();
          yield chunk;
        }
      } catch (err) {
        throw this.readError(err, p, wd, ms);
      }
    } finally {
      await car?.close();
      wd.done();
    }
  }

  /**
   * The file's blocks in one CAR, when its first block is not here
   * already: from a gateway, else from a connected peer that serves the
   * gateway over libp2p (http-p2p.ts); null when none does, and the blocks
   * are asked for one at a time. `size` is the file's: the CAR may hold a
   * tenth more (the interior nodes, a CID before each block) and a MiB.
   */
  private async carFor(root: CID, first: CID | undefined, size: number, signal: AbortSignal): Promise<CarPrefetch | null> {
    if (!first || (await this.localBlocks.has(first))) return null;
    const maxBytes = Math.ceil(size * 1.1) + 2 ** 20;
    const broker = this.gatewayBroker;
    const fromGateway = await broker?.car(root, maxBytes, signal);
    const opened = fromGateway ? { source: fromGateway.gateway, ...fromGateway } : await this.peerCar(root, maxBytes, signal);
    if (!opened) return null;
    const { CarPrefetch } = await import('./car-fetch.ts');
    const { source } = opened;
    return new CarPrefetch(opened.blocks, {
      // the window's blocks and as many more: a leaf is 256 KiB
      ahead: 16 * 256 * 1024,
      stop: opened.close,
      events: {
        wrong: (what) => (fromGateway ? broker!.distrust(source, what) : this.distrustPeer(source, what)),
        failed: (why) => {
          if (fromGateway) broker!.demote(source);
          process.stderr.write(`ipfs: warning: ${source}: the CAR of ${root} broke off (${why}); the rest comes a block at a time\n`);
        },
      },
    });
  }

  /** gateways peers announce that failed, and when: their peers are asked over libp2p for a while (GATEWAY_RETRY_MS) */
  private readonly failedGateways = new Map<string, number>();

  /** peers that sent a block that was not its CID's in a CAR: not asked for a CAR again */
  private readonly carLiars = new Set<string>();

  private distrustPeer(peer: string, what: string): void {
    this.carLiars.add(peer);
    process.stderr.write(`ipfs: warning: ${peer} sent ${what}; not asking it for a CAR again\n`);
  }

  /**
   * The gateway `peer` announces (an /http multiaddr, gateway.ts) on an
   * address this node has a connection to it on, as http://HOST:PORT;
   * undefined when it announces none there. One on another host is not
   * taken: a peer could name any host, and send this node's requests there.
   */
  private async peerGateway(peer: PeerId): Promise<string | undefined> {
    const hostOf = (a: string) => /^\/ip[46]\/([^/]+)\//.exec(a)?.[1];
    const hosts = new Set(this.libp2p.getConnections(peer).map((c) => hostOf(c.remoteAddr.toString())));
    const announced = await this.libp2p.peerStore.get(peer).then(
      (p) => p.addresses.map((a) => a.multiaddr.toString()),
      () => [] as string[],
    );
    for (const a of announced) {
      const m = /^\/(ip4|ip6)\/([^/]+)\/tcp\/(\d+)\/http(?:\/p2p\/[^/]+)?$/.exec(a);
      if (m && hosts.has(m[2])) return `http://${m[1] === 'ip6' ? `[${m[2]}]` : m[2]}:${m[3]}`;
    }
    return undefined;
  }

  /**
   * The CAR of `root` from the first connected peer that serves the
   * gateway and has it: from the gateway it announces on its own address
   * (PKG_IPFS_PEER_GATEWAYS), else over libp2p; null when none does. A
   * peer that lacks the root answers 404 at once; one that fails is passed
   * over. Over plain HTTP the bytes go as through any gateway, with no
   * libp2p framing or encryption to pay for (a 256 MB file: 1.0-1.6
   * CPU-seconds less for the reader, README ¹⁷); every block is checked
   * against its CID either way.
   */
  private async peerCar(root: CID, maxBytes: number, signal: AbortSignal): Promise<{ source: string; blocks: AsyncIterable<CarBlock>; close: () => void } | null> {
    const peers = [...new Map(this.libp2p.getConnections().map((c) => [c.remotePeer.toString(), c.remotePeer])).values()];
    if (!peers.length) return null;
    const [http, { requestCar }] = await Promise.all([import('./http-p2p.ts'), import('./gateway-broker.ts')]);
    for (const peer of peers) {
      const name = `peer ${peer}`;
      if (this.carLiars.has(name)) continue;
      const protocols = await this.libp2p.peerStore.get(peer).then(
        (p) => p.protocols,
        () => [] as string[],
      );
      const ask = (url: string, agent?: Http.Agent) =>
        requestCar(new URL(`${url}/ipfs/${root}`), root, {
          ...(agent ? { agent } : {}),
          idleMs: Math.max(1, Math.floor(this.settings.timeoutMs / 2)),
          deadline: this.settings.gatewayDeadline,
          maxBytes,
          // a peer answers for itself: its redirect would send this node to any host it names
          maxRedirects: 0,
          signal,
        });
      const direct = this.settings.peerGateways ? await this.peerGateway(peer) : undefined;
      const failedAt = direct ? this.failedGateways.get(direct) : undefined;
      if (direct && (failedAt === undefined || Date.now() - failedAt >= GATEWAY_RETRY_MS)) {
        try {
          return { source: name, ...(await ask(direct)) };
        } catch (e) {
          if (signal.aborted) throw e;
          // it has not got the file: nor has the peer
          if ((e as { status?: number }).status === 404) continue;
          this.failedGateways.set(direct, Date.now());
          process.stderr.write(`ipfs: warning: ${name}: its gateway ${direct}: ${(e as Error).message}; asking over libp2p\n`);
        }
      }
      // none known yet: identify has not answered, and a dial of the protocol says soon enough
      if (protocols.length && !protocols.includes(http.HTTP_PROTOCOL)) continue;
      const agent = http.streamAgent((s) => this.libp2p.dialProtocol(peer, http.HTTP_PROTOCOL, { signal: AbortSignal.any([s, signal]) }));
      try {
        return { source: name, ...(await ask('http://libp2p.invalid', agent)) };
      } catch (e) {
        if (signal.aborted) throw e;
      }
    }
    return null;
  }

  async stat(p: string, opts: ReadOptions = {}): Promise<Entry> {
    const ms = opts.timeoutMs ?? this.settings.timeoutMs;
    const wd = new Watchdog(ms, opts.signal);
    try {
      return toEntry(await this.entry(p, wd, ms));
    } finally {
      wd.done();
    }
  }

  async ls(p: string, opts: ReadOptions = {}): Promise<Entry[]> {
    const ms = opts.timeoutMs ?? this.settings.timeoutMs;
    const wd = new Watchdog(ms, opts.signal);
    try {
      const dir = await this.entry(p, wd, ms);
      if (dir.type !== 'directory') throw new IpfsError(`${p}: not a directory`);
      const out: Entry[] = [];
      try {
        const children = [];
        for await (const c of dir.entries({ signal: wd.signal })) {
          wd.kick();
          children.push(c);
        }
        // the type of a dag-pb child is in its own block; a raw one is a file
        for (let i = 0; i < children.length; i += 32) {
          const batch = await Promise.all(
            children.slice(i, i + 32).map(async (c) => {
              if (c.cid.code === RAW) return { name: c.name, cid: c.cid.toString(), size: Number(c.size), type: 'file' as const };
              const e = await this.mods.exporter.exporter(c.cid, this.helia.blockstore, { signal: wd.signal });
              wd.kick();
              return { ...toEntry(e), name: c.name };
            }),
          );
          out.push(...batch);
        }
      } catch (err) {
        throw this.readError(err, p, wd, ms);
      }
      return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } finally {
      wd.done();
    }
  }

  async pin(cidStr: string, opts: ReadOptions = {}): Promise<void> {
    const { cid: root, rest } = splitPath(cidStr);
    // a path under the root pins what it names, not the whole root
    const cid = this.cid(rest ? (await this.stat(cidStr, opts)).cid : root);
    if (await this.helia.pins.isPinned(cid)) return this.announce(cid.toString());
    const ms = opts.timeoutMs ?? this.settings.timeoutMs;
    const wd = new Watchdog(ms, opts.signal);
    try {
      for await (const _ of this.helia.pins.add(cid, { signal: wd.signal })) wd.kick();
    } catch (e) {
      if ((e as Error)?.name === 'AlreadyPinnedError') return this.announce(cid.toString());
      throw this.readError(e, cidStr, wd, ms);
    } finally {
      wd.done();
    }
    await this.announce(cid.toString());
  }

  private async ipns(): Promise<IPNS> {
    if (this.ipnsApi) return this.ipnsApi;
    const [{ ipns, Key }, { PeerIpnsRouting }, { base32 }] = await Promise.all([import('./deps-more.ts'), import('./ipns-peers.ts'), import('./deps-dag.ts')]);
    const routing = new PeerIpnsRouting({ libp2p: this.libp2p, datastore: this.helia.datastore, keychain: this.helia.keychain, ipns, Key, base32 });
    this.ipnsApi = ipns.ipns(this.helia, { routers: [routing] });
    return this.ipnsApi;
  }

  /** Serve IPNS records to peers (and republish ours) from now on. */
  async serveIpns(): Promise<void> {
    const api = await this.ipns();
    if (this.republish) (api as unknown as { start(): void }).start();
  }

  async publish(cidStr: string, keyName: string, opts: PublishOptions = {}): Promise<string> {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(keyName)) throw new IpfsError(`${keyName}: not a key name (letters, digits, '.', '_', '-')`);
    const cid = this.cid(splitPath(cidStr).cid);
    const api = await this.ipns();
    const r = await api.publish(keyName, cid, { lifetime: opts.lifetimeMs ?? DEFAULT_LIFETIME_MS });
    const { base36 } = await import('./deps-dag.ts');
    return r.publicKey.toCID().toString(base36);
  }

  async resolve(name: string, opts: ReadOptions = {}): Promise<string> {
    const n = name.replace(/^\/ipns\//, '').replace(/\/.*$/, '');
    let key: CID;
    try {
      const { base36 } = await import('./deps-dag.ts');
      key = this.mods.CID.parse(n, n.startsWith('k') ? base36 : undefined);
    } catch {
      throw new IpfsError(`${name}: not an IPNS name (k51…)`);
    }
    const api = await this.ipns();
    const ms = opts.timeoutMs ?? this.settings.timeoutMs;
    const signal = opts.signal ? AbortSignal.any([opts.signal, AbortSignal.timeout(ms)]) : AbortSignal.timeout(ms);
    let value: string | null = null;
    try {
      for await (const r of api.resolve(key, { signal, nocache: true })) value = r.value;
    } catch (e) {
      const err = e as Error;
      if (err.name === 'RecordsFailedValidationError') {
        throw new IpfsError(`${name}: refused the record a peer sent: it is not validly signed by the name's key, or it has expired`);
      }
      if (err.name === 'RecordNotFoundError') throw new IpfsUnreachable(`${name}: no record for this name on any connected peer (peers: ${this.peerList()})`);
      if (signal.aborted) throw new IpfsUnreachable(`${name}: no record within ${ms / 1000} s (peers: ${this.peerList()})`);
      throw new IpfsError(`${name}: ${err.message}`);
    }
    if (!value?.startsWith('/ipfs/')) throw new IpfsError(`${name}: the record points at ${value ?? 'nothing'}, not /ipfs/CID`);
    return value.slice('/ipfs/'.length).replace(/\/$/, '');
  }

  async connect(addrs: string[]): Promise<{ addr: string; error: string }[]> {
    const failed: { addr: string; error: string }[] = [];
    await Promise.all(
      addrs.map(async (a) => {
        try {
          const ma = this.mods.multiaddr(a);
          const id = ma.getComponents().findLast((c) => c.name === 'p2p')?.value;
          if (id) {
            // the connection manager redials a peer tagged keep-alive when it goes
            const peerId = this.mods.peerIdFromString(id);
            if (!peerId.equals(this.libp2p.peerId)) await this.libp2p.peerStore.merge(peerId, { multiaddrs: [ma], tags: { 'keep-alive': { value: 50 } } });
            else return;
          }
          await this.libp2p.dial(ma, { signal: AbortSignal.timeout(10_000) });
        } catch (e) {
          failed.push({ addr: a, error: (e as Error).message });
        }
      }),
    );
    return failed;
  }

  async useGateways(urls: string[]): Promise<void> {
    if (!urls.length) return;
    if (this.gatewayBroker) return this.gatewayBroker.add(urls);
    const { GatewayBroker } = await import('./gateway-broker.ts');
    // Helia's storage shares its list of brokers: one added now is asked for the next block
    const broker = new GatewayBroker({ gateways: urls, idleMs: this.settings.timeoutMs, deadline: this.settings.gatewayDeadline });
    this.helia.addBlockBroker(broker);
    this.gatewayBroker = broker;
  }

  async collectGarbage(opts: { dryRun?: boolean } = {}): Promise<CollectedBlocks> {
    const { CID, digest } = this.mods;
    const removed: CollectedBlocks['removed'] = [];
    let kept = 0;
    // a pin is kept by multihash: the codec of the CID asked with does not matter
    const cidOf = (multihash: Uint8Array) => CID.createV1(RAW, digest.decode(multihash));
    const keep = async (multihash: Uint8Array) => {
      const pinned = await this.helia.pins.isPinned(cidOf(multihash));
      if (pinned) kept++;
      return pinned;
    };
    // Helia's own lock against its gc: its puts (blocks arriving from peers) wait meanwhile
    const release = await (this.helia.blockstore as unknown as { lock: { writeLock(): Promise<() => void> } }).lock.writeLock();
    try {
      for (const b of listBlockFiles(this.blocksDir, this.mods.base32upper)) {
        if (await keep(b.multihash)) continue;
        if (!opts.dryRun) fs.rmSync(b.file, { force: true });
        removed.push({ cid: cidOf(b.multihash).toString(), file: b.file, bytes: b.diskBytes });
      }
      for (const b of await this.packs.rewrite(keep, opts.dryRun)) removed.push({ cid: cidOf(b.multihash).toString(), file: b.file, bytes: b.bytes, packed: true });
    } finally {
      release();
    }
    return { removed, kept };
  }

  async id(): Promise<NodeId> {
    const peerId = this.libp2p.peerId.toString();
    return {
      peerId,
      addrs: this.libp2p.getMultiaddrs().map((a) => a.toString()),
      peers: [...new Set(this.libp2p.getConnections().map((c) => c.remoteAddr.toString()))],
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.helia.stop();
    await this.libp2p.stop();
    await this.packs.close();
  }
}

/** Adds a file or directory into the repo's blocks, or with nocopy a file's leaves into the filestore: what add does, node or not. */
async function addToRepo(file: string, opts: AddOptions, packs: BlockPacks, filestore: Filestore): Promise<string> {
  if (!opts.nocopy) return addPath(file, packs, opts);
  let st: Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new IpfsError(`${file}: ${(e as Error).message}`);
  }
  if (!st.isFile()) throw new IpfsError(`${file}: --nocopy adds a file, not a directory`);
  // the blocks above the leaves are written; the leaves' places are recorded
  const leaves: Parameters<Filestore['record']>[2] = [];
  const store = {
    put: (cid: CID, bytes: Uint8Array) => packs.put(cid, bytes),
    putParts: (cid: CID, _parts: Uint8Array[], place: LeafPlace) => void leaves.push({ cid, ...place }),
  };
  const root = await addPath(file, store, opts);
  filestore.record(root, file, leaves);
  return root;
}

/**
 * `ipfs add` without a node, when no daemon runs and nothing is to be
 * pinned: the same blocks and filestore records a node's add makes (a
 * command's node announces nothing), without starting libp2p and Helia,
 * which took longer than adding 64 MB.
 */
export async function addWithoutNode(home: string, file: string, opts: AddOptions): Promise<string> {
  if (opts.pin) throw new IpfsError('pinning needs a node');
  const { dagPb, base32upper } = await import('./deps-dag.ts');
  const paths = ipfsPaths(home);
  const filestore = new Filestore(paths.filestore, base32upper, (n) => frame({ dagPb }, n));
  const packs = new BlockPacks(paths.packs);
  try {
    return await addToRepo(file, opts, packs, filestore);
  } finally {
    await packs.close();
  }
}

/** The node's own blockstore, below Helia: a get never goes to the network. */
export interface LocalBlocks {
  has(cid: CID): Promise<boolean>;
  get(cid: CID, opts?: { signal?: AbortSignal }): AsyncIterable<Uint8Array>;
}

interface Mods {
  CID: typeof import('multiformats/cid').CID;
  exporter: typeof import('ipfs-unixfs-exporter');
  multiaddr: typeof import('@multiformats/multiaddr').multiaddr;
  peerIdFromString: typeof import('@libp2p/peer-id').peerIdFromString;
  base32upper: typeof import('multiformats/bases/base32').base32upper;
  dagPb: typeof import('@ipld/dag-pb');
  UnixFS: typeof import('ipfs-unixfs').UnixFS;
  digest: typeof import('multiformats/hashes/digest');
}

/** The Kademlia DHT and the ping service it needs; a node that does not listen only asks (client mode). */
async function dhtServices(clientMode: boolean): Promise<Record<string, unknown>> {
  const { kadDHT, passthroughMapper, ping } = await import('./deps-more.ts');
  return {
    ping: ping(),
    // private and loopback addresses kept: the peers of PKG_IPFS_PEERS are often on a LAN.
    // Every query waits for the node's first self-query, which the DHT starts a
    // second after the node by default: a command that looks a file up paid that
    // second for nothing (a get from two hops away 1.43 s, 0.50 s without the
    // wait, 0.42 s from the holder named). Started at once, the self-query still
    // waits for a first peer in the routing table, as the DHT's queries do.
    dht: kadDHT({ protocol: '/ipfs/kad/1.0.0', clientMode, peerInfoMapper: passthroughMapper, initialQuerySelfInterval: 0 }),
  };
}

/**
 * Dials each peer mDNS finds: libp2p only files a discovered peer away, and
 * bitswap asks connected peers alone. A peer already connected is left be;
 * one that cannot be dialled (an address of another host's loopback, a
 * node gone) is not worth a warning: it answered a broadcast, nobody named it.
 */
function dialWhatMdnsFinds(libp2p: Node): void {
  const mdns = (libp2p.services as { mdns?: EventTarget }).mdns;
  mdns?.addEventListener('peer', (evt) => {
    const peer = (evt as CustomEvent<import('@libp2p/interface').PeerInfo>).detail;
    if (peer.id.equals(libp2p.peerId) || libp2p.getConnections(peer.id).length || !peer.multiaddrs.length) return;
    // its addresses as it gave them: libp2p may not have filed them yet
    const addrs = peer.multiaddrs.map((a) => a.encapsulate(`/p2p/${peer.id.toString()}`));
    libp2p.dial(addrs, { signal: AbortSignal.timeout(10_000) }).catch(() => {});
  });
}

/** libp2p's content routing (the DHT) as a Helia router. */
function dhtRouter(libp2p: Node) {
  return {
    name: 'kad-dht',
    provide: (cid: CID, o?: { signal?: AbortSignal }) => libp2p.contentRouting.provide(cid, o),
    async *findProviders(cid: CID, o?: { signal?: AbortSignal }) {
      for await (const p of libp2p.contentRouting.findProviders(cid, o)) yield { id: p.id.toCID(), multiaddrs: p.multiaddrs, routing: 'kad-dht' };
    },
  };
}

/** Starts a node on the repo under `home`, dialling PKG_IPFS_PEERS; failed dials are warnings on stderr. */
export async function startNode(opts: StartOptions): Promise<LocalNode> {
  // the heap sizes fit for moving blocks are given on the command line by
  // bin/peerpkgs (V8 ignores them once running)
  const env = opts.env ?? process.env;
  const settings = nodeSettings(env);
  if (opts.listen) settings.listen = opts.listen;
  else if (!opts.serve && readSettings(env).ipfsListen === undefined) settings.listen = [];
  const paths = ipfsPaths(opts.home);
  fs.mkdirSync(paths.dir, { recursive: true });
  const [
    { createLibp2p, tcp, noise, defaultCrypto, yamux, identify, fetch, withBitswap, FsBlockstore, FsDatastore, Helia: HeliaClass, exporter, multiaddr, peerIdFromString },
    { CID, base32upper, dagPb, UnixFS, sha256, Digest: digest },
  ] = await Promise.all([import('./deps-node.ts'), import('./deps-dag.ts')]);
  const privateKey = await loadIdentity(paths.identity);
  const filestore = new Filestore(paths.filestore, base32upper, (n) => frame({ dagPb }, n));
  const packs = new BlockPacks(paths.packs);
  const blockstore = withPacks(new FsBlockstore(paths.blocks), packs, paths.blocks, base32upper, filestore);
  const datastore = new FsDatastore(paths.datastore);
  await blockstore.open();
  await datastore.open();
  const services: Record<string, unknown> = { identify: identify(), fetch: fetch() };
  if (settings.dht) Object.assign(services, await dhtServices(settings.listen.length === 0));
  // on the standard service name (_p2p._udp.local), so kubo's nodes on the LAN are found and find us
  if (settings.mdns) services.mdns = (await import('./deps-more.ts')).mdns();
  let libp2p: Node;
  try {
    libp2p = (await createLibp2p({
      privateKey,
      addresses: { listen: settings.listen, appendAnnounce: opts.announce ?? [] },
      transports: [tcp()],
      connectionEncrypters: [noise({ crypto: noiseCrypto(defaultCrypto) })],
      // a stream's receive window at most 4 MiB, not Yamux's 16: what a paused
      // reader holds is what was granted, so a CAR read over libp2p
      // (http-p2p.ts) held 32 MiB and peaked at 185 MB RSS (256 MB file);
      // 4 MiB: 146-150 MB and no slower on loopback (2.8 s against 3.0-3.5 s).
      // At 4 MiB a round trip, a 50 ms link still carries 80 MB/s a stream.
      streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: 4 * 2 ** 20 } })],
      services: services as never,
      start: false,
    })) as unknown as Node;
    dialWhatMdnsFinds(libp2p); // before starting: the first query goes out at once
    await libp2p.start();
  } catch (e) {
    throw new IpfsError(`could not start the IPFS node on ${settings.listen.join(' ')}: ${(e as Error).message} (set PKG_IPFS_LISTEN)`);
  }
  // bitswap asks the routers for providers of a block no connected peer has, and dials them
  const routers = settings.dht ? [dhtRouter(libp2p)] : [];
  const hashers = [sha256HashedOnce(sha256)];
  const helia = new (HeliaClass as unknown as new (init: object) => Helia)({
    name: 'peerpkgs',
    version: VERSION,
    blockstore,
    datastore,
    routers,
    hashers,
    components: { libp2p },
  }) as Helia & { libp2p: Node };
  Object.defineProperty(helia, 'libp2p', { value: libp2p, enumerable: true });
  // bitswap's and yamux's defaults: message sizes (1-4 MB), want-list
  // depths (16-128), send concurrency, want debounce and larger yamux
  // windows all measured the same on loopback once the node stopped
  // spending its time collecting garbage (test/bench/ipfs.ts)
  withBitswap(helia as never, {});
  await helia.start();
  recordBitswapMatches((helia as unknown as { blockBrokers: Parameters<typeof recordBitswapMatches>[0] }).blockBrokers);
  const node = new LocalNode(
    helia,
    settings,
    { CID, exporter, multiaddr, peerIdFromString, base32upper, dagPb, UnixFS, digest },
    opts.serve ?? false,
    paths.blocks,
    packs,
    blockstore,
    filestore,
  );
  await node.useGateways(settings.gateways);
  if (opts.serve) {
    await node.serveIpns();
    // the gateway to every connected peer, over libp2p: a file in one CAR rather than block by block (http-p2p.ts)
    const [{ gatewayServer }, { HTTP_PROTOCOL, serveOverStreams }] = await Promise.all([import('./gateway.ts'), import('./http-p2p.ts')]);
    await libp2p.handle(HTTP_PROTOCOL, serveOverStreams(gatewayServer(blockstore)), { maxInboundStreams: 32 });
  }
  if (settings.peers.length) {
    for (const f of await node.connect(settings.peers)) process.stderr.write(`ipfs: warning: could not connect to ${f.addr}: ${f.error}\n`);
  }
  return node;
}
