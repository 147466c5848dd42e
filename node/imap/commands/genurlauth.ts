/** GENURLAUTH, RESETKEY and URLFETCH (RFC 4467 section 6), over urlauth.ts. */
import { astring, keyword, mailboxName } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import { atom, str } from '../protocol/compiler.ts'
import type { CommandModule, Reply } from '../command.ts'
import { BadUrl, parseImapUrl, readUrl, UrlTooBig } from '../urls.ts'
import { BURL_SESSION, generateUrlauth, resetKeys, URLAUTH_MECHANISMS, URLAUTH_URLS_MAX, verifyUrlauth } from '../urlauth.ts'

export const genurlauth: CommandModule = {
  name: 'GENURLAUTH',
  syntax: 'GENURLAUTH url mechanism [url mechanism ...]',
  states: ['authenticated', 'selected'],
  args: { min: 2, max: 2 * URLAUTH_URLS_MAX },
  expungeAllowed: true,
  async run (session, { args }): Promise<Reply> {
    if (args.length % 2 !== 0) throw new ArgumentError('Syntax: GENURLAUTH url mechanism [url mechanism ...]')
    const out: string[] = []
    for (let i = 0; i < args.length; i += 2) {
      const text = astring(args[i], 'URL')
      const mechanism = keyword(args[i + 1], 'URLAUTH mechanism')
      try {
        out.push(await generateUrlauth(session.components.store, session.user!, text, mechanism, session.now()))
      } catch (err) {
        // section 6.1: one bad URL fails the command, and nothing is generated
        if (err instanceof BadUrl) return { status: 'NO', code: { name: 'BADURL', args: [str(text)] }, text: err.message }
        throw err
      }
    }
    await session.send([atom('GENURLAUTH'), ...out.map((u) => str(u))])
    return { text: 'GENURLAUTH completed' }
  },
}

export const resetkey: CommandModule = {
  name: 'RESETKEY',
  syntax: 'RESETKEY [mailbox [mechanism ...]]',
  states: ['authenticated', 'selected'],
  args: { min: 0, max: 1 + URLAUTH_MECHANISMS.length * 4 },
  expungeAllowed: true,
  async run (session, { args }): Promise<Reply> {
    const user = session.user!
    if (args.length === 0) {
      await resetKeys(session.components.store, user, null)
      return { text: 'All keys removed' }
    }
    const name = mailboxName(args[0], session.utf8)
    for (const mech of args.slice(1)) {
      if (!URLAUTH_MECHANISMS.includes(keyword(mech, 'URLAUTH mechanism'))) throw new CommandRefused('Unknown URLAUTH mechanism')
    }
    const box = await session.components.store.getMailbox(user, name)
    if (box === null) throw new CommandRefused('No such mailbox', 'NONEXISTENT')
    await resetKeys(session.components.store, user, box.id)
    return { text: 'Key reset' }
  },
}

export const urlfetch: CommandModule = {
  name: 'URLFETCH',
  syntax: 'URLFETCH url [url ...]',
  states: ['authenticated', 'selected'],
  args: { min: 1, max: URLAUTH_URLS_MAX },
  expungeAllowed: true,
  async run (session, { args }): Promise<Reply> {
    const store = session.components.store
    const urls = args.map((a) => astring(a, 'URL'))
    // one response per URL, so the session holds one URL's content at a time (section 6.3: URLFETCH 1*(url nstring))
    for (const text of urls) {
      let data: Buffer | null = null
      try {
        const url = parseImapUrl(text)
        // a session a grid node opened for its submission service's BURL (node/smtp/burl.ts) reads submit+user URLs
        const submitFor = session.enabled.has(BURL_SESSION) ? session.user : null
        const owner = await verifyUrlauth(store, url, { user: session.user, submitFor }, session.now())
        data = await readUrl(store, owner, url, session.options.limits.appendBytesMax)
      } catch (err) {
        // section 6.3: a URL that is not valid (or not for this user) answers NIL, the command goes on
        if (!(err instanceof BadUrl) && !(err instanceof UrlTooBig)) throw err
      }
      await session.send([atom('URLFETCH'), str(text), data === null ? null : { type: 'literal', value: data }])
    }
    return { text: 'URLFETCH completed' }
  },
}
