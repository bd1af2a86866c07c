/**
 * The manifest: the first entry of every peerpkgs archive, listing each path
 * with its type, mode, size and sha256 (or link target). As in PAC's
 * index-first archives (seeds/002), a reader lists a package and checks it
 * for file conflicts by decompressing only the start of the .tar.gz.
 *
 * Format (UTF-8): the line `peerpkgs-manifest 1`, then one JSON array a line,
 * in archive order:
 *
 *     ["directory","0755",0,"","usr"]
 *     ["file","0644",12,"<sha256 hex of the content>","usr/share/doc/x y"]
 *     ["symlink","0777",0,"libx.so.1","usr/lib/libx.so"]
 *     ["link","0755",0,"usr/bin/a","usr/bin/b"]
 *
 * Fields: type, octal mode, size, sha256 for a file or the target for a
 * symlink (its text) or a hardlink (an archive path), then the path. JSON
 * escapes quotes, newlines and control characters, so every path, however
 * odd, is one unambiguous line.
 */
const fs = process.getBuiltinModule('node:fs');
// the tar reader and zlib are loaded by readManifest alone: the store
// parses kept manifests on every export and install, which need neither
import { ArchiveError, asArchiveError } from './errors.ts';

export const MANIFEST_NAME = '.peerpkgs-manifest';
const HEADER = 'peerpkgs-manifest 1';

export type EntryType = 'file' | 'directory' | 'symlink' | 'link';
const TYPES: readonly string[] = ['file', 'directory', 'symlink', 'link'];

export interface ManifestEntry {
  path: string;
  type: EntryType;
  /** Permission bits. */
  mode: number;
  /** Bytes of content: 0 for all but files. */
  size: number;
  /** Of the content, for files. */
  sha256?: string;
  /** A symlink's text, or the archive path a hardlink points to. */
  target?: string;
}

export function serializeManifest(entries: readonly ManifestEntry[]): string {
  const lines = entries.map((e) => JSON.stringify([e.type, e.mode.toString(8).padStart(4, '0'), e.size, (e.type === 'file' ? e.sha256 : e.target) ?? '', e.path]));
  return [HEADER, ...lines].join('\n') + '\n';
}

export function parseManifest(text: string): ManifestEntry[] {
  const lines = text.split('\n');
  if (lines[0] !== HEADER) throw new ArchiveError(`${MANIFEST_NAME}: not a peerpkgs manifest (first line ${JSON.stringify(lines[0])})`);
  if (lines.pop() !== '') throw new ArchiveError(`${MANIFEST_NAME}: truncated (no final newline)`);
  return lines.slice(1).map((line, i) => parseLine(line, i + 2));
}

function parseLine(line: string, lineNo: number): ManifestEntry {
  const bad = (why: string) => new ArchiveError(`${MANIFEST_NAME} line ${lineNo}: ${why}`);
  let fields: unknown;
  try {
    fields = JSON.parse(line);
  } catch {
    throw bad('not JSON');
  }
  if (!Array.isArray(fields) || fields.length !== 5) throw bad('not an array of 5 fields');
  const [type, mode, size, hashOrTarget, path] = fields as unknown[];
  if (typeof type !== 'string' || !TYPES.includes(type)) throw bad(`unknown type ${JSON.stringify(type)}`);
  if (typeof mode !== 'string' || !/^[0-7]{4}$/.test(mode)) throw bad(`bad mode ${JSON.stringify(mode)}`);
  if (!Number.isSafeInteger(size) || (size as number) < 0) throw bad(`bad size ${JSON.stringify(size)}`);
  if (typeof hashOrTarget !== 'string' || typeof path !== 'string' || path === '') throw bad('bad target or path');
  const entry: ManifestEntry = { path, type: type as EntryType, mode: parseInt(mode, 8), size: size as number };
  if (type === 'file') {
    if (!/^[0-9a-f]{64}$/.test(hashOrTarget)) throw bad(`bad sha256 for ${path}`);
    entry.sha256 = hashOrTarget;
  } else if (type !== 'directory') {
    entry.target = hashOrTarget;
  }
  return entry;
}

/**
 * The manifest of a peerpkgs .tar.gz, reading and decompressing no further
 * than its first entry.
 */
export async function readManifest(gzPath: string): Promise<ManifestEntry[]> {
  const [{ pipeline }, zlib, tarStream] = await Promise.all([import('node:stream/promises'), import('node:zlib'), import('tar-stream')]);
  const input = fs.createReadStream(gzPath);
  const tar = tarStream.extract();
  const feeding = pipeline(input, zlib.createGunzip(), tar as unknown as NodeJS.WritableStream); // a streamx stream, which Node's pipeline takes
  // Stopped on purpose once the manifest is read; real errors reach us through `tar`.
  feeding.catch(() => {});
  try {
    for await (const entry of tar) {
      if (entry.header.name !== MANIFEST_NAME) {
        throw new ArchiveError(`${gzPath}: not a peerpkgs archive (first entry is ${JSON.stringify(entry.header.name)}, not ${MANIFEST_NAME})`);
      }
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      return parseManifest(Buffer.concat(chunks).toString('utf8'));
    }
    throw new ArchiveError(`${gzPath}: empty archive, no ${MANIFEST_NAME}`);
  } catch (e) {
    throw asArchiveError(e, `cannot read the manifest of ${gzPath}`);
  } finally {
    input.destroy();
  }
}
