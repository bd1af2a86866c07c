/**
 * ipfs/: the embedded Helia node, its daemon, and the client the rest of
 * peerpkgs asks (client.ts).
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 * Private: blockfiles.ts, car.ts, deps-dag.ts, deps-more.ts, deps-node.ts, gateway.ts, gateway-broker.ts, ipns-peers.ts, leaves.ts, node.ts, noise-crypto.ts, protocol.ts, remote.ts.
 */
export * from './client.ts';
export * from './config.ts';
export * from './daemon.ts';
export * from './errors.ts';
export * from './get.ts';
export * from './node.ts';
export * from './shared.ts';
export * from './unixfs.ts';
