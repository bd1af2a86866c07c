/**
 * Safe, streaming extraction of a .tar.gz: a package from a cache or any
 * ordinary source tarball, read in one pass with bounded memory.
 *
 * An archive may come from a stranger, so it is refused, with nothing left
 * behind, if any entry would reach outside the destination (absolute paths,
 * `..`, writing through a symlink, symlinks or hardlinks that lead out), is
 * a device or fifo, or carries a setuid/setgid bit; and if its sha256 is not
 * the one expected. Everything lands in a temporary sibling first, which is
 * renamed onto the destination only after the whole stream was read,
 * verified and checked.
 *
 * A peerpkgs archive's leading manifest is its index, not its content: it
 * is not written to the destination but returned, for the output store to
 * keep and check the tree against later.
 *
 * `readOnly` takes every write bit off the tree, directories included (the
 * destination itself too): the output store's trees are shared by
 * hardlinks, and a write to one would change every user of it.
 */
const { createHash } = process.getBuiltinModule('node:crypto');
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as tarStream from 'tar-stream';
import { ArchiveError, asArchiveError } from './errors.ts';
import { MANIFEST_NAME } from './manifest.ts';
import { temporaryName, removeTemporary } from './temporary.ts';

type Placed = { type: 'file' | 'directory' } | { type: 'symlink'; target: string };

/** A path in the archive made relative and clean ('' for the root), or a refusal of `entry`. */
function entryPath(name: string, entry = name): string {
  const what = name === entry ? 'its path' : `its target ${JSON.stringify(name)}`;
  if (name.includes('\0')) throw refused(entry, `${what} holds a NUL byte`);
  if (name.startsWith('/')) throw refused(entry, `${what} is absolute`);
  const parts = name.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw refused(entry, `${what} goes up through '..'`);
  return parts.join('/');
}

function refused(entry: string, why: string): ArchiveError {
  return new ArchiveError(`refusing archive entry ${JSON.stringify(entry)}: ${why}`);
}

/**
 * What extraction has made so far, by path. Only these paths exist below
 * the temporary root, so this map is the truth about what a path leads to.
 * Packing a package fills one too, to refuse what extraction would.
 */
export class Tree {
  readonly placed = new Map<string, Placed>();
  readonly dirModes: { path: string; mode: number; mtime: Date }[] = [];
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  abs(p: string): string {
    return path.join(this.root, p);
  }

  /** Creates p's missing parents, refusing to go through anything but directories. */
  async parents(p: string, entry: string): Promise<void> {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      const there = this.placed.get(dir);
      if (there === undefined) {
        await fs.promises.mkdir(this.abs(dir));
        this.placed.set(dir, { type: 'directory' });
      } else if (there.type !== 'directory') {
        throw refused(entry, `its parent ${JSON.stringify(dir)} is a ${there.type}`);
      }
    }
  }

  /**
   * Why the symlink at `at`, with `target`, leads out of the tree, if it
   * does. It is resolved as the kernel would, following the symlinks in the
   * tree, for `a -> .` makes `b -> a/..` lead out although it looks harmless.
   */
  escape(at: string, target: string): string | undefined {
    const parts = at.split('/');
    const todo = [target];
    parts.pop();
    let hops = 0;
    for (let rel = todo.pop(); rel !== undefined; rel = todo.pop()) {
      if (rel.startsWith('/')) return `it leads to the absolute path ${rel}`;
      const pending = rel.split('/');
      while (pending.length > 0) {
        const c = pending.shift() as string;
        if (c === '' || c === '.') continue;
        if (c === '..') {
          if (parts.pop() === undefined) return 'it leads outside the archive';
          continue;
        }
        parts.push(c);
        const there = this.placed.get(parts.join('/'));
        if (there?.type === 'symlink') {
          if (++hops > 40) return 'it is part of a symlink loop';
          parts.pop();
          todo.push(pending.join('/'));
          pending.length = 0;
          todo.push(there.target);
        }
      }
    }
    return undefined;
  }
}

async function place(tree: Tree, header: tarStream.Header, content: NodeJS.ReadableStream, mask: number): Promise<void> {
  const entry = header.name;
  const p = entryPath(entry);
  if (p === '') return; // the root itself: the destination's own mode is the caller's
  const before = tree.placed.get(p);
  // An ordinary tar may name a directory again, or after the contents that made it.
  if (before !== undefined && !(before.type === 'directory' && header.type === 'directory')) throw refused(entry, 'it appears twice');
  await tree.parents(p, entry);
  const abs = tree.abs(p);
  const mode = (header.mode ?? 0o644) & 0o7777;
  const mtime = header.mtime ?? new Date(0);
  switch (header.type) {
    case 'file':
    case 'contiguous-file': {
      if (mode & 0o6000) throw refused(entry, `mode ${mode.toString(8)} has a setuid or setgid bit`);
      // 'wx' (O_EXCL) never follows a symlink, should one have slipped through.
      await pipeline(content, fs.createWriteStream(abs, { flags: 'wx', mode: 0o600 }));
      await fs.promises.utimes(abs, mtime, mtime);
      await fs.promises.chmod(abs, mode & 0o777 & mask);
      tree.placed.set(p, { type: 'file' });
      return;
    }
    case 'directory':
      if (!tree.placed.has(p)) await fs.promises.mkdir(abs);
      tree.placed.set(p, { type: 'directory' });
      tree.dirModes.push({ path: p, mode: mode & 0o777 & mask, mtime });
      return;
    case 'symlink': {
      const target = header.linkname ?? '';
      if (target === '' || target.includes('\0')) throw refused(entry, 'symlink without a valid target');
      tree.placed.set(p, { type: 'symlink', target });
      const escape = tree.escape(p, target); // checked again at the end, when every symlink is known
      if (escape !== undefined) throw refused(entry, `symlink to ${JSON.stringify(target)}: ${escape}`);
      await fs.promises.symlink(target, abs);
      await fs.promises.lutimes(abs, mtime, mtime);
      return;
    }
    case 'link': {
      const target = entryPath(header.linkname ?? '', entry);
      if (tree.placed.get(target)?.type !== 'file') {
        throw refused(entry, `hardlink to ${JSON.stringify(header.linkname)}, which is not a file extracted before it`);
      }
      await fs.promises.link(tree.abs(target), abs);
      tree.placed.set(p, { type: 'file' });
      return;
    }
    default:
      throw refused(entry, `${header.type ?? 'unknown'} entries are not allowed`);
  }
}

