// DKIM signing of mail that leaves from one of our domains (RFC 6376, through mailauth's signer). The key is
// the active key of the domain of the message's From: header (the identity DMARC aligns with, RFC 7489 3.1),
// or else of the envelope sender's domain; a message from neither of our domains is not signed.

import { dkimSign } from 'mailauth'
import type { Logger } from 'pino'
import { normalizeDomain } from '../../store/index.ts'
import type { Directory } from '../../store/index.ts'
import { authorDomains, headerEnd } from './headers.ts'

export interface SignerComponents {
  directory: Pick<Directory, 'dkimKeys'>
  logger: Logger
  now?: () => number
}

export interface Signer {
  /**
   * The `DKIM-Signature:` header field(s) to prepend to `message`, CRLF-terminated; '' when no domain of ours
   * (with an active key) is the author or the envelope sender, or when signing failed (logged: the message
   * still goes, unsigned, rather than not at all).
   */
  sign (message: Buffer, opts: { from: string }): Promise<string>
}

// RFC 6376 5.4.1 and the advice of its 8.15 ("oversigning"): sign the fields a verifier shows or that change
// the meaning, and name From, Subject, To, Cc, Date, Reply-To and the MIME fields once more than they appear
// so that one cannot be added after signing. mailauth's default list does the first part; this adds the second.
const OVERSIGN = ['from', 'to', 'cc', 'subject', 'date', 'reply-to', 'mime-version', 'content-type', 'content-transfer-encoding', 'message-id', 'in-reply-to', 'references', 'list-unsubscribe', 'list-unsubscribe-post']

export function createSigner (components: SignerComponents): Signer {
  const log = components.logger
  const now = components.now ?? Date.now

  const keyFor = async (domain: string): Promise<{ domain: string, selector: string, privateKey: string } | null> => {
    const key = (await components.directory.dkimKeys(domain)).find(k => k.state === 'active')
    return key === undefined ? null : { domain, selector: key.selector, privateKey: key.privateKey }
  }

  return {
    async sign (message, opts) {
      const candidates = [...authorDomains(message)]
      const envelope = opts.from.includes('@') ? normalizeDomain(opts.from.slice(opts.from.lastIndexOf('@') + 1)) : null
      if (envelope !== null) candidates.push(envelope)
      let key = null
      for (const d of candidates) if ((key = await keyFor(d)) !== null) break
      if (key === null) return ''
      const present = headerNames(message)
      const headerList = [...present, ...OVERSIGN.filter(h => present.includes(h))]
      // mailauth reads only signatureData; its type wants the first signature's fields at the top level too
      const sig = { signingDomain: key.domain, selector: key.selector, privateKey: key.privateKey }
      const res = await dkimSign(message, {
        ...sig,
        canonicalization: 'relaxed/relaxed',
        signTime: new Date(now()),
        headerList,
        signatureData: [sig],
        strict: true
      })
      if (res.errors.length > 0 || res.signatures === '') {
        log.warn({ event: 'dkim_sign_failed', domain: key.domain, selector: key.selector, errors: res.errors.map(e => String(e.err?.message ?? e)) }, 'DKIM signing failed')
        return ''
      }
      log.debug({ event: 'dkim_signed', domain: key.domain, selector: key.selector }, 'DKIM signed')
      return res.signatures.replace(/\r?\n/g, '\r\n')
    }
  }
}

/**
 * Names (lower case) of the header fields of the message's header block that are worth signing, each once:
 * everything but trace and per-hop fields, which a relay may add or rewrite (RFC 6376 5.4.1).
 */
function headerNames (message: Buffer): string[] {
  const skip = new Set(['received', 'return-path', 'dkim-signature', 'arc-seal', 'arc-message-signature', 'arc-authentication-results', 'authentication-results', 'received-spf', 'x-original-to', 'delivered-to', 'bcc'])
  const out = new Set<string>()
  for (const name of fieldNames(message)) if (!skip.has(name)) out.add(name)
  return [...out]
}

function fieldNames (message: Buffer): string[] {
  const end = headerEnd(message)
  const out: string[] = []
  for (const line of message.subarray(0, end).toString('latin1').split(/\r?\n/)) {
    const m = /^([!-9;-~]+)[ \t]*:/.exec(line)
    if (m !== null) out.push(m[1].toLowerCase())
  }
  return out
}
