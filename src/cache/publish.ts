/**
 * Publishing: built packages copied into a cache directory, in p2pkgs'
 * layout, `<pkghash>.tar.gz` with its `<pkghash>.info` beside it, ready to
 * be served over HTTP (any static server) or added to IPFS; and its
 * `<pkghash>.provenance` (provenance.ts): made and signed here for an
 * archive built here, carried along as it came for one substituted from
 * a cache that had one, none for an archive with no record of its build.
 *
 * An .info vouches for an archive, so an archive is read once while it is
 * copied and both its compressed and uncompressed sha256 are computed:
 * what is signed is what was checked, never what a record claims. Each
 * file goes to a hidden temporary name and is renamed into place, the
 * archive and its provenance before its .info; readers look for the .info first, so they see
 * a whole entry or none. An entry whose .info and archive are there is
 * left alone, so publishing again is cheap and never changes what others
 * have already fetched. One writer at a time: the cache directory's
 * `.lock` (engine/locks.ts) is held from the look at what is there to the
 * last rename, so two runs never both add an entry, each believing its own
 * .info is the one in place. The cache's catalog (catalog.ts) is written
 * last, under the same lock, by this one function for every command that
 * adds to a cache or publishes one; what publishes the directory (to
 * IPFS) runs then, still under the lock, so that what it reads is one
 * state of the directory, its catalog naming exactly the entries there.
 */
const { createHash } = process.getBuiltinModule('node:crypto');
import { once } from 'node:events';
import type { ReadStream } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { drained } from '../archive/files.ts';
import { withLockFile } from '../engine/locks.ts';
import { temporaryName, removeTemporaryFile } from '../archive/temporary.ts';
import { serializeInfo } from './info.ts';
import { envelope, isProvenanceOf, statement } from './provenance.ts';
import { buildRecordOf, keptProvenance } from '../store/build-record.ts';
import type { FetchEntry } from '../tree/package.ts';
import type { SigningKey } from './keys.ts';
import { errorClass } from '../errors.ts';
import { display } from '../tree/errors.ts';
import type { PackageGraph } from '../tree/pkghash.ts';
import { uncompressedSha256 } from '../store/identity.ts';
import type { Meta } from '../tree/meta.ts';
import { writeCatalog, type CatalogFields } from './catalog.ts';

export interface PublishPackage {
  pkghash: string;
  name: string;
  /** the built archive, pkg/X/.pkg.tar.gz */
  archive: string;
  /** the output's identity as recorded (.pkg.tar.gz.sha256): checked against the archive; computed if absent */
  sha256?: string;
  /** pkghashes of the run closure */
  closure: string[];
  /** its pkg/NAME/meta, for the catalog */
  meta?: Meta;
  /** what its provenance says of its build besides the build's own record; none, none is written */
  definition?: { path: string; pkghashText: string; sources: FetchEntry[] };
}

/** How an entry's provenance came to be: made from the record of its build here, carried along from the cache it came from, or none. */
export type ProvenanceOrigin = 'built' | 'carried' | null;

export interface AddOptions {
  /** the cache directory (made if missing) */
  dir: string;
  packages: PublishPackage[];
  /** signs each .info and the catalog; without one they are unsigned */
  signKey?: SigningKey;
  /** days until the catalog expires (default 30) */
  expiresDays?: number;
  /** Told once when another process is writing to the directory and this one waits. */
  onWait?: (pid: number) => void;
}

export interface AddResult {
  added: string[];
  skipped: string[];
  provenance: Map<string, ProvenanceOrigin>;
  catalog: CatalogFields;
}

/** An archive that is missing or not what its record says. */
export class PublishError extends errorClass('PublishError') {}

/**
 * Adds each package not yet in the cache (none: the catalog alone is
 * written anew, a generation up), then writes the catalog; returns the
 * pkghashes added and those already there. `then` runs last, with the
 * directory's lock still held: publishing the directory as it now is.
 */
export async function addToCache(opts: AddOptions, then?: (r: AddResult) => Promise<void>): Promise<AddResult> {
  const added: string[] = [];
  const provenance = new Map<string, ProvenanceOrigin>();
  const skipped: string[] = [];
  fs.mkdirSync(opts.dir, { recursive: true });
  const seen = new Set<string>();
  return withLockFile(path.join(opts.dir, '.lock'), opts.onWait ?? (() => {}), async () => {
    for (const pkg of opts.packages) {
      if (seen.has(pkg.pkghash)) continue;
      seen.add(pkg.pkghash);
      const tarFile = path.join(opts.dir, `${pkg.pkghash}.tar.gz`);
      const infoFile = path.join(opts.dir, `${pkg.pkghash}.info`);
      if (fs.existsSync(infoFile) && fs.existsSync(tarFile)) {
        skipped.push(pkg.pkghash);
        continue;
      }
      provenance.set(pkg.pkghash, await addOne(pkg, tarFile, infoFile, opts.signKey));
      added.push(pkg.pkghash);
    }
    // after the entries: a catalog never names one that is not there
    const meta = new Map(opts.packages.map((p) => [p.pkghash, p.meta ?? {}]));
    const r = { added, skipped, provenance, catalog: writeCatalog(opts.dir, meta, opts.signKey, opts.expiresDays) };
    await then?.(r);
    return r;
  });
}

