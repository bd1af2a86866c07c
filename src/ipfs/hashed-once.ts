/**
 * Each block from bitswap hashed once, not twice.
 *
 * Bitswap names a block it receives by hashing it (the sender sends the
 * CID's prefix and the bytes, never the hash), and hands it to a want only
 * if that hash is the wanted CID's. Helia's storage then hashes the same
 * bytes again to check them against the CID, as it must for a broker that
 * does not check. For a big transfer that second SHA-256 is a sixth of the
 * receiver's time. Here the bitswap broker's retrieve remembers the blocks
 * it returns, by identity, with the CID they were matched to; Helia's
 * SHA-256 (given to Helia as its hasher) answers for exactly those bytes
 * from that record, once, and hashes everything else. A block from any
 * other broker (the gateways) is hashed by Helia as before.
 */
import type { CID } from 'multiformats/cid';
import type { MultihashDigest, MultihashHasher } from 'multiformats/hashes/interface';

/** the blocks bitswap matched to a CID by their hash; the key is the very buffer it returned */
const matched = new WeakMap<Uint8Array, MultihashDigest<number>>();

interface Retriever {
  name: string;
  retrieve?(cid: CID, options?: object): Promise<Uint8Array>;
}

/** Helia's SHA-256, which does not hash again a block bitswap hashed on receipt. */
export function sha256HashedOnce(sha256: MultihashHasher<0x12>): MultihashHasher<0x12> {
  return {
    name: sha256.name,
    code: sha256.code,
    digest(bytes: Uint8Array, options?: { truncate?: number }) {
      const d = matched.get(bytes);
      if (d && d.code === sha256.code && (options?.truncate === undefined || options.truncate === d.digest.byteLength)) {
        matched.delete(bytes);
        return d as MultihashDigest<0x12>;
      }
      return sha256.digest(bytes, options as never);
    },
  } as MultihashHasher<0x12>;
}

/** Makes the bitswap broker among `brokers` record what it returns (see above). */
export function recordBitswapMatches(brokers: Retriever[]): void {
  const bitswap = brokers.find((b) => b.name === 'bitswap');
  if (!bitswap?.retrieve) throw new Error('no bitswap block broker to record the blocks of');
  const retrieve = bitswap.retrieve.bind(bitswap);
  bitswap.retrieve = async (cid, options) => {
    const block = await retrieve(cid, options);
    matched.set(block, cid.multihash);
    return block;
  };
}
