/**
 * Substitution: a package's output taken from a binary cache instead of
 * being built, used exactly as a local build would be.
 *
 * For each cache in order: fetch `<pkghash>.info`, parse it and check who
 * signed it against the cache's policy (keys.ts, info.ts); then its
 * `<pkghash>.provenance`, which a cache marked #provenance must have, signed
 * by a trusted key for the archive the .info names (provenance.ts), and
 * which is otherwise kept, unchecked but for its subject, to be carried
 * along when the package is published again; only then ask
 * for `<pkghash>.tar.gz` and read it once, as a stream: each chunk is
 * counted against the size the .info gives, hashed against its sha256,
 * written to a temporary file beside the target, and gunzipped into a safe
 * extraction (archive/extract.ts) that checks the uncompressed sha256 and
 * stops at the uncompressed size the .info gives (PKG_MAX_UNPACK_SIZE for
 * an .info without one), so that a signed decompression bomb fills no
 * disk. A 1 GB package needs no more memory than a 10 kB one, and is read once.
 *
 * Nothing is kept unless everything matched: the temporary file and the
 * temporary tree are removed on any failure, and the tree is renamed into
 * `outputs/<sha256>` only at the end. A cache that fails (an error, not a
 * miss) is named in a warning with the reason, and the next one is tried;
 * when none has the package, the caller builds it (or, with
 * PKG_FORCE_BINARY=yes, fails with NoBinaryError).
 */
const { createHash } = process.getBuiltinModule('node:crypto');
import { once } from 'node:events';
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { Readable } from 'node:stream';
import type { ExtractOptions } from '../archive/extract.ts';
import { unpackOutput } from '../store/outputs.ts';
import { uncompressedSha256 } from '../store/identity.ts';
import { ArchiveError } from '../archive/errors.ts';
import { drained } from '../archive/files.ts';
import { temporaryName, removeTemporaryFile } from '../archive/temporary.ts';
import { cachesFromEnv, CacheError, readAll, type Cache, type CacheOptions } from './backends.ts';
import { checkTrust, InfoError, MAX_INFO_BYTES, parseInfo, type Info } from './info.ts';
import { loadTrustedKeys, type TrustedKeys } from './keys.ts';
import { isProvenanceOf, MAX_PROVENANCE_BYTES, ProvenanceError, verifyProvenance } from './provenance.ts';
import { formatSize, settings } from '../settings.ts';
import { PeerpkgsError, EXIT } from '../errors.ts';
import { moving, NO_TRANSFER, type Transfer } from '../engine/rules.ts';

export interface SubstituteOptions {
  pkghash: string;
  /** the package's name, for messages */
  name: string;
  /** where the archive (pkg/X/.pkg.tar.gz) goes: it is written to a temporary name beside it */
  target: string;
  caches: Cache[];
  trusted: TrustedKeys;
  /** $PEERPKGS_HOME/outputs: the tree is unpacked into outputsDir/<sha256>, as OutputStore does */
  outputsDir: string;
  /** the pkghashes of the run closure, if known: an entry that says otherwise is refused */
  closure?: string[];
  /** uncompressed bytes an entry whose .info has no output-size may unpack to (default: PKG_MAX_UNPACK_SIZE) */
  maxUnpackBytes?: number;
  log(line: string): void;
  /** told of the archive's bytes as they come, from the cache `from` names (a build's status line, install's bar) */
  transfer?(total: number, from: string): Transfer;
}

export interface Hit {
  /** the output's identity: sha256 of the uncompressed archive */
  sha256: string;
  /** the verified archive, beside the target: the caller records its sha256 and renames it */
  tmp: string;
  /** the cache it came from, as PKG_CACHE_URL names it */
  cache: string;
  info: Info;
  /** id of the trusted key that signed it, or null when taken unsigned */
  signer: string | null;
  /** the cache's provenance for the archive, as it came, if it had one */
  provenance: Buffer | null;
}

export interface Tried {
  cache: string;
  /** 'not there' for a miss */
  reason: string;
}

export type SubstituteResult = { hit: Hit } | { miss: string[]; tried: Tried[] };

/** An entry whose bytes are not what its .info says, or which is inconsistent. */
class EntryError extends PeerpkgsError {}

const NOT_THERE = 'not there';

export async function substitute(opts: SubstituteOptions): Promise<SubstituteResult> {
  const tried: Tried[] = [];
  for (const [i, cache] of opts.caches.entries()) {
    try {
      const hit = await fromCache(cache, opts);
      if (hit) return { hit };
      tried.push({ cache: cache.url, reason: NOT_THERE });
    } catch (e) {
      if (!(e instanceof CacheError || e instanceof InfoError || e instanceof EntryError || e instanceof ArchiveError || e instanceof ProvenanceError)) throw e;
      const next = opts.caches[i + 1];
      opts.log(`warning: ${opts.name}: ${cache.url}: ${e.message}${next ? `; trying ${next.url}` : ''}`);
      tried.push({ cache: cache.url, reason: e.message });
    }
  }
  return { miss: tried.map((t) => t.cache), tried };
}

