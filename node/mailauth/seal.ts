// ARC sealing (RFC 8617) of mail an alias forwards outside: the forwarder records what it saw (the
// Authentication-Results of its own check) and seals it with its domain's DKIM key, so the next receiver can
// trust SPF and DKIM results that forwarding broke. mailauth adds the set (ARC-Seal, ARC-Message-Signature,
// ARC-Authentication-Results) with the next instance number, and none after a failed chain (RFC 8617 5.1).

import { sealMessage } from 'mailauth'
import type { Logger } from 'pino'
import type { Directory } from '../../store/index.ts'

export interface ArcSealerComponents {
  directory: Pick<Directory, 'dkimKeys'>
  logger: Logger
  now?: () => number
}

export interface ArcSealOptions {
  /** Ours: the domain whose active DKIM key seals (the alias's domain). */
  domain: string
  /** The Authentication-Results value of our check of this message (CheckResult.arc.authResults). */
  authResults: string
  /** The chain's validation result from that check (CheckResult.arc.cv): 'none', 'pass' or 'fail'. */
  cv: string
}

export interface ArcSealer {
  /** The ARC header fields to prepend to `message`, CRLF-terminated; '' without a key or when no set may be added. */
  seal (message: Buffer, opts: ArcSealOptions): Promise<string>
}

export function createArcSealer (components: ArcSealerComponents): ArcSealer {
  const now = components.now ?? Date.now
  return {
    async seal (message, opts) {
      const key = (await components.directory.dkimKeys(opts.domain)).find(k => k.state === 'active')
      if (key === undefined) return ''
      try {
        const out = await sealMessage(message, {
          signingDomain: opts.domain,
          selector: key.selector,
          privateKey: key.privateKey,
          authResults: opts.authResults,
          cv: opts.cv,
          signTime: new Date(now())
        })
        return out.toString('utf8').replace(/\r?\n/g, '\r\n')
      } catch (err) {
        components.logger.warn({ event: 'arc_seal_failed', domain: opts.domain, err }, 'ARC sealing failed; forwarding unsealed')
        return ''
      }
    }
  }
}