async function addOne(pkg: PublishPackage, tarFile: string, infoFile: string, key?: SigningKey): Promise<ProvenanceOrigin> {
  const tarTmp = temporaryName(tarFile);
  const infoTmp = temporaryName(infoFile);
  const provenanceFile = path.join(path.dirname(tarFile), `${pkg.pkghash}.provenance`);
  const provenanceTmp = temporaryName(provenanceFile);
  try {
    let input: ReadStream;
    try {
      input = fs.createReadStream(pkg.archive);
      await once(input, 'open');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new PublishError(`${pkg.archive}: not built`);
      throw e;
    }
    const copied = await copyHashed(input, tarTmp);
    if (pkg.sha256 !== undefined && copied.sha256 !== pkg.sha256) {
      throw new PublishError(`${pkg.archive}: its uncompressed sha256 is ${copied.sha256}, but ${pkg.sha256} is recorded for it; rebuild it`);
    }
    const info = serializeInfo(
      {
        pkghash: pkg.pkghash,
        name: pkg.name,
        outputSha256: copied.sha256,
        outputSize: copied.outputSize,
        archiveSize: copied.size,
        archiveSha256: copied.archiveSha256,
        closure: pkg.closure,
      },
      key,
    );
    fs.writeFileSync(infoTmp, info, { flag: 'wx', mode: 0o644, flush: true });
    const prov = provenanceOf(pkg, copied.archiveSha256, key);
    if (prov) fs.writeFileSync(provenanceTmp, prov.text, { flag: 'wx', mode: 0o644, flush: true });
    fs.renameSync(tarTmp, tarFile);
    // an entry published again without one must not keep another archive's
    if (prov) fs.renameSync(provenanceTmp, provenanceFile);
    else fs.rmSync(provenanceFile, { force: true });
    fs.renameSync(infoTmp, infoFile);
    return prov?.origin ?? null;
  } finally {
    removeTemporaryFile(tarTmp);
    removeTemporaryFile(infoTmp);
    removeTemporaryFile(provenanceTmp);
  }
}

/**
 * The provenance of the archive whose bytes have sha256 `archiveSha256`:
 * a statement made from the record of its build, if it was built here;
 * else the one kept from the cache it was substituted from, unchanged, as
 * only its builder can vouch for its build; else none.
 */
function provenanceOf(pkg: PublishPackage, archiveSha256: string, key?: SigningKey): { text: string | Buffer; origin: ProvenanceOrigin } | null {
  const record = pkg.definition ? buildRecordOf(pkg.archive, archiveSha256) : null;
  if (record && pkg.definition) {
    const { path: treePath, pkghashText, sources } = pkg.definition;
    const { peerpkgs, startedOn, finishedOn, buildClosure } = record;
    const facts = { pkghash: pkg.pkghash, name: pkg.name, path: treePath, pkghashText, sources, buildClosure, archiveSha256, peerpkgs, startedOn, finishedOn };
    return { text: envelope(statement(facts), key), origin: 'built' };
  }
  const kept = keptProvenance(pkg.archive);
  return kept && isProvenanceOf(kept, archiveSha256) ? { text: kept, origin: 'carried' } : null;
}

/** Copies a .tar.gz to `to` in one pass, returning its size, its sha256, and the sha256 and size of its uncompressed tar. */
async function copyHashed(input: ReadStream, to: string): Promise<{ size: number; archiveSha256: string; sha256: string; outputSize: number }> {
  const out = fs.createWriteStream(to, { flags: 'wx', mode: 0o644, flush: true });
  const gz = createHash('sha256');
  let sha256: string;
  let size = 0;
  let outputSize = 0;
  async function* copied(): AsyncGenerator<Buffer> {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      gz.update(chunk);
      size += chunk.length;
      if (!out.write(chunk)) await drained(out);
      yield chunk;
    }
    out.end();
    await once(out, 'close');
  }
  try {
    await once(out, 'open');
    sha256 = await uncompressedSha256(copied(), {}, (chunk) => (outputSize += chunk.length));
  } catch (e) {
    out.destroy();
    if (e instanceof Error && !('syscall' in e)) throw new PublishError(`${input.path}: not a .tar.gz (${e.message})`);
    throw e;
  }
  return { size, archiveSha256: gz.digest('hex'), sha256, outputSize };
}

/**
 * What `add-to-package-cache` publishes for `roots`: each package and its
 * run closure, each as built. A package not built, or built from other
 * inputs than its pkghash says today, is a problem, not an entry: it would
 * be published under a pkghash it does not have. `sha256Of` is the output
 * identity the build recorded for an archive, if any.
 */
export function publishable(g: PackageGraph, roots: string[], sha256Of: (archive: string) => string | null): { packages: PublishPackage[]; problems: string[] } {
  const dirs = new Set<string>();
  for (const a of roots) {
    const pkg = g.load(a);
    for (const d of g.closure(pkg.dir)) dirs.add(d);
    dirs.add(pkg.dir);
  }
  const packages: PublishPackage[] = [];
  const problems: string[] = [];
  for (const d of dirs) {
    const archive = path.join(d, '.pkg.tar.gz');
    const pkghash = g.pkghash(d);
    const rebuild = `run bin/build-packages-ifchange ./${display(d)}`;
    if (!fs.existsSync(archive)) {
      problems.push(`${display(archive)}: not built (${rebuild})`);
      continue;
    }
    const built = readText(path.join(d, '.pkghash'));
    if (built !== null && built !== pkghash) {
      problems.push(`${display(archive)}: out of date, its inputs changed since it was built (${rebuild})`);
      continue;
    }
    const pkg = g.load(d);
    const definition = { path: path.relative(path.dirname(path.dirname(pkg.dir)), pkg.dir), pkghashText: g.pkghashText(d), sources: pkg.fetch };
    packages.push({ pkghash, name: pkg.name, archive, sha256: sha256Of(archive) ?? undefined, closure: g.closure(d).map((c) => g.pkghash(c)), meta: pkg.meta, definition });
  }
  return { packages, problems };
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}
