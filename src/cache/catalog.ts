/**
 * The catalog of a cache: what a cache holds, by name, signed, so that a
 * package can be found and installed without a tree (`peerpkgs search`,
 * `info NAME`, `install NAME`); and the checks that make an old or forged
 * one useless, as SwiftOS and TUF have them.
 *
 * add-to-package-cache and `cache publish` write `DIR/catalog` (through
 * publish.ts's addToCache) after the entries, under the directory's lock: every entry whose `.info` is in DIR (read back, so
 * that adding to a cache keeps the others), with its name, meta, pkghash,
 * output sha256 and run closure, in the order they were added (the last
 * of a name is its newest); `generation`, the previous catalog's plus one;
 * `expires`; and the key and signature, Ed25519 over the bytes before the
 * `signature:` line, as the .info's. The text is canonical as the .info's
 * is: one spelling of one content, anything else refused.
 *
 * A reader refuses a catalog that is not signed by a trusted key (under
 * the cache's policy, as its entries are), that has expired, or whose
 * generation is lower than the last it saw from that cache (a replay of
 * an old one, or a mirror frozen in the past); the last generation seen is
 * kept per cache under $PEERPKGS_HOME/catalogs.
 */
const { createHash } = process.getBuiltinModule('node:crypto');
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { EXIT, PeerpkgsError, UsageError } from '../errors.ts';
import { withTemporaryFile } from '../archive/temporary.ts';
import { withLockFile } from '../engine/locks.ts';
import { homeLayout } from '../home.ts';
import { META_FIELDS, type Meta } from '../tree/meta.ts';
import { CacheError, readAll, type Cache } from './backends.ts';
import { checkTrust, InfoError, parseInfo, signedParts } from './info.ts';
import { signBytes, type SigningKey, type TrustedKeys } from './keys.ts';

export const CATALOG_FORMAT = 1;
/** Its name in a cache directory, beside the entries. */
export const CATALOG = 'catalog';
/** Far more than a cache of ten thousand entries needs. */
export const MAX_CATALOG_BYTES = 64 << 20;
export const DEFAULT_EXPIRES_DAYS = 30;

const HEX64 = /^[0-9a-f]{64}$/;
const KEY_ID = /^ed25519:[0-9a-f]{16}$/;
const SIGNATURE = /^[A-Za-z0-9+/]{86}==$/;
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

export interface CatalogEntry {
  pkghash: string;
  name: string;
  meta: Meta;
  /** the output's identity, as its .info says */
  outputSha256: string;
  /** pkghashes of the run closure, each after its own run-deps */
  closure: string[];
}

export interface CatalogFields {
  generation: number;
  /** ISO 8601, UTC, to the second */
  expires: string;
  /** oldest first */
  entries: CatalogEntry[];
}

export interface Catalog extends CatalogFields {
  keyId: string | null;
  signature: Buffer | null;
  signed: Buffer;
}

/** A catalog that does not parse, or is refused (exit status 10). */
export class CatalogError extends PeerpkgsError {
  constructor(message: string, exitCode: number = EXIT.failed) {
    super(message, exitCode, 'CatalogError');
  }
}

const line = (field: string, value: string) => (value === '' ? `${field}:\n` : `${field}: ${value}\n`);

function body(c: CatalogFields, keyId: string | null): string {
  const out = [line('peerpkgs-catalog', String(CATALOG_FORMAT)), line('generation', String(c.generation)), line('expires', c.expires), line('entries', String(c.entries.length))];
  for (const e of c.entries) {
    out.push(line('entry', e.pkghash), line('name', JSON.stringify(e.name)));
    for (const f of META_FIELDS) if (e.meta[f] !== undefined) out.push(line(f, JSON.stringify(e.meta[f])));
    out.push(line('output-sha256', e.outputSha256), line('closure', e.closure.join(' ')));
  }
  out.push(line('key', keyId ?? 'none'));
  return out.join('');
}

