// Limits of the MIME analyser. Every one bounds the time or the size of the JSON record that one hostile
// message can cost; real mail stays far below each of them.

/** Nesting of multipart and message/rfc822 levels that is expanded; deeper content stays opaque body.
 * Real mail nests a handful of levels (forwarded mail inside alternative inside mixed); 32 also matches the
 * deepest part path the IMAP section parser accepts (SECTION_PART_DEPTH_MAX). */
export const MIME_DEPTH_MAX = 32

/** MIME parts made per message; after that no further boundary is recognised and the rest of the message is
 * body of the part then open. 1,000 parts keep the cached structure near 300 KB of JSON at worst; real
 * messages rarely exceed a few dozen. */
export const MIME_PARTS_MAX = 1000

/** A boundary longer than this disables the multipart (its body becomes opaque). RFC 2046 section 5.1.1
 * allows 1 to 70 characters; some slack for senders that exceed it. */
export const BOUNDARY_BYTES_MAX = 80

/** Bytes of one header field value that are interpreted (envelope, Content-* fields, headerFields values).
 * RFC 5322 section 2.1.1 caps a line at 998 octets but folding makes fields longer: long To/References
 * lists reach tens of KB. Bytes beyond are ignored, bounding the record a huge header line can cause. */
export const FIELD_VALUE_BYTES_MAX = 64 * 1024

/** Addresses (group markers included) kept per envelope address list: bounds the record of a header that
 * lists thousands of recipients. */
export const ENVELOPE_ADDRESSES_MAX = 1000

/** Parameters kept per Content-Type / Content-Disposition field. */
export const PARAMS_MAX = 64

/** Highest RFC 2231 continuation index joined (`name*0` .. `name*99`). */
export const PARAM_SECTIONS_MAX = 100

/** Stand-ins for a missing local part or domain, so that an address never looks like the group marker of
 * RFC 3501 section 7.4.2 (a NIL host). The same spelling as Dovecot, which clients already know. */
export const MISSING_MAILBOX = 'MISSING_MAILBOX'
export const MISSING_DOMAIN = 'MISSING_DOMAIN'
