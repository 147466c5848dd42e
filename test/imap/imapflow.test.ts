// IMAP with a real client (imapflow, which also turns on COMPRESS=DEFLATE, CONDSTORE and QRESYNC when
// offered) against a real server and the LevelDB store.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, flow, OTHER, richMessage, simpleMessage, USER } from './helpers.ts'

const PREFIX = 'Received: from mx.example.org by mailgrid; Mon, 02 Feb 2026 10:00:01 +0000\r\n'

test('delivered mail is fetched byte-identical over plain, STARTTLS and implicit TLS', async (t) => {
  const f = await fixture(t)
  const raw = richMessage()
  await f.store.deliver(raw, [{ user: USER, prefix: PREFIX }])
  const expected = Buffer.concat([Buffer.from(PREFIX), raw])
  const plain = await f.server()
  const implicit = await f.server({ implicitTls: true })
  const variants: Array<[string, number, { secure?: boolean, doSTARTTLS?: boolean }]> = [
    ['plain', plain.port, { doSTARTTLS: false }],
    ['starttls', plain.port, { doSTARTTLS: true }],
    ['implicit tls', implicit.port, { secure: true }],
  ]
  for (const [name, port, opts] of variants) {
    const client = await flow(t, port, opts)
    assert.equal(client.secureConnection || name === 'plain', true, name)
    await client.mailboxOpen('INBOX')
    const message = await client.fetchOne('1', { source: true, size: true })
    assert.ok(message)
    assert.equal(message.size, expected.length, name)
    assert.ok(message.source!.equals(expected), `${name}: body differs`)
    await client.logout()
  }
})

test('every FETCH item on a nested multipart with an attachment, RFC 2047 headers and 8-bit text', async (t) => {
  const f = await fixture(t)
  const raw = richMessage()
  await f.store.append(USER, 'INBOX', { raw, flags: ['$Important'], internalDate: Date.UTC(2026, 1, 2, 10, 0, 0) })
  const { port } = await f.server()
  const client = await flow(t, port)
  await client.mailboxOpen('INBOX')
  const m = await client.fetchOne('1', {
    uid: true, flags: true, envelope: true, bodyStructure: true, internalDate: true, size: true,
    headers: ['subject', 'x-missing'],
    bodyParts: ['1.1', '1.2', '2', '3', '3.HEADER', '1.1.MIME', 'TEXT'],
  })
  assert.ok(m)
  assert.equal(m.uid, 1)
  assert.deepEqual([...m.flags!], ['$Important'])
  assert.equal(m.size, raw.length)
  assert.equal((m.internalDate as Date).toISOString(), '2026-02-02T10:00:00.000Z')
  assert.equal(m.envelope!.subject, 'Grüße aus Köln')
  assert.equal(m.envelope!.from![0]!.name, 'Jörg')
  assert.equal(m.envelope!.from![0]!.address, 'joerg@example.org')
  assert.deepEqual(m.envelope!.to!.map((a) => a.address), ['alice@example.com', 'bob@example.com'])
  assert.equal(m.envelope!.messageId, '<rich-1@example.org>')
  const bs = m.bodyStructure!
  assert.equal(bs.type, 'multipart/mixed')
  assert.equal(bs.childNodes![0]!.type, 'multipart/alternative')
  assert.equal(bs.childNodes![0]!.childNodes![0]!.type, 'text/plain')
  assert.equal(bs.childNodes![0]!.childNodes![0]!.parameters!.charset, 'utf-8')
  assert.equal(bs.childNodes![0]!.childNodes![1]!.encoding, 'quoted-printable')
  assert.equal(bs.childNodes![1]!.disposition, 'attachment')
  assert.equal(bs.childNodes![1]!.dispositionParameters!.filename, 'data.bin')
  assert.equal(bs.childNodes![2]!.type, 'message/rfc822')
  assert.equal(bs.childNodes![2]!.envelope!.subject, 'inner message')
  assert.equal(m.headers!.toString(), 'Subject: =?UTF-8?B?' + Buffer.from('Grüße aus Köln').toString('base64') + '?=\r\n\r\n')
  const part = (key: string): string => m.bodyParts!.get(key)!.toString('utf8')
  assert.equal(part('1.1'), 'Hallo Wält, this is the plain body with needle-word.')
  assert.equal(part('1.2'), '<p>Hallo W=C3=A4lt</p>')
  assert.equal(part('3.header'), 'From: inner@example.org\r\nSubject: inner message\r\n\r\n')
  assert.equal(part('1.1.mime'), 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n')
  assert.ok(part('3').startsWith('From: inner@example.org'))
  assert.ok(part('text').startsWith('--outer\r\n'))

  // BINARY (RFC 3516) decodes the attachment; BODY[] partial fetches a byte range.
  const binary = await client.download('1', '2', { uid: false })
  const chunks: Buffer[] = []
  for await (const chunk of binary.content!) chunks.push(chunk as Buffer)
  assert.deepEqual([...Buffer.concat(chunks)], [0, 1, 2, 3, 255, 254, 0, 10])
  const partial = await client.fetchOne('1', { source: { start: 6, maxLength: 10 } })
  assert.ok(partial)
  assert.equal(partial.source!.toString('latin1'), raw.subarray(6, 16).toString('latin1'))
})

test('SEARCH criteria, flags and keywords', async (t) => {
  const f = await fixture(t)
  await f.store.append(USER, 'INBOX', { raw: richMessage(), internalDate: Date.UTC(2026, 0, 10) })
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('alpha report', 'big body '.repeat(400)), flags: ['\\Seen'], internalDate: Date.UTC(2026, 0, 20) })
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('beta'), flags: ['\\Flagged', 'project-x'], internalDate: Date.UTC(2026, 1, 5) })
  const { port } = await f.server()
  const client = await flow(t, port)
  await client.mailboxOpen('INBOX')
  const search = async (query: object): Promise<number[]> => (await client.search(query as never, { uid: true })) as number[]
  assert.deepEqual(await search({ seen: false }), [1, 3])
  assert.deepEqual(await search({ flagged: true }), [3])
  assert.deepEqual(await search({ keyword: 'project-x' }), [3])
  assert.deepEqual(await search({ subject: 'köln' }), [1], 'RFC 2047 subjects are searched decoded')
  assert.deepEqual(await search({ from: 'jörg' }), [1])
  assert.deepEqual(await search({ body: 'needle-word' }), [1])
  assert.deepEqual(await search({ body: 'wält' }), [1], '8-bit and QP bodies are searched decoded')
  assert.deepEqual(await search({ larger: 2000 }), [2])
  assert.deepEqual(await search({ since: new Date(Date.UTC(2026, 0, 15)) }), [2, 3])
  assert.deepEqual(await search({ before: new Date(Date.UTC(2026, 0, 15)) }), [1])
  assert.deepEqual(await search({ or: [{ subject: 'beta' }, { subject: 'alpha' }] }), [2, 3])
  assert.deepEqual(await search({ not: { subject: 'beta' } } as object), [1, 2])
  assert.deepEqual(await search({ header: { 'message-id': 'rich-1' } }), [1])
  assert.deepEqual(await search({ uid: '2:*' }), [2, 3])
  assert.deepEqual(await search({ text: 'carol@example.net' }), [1])
  assert.deepEqual(await search({ sentBefore: new Date(Date.UTC(2026, 1, 3)) }), [1])

  await client.messageFlagsAdd('1:2', ['\\Answered', 'custom-kw'])
  await client.messageFlagsRemove('2', ['\\Seen'])
  const flags = new Map<number, string[]>()
  for await (const m of client.fetch('1:*', { flags: true })) flags.set(m.uid, [...m.flags!].sort())
  assert.deepEqual(flags.get(1), ['\\Answered', 'custom-kw'])
  assert.deepEqual(flags.get(2), ['\\Answered', 'custom-kw'])
  assert.deepEqual(flags.get(3), ['\\Flagged', 'project-x'])
  await client.messageFlagsSet('3', ['\\Draft'])
  const three = await client.fetchOne('3', { flags: true })
  assert.ok(three)
  assert.deepEqual([...three.flags!], ['\\Draft'])
})

