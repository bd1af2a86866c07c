/**
 * The bytes of a UnixFS file, read from a blockstore without copying them:
 * what `cat` (and so every ipfs:// substitution) streams.
 *
 * ipfs-unixfs-exporter's file content joins each block it is given into a
 * new buffer (it-to-buffer copies even a single chunk), and runs a queue
 * and a pipeline for every node; for a big file that is a copy of every
 * byte, and garbage that holds memory until V8 collects it. Here a leaf's
 * data is a view into the block as it came from the network or the disk.
 * The walk is the exporter's: a node's children are asked for `window` at
 * a time ahead of the one being read, in order, and each is read before
 * the next; the sizes are checked as the exporter checks them (the links
 * against the block sizes, the total against the root's file size).
 * Resolving a path, directories and symlinks stay the exporter's.
 */
import type { PBNode } from '@ipld/dag-pb';
import type { CID } from 'multiformats/cid';
import { IpfsError } from './errors.ts';
import { RAW } from './codes.ts';

export interface ContentMods {
  dagPb: typeof import('@ipld/dag-pb');
  UnixFS: typeof import('ipfs-unixfs').UnixFS;
}

export interface ContentOptions {
  signal?: AbortSignal;
  /** blocks asked for ahead of the one being read, under each node */
  window: number;
}

/** a block as one buffer: the blockstore may give it in parts */
export async function wholeBlock(parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Uint8Array> {
  const got: Uint8Array[] = [];
  for await (const p of parts) got.push(p);
  return got.length === 1 ? got[0]! : Buffer.concat(got);
}

/** The bytes of the file whose root is `root` (its decoded dag-pb node, or a raw block). */
export async function* fileContent(
  mods: ContentMods,
  root: PBNode | Uint8Array,
  get: (cid: CID, signal: AbortSignal) => Promise<Uint8Array>,
  opts: ContentOptions,
): AsyncGenerator<Uint8Array> {
  if (root instanceof Uint8Array) {
    yield root;
    return;
  }
  // the reads ahead are given up when the reader stops early
  const ac = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, ac.signal]) : ac.signal;
  const want = unixfsOf(mods, root).fileSize();
  let read = 0n;

  async function* walk(node: PBNode): AsyncGenerator<Uint8Array> {
    const fs = unixfsOf(mods, node);
    if (fs.data?.byteLength) yield fs.data;
    const links = node.Links;
    if (links.length !== fs.blockSizes.length) throw new IpfsError(`a file node has ${links.length} links and ${fs.blockSizes.length} block sizes`);
    const ahead: Promise<Uint8Array>[] = [];
    let next = 0;
    for (const link of links) {
      while (ahead.length < opts.window && next < links.length) {
        const p = get(links[next++]!.Hash, signal);
        p.catch(() => {}); // awaited in turn below; one given up early is no unhandled rejection
        ahead.push(p);
      }
      const block = await ahead.shift()!;
      if (link.Hash.code === RAW) yield block;
      else if (link.Hash.code === mods.dagPb.code) yield* walk(mods.dagPb.decode(block));
      else throw new IpfsError(`${link.Hash}: not a UnixFS block (codec 0x${link.Hash.code.toString(16)})`);
    }
  }

  try {
    for await (const chunk of walk(root)) {
      read += BigInt(chunk.byteLength);
      if (read > want) throw new IpfsError(`the file has more bytes than the ${want} its root says`);
      yield chunk;
    }
    if (read < want) throw new IpfsError(`the file has ${read} bytes, not the ${want} its root says`);
  } finally {
    ac.abort();
  }
}

function unixfsOf(mods: ContentMods, node: PBNode): InstanceType<ContentMods['UnixFS']> {
  if (!node.Data) throw new IpfsError('a file node has no UnixFS data');
  let fs: InstanceType<ContentMods['UnixFS']>;
  try {
    fs = mods.UnixFS.unmarshal(node.Data);
  } catch (e) {
    throw new IpfsError(`a file node's UnixFS data does not parse: ${(e as Error).message}`);
  }
  if (fs.type !== 'file' && fs.type !== 'raw') throw new IpfsError(`a node of a file is a ${fs.type}`);
  return fs;
}
