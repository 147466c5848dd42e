/**
 * URLAUTH (RFC 4467): URLs that carry their own authorization. GENURLAUTH signs a rump URL
 * (`imap://user@host/Mailbox;UIDVALIDITY=n/;UID=n[...];URLAUTH=access`) with the mailbox access key: the token is
 * HMAC-SHA256 over the rump, keyed by a random 256-bit key per user and mailbox (the INTERNAL mechanism, section
 * 7). URLFETCH (and CATENATE, and BURL in submission) verify the token against the owner's key, the expiry and the
 * access identifier, then read the URL's content as its owner. RESETKEY replaces keys, so every URL signed with the
 * old one stops working.
 *
 * Keys are per-user data in the store's attribute space (MailStore.getAttr/setAttrs, key `imap/urlauth/<mailbox
 * id>`): they replicate, fail over and merge with the user's mail, so a URL keeps working on whichever node is the
 * user's primary. The mailbox id is stable across RENAME (a renamed mailbox keeps its URLs' key, though the URLs
 * name the old mailbox name and stop resolving); a mailbox deleted and created again has a new id, so a new key.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { MailStore } from '../../store/index.ts'
import { BadUrl, parseImapUrl } from './urls.ts'
import type { ImapUrl } from './urls.ts'

/** The one mechanism (RFC 4467 section 7: INTERNAL must be supported). */
export const URLAUTH_MECHANISMS = ['INTERNAL']

/** URLs in one GENURLAUTH or URLFETCH. */
export const URLAUTH_URLS_MAX = 64

const KEY_PREFIX = 'imap/urlauth/'

/** An ENABLE-like marker a grid node puts on the IMAP session it opens at a user's primary for BURL (node/smtp/burl.ts):
 * URLFETCH there reads `submit+user` URLs as the submission service acting for the session's user. Clients cannot
 * ENABLE it (ENABLE takes only the extensions it knows); only grid peers open adopted sessions. */
export const BURL_SESSION = 'X-MAILGRID-BURL'

/** Who is asking: an IMAP user (null: nobody logged in), or the submission server acting for `submitFor`. */
export interface UrlReader {
  user: string | null
  submitFor: string | null
}

function sign (key: string, rump: string): string {
  return createHmac('sha256', Buffer.from(key, 'hex')).update(rump, 'utf8').digest('hex')
}

async function mailboxKey (store: MailStore, owner: string, mailboxId: string, create: boolean): Promise<string | null> {
  const name = KEY_PREFIX + mailboxId
  const key = await store.getAttr(owner, name)
  if (key !== null || !create) return key
  const fresh = randomBytes(32).toString('hex')
  await store.setAttrs(owner, [{ key: name, value: fresh }])
  return fresh
}

/**
 * GENURLAUTH for one URL (section 6.1): the rump must be an absolute URL naming a message of this user's and end in
 * `;URLAUTH=access` with no mechanism or token yet. Returns the authorized URL. Throws BadUrl.
 */
export async function generateUrlauth (store: MailStore, user: string, text: string, mechanism: string, now: number): Promise<string> {
  const url = parseImapUrl(text)
  if (url.user === null || url.host === null) throw new BadUrl(text, 'GENURLAUTH needs an absolute URL')
  if (url.user.toLowerCase() !== user.toLowerCase()) throw new BadUrl(text, 'Not this user\'s mailbox')
  if (url.urlauth === null || url.urlauth.mechanism !== null) throw new BadUrl(text, 'GENURLAUTH needs a rump URL ending in ;URLAUTH=access')
  if (!URLAUTH_MECHANISMS.includes(mechanism.toUpperCase())) throw new BadUrl(text, 'Unknown URLAUTH mechanism')
  if (url.expire !== null && url.expire <= now) throw new BadUrl(text, 'Already expired')
  const box = await store.getMailbox(user, url.mailbox).catch(() => null)
  if (box === null) throw new BadUrl(text, 'No such mailbox')
  if (url.uidValidity !== null && url.uidValidity !== box.uidValidity) throw new BadUrl(text, 'UIDVALIDITY changed')
  const key = (await mailboxKey(store, user, box.id, true))!
  return `${url.rump}:${mechanism.toLowerCase()}:${sign(key, url.rump!)}`
}

/**
 * Checks an authorized URL (section 7): its token against the owner's key, its expiry, and whether `reader` is the
 * access identifier's reader. Resolves to the owner (whose mail the URL names); throws BadUrl otherwise.
 */
export async function verifyUrlauth (store: MailStore, url: ImapUrl, reader: UrlReader, now: number): Promise<string> {
  const auth = url.urlauth
  if (auth === null || auth.mechanism === null || auth.token === null || url.rump === null) throw new BadUrl(url.text, 'Not an authorized URL')
  if (url.user === null) throw new BadUrl(url.text, 'An authorized URL names its owner')
  if (!URLAUTH_MECHANISMS.includes(auth.mechanism.toUpperCase())) throw new BadUrl(url.text, 'Unknown URLAUTH mechanism')
  if (url.expire !== null && url.expire <= now) throw new BadUrl(url.text, 'URL expired')
  const access = auth.access.toLowerCase()
  // section 3: anonymous is anyone; authuser any authenticated user; user+X only X; submit+X only the submission
  // server acting for X (an IMAP session is never the submission server)
  const allowed = access === 'anonymous' ||
    (access === 'authuser' && reader.user !== null) ||
    (access.startsWith('user+') && reader.user !== null && access.slice(5) === reader.user.toLowerCase()) ||
    (access.startsWith('submit+') && reader.submitFor !== null && access.slice(7) === reader.submitFor.toLowerCase())
  if (!allowed) throw new BadUrl(url.text, 'Not authorized for this reader')
  const owner = url.user
  const box = await store.getMailbox(owner, url.mailbox).catch(() => null)
  const key = box === null ? null : await mailboxKey(store, owner, box.id, false).catch(() => null)
  // one answer whatever failed, so a reader learns nothing of another user's mailboxes
  const expected = key === null ? null : Buffer.from(sign(key, url.rump), 'hex')
  const given = Buffer.from(auth.token, 'hex')
  if (expected === null || given.length !== expected.length || !timingSafeEqual(given, expected)) throw new BadUrl(url.text, 'Invalid URLAUTH')
  return owner
}

/** RESETKEY (section 6.2): a new key for one mailbox, or for all of the user's mailboxes. */
export async function resetKeys (store: MailStore, user: string, mailboxId: string | null): Promise<void> {
  if (mailboxId !== null) {
    await store.setAttrs(user, [{ key: KEY_PREFIX + mailboxId, value: randomBytes(32).toString('hex') }])
    return
  }
  const keys = await store.listAttrs(user, KEY_PREFIX)
  for (let i = 0; i < keys.length; i += 512) await store.setAttrs(user, keys.slice(i, i + 512).map((a) => ({ key: a.key, value: null })))
}
