// DKIM keys of our domains (RFC 6376): generation, selector names and the TXT record that publishes a key. The
// keys live in the replicated directory (store/directory.ts, on the domain's record), so every node signs
// with the same key without a mechanism of its own.

import { generateKeyPair } from 'node:crypto'
import { promisify } from 'node:util'
import { MailError } from '../../store/index.ts'
import type { Directory, DkimKey } from '../../store/index.ts'

// RFC 8301 3.2: signers MUST use RSA keys of at least 1024 bits and SHOULD use 2048; 2048 still fits a
// single TXT record (392 base64 characters, in two 255-byte strings) that every DNS host accepts.
export const DKIM_RSA_BITS = 2048
export const SELECTOR_PREFIX = 'mg'

const generate = promisify(generateKeyPair)

/** `mgYYYYMM` for a key made at `now`, with `-2`, `-3`, ... when that selector is already taken. */
export function selectorFor (now: number, taken: Iterable<string>): string {
  const d = new Date(now)
  const base = `${SELECTOR_PREFIX}${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, '0')}`
  const used = new Set(taken)
  if (!used.has(base)) return base
  for (let n = 2; ; n++) if (!used.has(`${base}-${n}`)) return `${base}-${n}`
}

/** A new RSA key pair for `selector`; the private key as PKCS#8 PEM, the public one as base64 DER (the p= tag). */
export async function createDkimKey (selector: string, now: number): Promise<DkimKey> {
  const { privateKey, publicKey } = await generate('rsa', {
    modulusLength: DKIM_RSA_BITS,
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' }
  })
  return { selector, algorithm: 'rsa-sha256', privateKey, publicKey: publicKey.toString('base64'), created: now, state: 'active' }
}

/** RFC 6376 3.6.1: the key record published at SELECTOR._domainkey.DOMAIN. */
export function dkimTxt (key: Pick<DkimKey, 'publicKey'>): string {
  return `v=DKIM1; k=rsa; p=${key.publicKey}`
}

export function dkimName (domain: string, selector: string): string {
  return `${selector}._domainkey.${domain}`
}

// ---- the operator's rotation: rotate (a pending key), publish its record, activate it, retire the old one ----

type KeyDirectory = Pick<Directory, 'updateDkimKeys'>

/**
 * A new key for `domain`. It signs at once only when the domain has no active key; otherwise it is pending,
 * because a key that signs before its record is in DNS makes every signature fail: publish, then activate.
 */
export async function rotateDkimKey (directory: KeyDirectory, domain: string, now: number): Promise<DkimKey> {
  const fresh = await createDkimKey('', now)
  let made: DkimKey | undefined
  await directory.updateDkimKeys(domain, keys => {
    made = { ...fresh, selector: selectorFor(now, keys.map(k => k.selector)), state: keys.some(k => k.state === 'active') ? 'pending' : 'active' }
    return [...keys, made]
  })
  return made!
}

/** `selector` signs from now on; the key that signed until now stays published. */
export async function activateDkimKey (directory: KeyDirectory, domain: string, selector: string): Promise<DkimKey[]> {
  return await directory.updateDkimKeys(domain, keys => {
    if (!keys.some(k => k.selector === selector)) throw new MailError('notFound', `No DKIM key ${selector} for ${domain}`)
    return keys.map(k => k.selector === selector ? { ...k, state: 'active' } : k.state === 'active' ? { ...k, state: 'published' } : k)
  })
}

/** Forgets a key that no longer signs (its record can then leave DNS). */
export async function retireDkimKey (directory: KeyDirectory, domain: string, selector: string): Promise<DkimKey[]> {
  return await directory.updateDkimKeys(domain, keys => {
    const k = keys.find(x => x.selector === selector)
    if (k === undefined) throw new MailError('notFound', `No DKIM key ${selector} for ${domain}`)
    if (k.state === 'active') throw new MailError('denied', `DKIM key ${selector} signs ${domain}'s mail: activate another one first`)
    return keys.filter(x => x !== k)
  })
}

/** What the admin API shows of a key: never the private half. */
export function publicView (k: DkimKey, domain: string): { selector: string, state: DkimKey['state'], created: number, name: string, txt: string } {
  return { selector: k.selector, state: k.state, created: k.created, name: dkimName(domain, k.selector), txt: dkimTxt(k) }
}
