/**
 * Modified UTF-7 mailbox names (RFC 3501 section 5.1.3). Used unless the client enabled
 * UTF8=ACCEPT (RFC 6855 section 3) or IMAP4rev2 (RFC 9051 section 5.1), which send UTF-8.
 */

function isPrintable (code: number): boolean {
  return code >= 0x20 && code <= 0x7e
}

export function encodeMutf7 (name: string): string {
  let out = ''
  let pending: number[] = []
  const flush = (): void => {
    if (pending.length === 0) return
    const bytes = Buffer.alloc(pending.length * 2)
    pending.forEach((unit, i) => bytes.writeUInt16BE(unit, i * 2))
    out += '&' + bytes.toString('base64').replace(/=+$/, '').replace(/\//g, ',') + '-'
    pending = []
  }
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i)
    if (isPrintable(unit)) {
      flush()
      out += unit === 0x26 ? '&-' : name[i]
    } else {
      pending.push(unit)
    }
  }
  flush()
  return out
}

/** Decodes; returns null for names that are not valid modified UTF-7. */
export function decodeMutf7 (name: string): string | null {
  let out = ''
  for (let i = 0; i < name.length; i++) {
    const char = name[i]!
    const code = char.charCodeAt(0)
    if (code > 0x7e) return null
    if (char !== '&') {
      out += char
      continue
    }
    const end = name.indexOf('-', i + 1)
    if (end === -1) return null
    const encoded = name.slice(i + 1, end)
    i = end
    if (encoded === '') {
      out += '&'
      continue
    }
    if (!/^[A-Za-z0-9+,]+$/.test(encoded)) return null
    const bytes = Buffer.from(encoded.replace(/,/g, '/'), 'base64')
    if (bytes.length % 2 !== 0 || bytes.length === 0) return null
    let units = ''
    for (let j = 0; j < bytes.length; j += 2) {
      const unit = bytes.readUInt16BE(j)
      // RFC 3501 5.1.3: printable US-ASCII (and '&') must represent itself; a second spelling of '/', '.' or
      // 'INBOX' would name the same mailbox as another string, and slip past any check made on the wire form
      if (isPrintable(unit)) return null
      units += String.fromCharCode(unit)
    }
    // the shortest encoding only (no bits left over beyond padding), and UTF-16 that pairs its surrogates
    if (encodeMutf7(units) !== `&${encoded}-` || !units.isWellFormed()) return null
    out += units
  }
  return out
}
