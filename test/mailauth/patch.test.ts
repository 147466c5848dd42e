// Our patch of mailauth (patches/mailauth+7.1.0.patch, applied by `npm install`'s postinstall through
// patch-package): what it changes and that it changes nothing else.
// 1. A DKIM key record is parsed once for all messages: getPublicKey() keeps the parsed key by the record's text
//    and the options that change the outcome, so a rotated or revoked key is a different entry (never stale),
//    and it hands crypto.verify() a key object instead of a PEM to parse again.
// 2. The message parser finds bare <LF>s and the end of the header block by jumping from <LF> to <LF> instead of
//    byte by byte. Checked against the rules it implements on random inputs cut into random chunks.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, generateKeyPairSync, KeyObject } from 'node:crypto'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const tools = require('mailauth/lib/tools.js') as {
  getPublicKey: (type: string, name: string, minBitLength: number | undefined, resolver: (name: string, rrtype: string) => Promise<string[][]>, options?: { strict?: boolean, hashAlgo?: string }) => Promise<{
    publicKey: string, publicKeyObject: KeyObject, rr: string, modulusLength: number, keyType: string, flags: string[], testing: boolean, warnings: string[]
  }>
}
const { MessageParser } = require('mailauth/lib/dkim/message-parser.js') as { MessageParser: new () => NodeJS.WritableStream & ParserInternals }
const { dkimSign, authenticate } = require('mailauth') as {
  dkimSign: (message: Buffer, opts: unknown) => Promise<{ signatures: string }>
  authenticate: (message: Buffer, opts: unknown) => Promise<{ dkim: { results: Array<{ status: { result: string, comment?: string | false } }> } }>
}

interface ParserInternals {
  messageHeaders: (headers: unknown) => Promise<void>
  nextChunk: (chunk: Buffer) => Promise<void>
  finalChunk: () => Promise<void>
  headerChunks: Buffer[]
  byteLength: number
}

function rsaRecord (bits = 1024, extra = ''): { record: string, pem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits })
  const p = publicKey.export({ type: 'spki', format: 'der' }).toString('base64')
  return { record: `v=DKIM1; k=rsa;${extra} p=${p}`, pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }
}

test('mailauth patch: a key record is parsed once and reused for later messages, by its text', async () => {
  const a = rsaRecord()
  let record = a.record
  let lookups = 0
  const resolver = async (name: string, rrtype: string): Promise<string[][]> => {
    assert.equal(rrtype, 'TXT')
    assert.equal(name, 'sel._domainkey.patch.test')
    lookups++
    return [[record]]
  }
  const first = await tools.getPublicKey('DKIM', 'sel._domainkey.patch.test', 1024, resolver, { strict: true, hashAlgo: 'sha256' })
  const second = await tools.getPublicKey('DKIM', 'sel._domainkey.patch.test', 1024, resolver, { strict: true, hashAlgo: 'sha256' })
  assert.equal(lookups, 2, 'the DNS question is asked for every message: only the parse is kept')
  assert.ok(first.publicKeyObject instanceof KeyObject, 'the key object is handed out')
  assert.equal(second.publicKeyObject, first.publicKeyObject, 'the second message reuses the parsed key')
  assert.deepEqual({ ...second, warnings: [...second.warnings] }, { ...first, warnings: [...first.warnings] })
  assert.equal(first.modulusLength, 1024)
  assert.match(first.publicKey, /^-----BEGIN (RSA )?PUBLIC KEY-----/)
  // what one caller does with its copy does not reach the next
  second.flags.push('y')
  second.warnings.push('x')
  const third = await tools.getPublicKey('DKIM', 'sel._domainkey.patch.test', 1024, resolver, { strict: true, hashAlgo: 'sha256' })
  assert.deepEqual(third.flags, [])
  assert.deepEqual(third.warnings, [])

  // the options that change the outcome are part of the entry
  await assert.rejects(tools.getPublicKey('DKIM', 'sel._domainkey.patch.test', 2048, resolver, { strict: true, hashAlgo: 'sha256' }), { code: 'ESHORTKEY' })

  // a rotated key is a new record text: parsed anew, never the old key
  const b = rsaRecord()
  record = b.record
  const rotated = await tools.getPublicKey('DKIM', 'sel._domainkey.patch.test', 1024, resolver, { strict: true, hashAlgo: 'sha256' })
  assert.notEqual(rotated.publicKeyObject, first.publicKeyObject)
  assert.equal(rotated.rr, b.record.replace(/\s+/g, ''))

  // a revoked key (empty p=) fails every time, though its earlier record was kept
  record = 'v=DKIM1; k=rsa; p='
  await assert.rejects(tools.getPublicKey('DKIM', 'sel._domainkey.patch.test', 1024, resolver, { strict: true, hashAlgo: 'sha256' }), { code: 'EINVALIDVAL' })
  // and a key that forbids the hash (h=) fails for that hash only
  record = a.record.replace('k=rsa;', 'k=rsa; h=sha1;')
  await assert.rejects(tools.getPublicKey('DKIM', 'sel._domainkey.patch.test', 1024, resolver, { strict: true, hashAlgo: 'sha256' }), { code: 'EINVALIDHASH' })
  const sha1 = await tools.getPublicKey('DKIM', 'sel._domainkey.patch.test', 1024, resolver, { strict: true, hashAlgo: 'sha1' })
  assert.equal(sha1.keyType, 'rsa')
})

