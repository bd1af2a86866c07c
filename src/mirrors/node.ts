/**
 * The one place the mirror meets the IPFS node: what `MirrorNode` and
 * `PinNode` need, made of the node in src/ipfs/. Started lazily by the
 * callers; everything else in src/mirrors/ knows only those interfaces.
 */
import type { PinNode } from './pin.ts';

export async function openMirrorNode(_home: string, _env: NodeJS.ProcessEnv = process.env): Promise<PinNode> {
  throw new Error('this build of peerpkgs has no IPFS node');
}