async function fromCache(cache: Cache, opts: SubstituteOptions): Promise<Hit | null> {
  const { pkghash } = opts;
  const infoName = `${pkghash}.info`;
  let info: Info;
  try {
    const got = await cache.get(infoName, { maxBytes: MAX_INFO_BYTES });
    if (!got) return null;
    info = parseInfo(await readAll(got, MAX_INFO_BYTES));
  } catch (e) {
    if (e instanceof InfoError) throw new InfoError(`${infoName}: ${e.message}`);
    if (e instanceof CacheError) throw new CacheError(`${infoName}: ${e.message}`);
    throw e;
  }
  if (info.pkghash !== pkghash) throw new EntryError(`${infoName}: it is the .info of pkghash ${info.pkghash}`);
  if (opts.closure && info.closure.join(' ') !== opts.closure.join(' ')) {
    throw new EntryError(`${infoName}: its closure (${info.closure.length} packages) is not the package's (${opts.closure.length})`);
  }
  let signer: string | null;
  try {
    signer = checkTrust(info, opts.trusted, cache.requireSignature)?.id ?? null;
  } catch (e) {
    if (e instanceof InfoError) throw new InfoError(`refusing ${infoName}: ${e.message}`);
    throw e;
  }
  // a provenance required is checked before the archive is asked for; one only carried along comes beside it, costing no round trip
  const required = cache.requireProvenance ? await provenanceOf(cache, info, opts.trusted) : null;
  const carried = cache.requireProvenance ? null : provenanceOf(cache, info, opts.trusted).catch(() => null);
  const tmp = temporaryName(opts.target); // the caller's to rename into place
  const transfer = opts.transfer?.(info.archiveSize, cache.url) ?? NO_TRANSFER;
  await moving(transfer, () => receive(cache, info, tmp, opts.outputsDir, opts.target, unpackBound(info, opts.maxUnpackBytes ?? settings().maxUnpackBytes), transfer));
  const provenance = required ?? (await carried);
  const comment = signer ? opts.trusted.get(signer)?.comment : '';
  const by = signer ? `signed by ${signer}${comment ? ` (${comment})` : ''}` : 'not signed by a trusted key';
  opts.log(`${opts.name}: from ${cache.url}, ${by}${cache.requireProvenance ? ', its provenance verified' : ''}, output ${info.outputSha256.slice(0, 16)}…`);
  return { sha256: info.outputSha256, tmp, cache: cache.url, info, signer, provenance };
}

/**
 * The entry's provenance. A cache marked #provenance must have one that a
 * trusted key signed for the archive and pkghash of the .info, else the
 * entry is refused before its archive is asked for. Any other cache's is
 * taken if it is there and its subject is the archive, else none: a
 * provenance nobody asked for is no reason to refuse a package.
 */
async function provenanceOf(cache: Cache, info: Info, trusted: TrustedKeys): Promise<Buffer | null> {
  const name = `${info.pkghash}.provenance`;
  let data: Buffer | null = null;
  try {
    const got = await cache.get(name, { maxBytes: MAX_PROVENANCE_BYTES });
    if (got) data = await readAll(got, MAX_PROVENANCE_BYTES);
  } catch (e) {
    if (!(e instanceof CacheError)) throw e;
    if (cache.requireProvenance) throw new CacheError(`${name}: ${e.message}`);
    return null;
  }
  if (!cache.requireProvenance) return data && isProvenanceOf(data, info.archiveSha256) ? data : null;
  const relax = 'remove #provenance from the URL in PKG_CACHE_URL to take entries without one';
  if (!data) throw new ProvenanceError(`refusing ${info.pkghash}.info: the cache is marked #provenance and has no ${name}; ${relax}`, EXIT.untrusted);
  try {
    verifyProvenance(data, trusted, { archiveSha256: info.archiveSha256, pkghash: info.pkghash });
  } catch (e) {
    if (e instanceof ProvenanceError) throw new ProvenanceError(`refusing ${name}: ${e.message}`, e.exitCode);
    throw e;
  }
  return data;
}

function unpackBound(info: Info, cap: number): ExtractOptions {
  if (info.outputSize !== undefined) return { maxBytes: info.outputSize, maxWhat: `the ${info.outputSize} bytes its .info gives as output-size` };
  return { maxBytes: cap, maxWhat: `the ${formatSize(cap)} that PKG_MAX_UNPACK_SIZE allows an .info without output-size` };
}

