/**
 * Fetching all the sources of one package (what bin/do-fetch does with a
 * package's fetch file, once parsed). A few at a time, because packages
 * with several distfiles often take them from several hosts; and every one
 * is attempted even when one fails, so the error names all that are
 * missing and the user fixes them in one go, not one per run.
 */
import { FetchError, fetchDistfile, type Distfile, type Failure, type FetchOptions } from './fetch.ts';
import { checkSha256 } from './store.ts';
import { progressFor } from './progress.ts';

export interface FetchAllOptions extends FetchOptions {
  /** downloads at a time; 2 unless set */
  concurrency?: number;
}

/** Store paths of the package's distfiles, keyed by file name, in the order given. */
export async function fetchAll(entries: Distfile[], opts: FetchAllOptions): Promise<Map<string, string>> {
  const byFile = new Map<string, Distfile>();
  for (const e of entries) {
    checkSha256(e.sha256);
    const seen = byFile.get(e.file);
    if (seen && seen.sha256 !== e.sha256) throw new Error(`two distfiles are named ${e.file}, with different sha256`);
    byFile.set(e.file, e);
  }
  const todo = [...byFile.values()];
  // one progress for all, so concurrent downloads share one status line
  const each = { ...opts, progress: opts.progress ?? progressFor() };
  const paths: Array<string | undefined> = [];
  const failures: Array<Failure[] | undefined> = [];
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const i = next++;
      try {
        paths[i] = await fetchDistfile(todo[i], each);
      } catch (e) {
        if (!(e instanceof FetchError)) throw e;
        failures[i] = e.failures;
      }
    }
  };
  const workers = Math.max(1, Math.min(opts.concurrency ?? 2, todo.length));
  await Promise.all(Array.from({ length: workers }, worker));
  const failed = failures.flatMap((f) => f ?? []);
  if (failed.length) throw new FetchError(failed);
  return new Map(todo.map((e, i) => [e.file, paths[i] as string]));
}
