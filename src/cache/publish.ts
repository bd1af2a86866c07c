/**
 * Publishing: built packages copied into a cache directory, in p2pkgs'
 * layout, `<pkghash>.tar.gz` with its `<pkghash>.info` beside it, ready to
 * be served over HTTP (any static server) or added to IPFS.
 *
 * An .info vouches for an archive, so an archive is read once while it is
 * copied and both its compressed and uncompressed sha256 are computed:
 * what is signed is what was checked, never what a record claims. Each
 * file goes to a hidden temporary name and is renamed into place, the
 * archive before its .info; readers look for the .info first, so they see
 * a whole entry or none. An entry whose .info and archive are there is
 * left alone, so publishing again is cheap and never changes what others
 * have already fetched. One writer at a time: the cache directory's
 * `.lock` (engine/locks.ts) is held from the look at what is there to the
 * last rename, so two runs never both add an entry, each believing its own
 * .info is the one in place.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { drained } from '../archive/files.ts';
import { withLockFile } from '../engine/locks.ts';
import { temporaryName, removeTemporaryFile } from '../archive/temporary.ts';
import { serializeInfo } from './info.ts';
import type { SigningKey } from './keys.ts';
import { errorClass } from '../errors.ts';
import { display } from '../tree/errors.ts';
import type { PackageGraph } from '../tree/pkghash.ts';
import { uncompressedSha256 } from '../store/identity.ts';

export interface PublishPackage {
  pkghash: string;
  name: string;
  /** the built archive, pkg/X/.pkg.tar.gz */
  archive: string;
  /** the output's identity as recorded (.pkg.tar.gz.sha256): checked against the archive; computed if absent */
  sha256?: string;
  /** pkghashes of the run closure */
  closure: string[];
}

export interface AddOptions {
  /** the cache directory (made if missing) */
  dir: string;
  packages: PublishPackage[];
  /** signs each .info; without one the entries are unsigned */
  signKey?: SigningKey;
  /** Told once when another process is writing to the directory and this one waits. */
  onWait?: (pid: number) => void;
}

/** An archive that is missing or not what its record says. */
export class PublishError extends errorClass('PublishError') {}

/** Adds each package not yet in the cache; returns the pkghashes added and those already there. */
export async function addToCache(opts: AddOptions): Promise<{ added: string[]; skipped: string[] }> {
  const added: string[] = [];
  const skipped: string[] = [];
  fs.mkdirSync(opts.dir, { recursive: true });
  const seen = new Set<string>();
  await withLockFile(path.join(opts.dir, '.lock'), opts.onWait ?? (() => {}), async () => {
    for (const pkg of opts.packages) {
      if (seen.has(pkg.pkghash)) continue;
      seen.add(pkg.pkghash);
      const tarFile = path.join(opts.dir, `${pkg.pkghash}.tar.gz`);
      const infoFile = path.join(opts.dir, `${pkg.pkghash}.info`);
      if (fs.existsSync(infoFile) && fs.existsSync(tarFile)) {
        skipped.push(pkg.pkghash);
        continue;
      }
      await addOne(pkg, tarFile, infoFile, opts.signKey);
      added.push(pkg.pkghash);
    }
  });
  return { added, skipped };
}

async function addOne(pkg: PublishPackage, tarFile: string, infoFile: string, key?: SigningKey): Promise<void> {
  const tarTmp = temporaryName(tarFile);
  const infoTmp = temporaryName(infoFile);
  try {
    let input: fs.ReadStream;
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
    fs.renameSync(tarTmp, tarFile);
    fs.renameSync(infoTmp, infoFile);
  } finally {
    removeTemporaryFile(tarTmp);
    removeTemporaryFile(infoTmp);
  }
}

/** Copies a .tar.gz to `to` in one pass, returning its size, its sha256, and the sha256 and size of its uncompressed tar. */
async function copyHashed(input: fs.ReadStream, to: string): Promise<{ size: number; archiveSha256: string; sha256: string; outputSize: number }> {
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
    packages.push({ pkghash, name: g.load(d).name, archive, sha256: sha256Of(archive) ?? undefined, closure: g.closure(d).map((c) => g.pkghash(c)) });
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
