/**
 * fetch/: downloading into the distfile store, through the one HTTP getter.
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 */
export * from './fetch.ts';
export * from './fetchfile.ts';
export * from './http.ts';
export * from './progress.ts';
export * from './store.ts';