test('COPY, MOVE and EXPUNGE answer with UIDPLUS data', async (t) => {
  const f = await fixture(t)
  for (let i = 1; i <= 4; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`m${i}`) })
  const { port } = await f.server()
  const client = await flow(t, port)
  await client.mailboxOpen('INBOX')
  const copied = await client.messageCopy('1:2', 'Archive', { uid: true })
  assert.ok(copied)
  assert.equal(copied.destination, 'Archive')
  assert.deepEqual([...copied.uidMap!.entries()], [[1, 1], [2, 2]])
  const moved = await client.messageMove('3', 'Trash', { uid: true })
  assert.ok(moved)
  assert.deepEqual([...moved.uidMap!.entries()], [[3, 1]])
  assert.equal(client.mailbox !== false && client.mailbox.exists, 3)
  await client.messageDelete('1', { uid: true })
  const uids: number[] = []
  for await (const m of client.fetch('1:*', { uid: true })) uids.push(m.uid)
  assert.deepEqual(uids, [2, 4])
  const messages = async (path: string): Promise<number | undefined> => {
    const status = await client.status(path, { messages: true })
    return status === false ? undefined : status.messages
  }
  assert.equal(await messages('Archive'), 2)
  assert.equal(await messages('Trash'), 1)
  await assert.rejects(client.messageCopy('2', 'Nowhere', { uid: true }).then((r) => { if (r === false) throw new Error('refused') }))
})