/** What an archive may be: its uncompressed sha256, and a bound on its uncompressed bytes. */
export interface ExtractOptions {
  expectSha256?: string;
  /** no write bits on anything unpacked, directories included: what the output store holds is shared by hardlink */
  readOnly?: boolean;
  /** more uncompressed bytes are refused, as they come: a small .tar.gz may inflate a thousandfold */
  maxBytes?: number;
  /** what maxBytes is, for messages */
  maxWhat?: string;
}

/**
 * Extracts a .tar.gz (a path or a stream) onto destDir, replacing what was
 * there only once the archive has been read whole and found safe and, if
 * expectSha256 is given, to have that sha256 (of the uncompressed tar).
 * Returns the sha256 of the uncompressed tar, and the text of its leading
 * manifest if it has one.
 */
export async function extract(source: string | NodeJS.ReadableStream, destDir: string, opts: ExtractOptions = {}): Promise<{ sha256: string; manifest?: string }> {
  const mask = opts.readOnly ? ~0o222 : ~0;
  const what = typeof source === 'string' ? source : 'archive stream';
  const tree = new Tree(temporaryName(destDir));
  await fs.promises.mkdir(tree.root);
  const input = typeof source === 'string' ? fs.createReadStream(source) : source;
  const hash = createHash('sha256');
  const tar = tarStream.extract();
  const feeding = pipeline(
    input,
    zlib.createGunzip(),
    boundedBytes(opts, (chunk) => hash.update(chunk)),
    tar as unknown as NodeJS.WritableStream, // a streamx stream, which Node's pipeline takes
  );
  feeding.catch(() => {}); // awaited below; this keeps an early failure from going unhandled
  try {
    let first = true;
    let manifest: string | undefined;
    for await (const entry of tar) {
      const isManifest = first && entry.header.name === MANIFEST_NAME;
      first = false;
      if (isManifest) {
        const chunks: Buffer[] = [];
        for await (const chunk of entry) chunks.push(chunk as Buffer);
        manifest = Buffer.concat(chunks).toString('utf8');
      } else {
        await place(tree, entry.header, entry as unknown as NodeJS.ReadableStream, mask);
      }
      entry.resume(); // drains entries whose content was not read
    }
    await feeding;
    const sha256 = hash.digest('hex');
    if (opts.expectSha256 !== undefined && sha256 !== opts.expectSha256) {
      throw new ArchiveError(`${what}: sha256 of the uncompressed archive is ${sha256}, expected ${opts.expectSha256}`);
    }
    for (const [p, placed] of tree.placed) {
      const escape = placed.type === 'symlink' ? tree.escape(p, placed.target) : undefined;
      if (escape !== undefined) throw refused(p, `symlink: ${escape}`);
    }
    // Deepest first and after all contents, so that read-only directories can be filled.
    const depth = (p: string) => p.split('/').length;
    for (const d of tree.dirModes.sort((a, b) => depth(b.path) - depth(a.path))) {
      await fs.promises.utimes(tree.abs(d.path), d.mtime, d.mtime);
      await fs.promises.chmod(tree.abs(d.path), d.mode);
    }
    if (opts.readOnly) await fs.promises.chmod(tree.root, 0o555);
    await replace(tree.root, destDir);
    return manifest === undefined ? { sha256 } : { sha256, manifest };
  } catch (e) {
    tar.destroy(); // and with it, through the pipeline, the input
    await feeding.catch(() => {});
    throw asArchiveError(e, `cannot extract ${what}`);
  } finally {
    await removeTemporary(tree.root); // nothing there once it is in place
  }
}

/**
 * A pipeline stage that passes the uncompressed bytes on, showing each to
 * `see`, and refuses more than `opts.maxBytes` of them. Shared by every
 * reader of an archive from elsewhere, so a bomb stops at the bound whether
 * it is unpacked or only hashed.
 */
export function boundedBytes(opts: ExtractOptions, see: (chunk: Buffer) => void): (chunks: AsyncIterable<Buffer>) => AsyncGenerator<Buffer> {
  return async function* (chunks) {
    let n = 0;
    for await (const chunk of chunks) {
      n += chunk.length;
      if (opts.maxBytes !== undefined && n > opts.maxBytes) {
        throw new ArchiveError(`it unpacks to more than ${opts.maxWhat ?? `${opts.maxBytes} bytes`}`);
      }
      see(chunk);
      yield chunk;
    }
  };
}

/** Puts the finished tree at destDir, moving aside and removing whatever was there. */
async function replace(tmp: string, destDir: string): Promise<void> {
  try {
    await fs.promises.rename(tmp, destDir);
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
  }
  const old = temporaryName(destDir);
  try {
    await fs.promises.rename(destDir, old);
    await fs.promises.rename(tmp, destDir).catch(async (e: unknown) => {
      await fs.promises.rename(old, destDir); // what was there stays
      throw e;
    });
  } finally {
    await removeTemporary(old);
  }
}
