/**
 * Signing keys and the keys we trust: who may vouch for a binary package.
 *
 * A package from a cache replaces a build, so whoever signed its .info is
 * trusted as much as the build itself. Keys are Ed25519. A key pair lives
 * in `<home>/keys/NAME.key` (the private key, PKCS#8 PEM, mode 0600, in a
 * 0700 directory) and `NAME.pub` (its public key as one trusted-keys line).
 *
 * A public key is written `ed25519:<base64 of the 32 raw bytes>` and known
 * in messages by its key id, `ed25519:` and the first 16 hex digits of the
 * sha256 of those raw bytes: short enough to read, long enough that no one
 * can make a second key with the same id.
 *
 * The keys we trust are listed in `<home>/trusted-keys`, one a line (a
 * public key, then an optional comment that names it; `#` starts a comment
 * line), and in PKG_TRUSTED_KEYS (public keys or paths to .pub files,
 * separated by spaces). Generating a key does not trust it: signing and
 * trusting are different people's decisions, even when they are the same
 * person, and a key on a build machine must not silently vouch for itself
 * on every machine that copies its home.
 */
import type { KeyObject } from 'node:crypto';
const { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } = process.getBuiltinModule('node:crypto');
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { settingPlace, settings } from '../settings.ts';
import { homeLayout } from '../home.ts';
import { withTemporaryFile } from '../archive/temporary.ts';
import { PeerpkgsError, EXIT, UsageError } from '../errors.ts';

export const KEY_PREFIX = 'ed25519:';
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const PUBLIC = /^ed25519:([A-Za-z0-9+/]{43}=)$/;

/** A key file that is missing, malformed or would be overwritten; a trust list that does not parse. */
export class KeyError extends PeerpkgsError {}

/**
 * A list of trusted keys (trusted-keys, a .pub file, PKG_TRUSTED_KEYS) that
 * does not parse: bad input, refused before anything is fetched, with the
 * usage errors' exit status.
 */
export class TrustListError extends KeyError {
  constructor(message: string) {
    super(message, EXIT.usage, 'TrustListError');
  }
}

/** `word` as messages quote it: short, whatever a garbage file holds. */
function quote(word: string): string {
  return JSON.stringify(word.length > 40 ? `${word.slice(0, 40)}…` : word);
}

export interface PublicKey {
  /** `ed25519:<base64 raw key>`, as written in trusted-keys and .pub files */
  publicKey: string;
  /** `ed25519:<16 hex>`: how messages and .info files name the key */
  id: string;
  key: KeyObject;
}

export interface SigningKey extends PublicKey {
  name: string;
  privateKey: KeyObject;
}

export interface TrustedKey extends PublicKey {
  /** what the line said after the key (a name, an e-mail), or '' */
  comment: string;
  /** where it was listed: `file:line` or `PKG_TRUSTED_KEYS` */
  from: string;
}

function rawOf(key: KeyObject): Buffer {
  const x = key.export({ format: 'jwk' }).x;
  if (key.asymmetricKeyType !== 'ed25519' || !x) throw new KeyError('not an Ed25519 key');
  return Buffer.from(x, 'base64url');
}

export function keyId(raw: Buffer): string {
  return KEY_PREFIX + createHash('sha256').update(raw).digest('hex').slice(0, 16);
}

function publicOf(key: KeyObject): PublicKey {
  const raw = rawOf(key);
  return { publicKey: KEY_PREFIX + raw.toString('base64'), id: keyId(raw), key };
}