/** The one streaming pass: archive bytes checked, kept in `tmp` (to become `archive`), and unpacked into outputsDir/<sha256>. */
async function receive(cache: Cache, info: Info, tmp: string, outputsDir: string, archive: string, bound: ExtractOptions, transfer: Transfer): Promise<void> {
  const name = `${info.pkghash}.tar.gz`;
  const got = await cache.get(name, { maxBytes: info.archiveSize }).catch((e: unknown) => {
    throw e instanceof CacheError ? new CacheError(`${name}: ${e.message}`) : e;
  });
  if (!got) throw new EntryError(`it has ${info.pkghash}.info but no ${name}`);
  if (got.size !== undefined && got.size !== info.archiveSize) {
    got.close();
    throw new EntryError(`${name} is ${got.size} bytes, its .info says ${info.archiveSize}`);
  }
  const dest = path.join(outputsDir, info.outputSha256);
  const out = fs.createWriteStream(tmp, { flags: 'wx', mode: 0o644, highWaterMark: 1 << 20 });
  // the first failure of the bytes themselves: extraction reports it wrapped, or reports its consequence
  let failure: Error | null = null;
  const fail = (e: Error): Error => (failure ??= e);
  const hash = createHash('sha256');
  async function* checked(): AsyncGenerator<Buffer> {
    let n = 0;
    try {
      for await (const chunk of got!.body) {
        n += chunk.length;
        if (n > info.archiveSize) throw new EntryError(`${name} is longer than the ${info.archiveSize} bytes its .info says`);
        hash.update(chunk);
        transfer.advance(chunk.length);
        if (!out.write(chunk)) await drained(out);
        yield chunk;
      }
      if (n < info.archiveSize) throw new EntryError(`${name} is truncated (got ${n} of ${info.archiveSize} bytes)`);
      const sha = hash.digest('hex');
      if (sha !== info.archiveSha256) throw new EntryError(`${name} has sha256 ${sha}, its .info says ${info.archiveSha256}`);
      out.end();
      await once(out, 'close');
    } catch (e) {
      throw fail(e instanceof CacheError ? new CacheError(`${name}: ${e.message}`) : (e as Error));
    }
  }
  try {
    await once(out, 'open');
    fs.mkdirSync(outputsDir, { recursive: true });
    if (fs.existsSync(dest)) {
      // unpacked before (built here, or substituted for another package): check, but do not unpack again
      const sha = await gunzippedSha256(Readable.from(checked()), bound);
      if (sha !== info.outputSha256) throw new EntryError(`${name} unpacks to sha256 ${sha}, its .info says ${info.outputSha256}`);
    } else {
      await unpackOutput(outputsDir, Readable.from(checked()), info.outputSha256, archive, bound);
    }
  } catch (e) {
    got.close();
    out.destroy();
    removeTemporaryFile(tmp);
    if (failure) throw failure;
    if (e instanceof ArchiveError) throw new EntryError(`${name}: ${e.message.replace(/^cannot extract archive stream: /, '')}`);
    throw e;
  }
}

async function gunzippedSha256(input: Readable, bound: ExtractOptions): Promise<string> {
  try {
    return await uncompressedSha256(input, bound);
  } catch (e) {
    if (e instanceof Error && !('syscall' in e) && !(e instanceof CacheError) && !(e instanceof EntryError) && !(e instanceof ArchiveError)) {
      throw new ArchiveError(`cannot extract archive stream: ${e.message}`);
    }
    throw e;
  }
}

/** PKG_FORCE_BINARY=yes: a package no cache has is an error, not a build. */
export function forceBinary(env: NodeJS.ProcessEnv = process.env): boolean {
  return settings(env).forceBinary;
}

/** No cache had a usable binary package, and building was forbidden. */
export class NoBinaryError extends PeerpkgsError {
  readonly tried: Tried[];

  constructor(name: string, pkghash: string, tried: Tried[]) {
    const lines = [`${name}: no cache has a usable binary package (pkghash ${pkghash}), and PKG_FORCE_BINARY=yes forbids building it:`];
    if (tried.length === 0) lines.push('  no caches: PKG_CACHE_URL is empty');
    for (const t of tried) lines.push(`  ${t.cache}: ${t.reason}`);
    lines.push('unset PKG_FORCE_BINARY to build it');
    super(lines.join('\n'), EXIT.failed, 'NoBinaryError');
    this.tried = tried;
  }
}

export interface CacheConfig {
  caches: Cache[];
  trusted: TrustedKeys;
  forceBinary: boolean;
}

/** Everything substitution needs from the environment: PKG_CACHE_URL, trusted keys, PKG_FORCE_BINARY. */
export function cacheConfig(home: string, env: NodeJS.ProcessEnv = process.env, options: CacheOptions = {}): CacheConfig {
  return { caches: cachesFromEnv(env, options), trusted: loadTrustedKeys(home, env), forceBinary: forceBinary(env) };
}
