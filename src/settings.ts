/**
 * Every PKG_* and PEERPKGS_* variable, read and validated in one place.
 *
 * Each variable has one reading everywhere: a yes/no flag accepts the same
 * words wherever it is asked, and a bad value is the same one-line error
 * (exit 2) whichever command meets it first, never silently ignored in one
 * place and fatal in another. Layers take the values from here rather than
 * from process.env.
 *
 * It also owns the configuration file, $PEERPKGS_HOME/config: `NAME: value`
 * lines (rec format, the tree's own parser) for the same variables, read
 * once with them and checked by the same code; a variable of the
 * environment overrides the file's. Only node: modules, errors.ts and the
 * rec parser (which imports nothing else) are imported, so that every
 * layer may use it.
 */
import * as os from 'node:os';
import * as path from 'node:path';
const fs = process.getBuiltinModule('node:fs');
import { errorClass, EXIT } from './errors.ts';
import { fileURLToPath } from 'node:url';
import { parseRec } from './tree/rec.ts';
import { TreeError } from './tree/errors.ts';

/** A variable whose value does not parse: a usage error. */
export class SettingsError extends errorClass('SettingsError', EXIT.usage) {}

/** PKG_CACHE_URL does not parse. */
export class CacheConfigError extends SettingsError {
  constructor(message: string) {
    super(message);
    this.name = 'CacheConfigError';
  }
}

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
/** The largest size any variable takes: beyond it, bytes are no longer counted exactly. */
const MAX_SIZE = 2 ** 53;
/** The longest time any variable takes (about 31 years). */
const MAX_SECONDS = 1e9;

/** The kinds of cache PKG_CACHE_URL may name; cache/backends.ts has a backend for each. */
export const CACHE_SCHEMES = ['file:', 'http:', 'https:', 'ipfs:', 'ipns:'];

/** One cache of PKG_CACHE_URL. */
export interface CacheUrl {
  /** as written, fragment included: how messages name it */
  spec: string;
  /** parsed, without the fragment */
  url: URL;
  /** the trust policy the fragment sets (#signed, #unsigned), if it sets one */
  signed: boolean | undefined;
  /** #provenance: an entry must come with a provenance a trusted key signed, for its archive */
  provenance: boolean;
}

/** One PKG_CACHE_URL entry, its syntax checked: the scheme, the fragment, what the scheme needs. */
export function parseCacheUrl(spec: string): CacheUrl {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new CacheConfigError(`PKG_CACHE_URL: ${spec} is not a URL (for a directory write file:///absolute/path)`);
  }
  if (!CACHE_SCHEMES.includes(url.protocol)) {
    const known = CACHE_SCHEMES.map((s) => `${s}//`).join(', ');
    throw new CacheConfigError(`PKG_CACHE_URL: ${spec}: ${url.protocol}// caches are not supported (supported: ${known})`);
  }
  // policies, joined by commas: #signed,provenance
  const words = url.hash.slice(1).split(',').filter(Boolean);
  for (const w of words) {
    if (!['signed', 'unsigned', 'provenance'].includes(w)) {
      throw new CacheConfigError(`PKG_CACHE_URL: ${spec}: unknown fragment #${w} (use #signed or #unsigned, #provenance, or none)`);
    }
  }
  if (words.includes('signed') && words.includes('unsigned')) throw new CacheConfigError(`PKG_CACHE_URL: ${spec}: #signed and #unsigned contradict each other`);
  const fragment = words.find((w) => w !== 'provenance') ?? '';
  url.hash = '';
  if (url.protocol === 'file:') {
    try {
      fileURLToPath(url);
    } catch (e) {
      throw new CacheConfigError(`PKG_CACHE_URL: ${spec}: ${(e as Error).message} (write file:///absolute/path)`);
    }
  }
  if ((url.protocol === 'ipfs:' || url.protocol === 'ipns:') && !url.host) {
    throw new CacheConfigError(`PKG_CACHE_URL: ${spec}: name the ${url.protocol === 'ipns:' ? 'IPNS name (ipns://k51…)' : 'CID (ipfs://CID)'}`);
  }
  return { spec, url, signed: fragment === '' ? undefined : fragment === 'signed', provenance: words.includes('provenance') };
}

