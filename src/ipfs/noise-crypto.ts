/**
 * Noise's ChaCha20-Poly1305 on node:crypto without the copies: the crypto
 * @libp2p/noise is given (its `crypto` option), which encrypts and
 * decrypts every frame (≤ 64 KiB) of every connection.
 *
 * Noise's own Node implementation already uses node:crypto for frames of
 * 1200 bytes and more, but makes a key object from the raw key bytes for
 * every frame and concatenates ciphertext and tag into a new buffer; a
 * sender then allocates each byte it sends twice, and the garbage
 * collector runs for it (measured: 2× the encryption speed without). Here
 * the key object is made once per key, and the result is a list of the
 * cipher's output and the tag, which noise appends to its own list
 * without copying. Decryption returns the decipher's output as is. The
 * bytes on the wire are the same; small frames (the handshake's), hashing
 * and X25519 are left to noise's defaults.
 */
import type { KeyObject } from 'node:crypto';
const crypto = process.getBuiltinModule('node:crypto');
import type { ICryptoInterface } from '@libp2p/noise';
import { Uint8ArrayList } from './deps-dag.ts';

const ALG = 'chacha20-poly1305';
const TAG = 16;
/** below this, noise's own choice (WebAssembly, faster for small frames; the handshake's are) */
const SMALL = 1200;

export function noiseCrypto(base: ICryptoInterface): ICryptoInterface {
  // a CipherState keeps its key in one Uint8Array for the connection's life
  const keys = new WeakMap<Uint8Array, KeyObject>();
  const key = (k: Uint8Array): KeyObject => {
    let o = keys.get(k);
    if (!o) {
      o = crypto.createSecretKey(k);
      keys.set(k, o);
    }
    return o;
  };
  return {
    ...base,
    chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
      if (plaintext.byteLength < SMALL) return base.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k);
      const c = crypto.createCipheriv(ALG, key(k), nonce, { authTagLength: TAG });
      c.setAAD(ad, { plaintextLength: plaintext.byteLength });
      const out = new Uint8ArrayList();
      if (plaintext instanceof Uint8Array) out.append(c.update(plaintext));
      else for (const b of plaintext) out.append(c.update(b));
      const final = c.final();
      if (final.byteLength) out.append(final);
      out.append(c.getAuthTag());
      return out;
    },
    chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
      if (ciphertext.byteLength < SMALL) return base.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst);
      const n = ciphertext.byteLength - TAG;
      if (n < 0) throw new Error('Invalid chacha20poly1305 decryption');
      const d = crypto.createDecipheriv(ALG, key(k), nonce, { authTagLength: TAG });
      d.setAAD(ad, { plaintextLength: n });
      d.setAuthTag(ciphertext.subarray(n));
      if (ciphertext instanceof Uint8Array) {
        const out = d.update(ciphertext.subarray(0, n));
        const final = d.final();
        return final.byteLength ? Buffer.concat([out, final]) : out;
      }
      const out = new Uint8ArrayList();
      for (const b of ciphertext.sublist(0, n)) out.append(d.update(b));
      const final = d.final();
      if (final.byteLength) out.append(final);
      return out;
    },
  };
}
