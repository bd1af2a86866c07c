/**
 * The output identity: the sha256 of a package's uncompressed canonical
 * archive, not of its .tar.gz, so that a cache may compress it again
 * without changing what it is. The output store, `verify`, substitution
 * (checking an output it already has) and publishing (writing the .info)
 * all learn it here, so the four agree on what they hash and bound.
 *
 * archive/extract.ts computes the same hash while it unpacks: it is below
 * this layer, and hashing there saves a second read.
 */
const { createHash } = process.getBuiltinModule('node:crypto');
const fs = process.getBuiltinModule('node:fs');
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { boundedBytes, type ExtractOptions } from '../archive/extract.ts';

/**
 * The sha256 of the uncompressed archive, read without writing anything,
 * and no further than `bound` when one is given. `see` is shown each
 * uncompressed chunk (publishing counts the output's size with it).
 * Errors are the stream's own: callers name them in their terms.
 */
export async function uncompressedSha256(
  archive: string | NodeJS.ReadableStream | AsyncIterable<Buffer>,
  bound: Pick<ExtractOptions, 'maxBytes' | 'maxWhat'> = {},
  see: (chunk: Buffer) => void = () => {},
): Promise<string> {
  const hash = createHash('sha256');
  const input = typeof archive === 'string' ? fs.createReadStream(archive) : archive;
  const seen = (c: Buffer): void => {
    hash.update(c);
    see(c);
  };
  await pipeline(input, zlib.createGunzip(), boundedBytes(bound, seen), async (chunks: AsyncIterable<Buffer>) => {
    for await (const _ of chunks);
  });
  return hash.digest('hex');
}
