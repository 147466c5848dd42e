// Directory replication: the directory (domains, users, aliases, quotas) is small and every node holds all of
// it. A local change is pushed to every alive peer at once, and every DIRECTORY_SYNC_INTERVAL_MS a digest is
// exchanged with one random peer, which repairs whatever a push missed (last writer wins per record, in the store).

import type { Logger } from 'pino'
import type { Gossip } from '../../gossip/types.ts'
import type { DirectoryRecord, Store } from '../../store/index.ts'
import { PROTOCOLS } from './wire.ts'
import { DIRECTORY_SYNC_INTERVAL_MS } from './constants.ts'

export interface DirectorySyncComponents {
  gossip: Pick<Gossip, 'members' | 'call' | 'handle'>
  store: Store
  logger: Logger
}

export class DirectorySync {
  private readonly gossip: DirectorySyncComponents['gossip']
  private readonly store: Store
  private readonly log: Logger
  private unsubscribe: (() => void) | undefined
  private timer: NodeJS.Timeout | undefined

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
    g.handle(PROTOCOLS.directoryDigest, async req => {
      if (req.header.digest === await this.store.directoryDigest()) return { header: { same: true } }
      if (Array.isArray(req.header.records)) await this.store.mergeDirectory(req.header.records as DirectoryRecord[])
      return { header: { records: await this.store.exportDirectory() } }
    })
  }

  start (): void {
    if (this.timer !== undefined) return
    this.unsubscribe = this.store.onDirectoryChange(records => { void this.pushDirectory(records) })
    this.timer = setInterval(() => { void this.syncDirectory() }, DIRECTORY_SYNC_INTERVAL_MS)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.unsubscribe?.()
    this.unsubscribe = undefined
  }

  private async pushDirectory (records: DirectoryRecord[]): Promise<void> {
    const peers = this.gossip.members().filter(m => !m.self && m.status === 'alive')
    await Promise.allSettled(peers.map(async m => await this.gossip.call(m.id, PROTOCOLS.directory, { header: { records } })))
  }

  private async syncDirectory (): Promise<void> {
    const peers = this.gossip.members().filter(m => !m.self && m.status === 'alive')
    if (peers.length === 0) return
    const peer = peers[Math.floor(Math.random() * peers.length)]
    try {
      const res = await this.gossip.call(peer.id, PROTOCOLS.directoryDigest, { header: { digest: await this.store.directoryDigest() } })
      if (res.header.same === true) return
      await this.store.mergeDirectory(res.header.records as DirectoryRecord[])
      // and give them ours, so the exchange converges in one round
      await this.gossip.call(peer.id, PROTOCOLS.directory, { header: { records: await this.store.exportDirectory() } })
    } catch (err) {
      this.log.debug({ peer: peer.id, err: String(err) }, 'directory_sync_failed')
    }
  }
}
