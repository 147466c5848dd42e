// SSH on the appliance image: optional, key-only root login for the operator. Off unless first boot (the wizard
// or the seed's `sshKey`) gave a public key: the key goes to SSH_KEYS_NAME beside the config
// (/etc/mailgrid/ssh_authorized_keys, saved on the data disk with the rest of /etc/mailgrid), and the image's
// boot step (iso/rootfs/usr/local/sbin/mailgrid-appliance-boot) starts sshd only when that file holds a key.
// sshd's settings are iso/rootfs/etc/ssh/sshd_config.d/mailgrid.conf; checkSshdConfig says what they must hold.
//
// A public key is one line `TYPE BASE64 [COMMENT]` (the OpenSSH format, RFC 4253 6.6 for the blob). It is
// checked here, blob included: the blob's own type must match, an RSA modulus must have at least
// SSH_RSA_BITS_MIN bits, an Ed25519 key 32 bytes, an ECDSA key a point of its curve's size. No options
// (`from=`, `command=`) and no other key types: the file holds exactly the keys an operator gave.

export const SSH_KEYS_NAME = 'ssh_authorized_keys'
export const SSH_KEY_CHARS_MAX = 8192 // an RSA 8192-bit key is about 1.4 KB; a comment adds little
export const SSH_KEYS_MAX = 32 // keys in the file
export const SSH_RSA_BITS_MIN = 3072 // NIST SP 800-57 part 1: 3072-bit RSA for 128-bit security
const SSH_COMMENT_CHARS_MAX = 256

// ECDSA (RFC 5656 3.1): the curve's name in the blob, and its uncompressed point's size (0x04 || x || y).
const ECDSA_POINT_BYTES: Record<string, number> = { nistp256: 65, nistp384: 97, nistp521: 133 }
const TYPES = ['ssh-ed25519', 'ssh-rsa', ...Object.keys(ECDSA_POINT_BYTES).map(c => `ecdsa-sha2-${c}`)]

export interface SshKey {
  type: string
  /** The key's base64 blob as given. */
  blob: string
  comment: string
  /** RSA: the modulus' size; Ed25519 256; ECDSA the curve's. */
  bits: number
  /** The line written to authorized_keys: type, blob and comment, single spaces. */
  line: string
}

/** Reads the SSH strings (uint32 length + bytes, RFC 4251 5) of a blob; null when it does not parse. */
function sshStrings (blob: Buffer, count: number): Buffer[] | null {
  const out: Buffer[] = []
  let at = 0
  for (let i = 0; i < count; i++) {
    if (at + 4 > blob.length) return null
    const n = blob.readUInt32BE(at)
    at += 4
    if (n > blob.length - at) return null
    out.push(blob.subarray(at, at + n))
    at += n
  }
  return at === blob.length ? out : null
}

function mpintBits (m: Buffer): number {
  let i = 0
  while (i < m.length && m[i] === 0) i++
  if (i === m.length) return 0
  return (m.length - i - 1) * 8 + (32 - Math.clz32(m[i]))
}

