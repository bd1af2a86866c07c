/**
 * Provenance: `<pkghash>.provenance` beside a cache entry, saying how its
 * archive was made, in the formats supply-chain tools read: an in-toto
 * Statement v1 whose subject is the archive (by the sha256 of its bytes),
 * with a SLSA Provenance v1 predicate, in a DSSE envelope signed with the
 * cache's Ed25519 key (keys.ts).
 *
 * The predicate's build definition is what the pkghash covers, written
 * out: the pkghash text, the sources by url and sha256, the outputs of the
 * build closure by sha256; so everything in it but the run's start and end
 * times is the same for the same tree on any machine. The signature is
 * over DSSE's pre-authentication encoding of the payload's exact bytes, so
 * nothing is re-encoded before verifying.
 *
 * Verifying checks, in this order, that the envelope parses (else the
 * file is damaged), that a trusted key signed it and its signature
 * verifies (else it is untrusted), and that its subject is the archive
 * at hand (else it is not this archive's: damaged).
 */
import { signBytes, trustedSignature, describeKey, type SigningKey, type TrustedKey, type TrustedKeys } from './keys.ts';
import type { ClosureOutput } from '../store/build-record.ts';
import type { FetchEntry } from '../tree/package.ts';
import { BUILDER_VERSION } from '../tree/pkghash.ts';
import { PeerpkgsError, EXIT } from '../errors.ts';

export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const PREDICATE_TYPE = 'https://slsa.dev/provenance/v1';
export const PAYLOAD_TYPE = 'application/vnd.in-toto+json';
/** What `buildDefinition` means: a package of a peerpkgs tree, built in its sandbox (README: Provenance). */
export const BUILD_TYPE = 'urn:peerpkgs:build-type:package:1';
export const BUILDER_ID = 'urn:peerpkgs:builder';
/** Far more than a package's pkghash text and sources need. */
export const MAX_PROVENANCE_BYTES = 4 << 20;

const HEX64 = /^[0-9a-f]{64}$/;

/** A provenance refused: exitCode says whether it is untrusted (EXIT.untrusted) or damaged, or not this archive's (EXIT.damaged). */
export class ProvenanceError extends PeerpkgsError {
  constructor(message: string, exitCode: number) {
    super(message, exitCode, 'ProvenanceError');
  }
}

/** DSSE's pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in bytes. */
export function pae(type: string, body: Uint8Array): Buffer {
  const t = Buffer.from(type);
  return Buffer.concat([Buffer.from(`DSSEv1 ${t.length} `), t, Buffer.from(` ${body.length} `), body]);
}

/** What a build of one package was, for its statement. */
export interface BuildFacts {
  pkghash: string;
  /** the package's directory name */
  name: string;
  /** its directory in the tree, `pkg/NAME` */
  path: string;
  pkghashText: string;
  sources: Array<Pick<FetchEntry, 'file' | 'sha256' | 'urls'>>;
  buildClosure: ClosureOutput[];
  /** sha256 of the .tar.gz: the subject */
  archiveSha256: string;
  /** the peerpkgs version that built it */
  peerpkgs: string;
  startedOn: string;
  finishedOn: string;
}

/** The in-toto Statement for a build: keys in a fixed order, so that the same facts give the same bytes. */
export function statement(f: BuildFacts): object {
  return {
    _type: STATEMENT_TYPE,
    subject: [{ name: `${f.pkghash}.tar.gz`, digest: { sha256: f.archiveSha256 } }],
    predicateType: PREDICATE_TYPE,
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE,
        externalParameters: { path: f.path, name: f.name },
        internalParameters: { pkghash: f.pkghash, pkghashText: f.pkghashText },
        resolvedDependencies: [
          ...f.sources.map((s) => ({
            name: s.file,
            ...(s.urls.length ? { uri: s.urls[0] } : {}),
            digest: { sha256: s.sha256 },
            ...(s.urls.length > 1 ? { annotations: { mirrors: s.urls.slice(1) } } : {}),
          })),
          ...f.buildClosure.map((o) => ({ name: o.name, uri: `urn:peerpkgs:pkghash:${o.pkghash}`, digest: { sha256: o.sha256 } })),
        ],
      },
      runDetails: {
        builder: { id: BUILDER_ID, version: { peerpkgs: f.peerpkgs, builder: BUILDER_VERSION } },
        metadata: { startedOn: f.startedOn, finishedOn: f.finishedOn },
      },
    },
  };
}

/** The DSSE envelope of `body` as a file's text, signed by `key`, or with no signature without one. */
export function envelope(body: object, key?: SigningKey): string {
  const payload = Buffer.from(JSON.stringify(body));
  const signatures = key ? [{ keyid: key.id, sig: signBytes(key, pae(PAYLOAD_TYPE, payload)).toString('base64') }] : [];
  return JSON.stringify({ payloadType: PAYLOAD_TYPE, payload: payload.toString('base64'), signatures }, null, 2) + '\n';
}

