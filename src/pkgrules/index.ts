/**
 * pkgrules/: the built-in rules that build a package, registered with the
 * engine (rules.ts), and the sandbox a build and `peerpkgs shell` enter.
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 * Private: package-rules.ts.
 */
export * from './package-sandbox.ts';
export * from './progress.ts';
export * from './reproducible.ts';
export * from './rules.ts';
export { packageGraph } from './package-rules.ts';
