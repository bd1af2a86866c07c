/**
 * Tarball export: a closure's merged outputs as one .tar.gz, for a machine
 * without peerpkgs (`tar -xzf` it into a chroot or a container image).
 *
 * It is a peerpkgs archive like any package output (archive/pack.ts: led by
 * a manifest, sorted, mtime 0, uid/gid 0, fixed gzip), so the same
 * outputs give the same bytes on any machine, whatever directories the tree
 * and $PEERPKGS_HOME are in and whatever the umask. The merge is written as
 * a hardlink tree first, next to the output store so that linking works,
 * and packed from there: its directory modes come from the packages (not
 * the umask), and merge.ts keeps a package's own hardlinks as hardlinks
 * even where it had to copy, so the archive's link entries do not depend
 * on the filesystem either.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { packDir, type PackResult } from '../archive/pack.ts';
import { storedManifest } from '../store/outputs.ts';
import { planMerge, writeMerged, packageModes, type Output, type Settled, type Strategy } from '../archive/merge.ts';
import { removeTreeSync } from '../archive/files.ts';
import { temporaryName, forget } from '../archive/temporary.ts';

export interface TarballOptions {
  /** The .tar.gz to write; replaced only once complete. */
  out: string;
  /** The closure's unpacked outputs, each after its run-deps. */
  packages: Output[];
  strategy?: Strategy;
}

export interface TarballResult extends PackResult {
  settled: Settled[];
}

export async function exportTarball(opts: TarballOptions): Promise<TarballResult> {
  const plan = planMerge(opts.packages, opts.strategy ?? 'error');
  const out = path.resolve(opts.out);
  const near = opts.packages.length > 0 ? path.dirname(opts.packages[0]!.dir) : path.dirname(out);
  // beside the output store, which is swept of what a crash left
  const tmp = temporaryName(path.join(near, 'export'));
  fs.mkdirSync(tmp);
  try {
    writeMerged(plan, tmp);
    // the store's files are read-only: the archive gets the packages' own modes
    const packed = await packDir(tmp, out, { modes: packageModes(plan, (o) => storedManifest(o.dir)) });
    return { ...packed, settled: plan.settled };
  } finally {
    removeTreeSync(tmp);
    forget(tmp);
  }
}
