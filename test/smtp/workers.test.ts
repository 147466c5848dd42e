// SMTP worker processes (node/smtp/workers.ts): sessions run in child processes, deliveries in the node's process.
// A worker SIGKILLed in the middle of DATA loses nothing that was acknowledged and is replaced; the connection
// limits count every process's sessions; a message a worker answered 250 is in the store when the answer arrives.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Store } from '../../store/index.ts'
import { RawClient } from '../helpers/client.ts'
import { startNode } from '../helpers/node.ts'
import type { TestNode } from '../helpers/node.ts'
import type { NodeInit, NodeLimits } from '../../node/index.ts'

async function setup (t: { after: (fn: () => Promise<void>) => void }, overrides: Omit<Partial<NodeInit>, 'limits'> & { limits?: Partial<NodeLimits> } = {}): Promise<TestNode & { store: Store }> {
  const n = await startNode(t, { workers: 2, ...overrides } as Parameters<typeof startNode>[1])
  const store = n.node.store
  await store.addDomain('example.com')
  await store.addUser({ address: 'bob@example.com', password: 'bobpass' })
  return { ...n, store }
}

async function inboxCount (store: Store, user: string): Promise<number> {
  const box = await store.getMailbox(user, 'INBOX')
  assert.ok(box !== null)
  return (await store.listMessages(user, box.id)).length
}

async function inboxHas (store: Store, user: string, marker: string): Promise<boolean> {
  const box = await store.getMailbox(user, 'INBOX')
  assert.ok(box !== null)
  for (const r of await store.listMessages(user, box.id)) {
    if ((await store.readMessage(r)).toString('latin1').includes(marker)) return true
  }
  return false
}

/** One message over a raw session; resolves to DATA's final reply. */
async function send (port: number, marker: string): Promise<string> {
  const c = await RawClient.connect(port)
  try {
    assert.match(await c.read(), /^220 /)
    for (const cmd of ['EHLO client.test', 'MAIL FROM:<alice@example.org>', 'RCPT TO:<bob@example.com>', 'DATA']) {
      c.write(cmd + '\r\n')
      assert.match(await c.read(), /^(250|354)[ -]/)
    }
    c.write(`Subject: ${marker}\r\n\r\n${marker}\r\n.\r\n`)
    return await c.read()
  } finally {
    c.close()
  }
}

async function until (what: string, fn: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await fn()) return
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  assert.fail(`timed out waiting for ${what}`)
}

test('a message a worker answers 250 is in the store when the 250 arrives', async (t) => {
  const { node, store, port } = await setup(t)
  assert.equal(node.smtpWorkerPids.length, 2)
  for (let i = 0; i < 10; i++) {
    const marker = `durable-${i}-${Math.random().toString(36).slice(2)}`
    assert.match(await send(port('smtp'), marker), /^250 /)
    assert.ok(await inboxHas(store, 'bob@example.com', marker), `message ${i} is stored before its 250`)
  }
})

test('a worker SIGKILLed mid-DATA loses nothing acknowledged and is replaced', async (t) => {
  const { node, store, port } = await setup(t)
  const before = node.smtpWorkerPids
  assert.equal(before.length, 2)
  const acked: string[] = []
  for (let i = 0; i < 6; i++) {
    const marker = `acked-${i}-${Math.random().toString(36).slice(2)}`
    assert.match(await send(port('smtp'), marker), /^250 /)
    acked.push(marker)
  }
  // sessions in the middle of DATA, on whichever worker took them
  const open: RawClient[] = []
  t.after(() => { for (const c of open) c.close() })
  for (let i = 0; i < 4; i++) {
    const c = await RawClient.connect(port('smtp'))
    open.push(c)
    assert.match(await c.read(), /^220 /)
    for (const cmd of ['EHLO client.test', 'MAIL FROM:<alice@example.org>', 'RCPT TO:<bob@example.com>', 'DATA']) {
      c.write(cmd + '\r\n')
      assert.match(await c.read(), /^(250|354)[ -]/)
    }
    c.write('Subject: half\r\n\r\nonly half of a message\r\n')
  }
  for (const pid of before) process.kill(pid, 'SIGKILL')
  // every session in DATA was a worker's: each is cut, none answered 250
  for (const c of open) {
    await c.waitClosed(30_000)
    assert.equal(c.closed, true)
  }
  await until('two new workers', () => node.smtpWorkerPids.length === 2 && node.smtpWorkerPids.every(p => !before.includes(p)))
  for (const marker of acked) assert.ok(await inboxHas(store, 'bob@example.com', marker), `acknowledged ${marker} kept`)
  assert.equal(await inboxCount(store, 'bob@example.com'), acked.length, 'no half message stored')
  assert.match(await send(port('smtp'), 'after-restart'), /^250 /)
  assert.ok(await inboxHas(store, 'bob@example.com', 'after-restart'))
})

