/**
 * How much room built packages take unpacked, alone and with their
 * closures, as `peerpkgs info` reports it (compare `guix size`): the sum
 * of the file sizes an output's manifest lists, which is what its tree
 * under $PEERPKGS_HOME/outputs holds (a hardlink counted once, directories
 * and symlinks as nothing).
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { readManifest, type ManifestEntry } from '../archive/manifest.ts';
import { ArchiveError } from '../archive/errors.ts';
import { OutputStore, recordedSha256, storedManifest } from './outputs.ts';

const sum = (entries: Iterable<ManifestEntry>): number => {
  let n = 0;
  for (const e of entries) if (e.type === 'file') n += e.size;
  return n;
};

/**
 * The unpacked bytes of the package at `dir`: null when it is not built,
 * undefined when its size cannot be told without unpacking it (a seed's
 * plain tarball that no build has unpacked yet).
 */
export async function outputSize(dir: string, home: string): Promise<number | null | undefined> {
  const archive = path.join(dir, '.pkg.tar.gz');
  if (!fs.existsSync(archive)) return null;
  // the store's copy first: a seed's plain tarball has no manifest of its own, but its unpacked tree has one
  const sha = recordedSha256(archive);
  const stored = sha ? storedManifest(new OutputStore(home).path(sha)) : null;
  if (stored) return sum(stored.values());
  try {
    return sum(await readManifest(archive));
  } catch (e) {
    if (e instanceof ArchiveError) return undefined;
    throw e;
  }
}

/** The total size of some packages' outputs, or which of them are not built (or of unknown size). */
export interface ClosureSize {
  /** null unless every package's size is known */
  bytes: number | null;
  packages: number;
  /** the packages not built, or whose size is unknown */
  missing: string[];
}

export async function closureSize(dirs: string[], home: string): Promise<ClosureSize> {
  let bytes = 0;
  const missing: string[] = [];
  for (const d of dirs) {
    const n = await outputSize(d, home);
    if (n == null) missing.push(d);
    else bytes += n;
  }
  return { bytes: missing.length ? null : bytes, packages: dirs.length, missing };
}