test('mailauth patch: DKIM verdicts across messages follow the key record as DNS serves it', async () => {
  const a = rsaRecord()
  const b = rsaRecord()
  let record = a.record
  const resolver = async (name: string, rrtype: string): Promise<string[][]> => {
    if (rrtype === 'TXT' && name === 'k1._domainkey.rotate.test') return [[record]]
    throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' })
  }
  const body = Buffer.from('From: a@rotate.test\r\nTo: b@example.test\r\nSubject: rotate\r\n\r\nhello\r\n')
  const sign = async (pem: string): Promise<Buffer> => {
    const s = await dkimSign(body, { canonicalization: 'relaxed/relaxed', signatureData: [{ signingDomain: 'rotate.test', selector: 'k1', privateKey: pem }] })
    return Buffer.concat([Buffer.from(s.signatures), body])
  }
  const verdict = async (message: Buffer): Promise<string> => {
    const res = await authenticate(message, { ip: '192.0.2.1', helo: 'x.rotate.test', sender: 'a@rotate.test', mta: 'mx.test', resolver, strict: true, disableBimi: true })
    return res.dkim.results[0].status.result
  }
  const byA = await sign(a.pem)
  const byB = await sign(b.pem)
  // several messages with the same key: each verdict is as it was for the first
  assert.equal(await verdict(byA), 'pass')
  assert.equal(await verdict(byA), 'pass')
  assert.equal(await verdict(byB), 'fail')
  // the domain rotates to key b: the kept key a is not used for it
  record = b.record
  assert.equal(await verdict(byB), 'pass')
  assert.equal(await verdict(byA), 'fail')
  // and revokes it
  record = 'v=DKIM1; k=rsa; p='
  assert.notEqual(await verdict(byB), 'pass')
})

// --- the message parser ---

/** What the parser must produce for a whole input: every <LF> without a <CR> before it (in the input) becomes
 * <CR><LF>; the header block ends with the first <LF> that ends an empty line (or is the input's first line). */
function model (input: Buffer): { header: Buffer, body: Buffer, length: number } {
  const out: number[] = []
  for (let i = 0; i < input.length; i++) {
    if (input[i] === 0x0a && (i === 0 || input[i - 1] !== 0x0d)) out.push(0x0d)
    out.push(input[i])
  }
  const n = Buffer.from(out)
  for (let p = 0; p < n.length; p++) {
    if (n[p] !== 0x0a) continue
    if (n[p - 1] === 0x0a || (n[p - 1] === 0x0d && n[p - 2] === 0x0a) || p === 0 || (p === 1 && n[0] === 0x0d)) {
      return { header: n.subarray(0, p + 1), body: n.subarray(p + 1), length: n.length }
    }
  }
  return { header: n, body: Buffer.alloc(0), length: n.length }
}

async function parse (chunks: Buffer[]): Promise<{ header: Buffer, body: Buffer, length: number }> {
  const parser = new MessageParser()
  let header: Buffer | undefined
  const body: Buffer[] = []
  parser.messageHeaders = async () => { header = Buffer.concat(parser.headerChunks) }
  parser.nextChunk = async (chunk: Buffer) => { body.push(Buffer.from(chunk)) }
  parser.finalChunk = async () => {}
  await new Promise<void>((resolve, reject) => {
    parser.on('finish', resolve)
    parser.on('error', reject)
    for (const c of chunks) parser.write(c)
    parser.end()
  })
  assert.ok(header !== undefined, 'the headers are always handed out')
  return { header, body: Buffer.concat(body), length: parser.byteLength }
}