/** The key of one line, or the reason it is not one the appliance takes. */
export function parseSshKey (text: string): SshKey | string {
  const v = text.trim()
  if (v.length === 0) return 'empty'
  if (v.length > SSH_KEY_CHARS_MAX) return `at most ${SSH_KEY_CHARS_MAX} characters`
  if (/[\r\n]/.test(v)) return 'one line: a single key'
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(v)) return 'printable text'
  const parts = v.split(/[ \t]+/)
  const [type, b64] = parts
  const comment = parts.slice(2).join(' ')
  if (!TYPES.includes(type)) return `a public key of type ${TYPES.join(', ')} (the .pub file's line; no options before it)`
  if (b64 === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) return 'TYPE BASE64 [COMMENT], as in the .pub file'
  if (comment.length > SSH_COMMENT_CHARS_MAX) return `a comment of at most ${SSH_COMMENT_CHARS_MAX} characters`
  const blob = Buffer.from(b64, 'base64')
  let bits: number
  if (type === 'ssh-ed25519') {
    const s = sshStrings(blob, 2)
    if (s === null || s[0].toString('latin1') !== type || s[1].length !== 32) return 'an Ed25519 key whose blob holds its type and 32 bytes'
    bits = 256
  } else if (type === 'ssh-rsa') {
    const s = sshStrings(blob, 3)
    if (s === null || s[0].toString('latin1') !== type) return 'an RSA key whose blob holds its type, exponent and modulus'
    bits = mpintBits(s[2])
    if (bits < SSH_RSA_BITS_MIN) return `an RSA key of at least ${SSH_RSA_BITS_MIN} bits (this one has ${bits}): make one with ssh-keygen -t ed25519`
  } else {
    const curve = type.slice('ecdsa-sha2-'.length)
    const s = sshStrings(blob, 3)
    if (s === null || s[0].toString('latin1') !== type || s[1].toString('latin1') !== curve || s[2].length !== ECDSA_POINT_BYTES[curve] || s[2][0] !== 4) {
      return `an ECDSA key whose blob holds its type, the curve ${curve} and an uncompressed point`
    }
    bits = Number(curve.slice('nistp'.length))
  }
  return { type, blob: b64, comment, bits, line: comment === '' ? `${type} ${b64}` : `${type} ${b64} ${comment}` }
}

/** null when TEXT is a public key the appliance takes, else what it must be (the wizard's and the seed's check). */
export function checkSshKey (text: string): string | null {
  const k = parseSshKey(text)
  return typeof k === 'string' ? k : null
}

/** The authorized_keys file of these keys (each checked; duplicates, by blob, once). */
export function authorizedKeysText (keys: string[]): string {
  const lines: string[] = []
  const seen = new Set<string>()
  for (const k of keys) {
    const p = parseSshKey(k)
    if (typeof p === 'string') throw new Error(`not an SSH public key the appliance takes: ${p}`)
    if (seen.has(p.blob)) continue
    seen.add(p.blob)
    lines.push(p.line)
  }
  if (lines.length > SSH_KEYS_MAX) throw new Error(`at most ${SSH_KEYS_MAX} keys`)
  return lines.length === 0 ? '' : lines.join('\n') + '\n'
}

// What sshd on the appliance must be told (sshd takes the FIRST value of a keyword, so these must come before
// any other setting of them: the drop-in is read by Debian's sshd_config Include at its top).
export const SSHD_REQUIRED: Record<string, string> = {
  passwordauthentication: 'no',
  kbdinteractiveauthentication: 'no',
  permitrootlogin: 'prohibit-password',
  pubkeyauthentication: 'yes',
  permitemptypasswords: 'no',
  authorizedkeysfile: `/etc/mailgrid/${SSH_KEYS_NAME}`,
  allowusers: 'root'
}

/** The problems of an sshd config text against SSHD_REQUIRED (first value wins; no Match blocks); [] when it is right. */
export function checkSshdConfig (text: string): string[] {
  const seen = new Map<string, string>()
  const problems: string[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const m = /^(\S+)\s*(?:=\s*|\s+)(.*)$/.exec(line)
    if (m === null) { problems.push(`cannot read: ${line}`); continue }
    const key = m[1].toLowerCase()
    if (key === 'match') { problems.push('a Match block (it could loosen the settings for some connections)'); continue }
    if (!seen.has(key)) seen.set(key, m[2].trim())
  }
  for (const [key, want] of Object.entries(SSHD_REQUIRED)) {
    const got = seen.get(key)
    if (got !== want) problems.push(`${key}: ${got === undefined ? 'not set' : `"${got}"`}, must be "${want}"`)
  }
  for (const key of seen.keys()) if (key === 'hostkey') return problems
  problems.push('hostkey: not set (the keys made at first boot, never baked into the image)')
  return problems
}