test('CONDSTORE and QRESYNC resynchronise after changes made elsewhere', async (t) => {
  const f = await fixture(t)
  for (let i = 1; i <= 3; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`q${i}`) })
  const { port } = await f.server()
  const first = await flow(t, port)
  const box = await first.mailboxOpen('INBOX')
  const uidValidity = box.uidValidity
  const modseq = box.highestModseq!
  assert.ok(typeof modseq === 'bigint' && modseq > 0n)
  await first.logout()

  const mailbox = (await f.store.getMailbox(USER, 'INBOX'))!
  await f.store.storeFlags(USER, mailbox.id, [2], 'add', ['\\Seen'])
  await f.store.storeFlags(USER, mailbox.id, [3], 'add', ['\\Deleted'])
  await f.store.expunge(USER, mailbox.id, [3])

  const second = await flow(t, port, { qresync: true })
  const vanished: number[] = []
  const changed: Array<[number, string[]]> = []
  second.on('expunge', (e: { uid?: number, vanished?: boolean }) => { if (e.uid !== undefined) vanished.push(e.uid) })
  second.on('flags', (e: { uid?: number, flags: Set<string> }) => changed.push([e.uid!, [...e.flags]]))
  const reopened = await second.mailboxOpen('INBOX', { uidValidity, changedSince: modseq } as never)
  assert.ok(second.enabled.has('QRESYNC'))
  assert.ok(reopened.highestModseq! > modseq)
  assert.deepEqual(vanished, [3])
  assert.deepEqual(changed, [[2, ['\\Seen']]])
  const since = []
  for await (const m of second.fetch('1:*', { flags: true }, { uid: true, changedSince: modseq })) since.push(m.uid)
  assert.deepEqual(since, [2])
})

test('IDLE shows a second session\'s delivery within a second', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const watcher = await flow(t, port)
  await watcher.mailboxOpen('INBOX')
  const exists = new Promise<number>((resolve) => watcher.on('exists', (e: { count: number }) => resolve(e.count)))
  void watcher.idle().catch(() => {}) // resolves only when IDLE ends
  const writer = await flow(t, port)
  const started = Date.now()
  await writer.append('INBOX', simpleMessage('pushed'))
  const count = await Promise.race([exists, new Promise<number>((_, reject) => setTimeout(() => reject(new Error('no EXISTS within 1 s')), 1000))])
  assert.equal(count, 1)
  assert.ok(Date.now() - started < 1000)
})

test('quota answers and folders: create, rename and delete with children', async (t) => {
  const f = await fixture(t)
  await f.store.setQuota(USER, { bytes: 10 * 1024 * 1024, messages: 100 })
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('quota', 'x'.repeat(3000)) })
  const { port } = await f.server()
  const client = await flow(t, port)
  const quota = await client.getQuota('INBOX')
  assert.ok(quota)
  assert.equal(quota.storage!.limit, 10 * 1024 * 1024)
  assert.ok(quota.storage!.usage! >= 3000)
  // imapflow names each resource after the lower-cased RFC 9208 resource name.
  const messages = (quota as unknown as Record<string, { usage: number, limit: number }>).message!
  assert.equal(messages.limit, 100)
  assert.equal(messages.usage, 1)

  await client.mailboxCreate(['Projects', 'Alpha'])
  await client.mailboxCreate('Projects/Beta')
  await client.mailboxCreate('Entwürfe')
  let names = (await client.list()).map((m) => m.path)
  assert.ok(names.includes('Projects') && names.includes('Projects/Alpha') && names.includes('Entwürfe'))
  const projects = (await client.list()).find((m) => m.path === 'Projects')!
  assert.ok(projects.flags.has('\\HasChildren'))
  const sent = (await client.list()).find((m) => m.path === 'Sent')!
  assert.equal(sent.specialUse, '\\Sent')
  await client.mailboxRename('Projects', 'Work')
  names = (await client.list()).map((m) => m.path)
  assert.ok(names.includes('Work/Alpha') && names.includes('Work/Beta') && !names.includes('Projects'))
  await assert.rejects(client.mailboxDelete('Work'), 'a mailbox with children is not deleted')
  await client.mailboxDelete('Work/Alpha')
  await client.mailboxDelete('Work/Beta')
  await client.mailboxDelete('Work')
  names = (await client.list()).map((m) => m.path)
  assert.ok(!names.some((n) => n.startsWith('Work')))
  await assert.rejects(client.mailboxDelete('INBOX'))
})

test('sessions see each other\'s flag changes and expunges, and users are isolated', async (t) => {
  const f = await fixture(t)
  for (let i = 1; i <= 3; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`s${i}`) })
  await f.store.append(OTHER, 'INBOX', { raw: simpleMessage('bob only') })
  const { port } = await f.server()
  const a = await flow(t, port)
  const b = await flow(t, port)
  await a.mailboxOpen('INBOX')
  await b.mailboxOpen('INBOX')
  const flagSeen = new Promise<void>((resolve) => b.on('flags', (e: { uid?: number, flags: Set<string> }) => { if (e.flags.has('\\Flagged')) resolve() }))
  const expunged = new Promise<void>((resolve) => b.on('expunge', () => resolve()))
  await a.messageFlagsAdd('1', ['\\Flagged'])
  await a.messageDelete('2')
  await b.noop()
  await Promise.all([flagSeen, expunged])
  assert.equal(b.mailbox !== false && b.mailbox.exists, 2)
  const bob = await flow(t, port, { user: OTHER })
  const box = await bob.mailboxOpen('INBOX')
  assert.equal(box.exists, 1)
})
