/**
 * Limits of the IMAP wire codec. Every number bounds memory or time a client can make us spend;
 * each cites where it comes from. Units are last in the name.
 */

/**
 * Longest command line, CRLF excluded, counting only the bytes outside literals.
 * RFC 7162 section 4 asks servers to accept lines of at least 8192 octets; a QRESYNC
 * known-uids set or a long UID set easily needs more, so we take the 64 KiB Dovecot uses.
 */
export const LINE_BYTES_MAX = 65_536

/** Longest tag (RFC 3501 section 9 puts no bound; clients use short counters). */
export const TAG_BYTES_MAX = 64

/**
 * Largest literal a command may carry. It bounds APPEND and is advertised as APPENDLIMIT
 * (RFC 7889), so the parser can refuse a literal before reading it.
 */
export const LITERAL_BYTES_MAX = 64 * 1024 * 1024

/** Sum of all literal bytes in one command (LOGIN with two literals, APPEND with one). */
export const COMMAND_LITERAL_BYTES_MAX = LITERAL_BYTES_MAX + 64 * 1024

/** Literals in one command: APPEND needs one, LOGIN two, SEARCH a handful. */
export const COMMAND_LITERALS_MAX = 64

/** LITERAL- (RFC 7888 section 5): non-synchronising literals are limited to 4096 octets. */
export const LITERAL_MINUS_BYTES_MAX = 4096

/**
 * Deepest nesting of parenthesised lists and sections. Real SEARCH programs nest OR/NOT a few
 * levels; 10,000 '(' must cost nothing, so the cap is small and checked while tokenising.
 */
export const NESTING_DEPTH_MAX = 32

/** Tokens in one command (atoms, strings, literals, list openings). Bounds SEARCH programs. */
export const COMMAND_TOKENS_MAX = 10_000

/** A line read outside commands (IDLE "DONE", an AUTHENTICATE response). SASL PLAIN fits easily. */
export const CONTINUATION_LINE_BYTES_MAX = 16 * 1024

/**
 * Size of the chunks we keep a literal in. Literals are never concatenated into one buffer by the
 * parser; a handler reads the chunks (or streams them) and decides what to hold.
 */
export const LITERAL_CHUNK_BYTES = 64 * 1024

/** Strings longer than this are sent as literals rather than quoted (readability and escaping cost). */
export const QUOTED_BYTES_MAX = 1024
