/**
 * archive/: deterministic tar, safe extraction, the leading manifest, and the
 * file primitives every layer shares (temporaries, linkOrCopy, removeTree).
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 */
export * from './compare.ts';
export * from './errors.ts';
export * from './extract.ts';
export * from './files.ts';
export * from './manifest.ts';
export * from './merge.ts';
export * from './pack.ts';
export * from './temporary.ts';