/** Every PKG_* and PEERPKGS_* variable this module reads, with what it sets: `peerpkgs --help` lists them. */
export const VARIABLES: Record<string, string> = {
  PEERPKGS_HOME: 'where distfiles, unpacked outputs, sandbox roots, logs and keys live (default ~/.cache/peerpkgs)',
  PKG_CACHE_URL: 'binary caches to substitute from, in order (file://, http(s)://, ipfs://, ipns://)',
  PKG_FORCE_BINARY: 'yes: a package no cache has is an error, not a build',
  PKG_TRUSTED_KEYS: 'keys caches must be signed by, beside $PEERPKGS_HOME/trusted-keys',
  PKG_MIRROR_DB: "the source mirror database (default: mirrors/ipfs.csv beside the tree's pkg/)",
  PKG_MIRROR_IPFS: 'no: fetch sources from their urls only',
  PKG_IPFS_PEERS: 'multiaddrs of IPFS peers to dial, each ending in /p2p/<peer id>',
  PKG_IPFS_LISTEN: "the IPFS node's listen multiaddrs (default /ip4/127.0.0.1/tcp/0)",
  PKG_IPFS_TIMEOUT: 'seconds an IPFS transfer may bring no data (default 30)',
  PKG_IPFS_DHT: 'yes: find and announce providers on the libp2p Kademlia DHT (default no)',
  PKG_IPFS_MDNS: 'yes: find IPFS peers on the local network by multicast DNS, and answer their queries (default no)',
  PKG_IPFS_GATEWAYS: 'trustless HTTP gateways to fetch IPFS blocks from, each checked against its CID',
  PKG_IPFS_GATEWAY_LISTEN: 'a multiaddr the daemon serves its blocks on as a trustless HTTP gateway (default: none)',
  PKG_IPFS_GATEWAY_ANNOUNCE: "where peers are told the daemon's gateway is, when a proxy or cache on its host serves it (default: where it listens)",
  PKG_IPFS_PEER_GATEWAYS: "no: take a peer's files over libp2p only, never from the HTTP gateway it announces on its own address (default yes)",
  PKG_SANDBOX_TMP_SIZE: "bytes a build's /tmp and /dev/shm may hold (default 4G)",
  PKG_MAX_DOWNLOAD_SIZE: 'bytes a source without a size: field may have',
  PKG_MAX_UNPACK_SIZE: 'bytes a cached package without output-size may unpack to',
  PKG_DOWNLOAD_BASE_TIME: "seconds an HTTP download may take besides its bytes' share",
  PKG_DOWNLOAD_MIN_RATE: 'bytes a second below which a download is too slow to wait for',
  PKG_LOG_KEEP: 'build logs kept a package, the newest (default 5): peerpkgs log',
};

