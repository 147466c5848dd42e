// Shared by the Maildir/mbox tests: a node with the admin API (mail routes) the CLI talks to, the CLI run in
// process against it, and a client's view of a whole account (every folder, message, flag, date) over IMAP.

import { Readable } from 'node:stream'
import { ImapFlow } from 'imapflow'
import pino from 'pino'
import { createAdminServer } from '../../appliance/admin.ts'
import { mailRoutes } from '../../appliance/mail-routes.ts'
import { main } from '../../appliance/commands.ts'
import { startNode } from '../helpers/node.ts'
import type { TestNode } from '../helpers/node.ts'

export const TOKEN = 'migrate-test-token-0123456789abcdef'

export interface AdminNode extends TestNode { url: string }

export async function startAdminNode (t: { after: (fn: () => Promise<void>) => void }): Promise<AdminNode> {
  const n = await startNode(t, { plaintextAuthOnLoopback: true })
  const admin = createAdminServer({
    directory: n.node.store, status: async () => await n.node.status(), queue: n.node.queue, logger: pino({ level: 'silent' }),
    routes: mailRoutes({ store: n.node.store, userMail: n.node.userMail, dataDir: n.dir })
  }, { host: '127.0.0.1', port: 0, token: TOKEN })
  await admin.start()
  t.after(async () => { await admin.stop() })
  return { ...n, url: admin.url }
}

/** Runs the CLI against the admin API at `url`; resolves to its exit code and output. */
export async function cli (url: string, args: string[]): Promise<{ code: number, out: string, err: string }> {
  let out = ''
  let err = ''
  const code = await main([...args, '--url', url, '--token', TOKEN], {
    stdout: { write: (s: string) => { out += s } },
    stderr: { write: (s: string) => { err += s } },
    stdin: Readable.from([]),
    env: {}
  })
  return { code, out, err }
}

export interface SeenMessage { uid: number, flags: string[], date: number, source: string }
export interface SeenFolder { uidValidity: number, uidNext: number, messages: SeenMessage[] }
export interface SeenAccount { folders: Record<string, SeenFolder>, subscribed: string[] }

/** Everything a client sees of an account: each folder's UIDVALIDITY, UIDNEXT and messages (bytes base64), subscriptions. */
export async function snapshot (port: number, user: string, password: string, opts: { uidNext?: boolean } = {}): Promise<SeenAccount> {
  const c = new ImapFlow({ host: '127.0.0.1', port, secure: false, auth: { user, pass: password }, logger: false, doSTARTTLS: false, tls: { rejectUnauthorized: false } })
  await c.connect()
  try {
    const out: SeenAccount = { folders: {}, subscribed: [] }
    const list = await c.list()
    for (const box of list) {
      if (box.flags.has('\\Noselect') || box.flags.has('\\NonExistent')) continue
      if (box.subscribed) out.subscribed.push(box.path)
      const st = await c.status(box.path, { uidValidity: true, uidNext: true, messages: true }) as { uidValidity?: bigint, uidNext?: number, messages?: number }
      const f: SeenFolder = { uidValidity: Number(st.uidValidity), uidNext: opts.uidNext === false ? 0 : Number(st.uidNext), messages: [] }
      if ((st.messages ?? 0) > 0) {
        const lock = await c.getMailboxLock(box.path, { readOnly: true })
        try {
          for await (const m of c.fetch('1:*', { uid: true, flags: true, internalDate: true, source: true })) {
            f.messages.push({ uid: m.uid, flags: [...(m.flags ?? [])].filter(x => x !== '\\Recent').sort(), date: new Date(m.internalDate as Date).getTime(), source: (m.source as Buffer).toString('base64') })
          }
        } finally {
          lock.release()
        }
      }
      f.messages.sort((a, b) => a.uid - b.uid)
      out.folders[box.path] = f
    }
    out.subscribed.sort()
    return out
  } finally {
    await c.logout().catch(() => {})
  }
}
