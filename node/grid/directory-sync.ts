// Directory replication: the directory (domains, users, aliases, quotas) is small and every node holds all of
// it. A local change is pushed to every alive peer at once, and every DIRECTORY_SYNC_INTERVAL_MS a digest is
// exchanged with one random peer, which repairs whatever a push missed (last writer wins per record, in the store).
// The digest is kept until the directory changes (the store announces every change, local or merged) rather than
// read from the whole directory at each exchange, and a peer whose last exchange matched our present digest is
// asked again only by the anti-entropy round (every DIRECTORY_ANTI_ENTROPY_MS): a change on either side makes its
// digest differ from the one that matched, so the side that changed starts the exchange within one interval.

import type { Logger } from 'pino'
import type { Gossip } from '../../gossip/types.ts'
import type { DirectoryRecord, Store } from '../../store/index.ts'
import { PROTOCOLS } from './wire.ts'
import { DIRECTORY_ANTI_ENTROPY_MS, DIRECTORY_SYNC_INTERVAL_MS } from './constants.ts'

export interface DirectorySyncComponents {
  gossip: Pick<Gossip, 'members' | 'call' | 'handle'>
  store: Store
  logger: Logger
}

/** Every this many rounds the exchange happens whatever matched, and the digest is read from the store again. */
const ANTI_ENTROPY_ROUNDS = Math.max(1, Math.round(DIRECTORY_ANTI_ENTROPY_MS / DIRECTORY_SYNC_INTERVAL_MS))

export class DirectorySync {
  private readonly gossip: DirectorySyncComponents['gossip']
  private readonly store: Store
  private readonly log: Logger
  private unsubscribe: (() => void) | undefined
  private timer: NodeJS.Timeout | undefined
  private digest: string | null = null // of our directory, while no change was announced since it was read
  private generation = 0 // changes announced: a digest read across a change is not kept
  private round = 0
  private readonly matched = new Map<string, string>() // peer → our digest when an exchange with it last matched

  constructor (components: DirectorySyncComponents) {
    this.gossip = components.gossip
    this.store = components.store
    this.log = components.logger
  }

  /** Serves pushes and digest exchanges from other nodes. */
  handle (): void {
    const g = this.gossip
    g.handle(PROTOCOLS.directory, async req => {
      const applied = await this.store.mergeDirectory(req.header.records as DirectoryRecord[])
      return { header: { applied: applied.length } }
    })
    g.handle(PROTOCOLS.directoryDigest, async (req, ctx) => {
      const ours = await this.ourDigest()
      if (req.header.digest === ours) {
        this.matched.set(ctx.peer, ours)
        return { header: { same: true } }
      }
      if (Array.isArray(req.header.records)) await this.store.mergeDirectory(req.header.records as DirectoryRecord[])
      return { header: { records: await this.store.exportDirectory() } }
    })
  }

  start (): void {
    if (this.timer !== undefined) return
    this.unsubscribe = this.store.onDirectoryChange(records => {
      this.generation++
      this.digest = null
      void this.pushDirectory(records)
    })
    this.timer = setInterval(() => { void this.syncDirectory() }, DIRECTORY_SYNC_INTERVAL_MS)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.digest = null
    this.matched.clear()
  }

  /** Our digest: kept while the store's change announcements are heard, read again every anti-entropy round. */
  private async ourDigest (): Promise<string> {
    if (this.digest !== null && this.unsubscribe !== undefined) return this.digest
    const generation = this.generation
    const digest = await this.store.directoryDigest()
    if (generation === this.generation && this.unsubscribe !== undefined) this.digest = digest
    return digest
  }

  private async pushDirectory (records: DirectoryRecord[]): Promise<void> {
    const peers = this.gossip.members().filter(m => !m.self && m.status === 'alive')
    await Promise.allSettled(peers.map(async m => await this.gossip.call(m.id, PROTOCOLS.directory, { header: { records } })))
  }

  private async syncDirectory (): Promise<void> {
    const antiEntropy = ++this.round % ANTI_ENTROPY_ROUNDS === 0
    if (antiEntropy) this.digest = null
    const alive = this.gossip.members().filter(m => !m.self && m.status === 'alive')
    if (alive.length === 0) return
    let digest: string
    try {
      digest = await this.ourDigest()
    } catch (err) {
      this.log.debug({ err: String(err) }, 'directory_sync_failed') // the store closing under us, at stop
      return
    }
    const peers = antiEntropy ? alive : alive.filter(m => this.matched.get(m.id) !== digest)
    if (peers.length === 0) return
    const peer = peers[Math.floor(Math.random() * peers.length)]
    try {
      const res = await this.gossip.call(peer.id, PROTOCOLS.directoryDigest, { header: { digest } })
      if (res.header.same === true) {
        this.matched.set(peer.id, digest)
        return
      }
      this.matched.delete(peer.id)
      await this.store.mergeDirectory(res.header.records as DirectoryRecord[])
      // and give them ours, so the exchange converges in one round
      await this.gossip.call(peer.id, PROTOCOLS.directory, { header: { records: await this.store.exportDirectory() } })
    } catch (err) {
      this.log.debug({ peer: peer.id, err: String(err) }, 'directory_sync_failed')
    }
  }
}
