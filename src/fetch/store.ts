/**
 * The distfile store: source archives kept by the SHA-256 of their bytes,
 * so a distfile fetched once is never fetched again, whatever URL or mirror
 * it came from, and a file a user drops in by hand serves every package
 * that names its hash.
 *
 * Layout: `<home>/distfiles/<sha256>`, flat. A store holds thousands of
 * distfiles, not millions, and a flat directory lets a user find one with
 * `ls`. Files are read-only: a build that was handed a store path must not
 * be able to change what other builds will trust.
 *
 * The one rule of the store: a file under a hash's name has that hash.
 * Bytes go to a temporary name in the same directory (so the rename is
 * atomic), are hashed as they are written, synced, and renamed only when
 * the hash is right; anything else removes the temporary file.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { temporaryName, removeTemporaryFile } from '../archive/temporary.ts';

const SHA256 = /^[0-9a-f]{64}$/;

/** Bytes to store: a stream, a generator, or chunks in hand. */
export type Bytes = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export function isSha256(s: string): boolean {
  return SHA256.test(s);
}

export function checkSha256(s: string): string {
  if (!isSha256(s)) throw new Error(`invalid sha256 "${s}": want 64 lowercase hexadecimal digits`);
  return s;
}

/** The bytes written did not have the hash they were stored under. */
export class HashMismatch extends Error {
  readonly want: string;
  readonly got: string;
  readonly bytes: number;

  constructor(want: string, got: string, bytes: number) {
    super(`sha256 mismatch (got ${got})`);
    this.name = 'HashMismatch';
    this.want = want;
    this.got = got;
    this.bytes = bytes;
  }
}

export class DistfileStore {
  readonly dir: string;

  constructor(home: string) {
    this.dir = path.join(home, 'distfiles');
  }

  path(sha256: string): string {
    return path.join(this.dir, checkSha256(sha256));
  }

  has(sha256: string): boolean {
    return fs.existsSync(this.path(sha256));
  }

  /** Store a local file under its hash (how a user works offline). A file already stored is left as it is. */
  async add(file: string): Promise<string> {
    const stored = await this.ingest(fs.createReadStream(file));
    return path.basename(stored);
  }

  /** Store bytes that must hash to sha256; throws HashMismatch, storing nothing, when they do not. */
  async put(sha256: string, bytes: Bytes): Promise<string> {
    return this.ingest(bytes, checkSha256(sha256));
  }

  private async ingest(bytes: Bytes, want?: string): Promise<string> {
    fs.mkdirSync(this.dir, { recursive: true });
    const tmp = temporaryName(path.join(this.dir, 'distfile'));
    const hash = crypto.createHash('sha256');
    let size = 0;
    try {
      await pipeline(
        bytes,
        async function* (chunks: Bytes) {
          for await (const chunk of chunks) {
            hash.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        // flush: fsync before close, so a crash cannot leave a short file under a trusted name
        fs.createWriteStream(tmp, { flags: 'wx', mode: 0o444, flush: true }),
      );
      const got = hash.digest('hex');
      if (want !== undefined && got !== want) throw new HashMismatch(want, got, size);
      const final = path.join(this.dir, got);
      if (!fs.existsSync(final)) fs.renameSync(tmp, final);
      return final;
    } finally {
      removeTemporaryFile(tmp); // all of it on an error, nothing after the rename
    }
  }
}
