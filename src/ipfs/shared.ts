/**
 * One IPFS client for a whole process that asks for blocks now and then
 * (the package caches of a build): opened on first use, shared by every
 * request, and closed once nothing has used it for a moment, so that an
 * in-process node does not keep a finished build alive, and a build that
 * substitutes fifty packages starts one node, not fifty.
 */
import type { IpfsClient } from './client.ts';

const IDLE_MS = 300;

let client: Promise<IpfsClient> | null = null;
let users = 0;
let idle: NodeJS.Timeout | null = null;

/** A client and the function that says this use of it is over (call it once). */
export async function acquireIpfs(home: string, env: NodeJS.ProcessEnv): Promise<{ ipfs: IpfsClient; release(): void }> {
  if (idle) clearTimeout(idle);
  idle = null;
  users++;
  if (!client) {
    const { openIpfs } = await import('./client.ts');
    client = openIpfs({ home, env });
  }
  let ipfs: IpfsClient;
  try {
    ipfs = await client;
  } catch (e) {
    users--;
    client = null;
    throw e;
  }
  let released = false;
  return {
    ipfs,
    release() {
      if (released) return;
      released = true;
      if (--users > 0) return;
      idle = setTimeout(() => {
        idle = null;
        const c = client;
        client = null;
        void c?.then((x) => x.close()).catch(() => undefined);
      }, IDLE_MS);
    },
  };
}
