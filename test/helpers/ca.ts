// A throwaway certificate authority for tests that need certificates a client verifies (MTA-STS's HTTPS and
// enforced TLS to an MX): one CA per test run, leaf certificates for the names the test asks for. The CA's
// certificate is what the code under test gets as its `ca` override; nothing is installed system-wide.

import { generate } from 'selfsigned'

export interface TestCa {
  /** The CA certificate (PEM), to pass as a `ca` option. */
  cert: string
  /** A key and certificate for these DNS names (the first is the common name), signed by the CA. */
  issue (names: string[]): Promise<{ key: string, cert: string }>
}

export async function createTestCa (name = 'mailgrid test CA'): Promise<TestCa> {
  const ca = await generate([{ name: 'commonName', value: name }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true }
    ]
  })
  return {
    cert: ca.cert,
    async issue (names) {
      const leaf = await generate([{ name: 'commonName', value: names[0] ?? 'localhost' }], {
        keyType: 'ec',
        algorithm: 'sha256',
        ca: { key: ca.private, cert: ca.cert },
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
          { name: 'extKeyUsage', serverAuth: true },
          { name: 'subjectAltName', altNames: names.map(value => ({ type: 2 as const, value })) }
        ]
      })
      return { key: leaf.private, cert: leaf.cert }
    }
  }
}
