/**
 * The libraries of the IPFS code that work on blocks and DAGs
 * (multiformats, dag-pb, dag-cbor, UnixFS): every module of ipfs/ takes
 * them from here, never from their packages, so that they are loaded once
 * whether bundled or not.
 *
 * `npm run build` replaces the compiled deps-*.js with bundles of what
 * they export (bootstrap/bundle.js): loaded from node_modules, the node's
 * libraries are some 780 modules, and resolving, reading and compiling
 * them was most of the time a substitution over IPFS took to start.
 * Code shared between the three bundles is in chunks of its own, one copy
 * for all (a CID made by file-dag.ts is the class Helia knows).
 */
export { CID, varint } from 'multiformats';
export * as Digest from 'multiformats/hashes/digest';
export { sha256 } from 'multiformats/hashes/sha2';
export { base32, base32upper } from 'multiformats/bases/base32';
export { base36 } from 'multiformats/bases/base36';
export * as dagPb from '@ipld/dag-pb';
export * as dagCbor from '@ipld/dag-cbor';
export { UnixFS } from 'ipfs-unixfs';
export { Uint8ArrayList } from 'uint8arraylist';