function check(c: CatalogFields): void {
  const bad = (what: string) => {
    throw new CatalogError(`invalid catalog: ${what}`);
  };
  if (!Number.isSafeInteger(c.generation) || c.generation < 1) bad(`generation ${c.generation} is not a positive whole number`);
  if (!TIME.test(c.expires) || Number.isNaN(Date.parse(c.expires))) bad(`expires ${JSON.stringify(c.expires)} is not a time as 2026-12-31T23:59:59Z`);
  for (const e of c.entries) {
    if (!HEX64.test(e.pkghash)) bad(`entry ${JSON.stringify(e.pkghash)} is not a pkghash`);
    if (e.name === '') bad(`entry ${e.pkghash}: the name is empty`);
    if (!HEX64.test(e.outputSha256)) bad(`entry ${e.pkghash}: output-sha256 is not 64 lowercase hex digits`);
    for (const p of e.closure) if (!HEX64.test(p)) bad(`entry ${e.pkghash}: closure entry ${JSON.stringify(p)} is not a pkghash`);
  }
}

export function serializeCatalog(fields: CatalogFields, key?: SigningKey): string {
  check(fields);
  const signed = body(fields, key?.id ?? null);
  return `${signed}signature: ${key ? signBytes(key, Buffer.from(signed)).toString('base64') : 'none'}\n`;
}

/** Reads a catalog, refusing anything but the canonical text of valid fields. Nothing is trusted yet: see accept(). */
export function parseCatalog(data: Buffer): Catalog {
  let parts: ReturnType<typeof signedParts>;
  try {
    parts = signedParts(data, 'catalog', MAX_CATALOG_BYTES);
  } catch (e) {
    throw e instanceof InfoError ? new CatalogError(e.message) : e;
  }
  const { signedText, sigText, fields } = parts;
  const bad = (what: string): never => {
    throw new CatalogError(`invalid catalog: ${what}`);
  };
  let i = 0;
  const next = (want: string): string => {
    const [f, v] = fields[i] ?? bad(`no ${want} field`);
    if (f !== want) bad(`${f} where ${want} should be`);
    i++;
    return v;
  };
  const json = (f: string, v: string): string => {
    let s: unknown = null;
    try {
      s = JSON.parse(v);
    } catch {
      /* said below */
    }
    return typeof s === 'string' ? s : bad(`${f} ${JSON.stringify(v.slice(0, 40))} is not a JSON string`);
  };
  const format = next('peerpkgs-catalog');
  if (format !== String(CATALOG_FORMAT))
    throw new CatalogError(`catalog format ${JSON.stringify(format)} is not understood (this peerpkgs reads format ${CATALOG_FORMAT}; a newer peerpkgs may)`);
  const count = (v: string) => (/^(0|[1-9][0-9]*)$/.test(v) ? Number(v) : NaN);
  const generation = count(next('generation'));
  const expires = next('expires');
  const n = count(next('entries'));
  const entries: CatalogEntry[] = [];
  while (fields[i]?.[0] === 'entry') {
    const pkghash = next('entry');
    const name = json('name', next('name'));
    const meta: Meta = {};
    for (const f of META_FIELDS) if (fields[i]?.[0] === f) meta[f] = json(f, next(f));
    const outputSha256 = next('output-sha256');
    const closure = next('closure');
    entries.push({ pkghash, name, meta, outputSha256, closure: closure === '' ? [] : closure.split(' ') });
  }
  if (entries.length !== n) bad(`it says ${n} entries and holds ${entries.length}`);
  const key = next('key');
  if (i !== fields.length) bad(`${fields[i]![0]} after the key`);
  const c: CatalogFields = { generation, expires, entries };
  check(c);
  if (key !== 'none' && !KEY_ID.test(key)) bad(`key ${JSON.stringify(key)} is not a key id (ed25519:<16 hex digits>) or "none"`);
  const keyId = key === 'none' ? null : key;
  if (body(c, keyId) !== signedText) bad('its fields are not in the canonical order and spelling');
  if (keyId === null ? sigText !== 'none' : !SIGNATURE.test(sigText)) bad(`signature is not ${keyId ? 'base64 of 64 bytes' : '"none" (the key is "none")'}`);
  return { ...c, keyId, signature: keyId ? Buffer.from(sigText, 'base64') : null, signed: Buffer.from(signedText) };
}

