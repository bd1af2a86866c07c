/**
 * The `.info` file beside a cached `<pkghash>.tar.gz`: what the archive is
 * and who vouches for it.
 *
 * It is small, fetched first and checked before a byte of the archive is
 * asked for, so a cache we do not trust costs one request. It binds the
 * pkghash (what was built) to the output's identity (the sha256 of the
 * uncompressed archive) and to the exact compressed bytes (size and
 * sha256), so that the archive is checked as it streams in, and the whole
 * binding is signed.
 *
 * The text is canonical: UTF-8, one `field: value` a line, each line ending
 * in `\n`, the fields in a fixed order, `signature:` last. The signature is
 * Ed25519 over the bytes before the `signature:` line, exactly as they are
 * in the file, so nothing is re-encoded before verifying; and a file that
 * is not the one canonical spelling of its fields is refused, so one signed
 * text has one meaning.
 *
 * Format 2 adds `output-size`, the bytes of the uncompressed archive, so
 * that a signed archive which inflates beyond it (a decompression bomb) is
 * stopped there. Format 1, without it, is still read; its unpacking is
 * bounded by PKG_MAX_UNPACK_SIZE instead.
 */
import { type SigningKey, type TrustedKey, type TrustedKeys, describeKey, signBytes, trustedSignature } from './keys.ts';
import { errorClass } from '../errors.ts';

export const INFO_FORMAT = 2;
/** The formats this peerpkgs reads: 1 has no output-size. */
const FORMATS = ['1', '2'];
/** Far more than any closure needs; a cache that sends more is not sending an .info. */
export const MAX_INFO_BYTES = 1 << 20;

const HEX64 = /^[0-9a-f]{64}$/;
const KEY_ID = /^ed25519:[0-9a-f]{16}$/;
const SIGNATURE = /^[A-Za-z0-9+/]{86}==$/;

/** What an .info says about a package, the signature aside. */
export interface InfoFields {
  pkghash: string;
  /** the package's directory name where it was built: for messages only, as the pkghash leaves it out */
  name: string;
  /** sha256 of the uncompressed archive: the output's identity */
  outputSha256: string;
  /** bytes of the uncompressed archive; absent in format 1 */
  outputSize?: number;
  /** bytes of the .tar.gz */
  archiveSize: number;
  /** sha256 of the .tar.gz bytes */
  archiveSha256: string;
  /** pkghashes of the run closure, each after its own run-deps */
  closure: string[];
}

export interface Info extends InfoFields {
  /** id of the key that signed it, or null when unsigned */
  keyId: string | null;
  signature: Buffer | null;
  /** the bytes the signature is over */
  signed: Buffer;
}

/** An .info that does not parse, or one that is refused. */
export class InfoError extends errorClass('InfoError') {}

function check(f: InfoFields): void {
  const bad = (what: string) => {
    throw new InfoError(`invalid .info: ${what}`);
  };
  if (!HEX64.test(f.pkghash)) bad(`pkghash ${JSON.stringify(f.pkghash)} is not 64 lowercase hex digits`);
  if (!HEX64.test(f.outputSha256)) bad(`output-sha256 ${JSON.stringify(f.outputSha256)} is not 64 lowercase hex digits`);
  if (!HEX64.test(f.archiveSha256)) bad(`archive-sha256 ${JSON.stringify(f.archiveSha256)} is not 64 lowercase hex digits`);
  if (!Number.isSafeInteger(f.archiveSize) || f.archiveSize < 0) bad(`archive-size ${f.archiveSize} is not a byte count`);
  if (f.outputSize !== undefined && (!Number.isSafeInteger(f.outputSize) || f.outputSize < 0)) bad(`output-size ${f.outputSize} is not a byte count`);
  if (f.name === '') bad('the name is empty');
  for (const c of f.closure) if (!HEX64.test(c)) bad(`closure entry ${JSON.stringify(c)} is not a pkghash`);
}

/** The signed part: everything up to and including the `key:` line. */
function body(f: InfoFields, keyId: string | null): string {
  const line = (field: string, value: string) => (value === '' ? `${field}:\n` : `${field}: ${value}\n`);
  return [
    line('peerpkgs-info', f.outputSize === undefined ? '1' : String(INFO_FORMAT)),
    line('pkghash', f.pkghash),
    line('name', JSON.stringify(f.name)),
    line('output-sha256', f.outputSha256),
    ...(f.outputSize === undefined ? [] : [line('output-size', String(f.outputSize))]),
    line('archive-size', String(f.archiveSize)),
    line('archive-sha256', f.archiveSha256),
    line('closure', f.closure.join(' ')),
    line('key', keyId ?? 'none'),
  ].join('');
}

/** The .info text for `fields`, signed by `key` if one is given. */
export function serializeInfo(fields: InfoFields, key?: SigningKey): string {
  check(fields);
  const signed = body(fields, key?.id ?? null);
  const signature = key ? signBytes(key, Buffer.from(signed)).toString('base64') : 'none';
  return `${signed}signature: ${signature}\n`;
}

