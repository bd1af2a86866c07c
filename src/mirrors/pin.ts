/**
 * Mirroring a package's sources on IPFS (p2pkgs' ipfs-pin-fetch-file): each
 * distfile of a fetch file is fetched into the store (verified, as always),
 * added to the local IPFS node with kubo's default settings (CIDv0, 256 KiB
 * chunks, no raw leaves: the CID `ipfs add` gives for the same bytes),
 * pinned, and recorded as sha256,cid,url in the tree's mirror database.
 * Anyone with the tree and a route to this node can then fetch it from the
 * mirror when its urls are gone.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { fetchDistfile, type FetchOptions } from '../fetch/fetch.ts';
import { readFetch } from '../tree/package.ts';
import { TreeError, display } from '../tree/errors.ts';
import { addMirrorRecords, type MirrorRecord } from './db.ts';
import type { IpfsMirror, MirrorNode } from './source.ts';

export interface PinNode extends MirrorNode {
  /** Add a file with kubo's defaults, pin it, and return its CID. */
  addFile(file: string): Promise<string>;
}

export interface PinOptions extends Pick<FetchOptions, 'store' | 'progress' | 'timeoutMs'> {
  dbFile: string;
  node: () => Promise<PinNode>;
  /** the mirror to fetch from when the store lacks a distfile; null: the urls only */
  mirror: IpfsMirror | null;
  log: (line: string) => void;
}

/** Pin every distfile of one fetch file; returns the records it added to the database. */
export async function pinFetchFile(fetchFile: string, opts: PinOptions): Promise<MirrorRecord[]> {
  if (!fs.statSync(fetchFile, { throwIfNoEntry: false })?.isFile()) throw new TreeError(`${display(fetchFile)}: no such fetch file`);
  const entries = readFetch(fetchFile);
  const records: MirrorRecord[] = [];
  for (const entry of entries) {
    const stored = await fetchDistfile(entry, {
      store: opts.store,
      progress: opts.progress,
      timeoutMs: opts.timeoutMs,
      sourcesFor: opts.mirror?.sourcesFor,
    });
    const node = await opts.node();
    const cid = await node.addFile(stored);
    opts.log(`pinned ${entry.file} (sha256 ${entry.sha256}) as /ipfs/${cid}`);
    records.push({ sha256: entry.sha256, cid, url: entry.urls[0]! });
  }
  return addMirrorRecords(opts.dbFile, records);
}

/** The fetch files of every package under a tree's pkg/, sorted; hidden directories are skipped. */
export function allFetchFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
      if (d.name.startsWith('.')) continue;
      const p = path.join(dir, d.name);
      if (d.isDirectory()) walk(p);
      else if (d.name === 'fetch' && d.isFile()) out.push(p);
    }
  };
  walk(path.join(root, 'pkg'));
  return out.sort();
}
