/**
 * A file or directory from IPFS onto disk, as `ipfs get -o PATH`: written
 * under a hidden temporary name beside PATH and renamed into place only
 * when complete, so PATH is either what it was or the whole thing. Works
 * with any IpfsClient (the daemon's or an in-process node). Its bytes, as
 * they come, go to a Progress if given one (the command's bar, on a
 * terminal).
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { IpfsClient, ReadOptions } from './client.ts';
import { IpfsError } from './errors.ts';
import { temporaryName, forget } from '../archive/temporary.ts';
import type { Progress } from '../fetch/progress.ts';
import { moving, NO_TRANSFER, type Transfer } from '../engine/rules.ts';

async function catTo(ipfs: IpfsClient, p: string, file: string, opts: ReadOptions, transfer: Transfer): Promise<void> {
  const out = fs.createWriteStream(file, { flags: 'wx', mode: 0o644 });
  async function* counted(): AsyncGenerator<Uint8Array> {
    for await (const chunk of ipfs.cat(p, opts)) {
      transfer.advance(chunk.byteLength);
      yield chunk;
    }
  }
  await pipeline(counted(), out);
}

async function fetchTree(ipfs: IpfsClient, p: string, dir: string, opts: ReadOptions, transfer: Transfer): Promise<void> {
  fs.mkdirSync(dir);
  for (const e of await ipfs.ls(p, opts)) {
    if (e.name === '' || e.name === '.' || e.name === '..' || e.name.includes('/')) throw new IpfsError(`${p}: refusing an entry named ${JSON.stringify(e.name)}`);
    const sub = `${p}/${e.name}`;
    const to = path.join(dir, e.name);
    if (e.type === 'dir') await fetchTree(ipfs, sub, to, opts, transfer);
    else if (e.type === 'symlink') fs.symlinkSync(e.target ?? '', to);
    else await catTo(ipfs, sub, to, opts, transfer);
  }
}

/** Writes `p` (CID or CID/path) to `dest`; returns what it was. */
export async function getToPath(ipfs: IpfsClient, p: string, dest: string, opts: ReadOptions = {}, progress?: Progress): Promise<'file' | 'dir' | 'symlink'> {
  const target = path.resolve(dest);
  const tmp = temporaryName(target);
  const st = await ipfs.stat(p, opts);
  // one transfer for the whole of it: a directory's size is not known before its files are listed
  const transfer = progress?.begin(path.basename(target), p, st.type === 'file' ? st.size : undefined) ?? NO_TRANSFER;
  try {
    await moving(transfer, async () => {
      if (st.type === 'dir') await fetchTree(ipfs, p, tmp, opts, transfer);
      else if (st.type === 'symlink') fs.symlinkSync(st.target ?? '', tmp);
      else await catTo(ipfs, p, tmp, opts, transfer);
      try {
        fs.renameSync(tmp, target);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'EISDIR' || code === 'ENOTDIR') throw new IpfsError(`${dest}: exists and is in the way (remove it first)`);
        throw e;
      }
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
    forget(tmp);
  }
  return st.type;
}
