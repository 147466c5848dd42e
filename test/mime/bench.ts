// Manual micro-benchmark of analyzeMessage: `node test/mime/bench.ts`. Prints µs per message.
import { analyzeMessage } from '../../store/mime/index.ts'

function header (extra: string[]): string[] {
  return [
    'Return-Path: <sender@example.org>',
    'Received: from mx.example.org (mx.example.org [192.0.2.1]) by mail.example.com with ESMTPS id abc123',
    '\tfor <rcpt@example.com>; Tue, 1 Apr 2025 10:00:00 +0000',
    'DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel; h=from:to:subject:date;',
    '\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdA==',
    'From: =?UTF-8?Q?J=C3=B6rg_Sender?= <sender@example.org>',
    'To: Recipient One <rcpt@example.com>, other@example.com',
    'Cc: "Doe, Jane" <jane@example.net>',
    'Subject: =?UTF-8?B?UXVhcnRlcmx5IHJlcG9ydCDigJMgZHJhZnQ=?=',
    'Date: Tue, 1 Apr 2025 10:00:00 +0000',
    'Message-ID: <20250401100000.abc123@example.org>',
    'MIME-Version: 1.0',
    ...extra
  ]
}

export function singlePart (bodyBytes: number): Buffer {
  const line = 'The quick brown fox jumps over the lazy dog, again and again, line after line.\r\n'
  return Buffer.from(header(['Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit']).join('\r\n') +
    '\r\n\r\n' + line.repeat(Math.ceil(bodyBytes / line.length)))
}

function multiPart (): Buffer {
  const text = 'Hello,\r\n\r\nplease find the report attached.\r\n'.repeat(20)
  const b64 = (Buffer.alloc(8000, 7).toString('base64').match(/.{1,76}/g) ?? []).join('\r\n')
  return Buffer.from(header(['Content-Type: multipart/mixed; boundary="=_outer"']).join('\r\n') + '\r\n\r\n' +
    '--=_outer\r\nContent-Type: multipart/alternative; boundary="=_alt"\r\n\r\n' +
    '--=_alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n' + text + '\r\n' +
    '--=_alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>' + text + '</p>\r\n--=_alt--\r\n' +
    '--=_outer\r\nContent-Type: application/pdf; name="report.pdf"\r\nContent-Transfer-Encoding: base64\r\n' +
    'Content-Disposition: attachment; filename*=utf-8\'\'r%C3%A9sum%C3%A9.pdf\r\n\r\n' + b64 + '\r\n--=_outer--\r\n')
}

export function microsPerMessage (raw: Buffer, rounds: number): number {
  for (let i = 0; i < 2000; i++) analyzeMessage(raw)
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < rounds; i++) analyzeMessage(raw)
  return Number(process.hrtime.bigint() - t0) / 1000 / rounds
}

if (import.meta.main) {
  const cases: [string, Buffer][] = [['10 KB single part', singlePart(10 * 1024)], ['100 KB single part', singlePart(100 * 1024)], ['multipart 3 parts + 8 KB attachment', multiPart()]]
  for (const [name, raw] of cases) {
    console.log(`${name} (${raw.length} bytes): ${microsPerMessage(raw, 20000).toFixed(1)} µs`)
  }
}
