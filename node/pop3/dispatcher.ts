// The one dispatcher: reads command lines in order (pipelined or not), enforces the line limit, the state a
// command is allowed in and the bad-command budget, then runs the command's handler. Handlers answer for
// themselves; the dispatcher answers only what no handler saw.

import { err, ok, parseCommand } from './codec.ts'
import { COMMAND_LINE_BYTES_MAX, GREETING } from './constants.ts'
import { bad, failure, releaseMaildrop, reply } from './context.ts'
import type { SessionContext } from './context.ts'
import { COMMANDS } from './commands/index.ts'

export async function runSession (ctx: SessionContext): Promise<void> {
  await reply(ctx, ok(GREETING))
  await runCommands(ctx)
}

/** The command loop alone: an adopted (forwarded) session starts here, its login already answered. */
export async function runCommands (ctx: SessionContext): Promise<void> {
  try {
    await commandLoop(ctx)
  } finally {
    releaseMaildrop(ctx)
  }
}

async function commandLoop (ctx: SessionContext): Promise<void> {
  while (!ctx.conn.closed) {
    const input = await ctx.conn.nextLine(COMMAND_LINE_BYTES_MAX)
    if (input === null) break
    if (input.type === 'flood') {
      await reply(ctx, err('Line too long, closing connection'))
      ctx.conn.end()
      break
    }
    if (input.type === 'overlong') {
      await bad(ctx, 'Line too long') // RFC 2449 section 4: 255 octets with CRLF
      continue
    }
    ctx.metrics?.inc('commands', 'pop3')
    const cmd = parseCommand(input.line)
    const spec = cmd === null ? undefined : COMMANDS.get(cmd.keyword)
    if (cmd === null || spec === undefined) {
      await bad(ctx, 'Unknown command')
      continue
    }
    if (!(spec.states as readonly string[]).includes(ctx.state.kind)) {
      await bad(ctx, `${cmd.keyword} is not allowed ${ctx.state.kind === 'authorization' ? 'before login' : 'after login'}`)
      continue
    }
    // AUTH without an initial response waits for the client: not our latency
    const timed = ctx.metrics !== undefined && cmd.keyword !== 'AUTH'
    const started = timed ? performance.now() : 0
    try {
      await spec.run(ctx, ctx.state, cmd)
    } catch (e) {
      await failure(ctx, e, cmd.keyword)
    }
    if (timed) ctx.metrics?.observe('commandSeconds', 'pop3', (performance.now() - started) / 1000)
  }
}
