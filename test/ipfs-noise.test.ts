/**
 * The Noise cipher the node uses (src/ipfs/noise-crypto.ts) puts on the
 * wire exactly what @libp2p/noise's own does: each side decrypts the
 * other's frames, for the frame sizes a transfer uses, and a tampered
 * frame is refused.
 */
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { defaultCrypto } from '@libp2p/noise/crypto';
import { Uint8ArrayList } from 'uint8arraylist';
import { noiseCrypto } from '../src/ipfs/noise-crypto.ts';

const ours = noiseCrypto(defaultCrypto);
const flat = (x: Uint8Array | Uint8ArrayList) => (x instanceof Uint8Array ? x : x.subarray());

describe('ipfs: the Noise cipher', () => {
  const k = randomBytes(32);
  const nonce = randomBytes(12);
  const ad = randomBytes(32);
  for (const size of [0, 100, 1199, 1200, 4096, 65519]) {
    it(`frames of ${size} bytes: the same bytes as noise's own, both ways`, () => {
      const plain = randomBytes(size);
      const theirs = flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k));
      const mine = flat(ours.chaCha20Poly1305Encrypt(plain, nonce, ad, k));
      assert.deepEqual(Buffer.from(mine), Buffer.from(theirs));
      assert.deepEqual(Buffer.from(flat(ours.chaCha20Poly1305Decrypt(theirs, nonce, ad, k))), plain);
      // as noise hands over a frame that arrived in pieces
      const a = Math.min(7, theirs.length);
      const b = Math.max(a, theirs.length >> 1);
      const pieces = new Uint8ArrayList(theirs.subarray(0, a), theirs.subarray(a, b), theirs.subarray(b));
      assert.deepEqual(Buffer.from(flat(ours.chaCha20Poly1305Decrypt(pieces, nonce, ad, k))), plain);
      const list = new Uint8ArrayList(plain.subarray(0, size >> 1), plain.subarray(size >> 1));
      assert.deepEqual(Buffer.from(flat(ours.chaCha20Poly1305Encrypt(list, nonce, ad, k))), Buffer.from(theirs));
    });
  }

  it('a tampered frame is refused', () => {
    const frame = Buffer.from(flat(ours.chaCha20Poly1305Encrypt(randomBytes(4096), nonce, ad, k)));
    frame[100]! ^= 1;
    assert.throws(() => ours.chaCha20Poly1305Decrypt(frame, nonce, ad, k));
  });
});