/** The newest entry named `name`. */
export function newest(c: CatalogFields, name: string): CatalogEntry | undefined {
  return c.entries.findLast((e) => e.name === name);
}

/** The newest entry of each name, in name order. */
export function newestByName(c: CatalogFields): CatalogEntry[] {
  const m = new Map(c.entries.map((e) => [e.name, e]));
  return [...m.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function readCatalogFile(file: string): Catalog | null {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    return parseCatalog(data);
  } catch (e) {
    if (e instanceof CatalogError)
      throw new CatalogError(
        `${file}: ${e.message}; move it away to start a new catalog at generation 1 (whoever saw this one will refuse the new one until it passes its generation)`,
      );
    throw e;
  }
}

/**
 * Writes DIR/catalog for the entries in DIR: those of the previous catalog
 * in its order, then the others, those of `added` last in its order. The
 * meta of an entry is `meta`'s, else the previous catalog's. Call it with
 * DIR's lock held, after the entries are in place.
 */
export function writeCatalog(dir: string, meta: Map<string, Meta>, key: SigningKey | undefined, expiresDays = DEFAULT_EXPIRES_DAYS, now = Date.now()): CatalogFields {
  const file = path.join(dir, CATALOG);
  const previous = readCatalogFile(file);
  // readers that trust the cache's key would take an unsigned one from whoever can write here
  if (previous?.keyId && !key)
    throw new UsageError(`${file} is signed by ${previous.keyId}: sign its next generation too (--sign-key NAME), or move it away to publish the cache unsigned`);
  const here = new Map<string, CatalogEntry>();
  for (const n of fs.readdirSync(dir).sort()) {
    if (n.startsWith('.') || !n.endsWith('.info') || !fs.existsSync(path.join(dir, `${n.slice(0, -5)}.tar.gz`))) continue;
    let info;
    try {
      info = parseInfo(fs.readFileSync(path.join(dir, n)));
    } catch (e) {
      if (e instanceof InfoError) throw new CatalogError(`${path.join(dir, n)}: ${e.message}`);
      throw e;
    }
    here.set(info.pkghash, { pkghash: info.pkghash, name: info.name, meta: {}, outputSha256: info.outputSha256, closure: info.closure });
  }
  const order = [...(previous?.entries ?? []).map((e) => e.pkghash), ...[...here.keys()].filter((h) => !meta.has(h)), ...meta.keys()];
  const before = new Map((previous?.entries ?? []).map((e) => [e.pkghash, e.meta]));
  const entries: CatalogEntry[] = [];
  const seen = new Set<string>();
  for (const h of order) {
    const e = here.get(h);
    if (!e || seen.has(h)) continue;
    seen.add(h);
    entries.push({ ...e, meta: meta.get(h) ?? before.get(h) ?? {} });
  }
  const expires = new Date(now + expiresDays * 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const fields: CatalogFields = { generation: (previous?.generation ?? 0) + 1, expires, entries };
  const text = serializeCatalog(fields, key);
  withTemporaryFile(file, (tmp) => {
    fs.writeFileSync(tmp, text, { flag: 'wx', mode: 0o644, flush: true });
    fs.renameSync(tmp, file);
  });
  return fields;
}

/** A cache's URL without its fragment: the policy is not the cache. */
function cacheKey(cache: Cache): string {
  return cache.url.replace(/#.*$/, '');
}

/** The file remembering the last generation seen from `cache` (and beside it, its lock). */
function seenFile(home: string, cache: Cache): string {
  return path.join(homeLayout.catalogs(home), createHash('sha256').update(cacheKey(cache)).digest('hex').slice(0, 32));
}

function lastSeen(file: string): number {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as { generation?: unknown };
    return typeof v.generation === 'number' ? v.generation : 0;
  } catch {
    return 0;
  }
}

/**
 * Whether `c`, fetched from `cache`, may be used: signed as the cache's
 * policy wants, not expired, and no older than the last one seen from it,
 * which it then becomes. Throws a CatalogError (exit status 10) saying why not.
 */
export async function accept(c: Catalog, cache: Cache, trusted: TrustedKeys, home: string, now = Date.now()): Promise<void> {
  const refuse = (why: string): never => {
    throw new CatalogError(`refusing the catalog of ${cache.url}: ${why}`, EXIT.untrusted);
  };
  try {
    checkTrust(c, trusted, cache.requireSignature, 'the catalog');
  } catch (e) {
    if (e instanceof InfoError) refuse(e.message);
    throw e;
  }
  if (Date.parse(c.expires) <= now) refuse(`it expired at ${c.expires}; its publisher renews it by adding to the cache again (add-to-package-cache)`);
  const file = seenFile(home, cache);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // one reader at a time compares and writes: two at once must not leave the older generation as the last seen
  await withLockFile(
    `${file}.lock`,
    () => {},
    () => {
      const seen = lastSeen(file);
      if (c.generation < seen) {
        refuse(
          `its generation ${c.generation} is lower than ${seen}, the last seen from it: an old catalog replayed, or a mirror frozen in the past; if the cache was made anew on purpose, remove ${file}`,
        );
      }
      if (c.generation === seen) return;
      withTemporaryFile(file, (tmp) => {
        fs.writeFileSync(tmp, JSON.stringify({ cache: cacheKey(cache), generation: c.generation }) + '\n', { flag: 'wx' });
        fs.renameSync(tmp, file);
      });
    },
  );
}

/** The catalog of `cache`, accepted; null when it has none. Throws CacheError (asking failed) or CatalogError. */
export async function fetchCatalog(cache: Cache, trusted: TrustedKeys, home: string): Promise<Catalog | null> {
  let data: Buffer;
  try {
    const got = await cache.get(CATALOG, { maxBytes: MAX_CATALOG_BYTES });
    if (!got) return null;
    data = await readAll(got, MAX_CATALOG_BYTES);
  } catch (e) {
    if (e instanceof CacheError) throw new CacheError(`${CATALOG}: ${e.message}`);
    throw e;
  }
  let c: Catalog;
  try {
    c = parseCatalog(data);
  } catch (e) {
    if (e instanceof CatalogError) throw new CatalogError(`${cache.url}: ${e.message}`);
    throw e;
  }
  await accept(c, cache, trusted, home);
  return c;
}

/** The catalogs of `caches`, in order, each accepted or with why not (a cache without one is left out). */
export async function catalogsOf(
  caches: Cache[],
  trusted: TrustedKeys,
  home: string,
): Promise<{ found: Array<{ cache: Cache; catalog: Catalog }>; refused: CatalogError[]; failed: string[] }> {
  const found: Array<{ cache: Cache; catalog: Catalog }> = [];
  const refused: CatalogError[] = [];
  const failed: string[] = [];
  for (const cache of caches) {
    try {
      const catalog = await fetchCatalog(cache, trusted, home);
      if (catalog) found.push({ cache, catalog });
    } catch (e) {
      if (e instanceof CatalogError) refused.push(e);
      else if (e instanceof CacheError) failed.push(`${cache.url}: ${e.message}`);
      else throw e;
    }
  }
  return { found, refused, failed };
}

/**
 * The packages of `entry`'s run closure and itself, in merge order, each
 * with the names of its direct run-deps (the closures' transitive
 * reduction: a catalog lists closures, not run-deps).
 */
export function closureOf(c: CatalogFields, entry: CatalogEntry): Array<{ entry: CatalogEntry; deps: string[] }> {
  const byHash = new Map(c.entries.map((e) => [e.pkghash, e]));
  const get = (h: string): CatalogEntry => {
    const e = byHash.get(h);
    if (!e) throw new CatalogError(`invalid catalog: ${entry.name} runs with pkghash ${h}, which it has no entry for`);
    return e;
  };
  return [...entry.closure, entry.pkghash].map((h) => {
    const e = get(h);
    const indirect = new Set(e.closure.flatMap((d) => get(d).closure));
    return { entry: e, deps: e.closure.filter((d) => !indirect.has(d)).map((d) => get(d).name) };
  });
}
