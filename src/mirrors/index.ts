/**
 * mirrors/: the source-mirror database and the IPFS mirror in front of a
 * fetch's urls.
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 */
export * from './db.ts';
export * from './fetching.ts';
export * from './import.ts';
export * from './node.ts';
export * from './pin.ts';
export * from './source.ts';
