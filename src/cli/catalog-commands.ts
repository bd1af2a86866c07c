/**
 * The commands that read the catalogs of the configured caches: `search
 * WORD`, `info NAME` and `install NAME` (a bare name, not a path: paths are
 * the tree's commands). The catalogs are cache/catalog.ts's, substitution
 * cache/substitute.ts's, the profile export/profile.ts's.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { EXIT, PeerpkgsError, UsageError } from '../errors.ts';
import { parse, printJson, isBareName } from './frame.ts';

export { isBareName };
import { printable } from '../engine/log.ts';
import { peerpkgsHome, homeLayout } from '../home.ts';
import { forget, removeTemporaryFile } from '../archive/temporary.ts';
import { usingStore } from '../store/roots.ts';
import { catalogsOf, closureOf, newest, newestByName, type Catalog, type CatalogEntry } from '../cache/catalog.ts';
import { cacheConfig, substitute } from '../cache/substitute.ts';
import { barOnTerminal } from '../fetch/progress.ts';
import { parseCacheUrls, type Cache } from '../cache/backends.ts';
import type { TrustedKeys } from '../cache/keys.ts';
import type { ProfilePackage } from '../export/profile.ts';

const say = (s: string) => void process.stdout.write(s);
const tell = (s: string) => void process.stderr.write(s);

/** Nothing found, where something was asked for by name. */
class NotInCatalogs extends PeerpkgsError {
  constructor(message: string) {
    super(message, EXIT.notFound, 'NotInCatalogs');
  }
}

type Found = Awaited<ReturnType<typeof catalogsOf>>;

/** The accepted catalogs of the caches; warns of the others on stderr. */
async function catalogs(caches: Cache[], trusted: TrustedKeys, prog: string): Promise<Found> {
  if (caches.length === 0) throw new UsageError('no caches to read catalogs from: set PKG_CACHE_URL');
  const found = await catalogsOf(caches, trusted, peerpkgsHome());
  for (const f of found.failed) tell(`${prog}: warning: ${f}\n`);
  for (const r of found.refused) tell(`${prog}: ${r.message}\n`);
  return found;
}

/** What a name found in no catalog is: the refusals, if a catalog was refused (it may have had it), else not found. */
function notFound(name: string, found: Found, caches: Cache[]): PeerpkgsError {
  const first = found.refused[0];
  if (first) return new PeerpkgsError(`${name}: not in the catalogs that could be trusted (${found.refused.length} refused)`, first.exitCode, 'CatalogError');
  return new NotInCatalogs(`${name}: no catalog has it (searched: ${caches.map((c) => c.url).join(', ')})`);
}

/** The newest entry named `name` in the first catalog that has one. */
function lookup(found: Found, name: string): { cache: Cache; catalog: Catalog; entry: CatalogEntry } | null {
  for (const { cache, catalog } of found.found) {
    const entry = newest(catalog, name);
    if (entry) return { cache, catalog, entry };
  }
  return null;
}

const oneLine = (s: string | undefined) => printable((s ?? '').replace(/\s+/g, ' '));

export async function search(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } });
  if (positionals.length !== 1) throw new UsageError('name one word to search for');
  const word = positionals[0]!.toLowerCase();
  const { caches, trusted } = cacheConfig(peerpkgsHome());
  const found = await catalogs(caches, trusted, 'peerpkgs search');
  const rows = found.found.flatMap(({ cache, catalog }) =>
    newestByName(catalog)
      .filter((e) => e.name.toLowerCase().includes(word) || (e.meta.description ?? '').toLowerCase().includes(word))
      .map((e) => ({ name: e.name, ...e.meta, pkghash: e.pkghash, output: e.outputSha256, cache: cache.url })),
  );
  if (values.json) printJson(rows);
  else for (const r of rows) say(`${oneLine(r.name)}\t${oneLine(r.version) || '-'}\t${r.pkghash.slice(0, 12)}\t${oneLine(r.description)}\t${r.cache}\n`);
  return found.refused.length ? found.refused[0]!.exitCode : EXIT.ok;
}

