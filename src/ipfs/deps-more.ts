/**
 * The libraries only some nodes load: the DHT and its ping, mDNS, IPNS,
 * and the importer (directories). Bundled by `npm run build`; see deps-dag.ts.
 */
export { kadDHT, passthroughMapper } from '@libp2p/kad-dht';
export { ping } from '@libp2p/ping';
export { mdns } from '@libp2p/mdns';
export * as ipns from '@helia/ipns';
export { Key } from 'interface-datastore';
export * as importer from 'ipfs-unixfs-importer';
export { fixedSize } from 'ipfs-unixfs-importer/chunker';
