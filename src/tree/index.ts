/**
 * tree/: the package model: package directories, rec files, pkghashes,
 * closures, metadata, the walk `peerpkgs graph` prints.
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 */
export * from './errors.ts';
export * from './meta.ts';
export * from './package.ts';
export * from './pkghash-diff.ts';
export * from './pkghash.ts';
export * from './rec.ts';
export * from './seed-dir.ts';
export * from './template.ts';
export * from './walk.ts';
