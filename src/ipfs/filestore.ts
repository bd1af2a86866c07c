/**
 * The filestore: leaves of an added file kept as references into the file
 * itself rather than as block files, as kubo's `add --nocopy` does, so a
 * mirrored source (a distfile, read-only and named by its sha256) is kept
 * once on disk rather than twice.
 *
 *   $PEERPKGS_HOME/ipfs/filestore/<root CID>   one file a file added so
 *
 * Each is text: a first line `file <absolute path>`, then a line a leaf,
 * `<multihash, base32> <offset> <length> <raw|pb>`. It is written under a
 * temporary name and renamed into place, read whole when the node starts
 * (a few thousand lines for a GB), and never changed. The blocks above the
 * leaves (the root and the nodes that link leaves) are ordinary blocks.
 *
 * A leaf is read back from its range of the file, framed as the leaf block
 * it was (a raw leaf is the bytes; a dag-pb leaf has the prefix and suffix
 * leaves.ts writes), and hashed against its CID before it is used: a file
 * changed or gone since is a block this node does not have (and a warning
 * on stderr), never wrong bytes.
 */
const { createHash } = process.getBuiltinModule('node:crypto');
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import type { CID } from 'multiformats/cid';
import { temporaryName, removeTemporaryFile } from '../archive/temporary.ts';
import { SHA256 } from './codes.ts';

type Base32 = typeof import('multiformats/bases/base32').base32upper;

/** A leaf's place in its file; `frame` gives the dag-pb leaf's prefix and suffix for its length. */
export interface LeafRef {
  file: string;
  offset: number;
  length: number;
  kind: 'raw' | 'pb';
}

export type Framer = (length: number) => { prefix: Uint8Array; suffix: Uint8Array };

export class Filestore {
  private readonly dir: string;
  private readonly base32: Base32;
  private readonly frame: Framer;
  /** by the leaf's multihash in base32 */
  private readonly leaves = new Map<string, LeafRef>();

  constructor(dir: string, base32: Base32, frame: Framer) {
    this.dir = dir;
    this.base32 = base32;
    // a file's leaves are all one length but the last
    const frames = new Map<number, ReturnType<Framer>>();
    this.frame = (n) => {
      let f = frames.get(n);
      if (!f) frames.set(n, (f = frame(n)));
      return f;
    };
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    for (const n of names) if (!n.startsWith('.')) this.load(path.join(dir, n));
  }

  private load(index: string): void {
    const lines = fs.readFileSync(index, 'utf8').split('\n');
    const file = /^file (\/.*)$/.exec(lines[0] ?? '')?.[1];
    if (!file) {
      process.stderr.write(`ipfs: warning: ${index}: not a filestore index; ignored\n`);
      return;
    }
    for (const l of lines.slice(1)) {
      const m = /^(\S+) (\d+) (\d+) (raw|pb)$/.exec(l);
      if (m) this.leaves.set(m[1]!, { file, offset: Number(m[2]), length: Number(m[3]), kind: m[4] as 'raw' | 'pb' });
    }
  }

  private key(cid: CID): string {
    return this.base32.encode(cid.multihash.bytes);
  }

  has(cid: CID): boolean {
    return this.leaves.has(this.key(cid));
  }

  /** The leaf block of `cid` from its file, checked; null when the filestore has no such leaf or its bytes changed. */
  async get(cid: CID): Promise<Uint8Array | null> {
    const ref = this.leaves.get(this.key(cid));
    if (!ref) return null;
    const { prefix, suffix } = ref.kind === 'pb' ? this.frame(ref.length) : { prefix: new Uint8Array(0), suffix: new Uint8Array(0) };
    const block = Buffer.allocUnsafe(prefix.length + ref.length + suffix.length);
    block.set(prefix, 0);
    block.set(suffix, prefix.length + ref.length);
    try {
      const fh = await fs.promises.open(ref.file, 'r');
      try {
        const { bytesRead } = await fh.read(block, prefix.length, ref.length, ref.offset);
        if (bytesRead !== ref.length) throw new Error('shorter than when it was added');
      } finally {
        await fh.close();
      }
    } catch (e) {
      process.stderr.write(`ipfs: warning: ${ref.file}: cannot read the block ${cid} from it: ${(e as Error).message}\n`);
      return null;
    }
    const digest = createHash('sha256').update(block).digest();
    if (cid.multihash.code !== SHA256 || !digest.equals(cid.multihash.digest)) {
      process.stderr.write(`ipfs: warning: ${ref.file} has changed since it was added: its bytes at ${ref.offset} are no longer the block ${cid}\n`);
      return null;
    }
    return block;
  }

  /** Records where the leaves of `root` are in `file`; from now on they are read from it. */
  record(root: string, file: string, leaves: { cid: CID; offset: number; length: number; kind: 'raw' | 'pb' }[]): void {
    fs.mkdirSync(this.dir, { recursive: true });
    const abs = fs.realpathSync(file);
    const text = [`file ${abs}`, ...leaves.map((l) => `${this.key(l.cid)} ${l.offset} ${l.length} ${l.kind}`)].join('\n') + '\n';
    const index = path.join(this.dir, root);
    const tmp = temporaryName(index);
    try {
      fs.writeFileSync(tmp, text);
      fs.renameSync(tmp, index);
    } finally {
      removeTemporaryFile(tmp);
    }
    for (const l of leaves) this.leaves.set(this.key(l.cid), { file: abs, offset: l.offset, length: l.length, kind: l.kind });
  }
}
