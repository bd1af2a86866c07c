/**
 * A package's fetches with the IPFS mirror in front of its urls: the one
 * call the build and do-fetch make. The node is opened only when a source is
 * opened from the mirror, and closed when no fetch needs it any more, so
 * that a build process is not held open by a libp2p stack nor pays for one
 * it did not use. Packages built at the same time share one node: two
 * nodes of one process would share one repository.
 */
import type { Distfile, Source } from '../fetch/fetch.ts';
import type { MirrorNode } from './source.ts';
import { ipfsMirrorFor } from './source.ts';

let shared: { home: string; node: Promise<MirrorNode>; users: number } | null = null;

/** The process's node for `home`, started on first use; `release` closes it after its last user. */
function acquire(home: string, env: NodeJS.ProcessEnv): { open: () => Promise<MirrorNode>; release: () => Promise<void> } {
  let mine: typeof shared = null;
  const open = () => {
    if (mine) return mine.node;
    if (!shared || shared.home !== home) {
      shared = { home, users: 0, node: import('./node.ts').then((m) => m.openMirrorNode(home, env)) };
    }
    mine = shared;
    mine.users++;
    return mine.node;
  };
  const release = async () => {
    if (!mine) return;
    const held = mine;
    mine = null;
    if (--held.users > 0) return;
    if (shared === held) shared = null;
    await held.node.then((n) => n.close(), () => undefined);
  };
  return { open, release };
}

export async function fetchWithMirror<T>(
  packageDir: string,
  home: string,
  fetch: (sourcesFor: ((want: Distfile) => Source[]) | undefined) => Promise<T>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<T> {
  const node = acquire(home, env);
  const mirror = ipfsMirrorFor({ packageDir, open: node.open, env });
  try {
    return await fetch(mirror?.sourcesFor);
  } finally {
    await node.release();
  }
}
