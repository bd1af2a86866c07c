/**
 * The one place the mirror meets the IPFS node (src/ipfs/): what
 * `MirrorNode` and `PinNode` need, made of an `IpfsClient`, which is the
 * daemon's when one runs on $PEERPKGS_HOME and a node of this process
 * otherwise. Everything else in src/mirrors/ knows only those interfaces.
 */
import type { IpfsClient } from '../ipfs/client.ts';
import type { PinNode } from './pin.ts';

/**
 * kubo's `ipfs add` defaults: the CIDs anyone gets with `ipfs add FILE`.
 * The leaves stay in the distfile (nocopy): it is read-only in the store
 * and named by its hash, so the mirror keeps one copy of a source, not two.
 */
const KUBO_DEFAULTS = { cidVersion: 0, rawLeaves: false, pin: true, nocopy: true } as const;

export function mirrorNode(ipfs: IpfsClient, close: () => Promise<void>): PinNode {
  return {
    cat: (cid, opts) => ipfs.cat(cid, opts),
    size: async (cid, opts) => {
      const e = await ipfs.stat(cid, opts);
      if (e.type !== 'file') throw new Error(`/ipfs/${cid} is a ${e.type === 'dir' ? 'directory' : e.type}, not a file`);
      return e.size;
    },
    addFile: (file) => ipfs.addFile(file, KUBO_DEFAULTS),
    close,
  };
}

/** A node of its own for a command (the pin commands): closed by close(). */
export async function openMirrorNode(home: string, env: NodeJS.ProcessEnv = process.env): Promise<PinNode> {
  const { openIpfs } = await import('../ipfs/client.ts');
  const ipfs = await openIpfs({ home, env });
  return mirrorNode(ipfs, () => ipfs.close());
}

/** The process's shared client (the one package caches use too): close() releases it. */
export async function sharedMirrorNode(home: string, env: NodeJS.ProcessEnv = process.env): Promise<PinNode> {
  const { acquireIpfs } = await import('../ipfs/shared.ts');
  const { ipfs, release } = await acquireIpfs(home, env);
  return mirrorNode(ipfs, async () => release());
}
