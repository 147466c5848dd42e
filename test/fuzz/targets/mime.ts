// The MIME analyser (store/mime). analyzeMessage swallows any exception of the inner parser and returns an
// opaque part (defence in depth), so the target calls the inner analyze() too: an exception there is a defect
// even though delivery would survive it. The structure is checked against its contract with the MIME tests' own
// validate() (offsets nest, sizes agree, MIME_PARTS_MAX and MIME_DEPTH_MAX hold, JSON round trip); then everything IMAP does with it (findPart, textParts, decodedText,
// headerFields, decodeHeaderValue, parseAddressList) must not throw.

import fc from 'fast-check'
import { analyzeMessage, decodedText, decodeHeaderValue, findPart, headerFields, parseAddressList, textParts } from '../../../store/mime/index.ts'
import type { MessageMeta } from '../../../store/mime/index.ts'
import { validate } from '../../mime/helpers.ts'
import { analyze } from '../../../store/mime/parse.ts'
import type { FuzzInput, FuzzTarget } from '../engine.ts'
import { loadCorpus } from '../corpus.ts'

function use (raw: Buffer, meta: MessageMeta): void {
  validate(meta, raw)
  for (const part of textParts(meta)) decodedText(raw, part)
  for (const path of [[], [1], [1, 1], [2], [1, 2, 3], [0], [1000]]) findPart(meta, path)
  for (const f of headerFields(raw, meta.root.headerStart, meta.root.headerEnd)) {
    decodeHeaderValue(f.value)
    if (/^(from|to|cc|bcc|reply-to|sender)$/i.test(f.name)) parseAddressList(f.value)
  }
  const e = meta.envelope
  if (e.subject !== null) decodeHeaderValue(e.subject)
}

export function runMime ({ data }: FuzzInput): void {
  use(data, analyze(data))
  // the public entry point must agree with the parser when the parser does not throw
  if (JSON.stringify(analyzeMessage(data)) !== JSON.stringify(analyze(data))) throw new Error('analyzeMessage differs from analyze')
}

const token = fc.constantFrom('a', 'b', 'x-y', 'frontier', '=_part_1', '"quoted b"', '')
const headerValue = fc.oneof(
  fc.constantFrom('text/plain; charset=utf-8', 'multipart/mixed; boundary=b', 'multipart/alternative; boundary="a"', 'message/rfc822', 'multipart/digest; boundary=d',
    'text/html; charset="iso-8859-1"; name*0*=utf-8\'\'%E2%82%AC; name*1=x', 'application/octet-stream; name="a.bin"', 'attachment; filename*=utf-8\'en\'%C3%A9.txt',
    'base64', 'quoted-printable', '8bit', '=?UTF-8?B?R3LDvMOfZQ==?=', '=?iso-8859-1?Q?J=F6rg?= <j@example.org>', '"A, B" <a@b>, group: c@d, e@f;', '<id@x>', '(comment) a@b (Name)'),
  fc.string({ maxLength: 30 })
)
const field = fc.tuple(fc.constantFrom('Content-Type', 'Content-Transfer-Encoding', 'Content-Disposition', 'Content-ID', 'Content-Language', 'Subject', 'From', 'To', 'Cc', 'Date', 'Message-ID', 'In-Reply-To', 'X-Other'), headerValue)
  .map(([n, v]) => `${n}: ${v}`)

/** A message tree: headers, then either a leaf body or boundary-delimited children. */
const messageArb: fc.Arbitrary<string> = fc.letrec<{ msg: string }>(tie => ({
  msg: fc.oneof(
    { depthSize: 'small' },
    fc.tuple(fc.array(field, { maxLength: 4 }), fc.string({ maxLength: 40 })).map(([fs, body]) => `${fs.join('\r\n')}\r\n\r\n${body}`),
    fc.tuple(token, fc.array(field, { maxLength: 2 }), fc.array(tie('msg'), { maxLength: 3 }), fc.boolean(), fc.constantFrom('mixed', 'alternative', 'digest'))
      .map(([b, fs, kids, close, sub]) => {
        const bare = b.replace(/"/g, '')
        return `Content-Type: multipart/${sub}; boundary=${b === '' ? '""' : b}\r\n${fs.join('\r\n')}\r\n\r\npreamble\r\n` +
          kids.map(k => `--${bare}\r\n${k}\r\n`).join('') + (close ? `--${bare}--\r\nepilogue` : '')
      }),
    tie('msg').map(inner => `Content-Type: message/rfc822\r\n\r\n${inner}`)
  )
})).msg

export const mime: FuzzTarget = {
  name: 'mime',
  grammar: messageArb.map(s => Buffer.from(s, 'utf8')),
  corpus: loadCorpus('mime'),
  dictionary: ['\r\n--', '\r\n\r\n', 'boundary=', 'Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n', 'message/rfc822\r\n\r\n', '=?utf-8?q?', '=?x?b?', '?=',
    'charset=', '*0*=', "''%", '\r\n ', '\t', ':', ';', '"', '(', '<', '@', '--b--', 'Content-Transfer-Encoding: base64\r\n', '=\r\n', '=ZZ'],
  inputBytesMax: 512 * 1024,
  run: runMime
}
