/**
 * A package's fetches with the IPFS mirror in front of its urls: the one
 * call the build and do-fetch make. The node is opened only when a source is
 * opened from the mirror, and released when the package's fetches are over,
 * so that a build process is not held open by a libp2p stack nor pays for
 * one it did not use. It is the process's shared client (src/ipfs/shared.ts):
 * packages fetched at the same time, and the package caches, use one node.
 */
const fs = process.getBuiltinModule('node:fs');
import type { Distfile, Source } from '../fetch/fetch.ts';
import { ipfsPaths } from '../ipfs/config.ts';
import { settings } from '../settings.ts';
import type { MirrorNode } from './source.ts';
import { ipfsMirrorFor } from './source.ts';

/**
 * Can IPFS reach anyone? The node has no DHT: it asks the peers named in
 * PKG_IPFS_PEERS and the gateways of PKG_IPFS_GATEWAYS, or the daemon asks
 * those it is connected to. With none, every mirror transfer would wait out
 * PKG_IPFS_TIMEOUT for nothing, so a tree whose database lists mirrors
 * still builds from its urls at once.
 */
export function ipfsHasPeers(home: string, env: NodeJS.ProcessEnv): boolean {
  const s = settings(env);
  return s.ipfsPeers.length > 0 || s.ipfsGateways.length > 0 || fs.existsSync(ipfsPaths(home).socket);
}

export async function fetchWithMirror<T>(
  packageDir: string,
  home: string,
  fetch: (sourcesFor: ((want: Distfile) => Source[]) | undefined) => Promise<T>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<T> {
  let node: Promise<MirrorNode> | null = null;
  const open = () => (node ??= import('./node.ts').then((m) => m.sharedMirrorNode(home, env)));
  const mirror = ipfsHasPeers(home, env) ? ipfsMirrorFor({ packageDir, open, env }) : null;
  try {
    return await fetch(mirror?.sourcesFor);
  } finally {
    if (node)
      await (node as Promise<MirrorNode>).then(
        (n) => n.close(),
        () => undefined,
      );
  }
}
