/**
 * The libraries of a running node (libp2p, Helia, bitswap, the stores,
 * the exporter): loaded when a node starts (node.ts) or the gateway
 * serves (gateway.ts). Bundled by `npm run build`; see deps-dag.ts.
 */
export { createLibp2p } from 'libp2p';
export { tcp } from '@libp2p/tcp';
export { noise } from '@libp2p/noise';
export { defaultCrypto } from '@libp2p/noise/crypto';
export { yamux } from '@libp2p/yamux';
export { identify } from '@libp2p/identify';
export { fetch } from '@libp2p/fetch';
export { withBitswap } from '@helia/bitswap';
export { FsBlockstore } from 'blockstore-fs';
export { FsDatastore } from 'datastore-fs';
// the Helia class alone: the package's index loads the kitchen sink (WebRTC, WebSockets, UPnP, a DHT, delegated routing)
export { Helia } from '../../node_modules/helia/dist/src/helia.js';
export * as exporter from 'ipfs-unixfs-exporter';
export { multiaddr } from '@multiformats/multiaddr';
export { peerIdFromString } from '@libp2p/peer-id';
export * as keys from '@libp2p/crypto/keys';
