/**
 * store/: what $PEERPKGS_HOME holds: outputs and their identity, logs, the
 * pkghash texts and build records of what was built, gc roots and
 * collection, verify.
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 */
export * from './build-record.ts';
export * from './built.ts';
export * from './gc.ts';
export * from './identity.ts';
export * from './log-phases.ts';
export * from './logs.ts';
export * from './outputs.ts';
export * from './pkghash-texts.ts';
export * from './roots.ts';
export * from './sizes.ts';
export * from './verify.ts';
