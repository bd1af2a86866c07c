/**
 * What a package's archive says about how it came to be, kept beside
 * `pkg/X/.pkg.tar.gz` for add-to-package-cache to publish as provenance:
 *
 *   .pkg.tar.gz.built       written by a build here: when it ran, which
 *                           peerpkgs ran it, and the outputs of the build
 *                           closure that were in its sandbox (JSON)
 *   .pkg.tar.gz.provenance  written by a substitution: the signed
 *                           provenance the cache had for the archive, as
 *                           it came (cache/provenance.ts's envelope)
 *
 * Each names the archive by the sha256 of its bytes, so a record left
 * behind when the archive was replaced (rebuilt, substituted, copied over)
 * describes no archive and is ignored: nothing needs to remove it first.
 *
 * It lives in store/, below both the package rules that write it and the
 * cache that publishes it, so that neither imports the other.
 */
const fs = process.getBuiltinModule('node:fs');
import { withTemporaryFile } from '../archive/temporary.ts';

export const BUILT_SUFFIX = '.built';
export const PROVENANCE_SUFFIX = '.provenance';

/** A package output in a build's sandbox: its name, pkghash and identity (sha256 of the uncompressed archive). */
export interface ClosureOutput {
  name: string;
  pkghash: string;
  sha256: string;
}

export interface BuildRecord {
  /** sha256 of the .tar.gz bytes the build made */
  archiveSha256: string;
  /** the peerpkgs version that built it */
  peerpkgs: string;
  /** ISO 8601, UTC */
  startedOn: string;
  finishedOn: string;
  /** the build closure, as unpacked into the sandbox */
  buildClosure: ClosureOutput[];
}

/** Writes `text` to `file` by temporary and rename: a reader sees the old record or the new, whole. */
function writeWhole(file: string, text: string | Buffer): void {
  withTemporaryFile(file, (tmp) => {
    fs.writeFileSync(tmp, text, { mode: 0o644 });
    fs.renameSync(tmp, file);
  });
}

function readIfThere(file: string): Buffer | null {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

export function recordBuild(archive: string, record: BuildRecord): void {
  writeWhole(archive + BUILT_SUFFIX, JSON.stringify(record) + '\n');
}

/** The record of the build that made `archive`'s bytes (sha256 `archiveSha256`), or null if there is none. */
export function buildRecordOf(archive: string, archiveSha256: string): BuildRecord | null {
  const text = readIfThere(archive + BUILT_SUFFIX);
  if (!text) return null;
  try {
    const r = JSON.parse(text.toString()) as BuildRecord;
    return r.archiveSha256 === archiveSha256 && Array.isArray(r.buildClosure) ? r : null;
  } catch {
    return null; // torn by hand: as good as none
  }
}

/**
 * An archive substituted from a cache: the provenance the cache had for it
 * is kept beside it (an older one goes when it had none), and the record of
 * a build here goes, though it may name the same bytes (a tree copied with
 * its records): this archive was not built here, and is published with
 * its builder's provenance, not as one of ours.
 */
export function recordSubstitution(archive: string, envelope: Buffer | null): void {
  fs.rmSync(archive + BUILT_SUFFIX, { force: true });
  if (envelope) writeWhole(archive + PROVENANCE_SUFFIX, envelope);
  else fs.rmSync(archive + PROVENANCE_SUFFIX, { force: true });
}

/** The provenance kept beside `archive`, if any: its subject says whether it is this archive's. */
export function keptProvenance(archive: string): Buffer | null {
  return readIfThere(archive + PROVENANCE_SUFFIX);
}
