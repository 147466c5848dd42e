// appliance/autoconfig.ts's documents on their own: which services they name and in what order, escaping, and
// Outlook's request read with its character references.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { autodiscoverXml, clientSettings, mobileconfigXml, requestedAddress, thunderbirdXml, xmlEscape } from '../../appliance/autoconfig.ts'
import type { ServiceStatus } from '../../node/types.ts'

const ALL: ServiceStatus[] = [
  { name: 'smtp', host: '0.0.0.0', port: 25 }, { name: 'submission', host: '0.0.0.0', port: 587 }, { name: 'smtps', host: '0.0.0.0', port: 465 },
  { name: 'pop3', host: '0.0.0.0', port: 110 }, { name: 'pop3s', host: '0.0.0.0', port: 995 }, { name: 'imap', host: '0.0.0.0', port: 143 },
  { name: 'imaps', host: '0.0.0.0', port: 993 }
]
const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' })
const strict = (text: string): any => {
  assert.equal(XMLValidator.validate(text), true, text)
  return parser.parse(text)
}

test('client settings: implicit TLS first, the MX port never, a service that is off left out', () => {
  assert.deepEqual(clientSettings('mx.example.com', ALL).endpoints.map(e => `${e.protocol}:${e.port}:${e.socket}`), [
    'imap:993:SSL', 'imap:143:STARTTLS', 'pop3:995:SSL', 'pop3:110:STARTTLS', 'smtp:465:SSL', 'smtp:587:STARTTLS'
  ])
  const noImaps = clientSettings('mx.example.com', ALL.filter(s => s.name !== 'imaps' && s.name !== 'smtps'))
  const ad = strict(autodiscoverXml(noImaps, 'a@example.com')).Autodiscover.Response.Account.Protocol
  assert.deepEqual(ad.map((p: any) => [p.Type, p.Port, p.SSL ?? p.Encryption]), [['IMAP', 143, 'TLS'], ['POP3', 995, 'on'], ['SMTP', 587, 'TLS']])
  const apple = strict(mobileconfigXml(noImaps, 'a@example.com')).plist.dict.array.dict
  assert.deepEqual(apple.integer.slice(0, 2), [143, 587])
})

test('every value is escaped; what XML cannot carry is dropped', () => {
  assert.equal(xmlEscape('<a href="x">&\'</a>'), '&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;')
  assert.equal(xmlEscape('a\u0000b\u001bc\ufffe'), 'abc')
  const s = clientSettings('mx.example.com', ALL)
  const address = '"<x>&y\'"@example.com'
  for (const doc of [thunderbirdXml(s, 'ex&ample.com'), autodiscoverXml(s, address), mobileconfigXml(s, address)]) {
    strict(doc)
    assert.ok(!doc.includes('<x>') && !doc.includes('&y'), doc)
  }
  assert.equal(strict(thunderbirdXml(s, 'ex&ample.com')).clientConfig.emailProvider['@id'], 'ex&ample.com')
})

test('the Apple profile is stable for an address and differs between addresses', () => {
  const s = clientSettings('mx.example.com', ALL)
  const uuids = (doc: string): string[] => [...doc.matchAll(/<key>PayloadUUID<\/key>\n<string>([0-9A-F-]{36})<\/string>/g)].map(m => m[1])
  const a = uuids(mobileconfigXml(s, 'a@example.com'))
  assert.equal(a.length, 2)
  assert.notEqual(a[0], a[1])
  assert.deepEqual(uuids(mobileconfigXml(s, 'a@example.com')), a, 're-downloading replaces the same profile')
  assert.notDeepEqual(uuids(mobileconfigXml(s, 'b@example.com')), a)
  for (const u of a) assert.match(u, /^[0-9A-F]{8}-[0-9A-F]{4}-8[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/)
})

test('Outlook\'s request: the EMailAddress, references decoded, anything malformed refused', () => {
  const req = (inner: string): string => `<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request>${inner}</Request></Autodiscover>`
  const table: Array<[string, string | null]> = [
    ['<EMailAddress>a@example.com</EMailAddress>', 'a@example.com'],
    ['<EMailAddress>\n  a@example.com \n</EMailAddress>', 'a@example.com'],
    ['<a:EMailAddress>a@example.com</a:EMailAddress>', 'a@example.com'],
    ['<EMailAddress>o&apos;neil&amp;co@example.com</EMailAddress>', "o'neil&co@example.com"],
    ['<EMailAddress>&#97;&#x62;@example.com</EMailAddress>', 'ab@example.com'],
    ['<EMailAddress>a&b@example.com</EMailAddress>', null],
    ['<EMailAddress>&bogus;@example.com</EMailAddress>', null],
    ['<EMailAddress>&#x110000;@example.com</EMailAddress>', null],
    ['<EMailAddress></EMailAddress>', null],
    ['<Email>a@example.com</Email>', null]
  ]
  for (const [inner, want] of table) assert.equal(requestedAddress(req(inner)), want, inner)
})
