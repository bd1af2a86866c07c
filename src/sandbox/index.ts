/**
 * sandbox/: bwrap, and the root it mounts, assembled from outputs.
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 */
export * from './bwrap.ts';
export * from './root.ts';