export interface Settings {
  /** PEERPKGS_HOME: where all state lives, resolved to an absolute path */
  home: string;
  /** PKG_CACHE_URL: the binary caches, in order */
  cacheUrls: CacheUrl[];
  /** PKG_FORCE_BINARY: a package no cache has is an error, not a build */
  forceBinary: boolean;
  /** PKG_TRUSTED_KEYS: the keys caches must be signed by (the raw value; cache/keys.ts parses it) */
  trustedKeys: string | undefined;
  /** PKG_MIRROR_DB: the mirror database instead of the tree's mirrors/ipfs.csv */
  mirrorDb: string | undefined;
  /** PKG_MIRROR_IPFS: whether the IPFS mirror is asked for sources */
  mirrorIpfs: boolean;
  /** PKG_IPFS_PEERS: multiaddrs of peers (unset: none) */
  ipfsPeers: string[];
  /** PKG_IPFS_LISTEN: listen multiaddrs (unset: the node's default) */
  ipfsListen: string[] | undefined;
  /** PKG_IPFS_TIMEOUT: ms an IPFS transfer may bring no data (default 30 s) */
  ipfsTimeoutMs: number;
  /** PKG_IPFS_DHT: whether the node joins the Kademlia DHT to find and announce providers */
  ipfsDht: boolean;
  /** PKG_IPFS_MDNS: whether the node finds (and answers) peers on the local network by mDNS */
  ipfsMdns: boolean;
  /** PKG_IPFS_GATEWAYS: http(s) URLs of trustless gateways, without a trailing slash (unset: none) */
  ipfsGateways: string[];
  /** PKG_IPFS_GATEWAY_LISTEN: where the daemon serves a trustless gateway (unset: it serves none) */
  ipfsGatewayListen: { host: string; port: number } | undefined;
  /** PKG_IPFS_GATEWAY_ANNOUNCE: where peers are told the gateway is (unset: where it listens) */
  ipfsGatewayAnnounce: { host: string; port: number }[] | undefined;
  /** PKG_IPFS_PEER_GATEWAYS: whether a file's CAR is asked of the gateway a connected peer announces on its own address */
  ipfsPeerGateways: boolean;
  /** PKG_SANDBOX_TMP_SIZE: bytes the sandbox's /tmp may hold */
  sandboxTmpBytes: number;
  /** PKG_MAX_DOWNLOAD_SIZE: bytes a source without a `size:` field may have */
  maxDownloadBytes: number;
  /** PKG_MAX_UNPACK_SIZE: bytes a cached package whose .info has no `output-size` may unpack to */
  maxUnpackBytes: number;
  /** PKG_DOWNLOAD_BASE_TIME: ms an HTTP download may take besides its bytes' share; the time for the answer to start */
  downloadBaseMs: number;
  /** PKG_DOWNLOAD_MIN_RATE: bytes a second below which a download is too slow to wait for */
  downloadMinRate: number;
  /** PKG_LOG_KEEP: how many build logs are kept a package */
  logKeep: number;
}

export const DEFAULTS = {
  ipfsTimeoutMs: 30_000,
  // tmpfs pages are memory: a small machine would swap, or kill, before a build filled 4G
  sandboxTmpBytes: Math.max(MiB, Math.min(4 * GiB, Math.floor(os.totalmem() / 4 / MiB) * MiB)),
  maxDownloadBytes: 4 * GiB,
  maxUnpackBytes: 16 * GiB,
  downloadBaseMs: 60_000,
  downloadMinRate: 32 * 1024,
  logKeep: 5,
};

/** yes/no, as every flag reads it. Unset or empty is `dflt`. */
export function parseFlag(name: string, value: string | undefined, dflt: boolean): boolean {
  if (value === undefined || value.trim() === '') return dflt;
  const v = value.trim().toLowerCase();
  if (['1', 'y', 'yes', 'true', 'on'].includes(v)) return true;
  if (['0', 'n', 'no', 'false', 'off'].includes(v)) return false;
  throw new SettingsError(`${name}=${value}: expected yes or no`);
}

/** A size in bytes: a number with an optional K, M, G or T (powers of 1024). */
export function parseSize(name: string, value: string | undefined, dflt: number, max = MAX_SIZE): number {
  if (value === undefined || value.trim() === '') return dflt;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(value.trim());
  if (!m) throw new SettingsError(`${name}=${value}: expected a size such as 512M or 4G`);
  const bytes = Math.floor(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase()));
  if (bytes <= 0) throw new SettingsError(`${name}=${value}: must be more than 0`);
  if (bytes > max) throw new SettingsError(`${name}=${value}: must be at most ${formatSize(max)}`);
  return bytes;
}

/** A positive number of seconds, as milliseconds: plain decimals only (no 0x10, no 1e-9). */
export function parseSeconds(name: string, value: string | undefined, dfltMs: number): number {
  if (value === undefined || value.trim() === '') return dfltMs;
  if (!/^\d+(\.\d+)?$/.test(value.trim())) throw new SettingsError(`${name}=${value}: expected a number of seconds`);
  const ms = Math.round(Number(value.trim()) * 1000);
  if (ms <= 0) throw new SettingsError(`${name}=${value}: must be at least 0.001 seconds`);
  if (ms > MAX_SECONDS * 1000) throw new SettingsError(`${name}=${value}: must be at most ${MAX_SECONDS} seconds`);
  return ms;
}

/** A whole number of at least 1. */
export function parseCount(name: string, value: string | undefined, dflt: number): number {
  if (value === undefined || value.trim() === '') return dflt;
  const v = value.trim();
  if (!/^\d+$/.test(v) || Number(v) < 1 || !Number.isSafeInteger(Number(v))) throw new SettingsError(`${name}=${value}: expected a whole number of at least 1`);
  return Number(v);
}

