/**
 * export/: what a closure is exported as: venvs, profiles and their
 * generations, tarballs, OCI images, SBOMs, and the gc roots they hold.
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 */
export * from './closure.ts';
export * from './gc-roots.ts';
export * from './oci.ts';
export * from './profile.ts';
export * from './sbom.ts';
export * from './tarball.ts';
export * from './venv.ts';
