// The node's TLS certificate. With files configured, they are read and checked (the key must match the
// certificate) so a mistake stops the start with a clear message instead of failing every handshake later.
// With none, a self-signed certificate for the hostname, localhost and 127.0.0.1 is created once and kept in
// DATA/tls, so clients that pinned it keep working across restarts; it is replaced only when it has expired
// or no longer names the hostname.

import { createPrivateKey, X509Certificate } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { generate } from 'selfsigned'
import type { Logger } from 'pino'
import type { TlsMaterial } from '../node/types.ts'
import { writeFileDurable } from '../gossip/index.ts'

export const TLS_DIR = 'tls'
export const CERT_FILE = 'cert.pem'
export const KEY_FILE = 'key.pem'
export const SELF_SIGNED_DAYS = 825 // the longest validity Apple's TLS clients accept for a server certificate
export const RSA_KEY_BITS = 2048 // what every mail client supports; NIST SP 800-57 rates it adequate
export const RENEW_BEFORE_MS = 7 * 24 * 60 * 60 * 1000 // replace a self-signed certificate a week before it expires
const DAY_MS = 24 * 60 * 60 * 1000

export interface TlsInit {
  dataDir: string
  hostname: string
  /** Configured PEM files; both empty or absent = self-signed in DATA/tls. */
  certFile?: string
  keyFile?: string
  now?: () => number
}

export interface LoadedTls extends TlsMaterial {
  selfSigned: boolean
  /** True when this call generated the self-signed certificate. */
  created: boolean
  fingerprint: string
  validTo: string
}

export class TlsError extends Error {
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'TlsError'
  }
}

function describe (err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err))
}

/** Parses and pairs a certificate and key; throws TlsError naming the files on any mismatch. */
function inspect (cert: string, key: string, certName: string, keyName: string): X509Certificate {
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(cert)
  } catch (err) {
    throw new TlsError(`${certName}: not a PEM certificate (${describe(err)})`, { cause: err })
  }
  let privateKey
  try {
    privateKey = createPrivateKey(key)
  } catch (err) {
    throw new TlsError(`${keyName}: not a PEM private key (${describe(err)})`, { cause: err })
  }
  if (!x509.checkPrivateKey(privateKey)) throw new TlsError(`${keyName}: does not belong to the certificate in ${certName}`)
  return x509
}

function namesHost (x509: X509Certificate, hostname: string): boolean {
  return isIP(hostname) !== 0 ? x509.checkIP(hostname) !== undefined : x509.checkHost(hostname) !== undefined
}

async function readIfExists (path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new TlsError(`${path}: cannot read (${describe(err)})`, { cause: err })
  }
}


async function createSelfSigned (hostname: string, now: number): Promise<{ cert: string, key: string }> {
  const names = [...new Set([hostname, 'localhost'])].filter(n => isIP(n) === 0)
  const pems = await generate([{ name: 'commonName', value: hostname }], {
    keyType: 'rsa',
    keySize: RSA_KEY_BITS,
    algorithm: 'sha256',
    notBeforeDate: new Date(now - DAY_MS), // tolerate clients whose clocks run a little behind
    notAfterDate: new Date(now + SELF_SIGNED_DAYS * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          ...names.map(value => ({ type: 2 as const, value })),
          ...[...new Set([hostname, '127.0.0.1'])].filter(n => isIP(n) !== 0).map(ip => ({ type: 7 as const, ip }))
        ]
      }
    ]
  })
  return { cert: pems.cert, key: pems.private }
}

/** The certificate and key the node serves, from the configured files or the data dir. */
export async function loadTls (init: TlsInit, logger?: Logger): Promise<LoadedTls> {
  const certFile = init.certFile ?? ''
  const keyFile = init.keyFile ?? ''
  if (certFile !== '' || keyFile !== '') {
    if (certFile === '' || keyFile === '') throw new TlsError('tls.cert and tls.key must be configured together')
    const cert = await readIfExists(certFile)
    if (cert === null) throw new TlsError(`${certFile}: no such file`)
    const key = await readIfExists(keyFile)
    if (key === null) throw new TlsError(`${keyFile}: no such file`)
    const x509 = inspect(cert, key, certFile, keyFile)
    if (!namesHost(x509, init.hostname)) logger?.warn({ event: 'tls_name_mismatch', hostname: init.hostname, san: x509.subjectAltName }, 'the certificate does not name the hostname')
    return { cert, key, selfSigned: false, created: false, fingerprint: x509.fingerprint256, validTo: x509.validTo }
  }

  const now = (init.now ?? Date.now)()
  const dir = join(init.dataDir, TLS_DIR)
  const certPath = join(dir, CERT_FILE)
  const keyPath = join(dir, KEY_FILE)
  const oldCert = await readIfExists(certPath)
  const oldKey = await readIfExists(keyPath)
  if (oldCert !== null && oldKey !== null) {
    const x509 = inspect(oldCert, oldKey, certPath, keyPath)
    const fresh = Date.parse(x509.validTo) - RENEW_BEFORE_MS > now
    if (fresh && namesHost(x509, init.hostname)) {
      return { cert: oldCert, key: oldKey, selfSigned: true, created: false, fingerprint: x509.fingerprint256, validTo: x509.validTo }
    }
    logger?.info({ event: 'tls_self_signed_replaced', reason: fresh ? 'hostname' : 'expiry', validTo: x509.validTo }, 'replacing the self-signed certificate')
  }

  await mkdir(dir, { recursive: true, mode: 0o700 })
  const { cert, key } = await createSelfSigned(init.hostname, now)
  // The key first: a certificate without its key would be unusable, a key without a certificate is regenerated.
  await writeFileDurable(keyPath, key, 0o600)
  await writeFileDurable(certPath, cert, 0o644)
  const x509 = new X509Certificate(cert)
  logger?.info({ event: 'tls_self_signed_created', path: certPath, fingerprint: x509.fingerprint256, validTo: x509.validTo }, 'created a self-signed certificate')
  return { cert, key, selfSigned: true, created: true, fingerprint: x509.fingerprint256, validTo: x509.validTo }
}
