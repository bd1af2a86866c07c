/**
 * `peerpkgs verify-provenance FILE|URL [--archive FILE|URL]`: what the user
 * sees of cache/provenance.ts's check. A provenance and its archive are
 * read through the cache backends, so a file, a file://, http(s)://,
 * ipfs:// or ipns:// URL is read with the bounds and deadlines a
 * substitution has; the archive is by default the `<pkghash>.tar.gz`
 * beside a `<pkghash>.provenance`, as a cache lays them out.
 */
const { createHash } = process.getBuiltinModule('node:crypto');
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CacheConfigError, parseCacheUrls, readAll, type Cache, type Fetched } from '../cache/backends.ts';
import { loadTrustedKeys, describeKey } from '../cache/keys.ts';
import { MAX_PROVENANCE_BYTES, verifyProvenance } from '../cache/provenance.ts';
import { peerpkgsHome } from '../home.ts';
import { settings } from '../settings.ts';
import { PeerpkgsError } from '../errors.ts';
import { UsageError, parse, report, stdio, type CommandIO } from './frame.ts';

export const VERIFY_PROVENANCE_HELP = `Checks a cache entry's provenance (<pkghash>.provenance): that a trusted key
($PEERPKGS_HOME/trusted-keys, PKG_TRUSTED_KEYS) signed it and its signature
verifies, and that its subject is the archive: --archive, or else the
<pkghash>.tar.gz beside it. FILE|URL is a file or a file://, http(s)://,
ipfs:// or ipns:// URL. Prints what it verified: the subject, the package and
its pkghash, the builder, the build's times and the key.

Exit status: 0 verified, 1 not found, 2 usage, 9 not a provenance, or not this
archive's, 10 a signature that does not verify, or none by a trusted key.
`;

/** One file of a directory or a cache, as the command was given it. */
interface Located {
  cache: Cache;
  name: string;
  /** as the user wrote it, for messages */
  where: string;
}

function locate(arg: string, env: NodeJS.ProcessEnv): Located {
  let base: string;
  let name: string;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(arg)) {
    const url = new URL(arg);
    url.hash = '';
    name = decodeURIComponent(url.pathname.split('/').pop() ?? '');
    base = new URL('.', url).href;
  } else {
    const abs = path.resolve(arg);
    name = path.basename(abs);
    base = pathToFileURL(path.dirname(abs)).href;
  }
  if (!name) throw new UsageError(`${arg}: name a file, not a directory`);
  try {
    return { cache: parseCacheUrls(base, {}, env)[0]!, name, where: arg };
  } catch (e) {
    // said of PKG_CACHE_URL, where the other caches are named
    if (e instanceof CacheConfigError) throw new UsageError(`${arg}: ${e.message.replace(/^PKG_CACHE_URL: \S+: /, '')}`);
    throw e;
  }
}

async function fetched(f: Located, maxBytes: number): Promise<Fetched> {
  const got = await f.cache.get(f.name, { maxBytes });
  if (!got) throw new PeerpkgsError(`${f.where}: not found`);
  return got;
}

async function sha256Of(f: Located): Promise<string> {
  const h = createHash('sha256');
  const got = await fetched(f, settings().maxDownloadBytes);
  try {
    for await (const chunk of got.body) h.update(chunk);
  } finally {
    got.close();
  }
  return h.digest('hex');
}

export async function verifyProvenanceCommand(argv: string[], io: CommandIO = stdio): Promise<number> {
  const prog = 'peerpkgs verify-provenance';
  try {
    const { values, positionals } = parse(argv, { archive: { type: 'string' } });
    if (positionals.length !== 1) throw new UsageError('name one provenance file or URL');
    if (values.archive === '') throw new UsageError('--archive needs a value');
    const provenance = locate(positionals[0]!, io.env);
    let archive: Located;
    if (values.archive !== undefined) archive = locate(values.archive, io.env);
    else if (provenance.name.endsWith('.provenance')) {
      const name = provenance.name.replace(/\.provenance$/, '.tar.gz');
      archive = { ...provenance, name, where: provenance.where.slice(0, -provenance.name.length) + name };
    } else throw new UsageError(`${provenance.where} is not named <pkghash>.provenance: name its archive with --archive`);

    const trusted = loadTrustedKeys(peerpkgsHome(io.env), io.env);
    const data = await readAll(await fetched(provenance, MAX_PROVENANCE_BYTES), MAX_PROVENANCE_BYTES);
    const v = verifyProvenance(data, trusted, { archiveSha256: await sha256Of(archive) });
    const version = Object.entries(v.builder?.version ?? {})
      .map(([k, x]) => `${k} ${x}`)
      .join(', ');
    io.out(
      `${provenance.where}: verified\n` +
        `  subject:   ${v.subject.name} sha256 ${v.subject.sha256}, as ${archive.where}\n` +
        `  package:   ${v.path ?? '(not said)'}${v.name ? ` (${v.name})` : ''}, pkghash ${v.pkghash ?? '(not said)'}\n` +
        `  builder:   ${v.builder ? `${v.builder.id}${version ? `, ${version}` : ''}` : '(not said)'}\n` +
        `  built:     ${v.startedOn ?? '?'} to ${v.finishedOn ?? '?'}\n` +
        `  signed by: ${describeKey(v.signer)}\n`,
    );
    return 0;
  } catch (e) {
    if (!(e instanceof PeerpkgsError) && !((e as NodeJS.ErrnoException)?.code && 'syscall' in (e as object))) throw e;
    return report(prog, e, io);
  }
}
