/**
 * How two builds of a package differ: file by file from their archives'
 * manifests, and for a file in both, where its bytes part, read from the
 * two unpacked outputs. What `peerpkgs seed reproduce` prints when a
 * component does not reach its fixpoint, and `peerpkgs check` when a
 * package is not reproducible, so that the file to look at is named and
 * not just the archive.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import type { ManifestEntry } from './manifest.ts';

export interface FileDiff {
  path: string;
  /** What is different, e.g. "only in generation 2" or "content: 12 bytes differ, the first at offset 0x1f0". */
  what: string;
}

/** One side of a comparison: an archive's manifest and its unpacked tree. */
export interface Side {
  manifest: ManifestEntry[];
  dir: string;
}

const describe = (e: ManifestEntry) =>
  e.type === 'file' ? `file ${e.mode.toString(8)} ${e.size} bytes` : e.type === 'directory' ? `directory ${e.mode.toString(8)}` : `${e.type} to ${e.target ?? ''}`;

/** The paths whose type, mode, size, content or target differ, sorted. */
export function compareOutputs(a: Side, b: Side, names: [string, string] = ['generation 1', 'generation 2']): FileDiff[] {
  const am = new Map(a.manifest.map((e) => [e.path, e]));
  const bm = new Map(b.manifest.map((e) => [e.path, e]));
  const diffs: FileDiff[] = [];
  for (const p of [...new Set([...am.keys(), ...bm.keys()])].sort()) {
    const x = am.get(p);
    const y = bm.get(p);
    if (!x || !y) {
      diffs.push({ path: p, what: `only in ${x ? names[0] : names[1]}` });
    } else if (x.type !== y.type || (x.type !== 'file' && x.target !== y.target)) {
      diffs.push({ path: p, what: `${describe(x)} / ${describe(y)}` });
    } else if (x.mode !== y.mode) {
      diffs.push({ path: p, what: `mode ${x.mode.toString(8)} / ${y.mode.toString(8)}` });
    } else if (x.type === 'file' && x.sha256 !== y.sha256) {
      diffs.push({ path: p, what: `content: ${byteDiff(path.join(a.dir, p), path.join(b.dir, p), x.size, y.size)}` });
    }
  }
  return diffs;
}

/** Where two files' bytes part: how many differ and the first offset. */
export function byteDiff(fileA: string, fileB: string, sizeA: number, sizeB: number): string {
  let x: Buffer;
  let y: Buffer;
  try {
    x = fs.readFileSync(fileA);
    y = fs.readFileSync(fileB);
  } catch {
    return `${sizeA} / ${sizeB} bytes`;
  }
  let first = -1;
  let count = 0;
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    if (x[i] !== y[i]) {
      if (first < 0) first = i;
      count++;
    }
  }
  const sizes = x.length === y.length ? `${x.length} bytes each` : `${x.length} / ${y.length} bytes`;
  if (first < 0) return `${sizes}, the same up to the shorter one's end`;
  return `${sizes}, ${count} bytes differ, the first at offset 0x${first.toString(16)}`;
}
