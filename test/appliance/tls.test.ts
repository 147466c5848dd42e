import { test } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadTls, TlsError } from '../../appliance/tls.ts'

const DAY_MS = 24 * 60 * 60 * 1000

async function withDir (fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-tls-'))
  try {
    await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

test('a self-signed certificate is created at first start, kept in the data dir, and reused', async () => {
  await withDir(async dir => {
    const first = await loadTls({ dataDir: dir, hostname: 'mx.example.com' })
    assert.equal(first.selfSigned, true)
    assert.equal(first.created, true)
    assert.equal(await readFile(join(dir, 'tls', 'cert.pem'), 'utf8'), first.cert)
    assert.equal(await readFile(join(dir, 'tls', 'key.pem'), 'utf8'), first.key)
    assert.equal((await stat(join(dir, 'tls', 'key.pem'))).mode & 0o777, 0o600)
    const x509 = new X509Certificate(first.cert)
    assert.equal(x509.subjectAltName, 'DNS:mx.example.com, DNS:localhost, IP Address:127.0.0.1')
    assert.equal(x509.ca, false)

    const second = await loadTls({ dataDir: dir, hostname: 'mx.example.com' })
    assert.equal(second.created, false)
    assert.equal(second.cert, first.cert)
    assert.equal(second.key, first.key)
    assert.equal(second.fingerprint, first.fingerprint)
  })
})

test('the self-signed certificate is replaced when the hostname changes or it nears expiry', async () => {
  await withDir(async dir => {
    const first = await loadTls({ dataDir: dir, hostname: 'a.example.com' })
    const renamed = await loadTls({ dataDir: dir, hostname: 'b.example.com' })
    assert.equal(renamed.created, true)
    assert.notEqual(renamed.fingerprint, first.fingerprint)
    assert.match(new X509Certificate(renamed.cert).subjectAltName ?? '', /DNS:b\.example\.com/)

    const stillFresh = await loadTls({ dataDir: dir, hostname: 'b.example.com', now: () => Date.now() + 800 * DAY_MS })
    assert.equal(stillFresh.created, false)
    const late = await loadTls({ dataDir: dir, hostname: 'b.example.com', now: () => Date.now() + 820 * DAY_MS })
    assert.equal(late.created, true)
    assert.ok(Date.parse(late.validTo) > Date.now() + 1600 * DAY_MS)
  })
})

test('an IP address as hostname goes into the certificate as an IP entry', async () => {
  await withDir(async dir => {
    const t = await loadTls({ dataDir: dir, hostname: '192.0.2.7' })
    assert.equal(new X509Certificate(t.cert).subjectAltName, 'DNS:localhost, IP Address:192.0.2.7, IP Address:127.0.0.1')
    assert.equal((await loadTls({ dataDir: dir, hostname: '192.0.2.7' })).created, false)
  })
})

test('configured files are used as they are, and mistakes are named', async () => {
  await withDir(async dir => {
    const a = await loadTls({ dataDir: join(dir, 'a'), hostname: 'a.example.com' })
    const b = await loadTls({ dataDir: join(dir, 'b'), hostname: 'b.example.com' })
    const cert = join(dir, 'cert.pem')
    const key = join(dir, 'key.pem')
    const otherKey = join(dir, 'other.pem')
    await writeFile(cert, a.cert)
    await writeFile(key, a.key)
    await writeFile(otherKey, b.key)

    const used = await loadTls({ dataDir: join(dir, 'c'), hostname: 'a.example.com', certFile: cert, keyFile: key })
    assert.deepEqual([used.cert, used.key, used.selfSigned, used.created], [a.cert, a.key, false, false])
    await assert.rejects(stat(join(dir, 'c', 'tls')), { code: 'ENOENT' }, 'nothing is generated when files are configured')

    const rejects = async (init: { certFile?: string, keyFile?: string }, message: string | RegExp): Promise<void> => {
      await assert.rejects(loadTls({ dataDir: dir, hostname: 'a.example.com', ...init }), (err: unknown) => {
        assert.ok(err instanceof TlsError)
        if (typeof message === 'string') assert.equal(err.message, message)
        else assert.match(err.message, message)
        return true
      })
    }
    await rejects({ certFile: cert, keyFile: otherKey }, `${otherKey}: does not belong to the certificate in ${cert}`)
    await rejects({ certFile: cert }, 'tls.cert and tls.key must be configured together')
    await rejects({ certFile: join(dir, 'none.pem'), keyFile: key }, `${join(dir, 'none.pem')}: no such file`)
    await rejects({ certFile: key, keyFile: key }, new RegExp(`^${key}: not a PEM certificate`))
    await rejects({ certFile: cert, keyFile: cert }, new RegExp(`^${cert}: not a PEM private key`))
  })
})
