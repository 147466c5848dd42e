// Noise's ChaCha20-Poly1305 with each session key prepared once. @libp2p/noise hands node:crypto the raw 32-byte
// key for every message, and node:crypto turns it into a key object each time: 12-14 µs of a 100-byte message's
// 16 µs (and of a 10 KB body's 24 µs), twice per message (sender and receiver), several messages per RPC. A
// session's key is one Uint8Array for the whole connection (noise's CipherState never rekeys), so the key object
// is kept beside it in a WeakMap and goes when the connection does. Small messages (yamux window updates, frame
// headers) stay with noise's WebAssembly implementation, which is faster below about 600 bytes.
// Microbenchmark (this machine, 50,000 seals): 12 B 1.5 µs wasm / 5.1 µs node with a key object; 1,000 B
// 8.2 / 5.4 µs; 10,240 B 72 / 12.8 µs; node with the raw key 16-25 µs at every size.

import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { asCrypto, defaultCrypto } from '@libp2p/noise/crypto'
import type { ICryptoInterface } from '@libp2p/noise'
import { Uint8ArrayList } from 'uint8arraylist'

const CHACHA = 'chacha20-poly1305'
const TAG_BYTES = 16
/** Below this many bytes the WebAssembly implementation seals and opens faster than node:crypto. */
const WASM_BELOW_BYTES = 600

const keys = new WeakMap<Uint8Array, KeyObject>()

function keyOf (k: Uint8Array): KeyObject {
  let ko = keys.get(k)
  if (ko === undefined) {
    ko = createSecretKey(k)
    keys.set(k, ko)
  }
  return ko
}

function encrypt (plaintext: Uint8Array | Uint8ArrayList, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Uint8Array | Uint8ArrayList {
  if (plaintext.byteLength < WASM_BELOW_BYTES) return asCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
  const cipher = createCipheriv(CHACHA, keyOf(k), nonce, { authTagLength: TAG_BYTES })
  cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
  const out = new Uint8ArrayList()
  if (plaintext instanceof Uint8Array) out.append(cipher.update(plaintext))
  else for (const buf of plaintext) out.append(cipher.update(buf))
  const final = cipher.final()
  if (final.byteLength > 0) out.append(final)
  out.append(cipher.getAuthTag())
  return out
}

function decrypt (ciphertext: Uint8Array | Uint8ArrayList, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array, dst?: Uint8Array): Uint8Array | Uint8ArrayList {
  if (ciphertext.byteLength < WASM_BELOW_BYTES) return asCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
  const decipher = createDecipheriv(CHACHA, keyOf(k), nonce, { authTagLength: TAG_BYTES })
  const textBytes = ciphertext.byteLength - TAG_BYTES
  decipher.setAAD(ad, { plaintextLength: textBytes })
  decipher.setAuthTag(ciphertext.subarray(textBytes))
  const out = new Uint8ArrayList()
  if (ciphertext instanceof Uint8Array) out.append(decipher.update(ciphertext.subarray(0, textBytes)))
  else for (const buf of ciphertext.sublist(0, textBytes)) out.append(decipher.update(buf))
  const final = decipher.final() // throws when the tag does not match
  if (final.byteLength > 0) out.append(final)
  return out
}

export const noiseCrypto: ICryptoInterface = { ...defaultCrypto, chaCha20Poly1305Encrypt: encrypt, chaCha20Poly1305Decrypt: decrypt }
