/**
 * Where peerpkgs keeps its state: $PEERPKGS_HOME, or ~/.cache/peerpkgs, and
 * the name of every directory in it. Every layer asks here, so that one
 * variable moves the whole store (a test, a CI cache, a second user),
 * nothing is written outside it, and the layout can be read in one place.
 *
 * It sits beside settings.ts, under every folder but tree/, engine/ and
 * archive/, and imports nothing but settings.ts: the layers below store/
 * (fetch, sandbox, ipfs) name their directories here too, and an import
 * may only point down (eslint.config.js).
 */
import * as path from 'node:path';
import { settings } from './settings.ts';

/** The home itself; settings.ts resolves it once, with every other variable. */
export function peerpkgsHome(env: NodeJS.ProcessEnv = process.env): string {
  return settings(env).home;
}

/** The directories and files under a home. */
export const homeLayout = {
  /** fetched sources, by sha256: fetch/store.ts's DistfileStore */
  distfiles: (home: string): string => path.join(home, 'distfiles'),
  /** the signatures of distfiles already verified, beside the store: it holds distfiles alone */
  distfilesVerified: (home: string): string => path.join(home, 'distfiles.verified'),
  /** unpacked outputs, read-only, by output sha256: store/outputs.ts's OutputStore */
  outputs: (home: string): string => path.join(home, 'outputs'),
  /** the archives built or substituted here, by pkghash: store/built.ts */
  built: (home: string): string => path.join(home, 'built'),
  /** assembled sandbox roots, by their layers: sandbox/root.ts */
  roots: (home: string): string => path.join(home, 'roots'),
  /** builds' work directories */
  build: (home: string): string => path.join(home, 'build'),
  /** kept build logs, a directory a package: store/logs.ts */
  logs: (home: string): string => path.join(home, 'logs'),
  /** the prefix of `seed reproduce`'s temporary work directories */
  reproducePrefix: (home: string): string => path.join(home, 'reproduce-'),
  /** the IPFS node's blocks, datastore, identity and socket: ipfs/config.ts */
  ipfs: (home: string): string => path.join(home, 'ipfs'),
  /** signing keys made by `peerpkgs keys`: cache/keys.ts */
  keys: (home: string): string => path.join(home, 'keys'),
  /** the public keys caches are trusted for, one a line: cache/keys.ts */
  trustedKeys: (home: string): string => path.join(home, 'trusted-keys'),
  /** the pkghash texts of what was built, by pkghash, for `peerpkgs why`: store/pkghash-texts.ts */
  pkghashTexts: (home: string): string => path.join(home, 'pkghash-texts'),
  /** profiles: NAME, a symlink to the current generation NAME-G: export/profile.ts */
  profiles: (home: string): string => path.join(home, 'profiles'),
  /** gc roots and registrations: venvs and trees (a symlink each), the processes using the store: store/roots.ts */
  gcroots: (home: string): string => path.join(home, 'gcroots'),
  /** the last catalog generation seen from each cache, a file a cache: cache/catalog.ts */
  catalogs: (home: string): string => path.join(home, 'catalogs'),
};
