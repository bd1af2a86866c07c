/**
 * A package's fetches with the IPFS mirror in front of its urls: the one
 * call the build and do-fetch make. The node is opened only when a source is
 * opened from the mirror, and closed when the fetches are over, so that a
 * build process is not held open by a libp2p stack nor pays for one it did
 * not use.
 */
import type { Distfile, Source } from '../fetch/fetch.ts';
import { ipfsMirrorFor } from './source.ts';

export async function fetchWithMirror<T>(
  packageDir: string,
  home: string,
  fetch: (sourcesFor: ((want: Distfile) => Source[]) | undefined) => Promise<T>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<T> {
  const open = async () => (await import('./node.ts')).openMirrorNode(home, env);
  const mirror = ipfsMirrorFor({ packageDir, open, env });
  try {
    return await fetch(mirror?.sourcesFor);
  } finally {
    await mirror?.close();
  }
}
