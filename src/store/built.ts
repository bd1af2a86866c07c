/**
 * The archives this home has made or taken, by pkghash: a package built
 * (or substituted) once is not built again for another checkout of the
 * tree, a branch switched back to, or a scratch copy, as a path in Nix's
 * store is not. The package rules look here before the caches and record
 * here after a build or a substitution; a forced build (`peerpkgs check`'s
 * second) does neither look nor take.
 *
 *   built/<pkghash>.pkg.tar.gz           a copy of the archive (a reflink
 *                                        where the file system shares blocks)
 *   built/<pkghash>.pkg.tar.gz.sha256    its output identity, by inode, as
 *                                        outputs.ts records it beside a tree's
 *   built/<pkghash>.pkg.tar.gz.SUFFIX    the records kept beside the
 *                                        archive (how it was built, or the
 *                                        provenance it came with)
 *
 * An archive is trusted here as much as in the tree it was made in: the
 * same user made it, under the same pkghash. The link is renamed into place
 * last, so a crash leaves records without an archive, which are ignored and
 * replaced. gc removes every entry whose output no root (a profile's
 * generation, a venv) holds: the trees keep their own archives, and a
 * checkout built after a gc builds again, as after a gc in Nix.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { homeLayout } from '../home.ts';
import { recordSha256, recordedSha256 } from './outputs.ts';
import { temporaryName, forget, removeTemporaryFile, withTemporaryFile } from '../archive/temporary.ts';
import { namesIn } from '../archive/files.ts';

const ARCHIVE = '.pkg.tar.gz';

export interface BuiltArchive {
  archive: string;
  /** the output identity (sha256 of the uncompressed archive) */
  sha256: string;
}

function archivePath(home: string, pkghash: string): string {
  return path.join(homeLayout.built(home), pkghash + ARCHIVE);
}

/** The archive built before from `pkghash`, if this home has it whole. */
export function findBuilt(home: string, pkghash: string): BuiltArchive | null {
  const archive = archivePath(home, pkghash);
  const sha256 = recordedSha256(archive);
  return sha256 === null ? null : { archive, sha256 };
}

/**
 * Copy `from` to `to`, sharing its blocks where the file system can (a
 * reflink), never its inode: a hard link would change the inode's ctime,
 * and the redo state of every tree that holds the archive would take that
 * for a hand's change.
 */
function copyArchive(from: string, to: string): void {
  fs.copyFileSync(from, to, fs.constants.COPYFILE_FICLONE);
}

/** Copy the records `suffixes` kept beside `from` to beside `to`; one `from` lacks goes from `to`. */
function copyRecords(from: string, to: string, suffixes: readonly string[]): void {
  for (const s of suffixes) {
    let text: Buffer;
    try {
      text = fs.readFileSync(from + s);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      fs.rmSync(to + s, { force: true });
      continue;
    }
    withTemporaryFile(to + s, (tmp) => {
      fs.writeFileSync(tmp, text, { mode: 0o644 });
      fs.renameSync(tmp, to + s);
    });
  }
}

/**
 * Record `archive` (output identity `sha256`, the records `suffixes` beside
 * `records`) as what `pkghash` makes. An entry already there stays: the
 * same pkghash made it, and a reproducible package made the same bytes.
 */
export function recordBuilt(home: string, pkghash: string, archive: string, sha256: string, records: string, suffixes: readonly string[]): void {
  const final = archivePath(home, pkghash);
  if (findBuilt(home, pkghash)) return;
  fs.mkdirSync(path.dirname(final), { recursive: true });
  const tmp = temporaryName(final);
  try {
    copyArchive(archive, tmp);
    recordSha256(tmp, sha256, final);
    copyRecords(records, final, suffixes);
    fs.renameSync(tmp, final);
    forget(tmp);
  } finally {
    removeTemporaryFile(tmp);
  }
}

/**
 * Put the archive built before at `out` (a temporary the caller renames
 * over `target`), its identity recorded for `target` and its records
 * beside `target`. Returns its output identity.
 */
export function takeBuilt(found: BuiltArchive, out: string, target: string, suffixes: readonly string[]): string {
  copyArchive(found.archive, out);
  recordSha256(out, found.sha256, target);
  copyRecords(found.archive, target, suffixes);
  return found.sha256;
}

/**
 * The entries whose output no root holds, each as its paths, archive
 * first, and records whose archive never came (a crash before its rename).
 */
export function unheldBuilt(home: string, keptOutputs: ReadonlySet<string>): string[][] {
  const dir = homeLayout.built(home);
  const names = namesIn(dir).filter((n) => !n.startsWith('.'));
  const archives = new Set(names.filter((n) => n.endsWith(ARCHIVE)));
  const out: string[][] = [];
  for (const n of [...archives].sort()) {
    const sha = recordedSha256(path.join(dir, n));
    if (sha !== null && keptOutputs.has(sha)) continue;
    out.push([n, ...names.filter((r) => r.startsWith(n + '.'))].map((r) => path.join(dir, r)));
  }
  for (const n of names.sort()) {
    const i = n.indexOf(ARCHIVE + '.');
    if (i > 0 && !archives.has(n.slice(0, i + ARCHIVE.length))) out.push([path.join(dir, n)]);
  }
  return out;
}
