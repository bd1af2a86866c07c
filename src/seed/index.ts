/**
 * seed/: the seed reproduced from the tree, checked bit for bit.
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 */
export * from './reproduce.ts';