/**
 * The parts of a signed text (an .info, a catalog): the bytes signed and
 * the signature after them, and the signed lines as fields in order. `what`
 * names the text in messages ("an .info" is said "invalid .info").
 */
export function signedParts(bytes: Buffer, what: string, max: number): { signedText: string; sigText: string; fields: Array<[string, string]> } {
  if (bytes.length > max) throw new InfoError(`invalid ${what}: more than ${max} bytes`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new InfoError(`invalid ${what}: not UTF-8`);
  }
  const at = text.lastIndexOf('signature: ', text.length - 1);
  if (!text.endsWith('\n') || at < 0 || (at > 0 && text[at - 1] !== '\n')) throw new InfoError(`invalid ${what}: no signature line at the end`);
  const signedText = text.slice(0, at);
  const fields: Array<[string, string]> = [];
  for (const line of signedText.split('\n').slice(0, -1)) {
    const m = /^([a-z0-9-]+):(?: (.*))?$/.exec(line);
    if (!m) throw new InfoError(`invalid ${what}: line ${JSON.stringify(line.slice(0, 100))} is not "field: value"`);
    fields.push([m[1]!, m[2] ?? '']);
  }
  return { signedText, sigText: text.slice(at + 'signature: '.length, -1), fields };
}

/** Reads an .info, refusing anything but the canonical text of valid fields. */
export function parseInfo(data: Buffer | string): Info {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const { signedText, sigText, fields: pairs } = signedParts(bytes, '.info', MAX_INFO_BYTES);
  const fields = new Map(pairs);
  const order = pairs.map(([f]) => f);
  const format = fields.get('peerpkgs-info');
  if (order[0] !== 'peerpkgs-info' || format === undefined) throw new InfoError('invalid .info: it does not start with "peerpkgs-info:"');
  if (!FORMATS.includes(format)) {
    throw new InfoError(`.info format ${JSON.stringify(format)} is not understood (this peerpkgs reads formats ${FORMATS.join(' and ')}; a newer peerpkgs may)`);
  }
  const get = (f: string): string => {
    const v = fields.get(f);
    if (v === undefined) throw new InfoError(`invalid .info: no ${f} field`);
    return v;
  };
  let name: unknown;
  try {
    name = JSON.parse(get('name'));
  } catch {
    name = null;
  }
  if (typeof name !== 'string') throw new InfoError('invalid .info: name is not a JSON string');
  const closure = get('closure');
  const size = get('archive-size');
  const count = (v: string) => (/^(0|[1-9][0-9]*)$/.test(v) ? Number(v) : NaN);
  const info: InfoFields = {
    pkghash: get('pkghash'),
    name,
    outputSha256: get('output-sha256'),
    ...(format === '1' ? {} : { outputSize: count(get('output-size')) }),
    archiveSize: count(size),
    archiveSha256: get('archive-sha256'),
    closure: closure === '' ? [] : closure.split(' '),
  };
  check(info);
  const key = get('key');
  if (key !== 'none' && !KEY_ID.test(key)) throw new InfoError(`invalid .info: key ${JSON.stringify(key)} is not a key id (ed25519:<16 hex digits>) or "none"`);
  const keyId = key === 'none' ? null : key;
  if (body(info, keyId) !== signedText) throw new InfoError('invalid .info: its fields are not in the canonical order and spelling');
  if (keyId === null ? sigText !== 'none' : !SIGNATURE.test(sigText)) {
    throw new InfoError(`invalid .info: signature ${JSON.stringify(sigText.slice(0, 100))} is not ${keyId ? 'base64 of 64 bytes' : '"none" (the key is "none")'}`);
  }
  return { ...info, keyId, signature: keyId ? Buffer.from(sigText, 'base64') : null, signed: Buffer.from(signedText) };
}

/**
 * Whether an .info may be used: a signature by a trusted key always must
 * verify; without one (unsigned, or by a key we do not know) it is taken
 * only when `requireSignature` is false. Returns the trusted signer, if any;
 * throws an InfoError saying who signed it and whom we trust.
 */
export function checkTrust(info: Pick<Info, 'keyId' | 'signature' | 'signed'>, trusted: TrustedKeys, requireSignature: boolean, what = 'the .info'): TrustedKey | null {
  const signed = info.signature ? trustedSignature(trusted, info.keyId, info.signed, info.signature) : null;
  if (signed) {
    if (!signed.verifies) throw new InfoError(`the signature by ${describeKey(signed.key)} does not verify: ${what} was altered or damaged`);
    return signed.key;
  }
  if (!requireSignature) return null;
  const relax = 'mark the cache URL with #unsigned in PKG_CACHE_URL to accept entries without a trusted signature';
  if (!info.keyId) throw new InfoError(`not signed, and this cache needs a signature by a trusted key (trusted: ${trusted.describe()}); ${relax}`);
  throw new InfoError(
    `signed by ${info.keyId}, which is not a trusted key (trusted: ${trusted.describe()}); ` +
      `to trust it, add its public key (its .pub file) to $PEERPKGS_HOME/trusted-keys or PKG_TRUSTED_KEYS`,
  );
}
