/**
 * `peerpkgs check`'s question: does building a package again give the same
 * output, bit for bit? Both builds' archives are compared by their sha256,
 * and where they differ, file by file with the comparison `seed reproduce`
 * uses (archive/compare.ts); a reproducible output's unpacked copy is checked
 * too, for venvs, roots and exports are made from it, not from the archive.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { readManifest } from '../archive/manifest.ts';
import { compareOutputs } from '../archive/compare.ts';
import { recordedSha256 } from '../store/outputs.ts';
import { checkOutput, type OutputCheck } from '../store/verify.ts';

export interface Reproduction {
  /** the package's .pkg.tar.gz */
  target: string;
  first: string | null;
  second: string | null;
  /** what differs, one line a path; empty when the files are the same */
  diffs: string[];
  /** a reproducible output whose unpacked copy is damaged */
  damaged: OutputCheck | null;
}

/**
 * Builds `targets` (`build(false)`), then again from scratch (`build(true)`),
 * and compares. A failed build's status is returned instead.
 */
export async function rebuildAndCompare(targets: string[], outputsDir: string, build: (again: boolean) => Promise<number>): Promise<number | Reproduction[]> {
  const rc = await build(false);
  if (rc !== 0) return rc;
  const first = await Promise.all(targets.map((t) => readManifest(t)));
  const firstSha = targets.map((t) => recordedSha256(t));
  const rc2 = await build(true);
  if (rc2 !== 0) return rc2;
  const results: Reproduction[] = [];
  for (const [i, target] of targets.entries()) {
    const sha = recordedSha256(target);
    const unpacked = (s: string | null) => path.join(outputsDir, s ?? 'none');
    const diffs = compareOutputs({ manifest: first[i]!, dir: unpacked(firstSha[i]!) }, { manifest: await readManifest(target), dir: unpacked(sha) }, [
      'the first build',
      'the second build',
    ]).map((d) => (d.what.startsWith('only in ') ? `${d.what}: ${d.path}` : `differs: ${d.path} (${d.what})`));
    const same = sha !== null && sha === firstSha[i] && diffs.length === 0;
    const stored = same && fs.existsSync(unpacked(sha)) ? await checkOutput(outputsDir, sha) : null;
    results.push({ target, first: firstSha[i]!, second: sha, diffs, damaged: stored?.damage.length ? stored : null });
  }
  return results;
}

/** Is this a reproducible package? */
export function reproduced(r: Reproduction): boolean {
  return r.second !== null && r.second === r.first && r.diffs.length === 0;
}
