/**
 * cache/: binary caches: backends (file, http, ipfs, ipns), .info, catalogs,
 * signing, provenance, publishing and substitution.
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 */
export * from './backends.ts';
export * from './catalog.ts';
export * from './info.ts';
export * from './ipfs-cache.ts';
export * from './keys.ts';
export * from './provenance.ts';
export * from './publish.ts';
export * from './substitute.ts';
