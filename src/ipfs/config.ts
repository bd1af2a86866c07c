/**
 * Where the IPFS node keeps its state and how it is configured: paths under
 * $PEERPKGS_HOME/ipfs and the PKG_IPFS_* variables. Cheap to import (no
 * Helia): the CLI and the cache backends read it before deciding whether
 * a node is needed at all.
 *
 *   $PEERPKGS_HOME/ipfs/blocks      the blockstore (one file a block)
 *   $PEERPKGS_HOME/ipfs/datastore   pins, IPNS keys (the keychain) and records
 *   $PEERPKGS_HOME/ipfs/filestore   where the leaves of files added with nocopy are (filestore.ts)
 *   $PEERPKGS_HOME/ipfs/identity    the node's libp2p private key (0600)
 *   $PEERPKGS_HOME/ipfs/api.sock    the daemon's API socket, while it runs
 *   $PEERPKGS_HOME/ipfs/addrs       the daemon's peer id and multiaddrs, one a line
 *   $PEERPKGS_HOME/ipfs/listen      the daemon's listen addresses with the ports it
 *                                   was given for /tcp/0, asked for again next start
 */
import * as path from 'node:path';
import { settings } from '../settings.ts';
import { homeLayout } from '../home.ts';

export interface IpfsPaths {
  dir: string;
  blocks: string;
  /** the packs of blocks (packs.ts); `blocks` holds block files of before them */
  packs: string;
  datastore: string;
  filestore: string;
  identity: string;
  socket: string;
  addrs: string;
  listen: string;
}

export function ipfsPaths(home: string): IpfsPaths {
  const dir = homeLayout.ipfs(home);
  return {
    dir,
    blocks: path.join(dir, 'blocks'),
    packs: path.join(dir, 'packs'),
    datastore: path.join(dir, 'datastore'),
    filestore: path.join(dir, 'filestore'),
    identity: path.join(dir, 'identity'),
    socket: path.join(dir, 'api.sock'),
    addrs: path.join(dir, 'addrs'),
    listen: path.join(dir, 'listen'),
  };
}

/** Loopback only, any free port: nothing is offered to the network unless asked for. */
export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0'];

export interface NodeSettings {
  listen: string[];
  peers: string[];
  timeoutMs: number;
  /** whether the node joins the Kademlia DHT (PKG_IPFS_DHT) */
  dht: boolean;
  /** whether the node finds peers on the local network by multicast DNS (PKG_IPFS_MDNS) */
  mdns: boolean;
  /** trustless gateways blocks are also fetched from (gateway-broker.ts) */
  gateways: string[];
  /** where the daemon serves its blocks as a trustless gateway (gateway.ts), if it does */
  gatewayListen: { host: string; port: number } | undefined;
  /** where peers are told that gateway is (PKG_IPFS_GATEWAY_ANNOUNCE); undefined: where it listens */
  gatewayAnnounce: { host: string; port: number }[] | undefined;
  /** whether a file is asked of the gateway a connected peer announces on its own address (PKG_IPFS_PEER_GATEWAYS) */
  peerGateways: boolean;
  /** how long a block from a gateway may take (PKG_DOWNLOAD_BASE_TIME, PKG_DOWNLOAD_MIN_RATE) */
  gatewayDeadline: { baseMs: number; minRate: number };
}

/** PKG_IPFS_LISTEN, PKG_IPFS_PEERS, PKG_IPFS_TIMEOUT, the DHT's, mDNS's and the gateways', as settings.ts read and checked them. */
export function nodeSettings(env: NodeJS.ProcessEnv = process.env): NodeSettings {
  const s = settings(env);
  return {
    listen: [...(s.ipfsListen ?? DEFAULT_LISTEN)],
    peers: [...s.ipfsPeers],
    timeoutMs: s.ipfsTimeoutMs,
    dht: s.ipfsDht,
    mdns: s.ipfsMdns,
    gateways: [...s.ipfsGateways],
    gatewayListen: s.ipfsGatewayListen,
    gatewayAnnounce: s.ipfsGatewayAnnounce,
    peerGateways: s.ipfsPeerGateways,
    gatewayDeadline: { baseMs: s.downloadBaseMs, minRate: s.downloadMinRate },
  };
}
