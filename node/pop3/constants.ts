/**
 * Limits of the POP3 server. Every number bounds memory or time a client can make us spend and cites where it
 * comes from. Units are last in the name.
 */

/** RFC 2449 section 4: a command line is at most 255 octets, CRLF included. */
export const COMMAND_LINE_BYTES_MAX = 255

/**
 * A SASL client response line (RFC 5034 section 4). The 255-octet command limit does not bind it; PLAIN with
 * a 255-octet authzid, authcid and password is about 1 KiB in base64, so 4 KiB leaves room.
 */
export const SASL_LINE_BYTES_MAX = 4096

/** RFC 1939 section 3: an argument is at most 40 characters. */
export const ARGUMENT_CHARS_MAX = 40

/** RFC 1939 section 3: the autologout timer is at least 10 minutes. */
export const IDLE_TIMEOUT_MS_MIN = 10 * 60_000

/** Unknown, malformed or wrong-state commands before we hang up (smtp-server's unknown-command budget is 10). */
export const BAD_COMMANDS_MAX = 10

/** Failed USER/PASS or AUTH attempts in one session before we hang up (Dovecot and Cyrus allow about 3). */
export const AUTH_FAILURES_PER_SESSION_MAX = 3

/**
 * Unread input we keep while a command runs (pipelined commands, RFC 2449 section 6.6). Past it we stop
 * reading the socket until the queue drains, so a client that never reads cannot grow our memory.
 */
export const INPUT_BUFFER_BYTES_MAX = 64 * 1024

/**
 * Bytes of one overlong line we read and throw away looking for its end. A client that sends more without
 * a line feed is not speaking POP3; we hang up.
 */
export const OVERLONG_DISCARD_BYTES_MAX = 64 * 1024

/** Time to finish a TLS handshake (implicit TLS or STLS); a stalled handshake holds a connection slot. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 30_000

/** Text of the greeting. RFC 1939 section 4: any text after +OK. */
export const GREETING = 'mailgrid POP3 ready'
