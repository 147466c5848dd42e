// One authentication path for every protocol: throttling first, then the directory's password check.
// Answers are a closed set so each protocol maps them once: ok, bad credentials, or throttled (temporary).

import type { Directory } from '../store/index.ts'
import type { Throttle } from './limits.ts'

export type AuthResult =
  | { ok: true, user: string }
  | { ok: false, reason: 'failed' | 'throttled' }

export interface AuthContext {
  ip: string
  protocol: 'smtp' | 'imap' | 'pop3' | 'managesieve'
}

export interface Authenticator {
  authenticate (username: string, password: string, ctx: AuthContext): Promise<AuthResult>
}

export function createAuthenticator (components: { directory: Directory, throttle: Throttle }): Authenticator {
  const { directory, throttle } = components
  return {
    async authenticate (username, password, ctx) {
      if (!throttle.allowed(ctx.ip, username)) return { ok: false, reason: 'throttled' }
      const user = await directory.verifyPassword(username, password)
      if (user === null) {
        throttle.fail(ctx.ip, username)
        return { ok: false, reason: 'failed' }
      }
      throttle.succeed(ctx.ip, username)
      return { ok: true, user: user.address }
    }
  }
}