interface Envelope {
  payload: Buffer;
  signatures: Array<{ keyid: string | null; sig: Buffer }>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const damaged = (why: string) => new ProvenanceError(`not a provenance: ${why}`, EXIT.damaged);

function parseEnvelope(data: Buffer): Envelope {
  if (data.length > MAX_PROVENANCE_BYTES) throw damaged(`more than ${MAX_PROVENANCE_BYTES} bytes`);
  let e: unknown;
  try {
    e = JSON.parse(data.toString());
  } catch {
    throw damaged('not JSON');
  }
  if (!isObject(e) || typeof e.payload !== 'string' || !Array.isArray(e.signatures)) throw damaged('not a DSSE envelope (payload, payloadType, signatures)');
  if (e.payloadType !== PAYLOAD_TYPE) throw damaged(`its payloadType is ${JSON.stringify(e.payloadType)}, not ${PAYLOAD_TYPE}`);
  const signatures = e.signatures.map((s: unknown) => {
    if (!isObject(s) || typeof s.sig !== 'string') throw damaged('a signature without "sig"');
    return { keyid: typeof s.keyid === 'string' ? s.keyid : null, sig: Buffer.from(s.sig, 'base64') };
  });
  return { payload: Buffer.from(e.payload, 'base64'), signatures };
}

/** The key that signed the envelope: a trusted one whose signature verifies, else a ProvenanceError saying who signed and whom we trust. */
function signerOf(e: Envelope, trusted: TrustedKeys): TrustedKey {
  const signed = pae(PAYLOAD_TYPE, e.payload);
  const checked = e.signatures.map((s) => trustedSignature(trusted, s.keyid, signed, s.sig));
  const good = checked.find((c) => c?.verifies);
  if (good) return good.key;
  const bad = checked.find((c) => c && !c.verifies);
  if (bad) throw new ProvenanceError(`the signature by ${describeKey(bad.key)} does not verify: the statement was altered or damaged`, EXIT.untrusted);
  const by = e.signatures.length ? `signed by ${e.signatures.map((s) => s.keyid ?? 'a key without an id').join(', ')}` : 'not signed';
  throw new ProvenanceError(
    `${by}, which is not a trusted key (trusted: ${trusted.describe()}); to trust it, add its public key (its .pub file) to $PEERPKGS_HOME/trusted-keys or PKG_TRUSTED_KEYS`,
    EXIT.untrusted,
  );
}

/** What a provenance says, as verify-provenance prints it. */
export interface Provenance {
  subject: { name: string; sha256: string };
  /** from the predicate, when it is one of ours */
  pkghash: string | null;
  name: string | null;
  path: string | null;
  builder: { id: string; version: Record<string, string> } | null;
  startedOn: string | null;
  finishedOn: string | null;
  statement: Record<string, unknown>;
}

/** The statement of a payload; only what a check needs must be there. */
function readStatement(payload: Buffer): Provenance {
  let s: unknown;
  try {
    s = JSON.parse(payload.toString());
  } catch {
    throw damaged('its payload is not JSON');
  }
  if (!isObject(s) || s._type !== STATEMENT_TYPE) throw damaged(`its payload is not an in-toto Statement (${STATEMENT_TYPE})`);
  if (s.predicateType !== PREDICATE_TYPE) throw damaged(`its predicateType is ${JSON.stringify(s.predicateType)}, not ${PREDICATE_TYPE}`);
  const subject = Array.isArray(s.subject) && s.subject.length === 1 && isObject(s.subject[0]) ? s.subject[0] : null;
  const sha256 = subject && isObject(subject.digest) ? subject.digest.sha256 : undefined;
  if (!subject || typeof subject.name !== 'string' || typeof sha256 !== 'string' || !HEX64.test(sha256)) throw damaged('its subject is not one archive with a sha256');
  const p = isObject(s.predicate) ? s.predicate : {};
  const def = isObject(p.buildDefinition) ? p.buildDefinition : {};
  const ours = def.buildType === BUILD_TYPE;
  const ext = ours && isObject(def.externalParameters) ? def.externalParameters : {};
  const int = ours && isObject(def.internalParameters) ? def.internalParameters : {};
  const run = isObject(p.runDetails) ? p.runDetails : {};
  const meta = isObject(run.metadata) ? run.metadata : {};
  const builder = isObject(run.builder) && typeof run.builder.id === 'string' ? run.builder : null;
  const str = (v: unknown) => (typeof v === 'string' ? v : null);
  return {
    subject: { name: subject.name, sha256 },
    pkghash: str(int.pkghash),
    name: str(ext.name),
    path: str(ext.path),
    builder: builder ? { id: builder.id as string, version: isObject(builder.version) ? (builder.version as Record<string, string>) : {} } : null,
    startedOn: str(meta.startedOn),
    finishedOn: str(meta.finishedOn),
    statement: s,
  };
}

/** What a verified provenance says, and who vouches for it. */
export interface Verified extends Provenance {
  signer: TrustedKey;
}

/**
 * Checks a provenance file: signed by a trusted key whose signature
 * verifies, about the archive whose .tar.gz has sha256 `archiveSha256`
 * and, if given, built from `pkghash`. Throws a ProvenanceError saying why not.
 */
export function verifyProvenance(data: Buffer, trusted: TrustedKeys, expect: { archiveSha256: string; pkghash?: string }): Verified {
  const e = parseEnvelope(data);
  const signer = signerOf(e, trusted);
  const p = readStatement(e.payload);
  if (p.subject.sha256 !== expect.archiveSha256) {
    throw new ProvenanceError(
      `its subject ${p.subject.name} has sha256 ${p.subject.sha256}, but the archive's is ${expect.archiveSha256}: it is not this archive's provenance`,
      EXIT.damaged,
    );
  }
  if (expect.pkghash !== undefined && p.pkghash !== expect.pkghash) {
    throw new ProvenanceError(`it is the provenance of pkghash ${p.pkghash ?? '(none)'}, not ${expect.pkghash}`, EXIT.damaged);
  }
  return { ...p, signer };
}

/** Whether a provenance, its signature unchecked, is about the archive with sha256 `archiveSha256`: what is carried along with a substituted archive. */
export function isProvenanceOf(data: Buffer, archiveSha256: string): boolean {
  try {
    return readStatement(parseEnvelope(data).payload).subject.sha256 === archiveSha256;
  } catch (e) {
    if (e instanceof ProvenanceError) return false;
    throw e;
  }
}
