/**
 * The error of the archive layer: an archive or a tree that is refused
 * (unsafe, special files, wrong hash) or broken. Callers tell it from their
 * own I/O failures by its class; its message names the offending entry.
 */
import { errorClass } from '../errors.ts';
export class ArchiveError extends errorClass('ArchiveError') {}

/**
 * A failure of gzip or tar parsing as an ArchiveError saying what was being
 * done; system errors (ENOENT, ENOSPC...) stay as they are, for they are not
 * the archive's fault.
 */
export function asArchiveError(e: unknown, doing: string): unknown {
  if (e instanceof ArchiveError || (e instanceof Error && 'syscall' in e)) return e;
  return new ArchiveError(`${doing}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}
