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
 *
 * The store is not trusted blindly either: anything running as the user
 * can change a file in it. When bytes are verified, the stat of the file
 * (size, mtime, ctime, inode, device) is recorded in
 * `<home>/distfiles.verified/<sha256>`;
 * before a distfile is used, a stat that still matches is enough, and any
 * other is a full rehash (a write always changes ctime). A file whose
 * bytes are wrong is removed, to be fetched again.
 */
const crypto = process.getBuiltinModule('node:crypto');
import { once } from 'node:events';
import type { BigIntStats } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { homeLayout } from '../home.ts';
import { EXIT, PeerpkgsError } from '../errors.ts';
import { temporaryName, removeTemporaryFile, withTemporaryFile } from '../archive/temporary.ts';

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

/** What a stat of a verified file shows; any write to it changes ctime. */
function signature(st: BigIntStats): string {
  return `size ${st.size} mtime ${st.mtimeNs} ctime ${st.ctimeNs} ino ${st.ino} dev ${st.dev}\n`;
}

async function hashFile(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export class DistfileStore {
  readonly dir: string;
  /** the signatures of verified distfiles, beside the store: it holds distfiles alone */
  private readonly signatures: string;

  constructor(home: string) {
    this.dir = homeLayout.distfiles(home);
    this.signatures = homeLayout.distfilesVerified(home);
  }

  path(sha256: string): string {
    return path.join(this.dir, checkSha256(sha256));
  }

  has(sha256: string): boolean {
    return fs.existsSync(this.path(sha256));
  }

  /**
   * Whether the stored file of sha256 has the right bytes: by its recorded
   * signature, or else by hashing it again. A file with wrong bytes is
   * removed; the answer then gives the hash it had.
   */
  async verify(sha256: string): Promise<'ok' | 'missing' | { removed: string }> {
    const file = this.path(sha256);
    const st = fs.statSync(file, { bigint: true, throwIfNoEntry: false });
    if (!st) return 'missing';
    let recorded: string | null = null;
    try {
      recorded = fs.readFileSync(this.signaturePath(sha256), 'utf8');
    } catch {
      /* never verified here: a file from before signatures, or put in by hand */
    }
    if (recorded === signature(st)) return 'ok';
    const got = await hashFile(file);
    if (got === sha256) {
      this.record(sha256, file);
      return 'ok';
    }
    // unless another process has put a good copy there meanwhile
    if (fs.statSync(file, { bigint: true, throwIfNoEntry: false })?.ino === st.ino) fs.rmSync(file, { force: true });
    return { removed: got };
  }

  private signaturePath(sha256: string): string {
    return path.join(this.signatures, sha256);
  }

  /** Record what a stat of `file`, just verified, shows. */
  private record(sha256: string, file: string): void {
    const sig = signature(fs.statSync(file, { bigint: true }));
    const dest = this.signaturePath(sha256);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    withTemporaryFile(dest, (tmp) => {
      fs.writeFileSync(tmp, sig, { flag: 'wx' });
      fs.renameSync(tmp, dest);
    });
  }

  /** Store a local file under its hash (how a user works offline). A file already stored is left as it is, if its bytes are right. */
  async add(file: string): Promise<string> {
    // opened first: a file that cannot be read is this call's error, not a
    // stream's 'error' event nobody listens to yet
    const fd = await fs.promises.open(file);
    if (!(await fd.stat()).isFile()) {
      await fd.close();
      // the file is the caller's to name: a usage error, as a missing one is (errors.ts)
      throw new PeerpkgsError(`${file}: not a regular file`, EXIT.usage);
    }
    const stored = await this.ingest(fd.createReadStream());
    return path.basename(stored);
  }

  /** Store bytes whose hash is not known yet (a URL prefetched for a new fetch record); returns the stored path. */
  async putNew(bytes: Bytes): Promise<string> {
    return this.ingest(bytes);
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
      // flush: fsync before close, so a crash cannot leave a short file under a trusted name
      const out = fs.createWriteStream(tmp, { flags: 'wx', mode: 0o444, flush: true });
      // opened before any byte is asked for: a source failing at once would
      // otherwise leave the file created after the clean-up below removed it
      await once(out, 'open');
      await pipeline(
        bytes,
        async function* (chunks: Bytes) {
          for await (const chunk of chunks) {
            hash.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        out,
      );
      const got = hash.digest('hex');
      if (want !== undefined && got !== want) throw new HashMismatch(want, got, size);
      const final = path.join(this.dir, got);
      if ((await this.verify(got)) !== 'ok') {
        fs.renameSync(tmp, final);
        this.record(got, final);
      }
      return final;
    } finally {
      removeTemporaryFile(tmp); // all of it on an error, nothing after the rename
    }
  }
}