test('mailauth patch: the message parser splits header and body and mends bare LFs as the rules say (random inputs, random chunks)', async () => {
  let seed = 0x2545f491
  const rand = (n: number): number => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return ((seed >>> 0) % n) }
  const alphabet = [0x61, 0x61, 0x3a, 0x20, 0x0d, 0x0a, 0x0a]
  const cases = 5000
  for (let c = 0; c < cases; c++) {
    const input = Buffer.from(Array.from({ length: rand(40) }, () => alphabet[rand(alphabet.length)]))
    const chunks: Buffer[] = []
    for (let pos = 0; pos < input.length;) {
      const len = 1 + rand(8)
      chunks.push(input.subarray(pos, pos + len))
      pos += len
    }
    const want = model(input)
    const got = await parse(chunks)
    const show = JSON.stringify(input.toString('latin1')) + ' in ' + JSON.stringify(chunks.map(b => b.toString('latin1')))
    assert.deepEqual(got.header, want.header, `header of ${show}`)
    assert.deepEqual(got.body, want.body, `body of ${show}`)
    assert.equal(got.length, want.length, `length of ${show}`)
  }
  // a real message in one chunk, with LF line ends
  const message = Buffer.from('From: a@x.test\nSubject: s\n\nline 1\nline 2\r\n')
  const got = await parse([message])
  assert.equal(got.header.toString(), 'From: a@x.test\r\nSubject: s\r\n\r\n')
  assert.equal(got.body.toString(), 'line 1\r\nline 2\r\n')
})

// --- the relaxed body canonicalization ---

const { RelaxedHash } = require('mailauth/lib/dkim/body/relaxed.js') as {
  RelaxedHash: new (algorithm: string, maxBodyLength?: number) => { update: (chunk: Buffer) => void, digest: (encoding: 'base64') => string }
}

/** RFC 6376 3.4.4 on a body whose line ends are CRLF (as the message parser hands it over): in each line runs of
 * WSP become one SP and WSP at the end goes; empty lines at the end go; a non-empty body ends with CRLF. */
function relaxedModel (body: Buffer): string {
  const lines = body.toString('latin1').split('\r\n')
  const last = lines.pop() as string // after the final CRLF: '' when the body ends with one
  const out = lines.map(l => l.replace(/[ \t]+/g, ' ').replace(/ $/, ''))
  if (last !== '') out.push(last.replace(/[ \t]+/g, ' ').replace(/ $/, ''))
  while (out.length && out[out.length - 1] === '') out.pop()
  const text = out.length ? out.join('\r\n') + '\r\n' : ''
  return createHash('sha256').update(Buffer.from(text, 'latin1')).digest('base64')
}

test('mailauth patch: the relaxed body hash is what RFC 6376 3.4.4 gives (random bodies, random chunks, clean and not)', () => {
  let seed = 0x1b873593
  const rand = (n: number): number => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return ((seed >>> 0) % n) }
  // lines of mostly letters (a clean chunk, the fast path) and sometimes spaces, tabs and lone CRs
  const noisy = ['a', 'b', 'a', ' ', '\t', '\r', 'c']
  const plain = ['a', 'b', 'c', 'd', ' ']
  for (let c = 0; c < 5000; c++) {
    const alphabet = rand(2) === 0 ? plain : noisy
    const lines = Array.from({ length: rand(8) }, () => Array.from({ length: rand(12) }, () => alphabet[rand(alphabet.length)]).join(''))
    let text = lines.join('\r\n')
    if (rand(2) === 0) text += '\r\n'
    if (rand(4) === 0) text += '\r\n\r\n'
    const body = Buffer.from(text, 'latin1')
    const hash = new RelaxedHash('sha256')
    for (let pos = 0; pos < body.length;) {
      const len = 1 + rand(rand(2) === 0 ? 6 : 64)
      hash.update(body.subarray(pos, pos + len))
      pos += len
    }
    assert.equal(hash.digest('base64'), relaxedModel(body), `body ${JSON.stringify(text)}`)
  }
})
