// The LevelDB key layout, in one place. Components are joined with NUL, which no address, mailbox name or id
// contains (names are checked for control characters before they get here); numbers are zero-padded so that
// lexical order is numeric order.

export const SEP = '\x00'
const END = '\x01' // the first character after SEP: `prefix + END` bounds a range of `prefix + SEP + ...`

export const pad = (n: number, width: number): string => String(n).padStart(width, '0')

export const keys = {
  domain: (name: string) => `dd${SEP}${name}`,
  domainRange: () => range(`dd`),
  user: (address: string) => `du${SEP}${address}`,
  userRange: () => range(`du`),
  alias: (address: string) => `da${SEP}${address}`,
  aliasRange: () => range(`da`),
  entry: (name: string) => `dx${SEP}${name}`, // other replicated records (admin accounts, the console's secret)
  entryRange: (prefix = '') => prefix === '' ? range(`dx`) : { gte: `dx${SEP}${prefix}`, lt: `dx${SEP}${prefix}\uffff` },

  state: (user: string) => `U${SEP}${user}`,
  mailbox: (user: string, id: string) => `B${SEP}${user}${SEP}${id}`,
  mailboxRange: (user: string) => range(`B${SEP}${user}`),
  subscription: (user: string, name: string) => `S${SEP}${user}${SEP}${name}`,
  subscriptionRange: (user: string) => range(`S${SEP}${user}`),
  message: (user: string, mb: string, uid: number) => `M${SEP}${user}${SEP}${mb}${SEP}${pad(uid, 10)}`,
  messageRange: (user: string, mb: string) => range(`M${SEP}${user}${SEP}${mb}`),
  expunged: (user: string, mb: string, modseq: number) => `X${SEP}${user}${SEP}${mb}${SEP}${pad(modseq, 16)}`,
  expungedRange: (user: string, mb: string) => range(`X${SEP}${user}${SEP}${mb}`),
  log: (user: string, seq: number) => `L${SEP}${user}${SEP}${pad(seq, 16)}`,
  gid: (user: string, gid: string) => `I${SEP}${user}${SEP}${gid}`, // global id → where the message is now
  logRange: (user: string) => range(`L${SEP}${user}`),
  attr: (user: string, key: string) => `A${SEP}${user}${SEP}${key}`, // user attribute (MailStore.setAttrs)
  attrRange: (user: string) => range(`A${SEP}${user}`),
  userRanges: (user: string) => ['U', 'B', 'S', 'M', 'X', 'L', 'I', 'A'].map(p => p === 'U' ? { gte: `U${SEP}${user}`, lte: `U${SEP}${user}` } : range(`${p}${SEP}${user}`)),

  blob: (hash: string) => `b${SEP}${hash}`,
  blobRef: (hash: string, user: string, mb: string, uid: number) => `r${SEP}${hash}${SEP}${user}${SEP}${mb}${SEP}${pad(uid, 10)}`,
  meta: (hash: string) => `t${SEP}${hash}`,
  header: (hash: string) => `h${SEP}${hash}` // the body's top-level header block, kept apart from the structure
}

export function range (prefix: string): { gt: string, lt: string } {
  return { gt: prefix + SEP, lt: prefix + END }
}