test('connection limits count the sessions of every worker', async (t) => {
  const { node, port } = await setup(t, { limits: { connectionsPerIpMax: 4, connectionsMax: 1000 } })
  const open: RawClient[] = []
  t.after(() => { for (const c of open) c.close() })
  // the four slots, over both listeners (so over both workers' sessions whichever took them)
  for (let i = 0; i < 4; i++) {
    const c = await RawClient.connect(port(i % 2 === 0 ? 'smtp' : 'submission'))
    open.push(c)
    assert.match(await c.read(), /^220 /)
  }
  assert.equal((await node.status()).connections, 4, 'the primary counts the workers\' sessions')
  for (let i = 0; i < 4; i++) {
    const extra = await RawClient.connect(port('smtp'))
    open.push(extra)
    assert.match(await extra.read(), /^421 /, 'a fifth session is refused whichever worker takes it')
  }
  // a slot comes back when its session closes
  open[0]!.close()
  await until('a slot released', async () => (await node.status()).connections === 3)
  const c = await RawClient.connect(port('smtp'))
  open.push(c)
  assert.match(await c.read(), /^220 /)
})

test('the global connection limit holds across workers, and a killed worker gives its slots back', async (t) => {
  const { node, port } = await setup(t, { limits: { connectionsPerIpMax: 100, connectionsMax: 3 } })
  const open: RawClient[] = []
  t.after(() => { for (const c of open) c.close() })
  for (let i = 0; i < 3; i++) {
    const c = await RawClient.connect(port('smtp'))
    open.push(c)
    assert.match(await c.read(), /^220 /)
  }
  const extra = await RawClient.connect(port('smtp'))
  open.push(extra)
  assert.match(await extra.read(), /^421 /)
  await until('the refused session closed', async () => (await node.status()).connections === 3)
  const before = node.smtpWorkerPids
  for (const pid of before) process.kill(pid, 'SIGKILL')
  await until('the slots of the killed workers released', async () => (await node.status()).connections === 0)
  await until('new workers', () => node.smtpWorkerPids.length === 2 && node.smtpWorkerPids.every(p => !before.includes(p)))
  const c = await RawClient.connect(port('smtp'))
  open.push(c)
  assert.match(await c.read(), /^220 /)
})

test('implicit TLS sessions start whichever process accepted the connection (the primary hands its accepts over unread)', async (t) => {
  const { port } = await setup(t)
  // the primary's copy of the listening socket accepts some connections and passes them on: a ClientHello it read
  // would be lost and the handshake would hang. Which process accepts is the kernel's choice: twenty connections make
  // both paths likely (before the fix, single TLS connections in other tests hung this way)
  for (let i = 0; i < 20; i++) {
    const c = await RawClient.connect(port('smtps'), { tls: true })
    try {
      assert.match(await c.read(), /^220 /)
      assert.match(await c.cmd('EHLO client.test'), /^250[ -]/)
    } finally {
      c.close()
    }
  }
})

/** RCPT TO's reply for `address` in a fresh session (so over whichever worker takes it). */
async function rcpt (port: number, address: string): Promise<string> {
  const c = await RawClient.connect(port)
  try {
    assert.match(await c.read(), /^220 /)
    for (const cmd of ['EHLO client.test', 'MAIL FROM:<alice@example.org>']) assert.match(await c.cmd(cmd), /^250[ -]/)
    return await c.cmd(`RCPT TO:<${address}>`)
  } finally {
    c.close()
  }
}

test('a worker keeps directory answers only until the directory changes (a user added, disabled, a domain added)', async (t) => {
  const { node, store, port } = await setup(t)
  // each step asks several times, over both workers, so each has answered (and kept) the step before's answer
  const ask = async (address: string, want: RegExp, why: string): Promise<void> => {
    for (let i = 0; i < 6; i++) assert.match(await rcpt(port('smtp'), address), want, `${why} (session ${i})`)
  }
  await ask('carol@example.com', /^550 5\.1\.1 /, 'unknown user')
  await store.addUser({ address: 'carol@example.com', password: 'carolpass' })
  await ask('carol@example.com', /^250 /, 'the new user, at once')
  await store.setStatus('carol@example.com', 'disabled')
  await ask('carol@example.com', /^550 5\.2\.1 /, 'the disabled user, at once')
  await ask('dave@example.net', /^550 5\.7\.1 /, 'a domain not ours: relay refused')
  await store.addDomain('example.net')
  await store.addUser({ address: 'dave@example.net', password: 'davepass' })
  await ask('dave@example.net', /^250 /, 'the new domain\'s user, at once')
  await store.deleteUser('dave@example.net')
  await ask('dave@example.net', /^550 5\.1\.1 /, 'the deleted user, at once')
  // workers started again hear the changes made after they start
  const before = node.smtpWorkerPids
  for (const pid of before) process.kill(pid, 'SIGKILL')
  await until('new workers', () => node.smtpWorkerPids.length === 2 && node.smtpWorkerPids.every(p => !before.includes(p)))
  await ask('erin@example.com', /^550 5\.1\.1 /, 'unknown user, after the restart')
  await store.addUser({ address: 'erin@example.com', password: 'erinpass' })
  await ask('erin@example.com', /^250 /, 'the new user, after the restart')
  assert.match(await send(port('smtp'), 'still-delivers'), /^250 /)
  assert.ok(await inboxHas(store, 'bob@example.com', 'still-delivers'))
})