/** `peerpkgs info NAME`: the newest catalog entry named NAME. */
export async function infoByName(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } });
  if (positionals.length !== 1) throw new UsageError('name one package');
  const name = positionals[0]!;
  const { caches, trusted } = cacheConfig(peerpkgsHome());
  const found = await catalogs(caches, trusted, 'peerpkgs info');
  const hit = lookup(found, name);
  if (!hit) throw notFound(name, found, caches);
  const { cache, catalog, entry } = hit;
  const closure = closureOf(catalog, entry)
    .slice(0, -1)
    .map((c) => c.entry.name);
  const doc = {
    name: entry.name,
    ...entry.meta,
    pkghash: entry.pkghash,
    output: entry.outputSha256,
    closure,
    cache: cache.url,
    catalog: { generation: catalog.generation, expires: catalog.expires, key: catalog.keyId },
  };
  if (values.json) {
    printJson(doc);
    return EXIT.ok;
  }
  const lines = [`name:        ${entry.name}`];
  for (const f of ['version', 'license', 'homepage', 'description'] as const) if (entry.meta[f] !== undefined) lines.push(`${`${f}:`.padEnd(13)}${oneLine(entry.meta[f])}`);
  lines.push(
    `pkghash:     ${entry.pkghash}`,
    `output:      ${entry.outputSha256}`,
    `closure:     ${closure.join(' ') || '(none)'}`,
    `cache:       ${cache.url} (catalog generation ${catalog.generation}, ${catalog.keyId ? `signed by ${catalog.keyId}` : 'unsigned'}, expires ${catalog.expires})`,
  );
  say(lines.map((l) => printable(l)).join('\n') + '\n');
  return EXIT.ok;
}

/**
 * The profile packages of each entry named and its run closure, their
 * outputs substituted into the output store (those there already kept):
 * from the cache whose catalog named them first, then the others.
 */
export async function fromCatalogs(names: string[], prog: string): Promise<ProfilePackage[]> {
  const home = peerpkgsHome();
  const { caches, trusted } = cacheConfig(home);
  const found = await catalogs(caches, trusted, prog);
  const pkgs: ProfilePackage[] = [];
  for (const name of names) {
    const hit = lookup(found, name);
    if (!hit) throw notFound(name, found, caches);
    pkgs.push(...(await substituteClosure(hit, [hit.cache, ...caches.filter((c) => c !== hit.cache)], trusted, home)));
  }
  return pkgs;
}

/** The packages of one catalog-origin package found again in the catalog of its cache, or null when that has no entry of its name. */
export async function fromOrigin(cacheUrl: string, name: string, prog: string): Promise<ProfilePackage[] | null> {
  const home = peerpkgsHome();
  const { trusted } = cacheConfig(home);
  const [cache] = parseCacheUrls(cacheUrl);
  const found = await catalogs([cache!], trusted, prog);
  if (found.refused[0]) throw found.refused[0];
  const hit = lookup(found, name);
  return hit ? substituteClosure(hit, [cache!], trusted, home) : null;
}

async function substituteClosure(hit: { cache: Cache; catalog: Catalog; entry: CatalogEntry }, caches: Cache[], trusted: TrustedKeys, home: string): Promise<ProfilePackage[]> {
  const outputsDir = homeLayout.outputs(home);
  const out: ProfilePackage[] = [];
  // each archive's bytes in a bar on a terminal; elsewhere the line each substitution says is enough
  const progress = barOnTerminal(process.stderr);
  for (const { entry: e, deps } of closureOf(hit.catalog, hit.entry)) {
    // the output's archive is kept beside it, so `verify --repair` has it and gc takes both
    const target = path.join(outputsDir, `${e.outputSha256}.tar.gz`);
    if (!fs.existsSync(path.join(outputsDir, e.outputSha256))) {
      fs.mkdirSync(outputsDir, { recursive: true });
      const r = await substitute({
        pkghash: e.pkghash,
        name: e.name,
        target,
        caches,
        trusted,
        outputsDir,
        closure: e.closure,
        log: (l) => tell(`${l}\n`),
        transfer: (total, from) => progress.begin(e.name, from, total),
      });
      if (!('hit' in r))
        throw new PeerpkgsError(`${e.name}: no cache has a usable binary package (pkghash ${e.pkghash}): ${r.tried.map((t) => `${t.cache}: ${t.reason}`).join('; ')}`);
      if (r.hit.sha256 !== e.outputSha256) {
        removeTemporaryFile(r.hit.tmp);
        throw new PeerpkgsError(`${e.name}: ${r.hit.cache} has output ${r.hit.sha256} for pkghash ${e.pkghash}, its catalog says ${e.outputSha256}`, EXIT.untrusted);
      }
      fs.renameSync(r.hit.tmp, target);
      forget(r.hit.tmp);
    }
    out.push({
      name: e.name,
      ...(e.meta.version !== undefined ? { version: e.meta.version } : {}),
      pkghash: e.pkghash,
      output: e.outputSha256,
      deps,
      requested: e === hit.entry,
      origin: { kind: 'catalog', cache: hit.cache.url, name: e.name },
    });
  }
  return out;
}

/** Runs `f` as a user of the store: what it substitutes is not collected meanwhile. */
export function inStore<T>(f: () => Promise<T>): Promise<T> {
  return usingStore(peerpkgsHome(), f, (pid) => tell(`waiting for gc (process ${pid}) to finish\n`));
}
