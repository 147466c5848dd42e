// Guards at the socket edge shared by SMTP, IMAP and POP3: concurrent connections per client IP and in all,
// and authentication-failure throttling per IP and per account. All time comes from an injected clock.

export const CONNECTIONS_PER_IP_MAX = 50 // Postfix's smtpd_client_connection_count_limit default
export const CONNECTIONS_MAX = 5000 // all protocols together on one node
export const AUTH_FAILURES_PER_IP_MAX = 10 // within AUTH_WINDOW_MS; then the IP must wait
export const AUTH_FAILURES_PER_ACCOUNT_MAX = 10 // within AUTH_WINDOW_MS; then the account is throttled
export const AUTH_WINDOW_MS = 5 * 60_000 // like fail2ban's default findtime, and Dovecot's auth penalty memory
export const AUTH_TRACKED_KEYS_MAX = 100_000 // bounded memory under a spraying attack

export interface ConnectionLimits {
  perIp?: number
  total?: number
}

/** Counts open connections; `tryOpen` says whether one more is allowed and, if so, returns its release. */
export class ConnectionLimiter {
  private readonly perIp: number
  private readonly total: number
  private readonly byIp = new Map<string, number>()
  private open = 0

  constructor (limits: ConnectionLimits = {}) {
    this.perIp = limits.perIp ?? CONNECTIONS_PER_IP_MAX
    this.total = limits.total ?? CONNECTIONS_MAX
  }

  tryOpen (ip: string): (() => void) | null {
    const n = this.byIp.get(ip) ?? 0
    if (n >= this.perIp || this.open >= this.total) return null
    this.byIp.set(ip, n + 1)
    this.open++
    let released = false
    return () => {
      if (released) return
      released = true
      this.open--
      const m = (this.byIp.get(ip) ?? 1) - 1
      if (m <= 0) this.byIp.delete(ip)
      else this.byIp.set(ip, m)
    }
  }

  get count (): number {
    return this.open
  }
}

/** What the authenticator asks and tells: one node's counts (AuthThrottle) or the grid's (node/auth-grid.ts). */
export interface Throttle {
  allowed (ip: string, account: string): boolean
  fail (ip: string, account: string): void
  succeed (ip: string, account: string): void
}

export interface AuthThrottleInit {
  perIp?: number
  perAccount?: number
  windowMs?: number
  now?: () => number
}

/**
 * Failure counting in a sliding window. While an IP or an account is over its budget, `allowed` is false and
 * the protocol answers a temporary failure without checking the password (so a guesser learns nothing).
 * Loopback is never exempt: a local proxy would otherwise be an unthrottled oracle.
 */
export class AuthThrottle implements Throttle {
  private readonly perIp: number
  private readonly perAccount: number
  private readonly windowMs: number
  private readonly now: () => number
  private readonly failures = new Map<string, number[]>()
  private sweptAt = 0

  constructor (init: AuthThrottleInit = {}) {
    this.perIp = init.perIp ?? AUTH_FAILURES_PER_IP_MAX
    this.perAccount = init.perAccount ?? AUTH_FAILURES_PER_ACCOUNT_MAX
    this.windowMs = init.windowMs ?? AUTH_WINDOW_MS
    this.now = init.now ?? Date.now
  }

  private recent (key: string): number {
    const list = this.failures.get(key)
    if (list === undefined) return 0
    const cutoff = this.now() - this.windowMs
    while (list.length > 0 && list[0] <= cutoff) list.shift()
    if (list.length === 0) this.failures.delete(key)
    return list.length
  }

  allowed (ip: string, account: string): boolean {
    return this.recent('ip:' + ip) < this.perIp && this.recent('acct:' + account.toLowerCase()) < this.perAccount
  }

  fail (ip: string, account: string): void {
    // keys nobody asks about again expire with the window too (once per window, amortized over failures)
    if (this.now() - this.sweptAt >= this.windowMs) this.sweep()
    for (const key of ['ip:' + ip, 'acct:' + account.toLowerCase()]) {
      if (!this.failures.has(key) && this.failures.size >= AUTH_TRACKED_KEYS_MAX) {
        const oldest = this.failures.keys().next().value
        if (oldest !== undefined) this.failures.delete(oldest)
      }
      const list = this.failures.get(key) ?? []
      list.push(this.now())
      if (list.length > Math.max(this.perIp, this.perAccount)) list.shift()
      this.failures.set(key, list)
    }
  }

  succeed (ip: string, account: string): void {
    this.failures.delete('acct:' + account.toLowerCase())
    void ip
  }

  /** Drops every key whose failures all fell out of the window. */
  sweep (): void {
    this.sweptAt = this.now()
    for (const key of [...this.failures.keys()]) this.recent(key)
  }

  /** Keys tracked now (IPs and accounts), for tests and status. */
  get tracked (): number {
    return this.failures.size
  }
}