/** `ed25519:<base64>` as a key, or null when the text is not one. */
export function parsePublicKey(text: string): PublicKey | null {
  const m = PUBLIC.exec(text);
  if (!m) return null;
  const raw = Buffer.from(m[1]!, 'base64');
  if (raw.length !== 32) return null;
  try {
    return { publicKey: text, id: keyId(raw), key: createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' }) };
  } catch {
    return null;
  }
}

export function keysDir(home: string): string {
  return homeLayout.keys(home);
}

function checkName(name: string): string {
  if (!NAME.test(name)) throw new KeyError(`invalid key name ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-', starting with a letter or digit`);
  return name;
}

/** Writes `text` to `file` only if no such file exists, never leaving a partial one under the name. */
function writeNew(file: string, text: string, mode: number): void {
  withTemporaryFile(file, (tmp) => {
    fs.writeFileSync(tmp, text, { mode, flag: 'w' });
    try {
      fs.linkSync(tmp, file); // unlike rename, fails when the name is taken
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new KeyError(`${file} already exists; remove it first to replace the key`);
      throw e;
    }
  });
}

/** Makes a new key pair NAME under `<home>/keys`; refuses to replace one. */
export function generateKey(home: string, name: string): SigningKey {
  checkName(name);
  const dir = keysDir(home);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(dir, `${name}.key`);
  const pubFile = path.join(dir, `${name}.pub`);
  for (const f of [keyFile, pubFile]) if (fs.existsSync(f)) throw new KeyError(`${f} already exists; remove it first to replace the key`);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = publicOf(publicKey);
  writeNew(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
  writeNew(pubFile, `${pub.publicKey} ${name}\n`, 0o644);
  return { ...pub, name, privateKey };
}

/** The key pair NAME made by generateKey. */
export function loadSigningKey(home: string, name: string): SigningKey {
  checkName(name);
  const keyFile = path.join(keysDir(home), `${name}.key`);
  let pem: string;
  try {
    pem = fs.readFileSync(keyFile, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new KeyError(`no signing key ${name} (${keyFile}); make one with: peerpkgs key generate ${name}`);
    throw e;
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw new KeyError(`${keyFile}: not a private key in PEM`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new KeyError(`${keyFile}: not an Ed25519 key`);
  return { ...publicOf(createPublicKey(privateKey)), name, privateKey };
}

/** The names of the key pairs under `<home>/keys`. */
export function listSigningKeys(home: string): string[] {
  try {
    return fs
      .readdirSync(keysDir(home))
      .filter((f) => f.endsWith('.key'))
      .map((f) => f.slice(0, -4))
      .sort();
  } catch {
    return [];
  }
}

export function signBytes(key: SigningKey, data: Uint8Array): Buffer {
  return sign(null, data, key.privateKey);
}

export function verifyBytes(key: PublicKey, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(null, data, key.key, signature);
  } catch {
    return false;
  }
}

/**
 * The trusted key that made a signature, and whether it verifies over
 * `data`; null when no trusted key is named. A signature by a key we do not
 * trust says nothing, whether it verifies or not, so it is not checked.
 */
export function trustedSignature(trusted: TrustedKeys, keyId: string | null, data: Uint8Array, signature: Uint8Array): { key: TrustedKey; verifies: boolean } | null {
  const key = keyId === null ? undefined : trusted.get(keyId);
  return key ? { key, verifies: verifyBytes(key, data, signature) } : null;
}

/** `ed25519:… (alice)`: a trusted key as messages name it. */
export function describeKey(k: TrustedKey): string {
  return k.comment ? `${k.id} (${k.comment})` : k.id;
}

/** The set of keys whose signatures we accept, by key id. */
export class TrustedKeys {
  private readonly byId = new Map<string, TrustedKey>();

  constructor(keys: Iterable<TrustedKey> = []) {
    for (const k of keys) if (!this.byId.has(k.id)) this.byId.set(k.id, k);
  }

  get(id: string): TrustedKey | undefined {
    return this.byId.get(id);
  }

  list(): TrustedKey[] {
    return [...this.byId.values()];
  }

  get size(): number {
    return this.byId.size;
  }

  /** `ed25519:… (alice), ed25519:…`, or `none`: for messages that say who is trusted. */
  describe(): string {
    if (this.byId.size === 0) return 'none';
    return this.list().map(describeKey).join(', ');
  }
}

/**
 * The keys of a trusted-keys text (also a .pub file): one public key a line
 * with an optional comment after it; blank lines and `#` lines are skipped.
 */
export function parseTrustedKeys(text: string, file: string): TrustedKey[] {
  const keys: TrustedKey[] = [];
  text.split('\n').forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const [word = '', ...rest] = t.split(/\s+/);
    const k = parsePublicKey(word);
    if (!k) throw new TrustListError(`${file}:${i + 1}: not a public key (want ed25519:<base64 of 32 bytes>, as in a .pub file): ${quote(word)}`);
    keys.push({ ...k, comment: rest.join(' '), from: `${file}:${i + 1}` });
  });
  return keys;
}

export function trustedKeysFile(home: string): string {
  return homeLayout.trustedKeys(home);
}

/** The keys trusted by `<home>/trusted-keys` and PKG_TRUSTED_KEYS together. */
export function loadTrustedKeys(home: string, env: NodeJS.ProcessEnv = process.env): TrustedKeys {
  const keys: TrustedKey[] = [];
  const file = trustedKeysFile(home);
  let text: string | null = null;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new TrustListError(`${file}: ${(e as Error).message}`);
  }
  if (text !== null) keys.push(...parseTrustedKeys(text, file));
  const words = (settings(env).trustedKeys ?? '').split(/\s+/).filter(Boolean);
  const place = settingPlace('PKG_TRUSTED_KEYS', env);
  for (const [i, word] of words.entries()) {
    const where = `${place}PKG_TRUSTED_KEYS, word ${i + 1}`;
    if (word.startsWith(KEY_PREFIX)) {
      const k = parsePublicKey(word);
      if (!k) throw new TrustListError(`${where}: not a public key (want ed25519:<base64 of 32 bytes>): ${quote(word)}`);
      keys.push({ ...k, comment: '', from: 'PKG_TRUSTED_KEYS' });
      continue;
    }
    let pub: string;
    try {
      pub = fs.readFileSync(path.resolve(word), 'utf8');
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
      // a .pub file's text pasted in whole: its comment is no key and no file
      const pasted = i > 0 && words[i - 1]!.startsWith(KEY_PREFIX) ? "; a .pub file's comment cannot be given here" : '';
      throw new TrustListError(`${where}: ${quote(word)}: ${why} (give public keys, ed25519:<base64>, or paths to .pub files${pasted})`);
    }
    keys.push(...parseTrustedKeys(pub, word));
  }
  return new TrustedKeys(keys);
}

/**
 * Adds to `<home>/trusted-keys` each key of `inputs` (ed25519:... words or
 * .pub files) it does not list yet; returns every key named, and whether it
 * was trusted already. PKG_TRUSTED_KEYS is not the file: a key only it
 * lists is added.
 */
export function trustKeys(home: string, inputs: string[]): Array<TrustedKey & { already: boolean }> {
  const have = loadTrustedKeys(home, {});
  const named: Array<TrustedKey & { already: boolean }> = [];
  const lines: string[] = [];
  for (const a of inputs) {
    if (!a.startsWith(KEY_PREFIX) && !fs.existsSync(a)) throw new UsageError(`${a}: neither a public key (${KEY_PREFIX}...) nor a file`);
    const text = a.startsWith(KEY_PREFIX) ? a : fs.readFileSync(a, 'utf8');
    for (const k of parseTrustedKeys(text, a.startsWith(KEY_PREFIX) ? 'argument' : a)) {
      const already = !!have.get(k.id) || lines.some((l) => l.startsWith(k.publicKey));
      if (!already) lines.push(`${k.publicKey}${k.comment ? ` ${k.comment}` : ''}\n`);
      named.push({ ...k, already });
    }
  }
  if (lines.length) {
    fs.mkdirSync(home, { recursive: true });
    fs.appendFileSync(trustedKeysFile(home), lines.join(''));
  }
  return named;
}
