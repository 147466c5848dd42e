// Every fuzz target, in the order `npm run fuzz` runs them.

import type { FuzzTarget } from '../engine.ts'
import { config } from './config.ts'
import { frames } from './frames.ts'
import { imapParser } from './imap-parser.ts'
import { imapSession } from './imap-session.ts'
import { mime } from './mime.ts'
import { pop3 } from './pop3.ts'
import { smtp } from './smtp.ts'

export const TARGETS: FuzzTarget[] = [imapParser, imapSession, smtp, pop3, mime, config, frames]
