// ManageSieve bounds (STYLE habit 9: units last, sources named).

import { SCRIPT_BYTES_MAX } from './scripts.ts'

export const MANAGESIEVE_PORT = 4190 // RFC 5804 1.8 (IANA "sieve"); `npm start` uses 2419 (appliance/config.ts)
export const LINE_BYTES_MAX = 8 * 1024 // a command line outside literals: names and SASL responses are far shorter
export const QUOTED_BYTES_MAX = 1024 // RFC 5804 4: quoted strings are for short values ("1024 octets" for servers' answers)
export const COMMAND_ARGS_MAX = 8 // RENAMESCRIPT takes the most (2); AUTHENTICATE 2
// A literal above this is read and dropped, and the command refused with (QUOTA/MAXSIZE): a PUTSCRIPT may carry a
// script a little over SCRIPT_BYTES_MAX, which then gets that answer rather than a broken connection
export const LITERAL_BYTES_MAX = SCRIPT_BYTES_MAX + 1024
// Past this, reading and dropping a literal is no longer worth it: BYE and close (a 1 MB script is still answered)
export const LITERAL_DISCARD_BYTES_MAX = 16 * 1024 * 1024
export const INPUT_BUFFER_BYTES_MAX = LITERAL_BYTES_MAX + LINE_BYTES_MAX // unread input before the socket is paused
export const BAD_COMMANDS_MAX = 20 // then BYE, as the IMAP and POP3 servers do
export const AUTH_FAILURES_MAX = 3 // per connection, then BYE (the grid-wide throttle counts them too)
export const IDLE_TIMEOUT_MS = 10 * 60_000 // Dovecot's managesieve: the IMAP autologout's 30 min is for mail clients; scripts are edited in seconds
export const TLS_HANDSHAKE_TIMEOUT_MS = 30_000
export const SASL_RESPONSE_BYTES_MAX = 4 * 1024 // a PLAIN response: two names and a password, base64
export const IMPLEMENTATION = 'mailgrid'
