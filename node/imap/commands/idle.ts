/** IDLE (RFC 2177): changes are pushed as they happen until the client sends DONE. */
import { ArgumentError } from '../errors.ts'
import { atom } from '../protocol/compiler.ts'
import { IDLE_KEEPALIVE_MS, MOVED_TEXT } from '../constants.ts'
import type { CommandModule } from '../command.ts'

export const idle: CommandModule = {
  name: 'IDLE',
  syntax: 'IDLE',
  states: ['authenticated', 'selected'],
  args: { min: 0, max: 0 },
  expungeAllowed: true,
  async run (session) {
    await session.continuation('idling')
    let flushing = Promise.resolve()
    session.idleWake = () => {
      // Every untagged response is allowed while idling (RFC 2177 section 3).
      flushing = flushing.then(() => session.flushUpdates(true)).catch(() => {})
    }
    session.idleWake()
    // The keepalive also restarts the autologout timer (socket inactivity), so IDLE outlives any configured
    // idleTimeoutMs: a third of it when that is shorter than IDLE_KEEPALIVE_MS.
    const every = Math.max(1, Math.min(IDLE_KEEPALIVE_MS, Math.floor(session.options.limits.idleTimeoutMs / 3)))
    const keepalive = setInterval(() => {
      // a session whose user moved to another node (a grid's ring change) ends; its client reconnects there
      if (session.movedAway()) void session.bye(MOVED_TEXT, { name: 'UNAVAILABLE' })
      else void session.send([atom('OK'), atom('Still here')])
    }, every)
    try {
      const line = await session.readLine()
      if (line === null) return { done: true }
      if (line.trim().toUpperCase() !== 'DONE') throw new ArgumentError('Expected DONE')
    } finally {
      clearInterval(keepalive)
      session.idleWake = null
      await flushing
    }
    return undefined
  },
}