function words(value: string | undefined): string[] {
  return (value ?? '').split(/\s+/).filter(Boolean);
}

/** Multiaddrs, each checked as far as can be without the IPFS code: its form, and for a peer its /p2p/<peer id>. */
function multiaddrs(name: string, value: string | undefined, peer: boolean): string[] {
  const addrs = words(value);
  for (const a of addrs) {
    if (!a.startsWith('/')) throw new SettingsError(`${name}: ${a} is not a multiaddr (e.g. /ip4/0.0.0.0/tcp/4001)`);
    if (peer && !/\/p2p\/[1-9A-HJ-NP-Za-km-z]+$/.test(a)) {
      throw new SettingsError(`${name}: ${a} is not a multiaddr ending in /p2p/<peer id> (the daemon prints its own: peerpkgs ipfs id)`);
    }
  }
  return addrs;
}

/** http(s) URLs, each the root a gateway's /ipfs/ is under. */
function gatewayUrls(name: string, value: string | undefined): string[] {
  return words(value).map((u) => {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw new SettingsError(`${name}: ${u} is not a URL (e.g. https://trustless-gateway.link)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new SettingsError(`${name}: ${u}: not an http(s) URL`);
    if (url.search || url.hash) throw new SettingsError(`${name}: ${u}: a gateway URL has no query or fragment`);
    return url.href.replace(/\/+$/, '');
  });
}

/** One /ip4/HOST/tcp/PORT or /ip6/HOST/tcp/PORT: an HTTP server's address written as the node's are. */
function tcpListen(name: string, value: string | undefined): { host: string; port: number } | undefined {
  const addrs = words(value);
  if (addrs.length === 0) return undefined;
  if (addrs.length !== 1) throw new SettingsError(`${name}: ${value}: expected one address such as /ip4/127.0.0.1/tcp/8080`);
  return tcpAddrs(name, value, 'one address')[0];
}

/** /ip4/HOST/tcp/PORT or /ip6/HOST/tcp/PORT addresses, each an IP address and a port. */
function tcpAddrs(name: string, value: string | undefined, what = 'an address'): { host: string; port: number }[] {
  return words(value).map((a) => {
    const m = /^\/(ip4|ip6)\/([^/]+)\/tcp\/(\d{1,5})$/.exec(a);
    if (!m || Number(m[3]) > 65535 || !(m[1] === 'ip4' ? /^\d{1,3}(\.\d{1,3}){3}$/ : /^[\da-f:.]*:[\da-f:.]*$/i).test(m[2]!))
      throw new SettingsError(`${name}: ${a}: expected ${what} such as /ip4/127.0.0.1/tcp/8080`);
    return { host: m[2]!, port: Number(m[3]) };
  });
}

// reads every variable whatever the others' values: the fields the
// configuration file may have are the variables this reads (load, below)
function readSettings(env: NodeJS.ProcessEnv): Settings {
  return {
    // resolved now: a relative value must not change meaning when a build cds
    home: env.PEERPKGS_HOME ? path.resolve(env.PEERPKGS_HOME) : DEFAULT_HOME,
    cacheUrls: words(env.PKG_CACHE_URL).map(parseCacheUrl),
    forceBinary: parseFlag('PKG_FORCE_BINARY', env.PKG_FORCE_BINARY, false),
    trustedKeys: env.PKG_TRUSTED_KEYS,
    mirrorDb: env.PKG_MIRROR_DB || undefined,
    mirrorIpfs: parseFlag('PKG_MIRROR_IPFS', env.PKG_MIRROR_IPFS, true),
    ipfsPeers: multiaddrs('PKG_IPFS_PEERS', env.PKG_IPFS_PEERS, true),
    ipfsListen: env.PKG_IPFS_LISTEN !== undefined ? multiaddrs('PKG_IPFS_LISTEN', env.PKG_IPFS_LISTEN, false) : undefined,
    ipfsTimeoutMs: parseSeconds('PKG_IPFS_TIMEOUT', env.PKG_IPFS_TIMEOUT, DEFAULTS.ipfsTimeoutMs),
    ipfsDht: parseFlag('PKG_IPFS_DHT', env.PKG_IPFS_DHT, false),
    ipfsMdns: parseFlag('PKG_IPFS_MDNS', env.PKG_IPFS_MDNS, false),
    ipfsGateways: gatewayUrls('PKG_IPFS_GATEWAYS', env.PKG_IPFS_GATEWAYS),
    ipfsGatewayListen: tcpListen('PKG_IPFS_GATEWAY_LISTEN', env.PKG_IPFS_GATEWAY_LISTEN),
    ipfsGatewayAnnounce: env.PKG_IPFS_GATEWAY_ANNOUNCE?.trim() ? tcpAddrs('PKG_IPFS_GATEWAY_ANNOUNCE', env.PKG_IPFS_GATEWAY_ANNOUNCE) : undefined,
    ipfsPeerGateways: parseFlag('PKG_IPFS_PEER_GATEWAYS', env.PKG_IPFS_PEER_GATEWAYS, true),
    // bwrap's --size takes up to 2^63 bytes, well above the bound every size has (2^53)
    sandboxTmpBytes: parseSize('PKG_SANDBOX_TMP_SIZE', env.PKG_SANDBOX_TMP_SIZE, DEFAULTS.sandboxTmpBytes),
    maxDownloadBytes: parseSize('PKG_MAX_DOWNLOAD_SIZE', env.PKG_MAX_DOWNLOAD_SIZE, DEFAULTS.maxDownloadBytes),
    maxUnpackBytes: parseSize('PKG_MAX_UNPACK_SIZE', env.PKG_MAX_UNPACK_SIZE, DEFAULTS.maxUnpackBytes),
    downloadBaseMs: parseSeconds('PKG_DOWNLOAD_BASE_TIME', env.PKG_DOWNLOAD_BASE_TIME, DEFAULTS.downloadBaseMs),
    downloadMinRate: parseSize('PKG_DOWNLOAD_MIN_RATE', env.PKG_DOWNLOAD_MIN_RATE, DEFAULTS.downloadMinRate),
    logKeep: parseCount('PKG_LOG_KEEP', env.PKG_LOG_KEEP, DEFAULTS.logKeep),
  };
}

/** Where a variable's value came from, as `peerpkgs config` says it. */
export interface Origin {
  name: string;
  /** as given (the file's repeated fields joined by a space); for a default, its value as it would be written; null when unset */
  value: string | null;
  source: 'environment' | 'file' | 'default';
  /** the line of the file that gave it */
  line?: number;
}

/** The configuration file of a home. */
export function configFile(home: string): string {
  return path.join(home, 'config');
}

const DEFAULT_HOME = path.join(os.homedir(), '.cache', 'peerpkgs');

/** What a variable is when neither the environment nor the file sets it, written as a value of it; absent: unset. */
const DEFAULT_TEXT: Record<string, string> = {
  PEERPKGS_HOME: DEFAULT_HOME,
  PKG_FORCE_BINARY: 'no',
  PKG_MIRROR_IPFS: 'yes',
  PKG_IPFS_TIMEOUT: String(DEFAULTS.ipfsTimeoutMs / 1000),
  PKG_IPFS_DHT: 'no',
  PKG_IPFS_MDNS: 'no',
  PKG_IPFS_PEER_GATEWAYS: 'yes',
  PKG_SANDBOX_TMP_SIZE: formatSize(DEFAULTS.sandboxTmpBytes),
  PKG_MAX_DOWNLOAD_SIZE: formatSize(DEFAULTS.maxDownloadBytes),
  PKG_MAX_UNPACK_SIZE: formatSize(DEFAULTS.maxUnpackBytes),
  PKG_DOWNLOAD_BASE_TIME: String(DEFAULTS.downloadBaseMs / 1000),
  PKG_DOWNLOAD_MIN_RATE: formatSize(DEFAULTS.downloadMinRate),
};

/** The file's fields by name, a repeated one joined by a space (every list is space-separated); none when there is no file. */
function readConfigFile(file: string): Map<string, { value: string; line: number }> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new SettingsError(`${file}: cannot read the configuration file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const fields = new Map<string, { value: string; line: number }>();
  let records;
  try {
    records = parseRec(text, file);
  } catch (e) {
    // a syntax error in the file is a setting that does not parse, as in the environment
    if (e instanceof TreeError) throw new SettingsError(e.message);
    throw e;
  }
  for (const f of records.flatMap((r) => r.fields)) {
    if (f.name === 'PEERPKGS_HOME') throw new SettingsError(`${file}:${f.line}: PEERPKGS_HOME is where this file is: set it in the environment`);
    const had = fields.get(f.name);
    fields.set(f.name, had ? { ...had, value: `${had.value} ${f.value}` } : { value: f.value, line: f.line });
  }
  return fields;
}

/**
 * The settings of `env` over the configuration file of its home, and
 * where each variable came from. The variables are those readSettings
 * reads (a Proxy watches it), so that a variable added there is settable
 * from the file and shown by `peerpkgs config` with no other change; a
 * field of the file that it does not read is an error, as a misspelt
 * limit or key list would otherwise be silently ignored.
 */
function load(env: NodeJS.ProcessEnv): { value: Settings; origins: Origin[]; file: string } {
  const file = configFile(env.PEERPKGS_HOME ? path.resolve(env.PEERPKGS_HOME) : DEFAULT_HOME);
  const fromFile = readConfigFile(file);
  const merged: NodeJS.ProcessEnv = { ...env };
  for (const [name, f] of fromFile) if (!(name in env)) merged[name] = f.value;
  const names = new Set<string>();
  const watched = new Proxy(merged, {
    get: (target, name) => {
      if (typeof name === 'string' && /^(PKG|PEERPKGS)_/.test(name)) names.add(name);
      return target[name as string];
    },
  });
  let value: Settings;
  try {
    value = readSettings(watched);
  } catch (e) {
    // a value from the file is named by its place: every check's message starts with its variable's name
    if (e instanceof SettingsError) {
      const name = [...fromFile.keys()].find((n) => !(n in env) && new RegExp(`^${n}[=:]`).test(e.message));
      if (name) e.message = `${file}:${fromFile.get(name)!.line}: ${e.message}`;
    }
    throw e;
  }
  for (const [name, f] of fromFile) {
    if (names.has(name)) continue;
    const like = [...names].find((n) => n === name.toUpperCase() || n === `PKG_${name.toUpperCase()}`);
    throw new SettingsError(`${file}:${f.line}: unknown setting ${name}${like ? ` (did you mean ${like}?)` : ''}; peerpkgs config lists them`);
  }
  const origins = [...names].map((name): Origin => {
    if (name in env) return { name, value: env[name]!, source: 'environment' };
    const f = fromFile.get(name);
    if (f) return { name, value: f.value, source: 'file', line: f.line };
    return { name, value: DEFAULT_TEXT[name] ?? null, source: 'default' };
  });
  return { value, origins, file };
}

let last: { key: string; loaded: ReturnType<typeof load> } | null = null;

function loaded(env: NodeJS.ProcessEnv) {
  const key = JSON.stringify(
    Object.keys(env)
      .filter((k) => k.startsWith('PKG_') || k.startsWith('PEERPKGS_'))
      .sort()
      .map((k) => [k, env[k]]),
  );
  if (last?.key !== key) last = { key, loaded: load(env) };
  return last.loaded;
}

/** The settings of `env` (default: this process's) over its home's
 * configuration file, read once: asked again with the same variables, the
 * same object comes back. */
export function settings(env: NodeJS.ProcessEnv = process.env): Settings {
  return loaded(env).value;
}

/** Each variable, in the order settings.ts reads them, with its value and where it came from; and the file's path. */
export function settingOrigins(env: NodeJS.ProcessEnv = process.env): { file: string; origins: Origin[] } {
  const { file, origins } = loaded(env);
  return { file, origins };
}

/** `FILE:LINE: ` when the configuration file gave `name`'s value, else '': how a later check's message names the file, as load's do. */
export function settingPlace(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const { file, origins } = loaded(env);
  const o = origins.find((x) => x.name === name);
  return o?.source === 'file' ? `${file}:${o.line}: ` : '';
}

export function formatSize(bytes: number): string {
  for (const [unit, n] of [
    ['T', 1024 ** 4],
    ['G', GiB],
    ['M', 1024 ** 2],
    ['K', 1024],
  ] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return `${bytes} bytes`;
}
