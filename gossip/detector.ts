// The failure detector: a pure state machine over the membership view, driven by heartbeats heard, direct
// ping results and clock ticks, all with explicit timestamps, so tests run it with a fake clock and no network.
//
//   alive ──(silent ≥ suspectAfterMs and a direct ping failed)──▶ suspect ──(silent ≥ deadAfterMs)──▶ dead
//   suspect ──(a heartbeat or a successful ping)──▶ alive
//   dead ──(a heartbeat newer than any seen before it died: restart with a higher incarnation, or a healed
//           partition)──▶ alive
//   any ──(a heartbeat whose state is `leaving`)──▶ left ──(a higher incarnation)──▶ alive
//   (remembered from before a restart) ──▶ dead, until heard from
//   dead ──(forget: an operator drops it for good)──▶ (not a member until a heartbeat newer than any seen before)
//
// "Silent" counts from the last sign of life: a heartbeat or a successful ping. A member silent for
// deadAfterMs is dead even when its ping is still outstanding (passing through suspect), so a kill is seen
// within deadAfterMs plus one tick. Heartbeats carry (incarnation, seq); anything not newer than what was
// already heard is a stale rumour (gossip relays late) and is ignored, so it cannot resurrect the dead.

import { isDeepStrictEqual } from 'node:util'
import type { Member, MemberInfo, MemberStatus, MembershipEvent } from './types.ts'

export interface DetectorInit {
  suspectAfterMs: number
  deadAfterMs: number
  /** Dead and departed members are dropped from the view after this long (silently). */
  forgetAfterMs: number
}

interface Entry {
  member: Member
  seq: number
}

/** Fields whose change is worth an `update` event; the load sample changes every beat and is not. */
const SIGNIFICANT: ReadonlyArray<keyof MemberInfo> = ['incarnation', 'name', 'addrs', 'host', 'services', 'weight', 'state', 'meta', 'diskLow']

function changed (a: MemberInfo, b: MemberInfo): boolean {
  return SIGNIFICANT.some(k => !isDeepStrictEqual(a[k], b[k]))
}

/** Forgotten members whose incarnation is kept (the oldest go first). */
const FORGOTTEN_MAX = 1024

function snapshot (m: Member): Member {
  return structuredClone(m)
}

export class FailureDetector {
  readonly #init: DetectorInit
  readonly #entries = new Map<string, Entry>()
  /** Members forgotten by an operator, with the last (incarnation, seq) heard: a heartbeat not newer is ignored. */
  readonly #forgotten = new Map<string, { incarnation: number, seq: number }>()
  #self: Member

  constructor (self: MemberInfo, init: DetectorInit, now: number) {
    if (!(init.deadAfterMs > init.suspectAfterMs)) throw new Error('deadAfterMs must exceed suspectAfterMs')
    this.#init = init
    this.#self = { ...structuredClone(self), status: 'alive', lastSeen: now, self: true }
  }

  get selfId (): string {
    return this.#self.id
  }

  /** Every member heard of, this node first. */
  members (now: number): Member[] {
    return [this.self(now), ...[...this.#entries.values()].map(e => snapshot(e.member))]
  }

  /** members() counted without copies: known (not left) and alive, this node (alive) included. */
  counts (): { known: number, alive: number } {
    let known = 1
    let alive = 1
    for (const e of this.#entries.values()) {
      if (e.member.status === 'left') continue
      known++
      if (e.member.status === 'alive') alive++
    }
    return { known, alive }
  }

  member (id: string, now: number): Member | undefined {
    if (id === this.#self.id) return this.self(now)
    const e = this.#entries.get(id)
    return e === undefined ? undefined : snapshot(e.member)
  }

  /** Whether `id` is in the view (without the copy `member` makes: asked for every heartbeat received). */
  has (id: string): boolean {
    return id === this.#self.id || this.#entries.has(id)
  }

  self (now: number): Member {
    return { ...snapshot(this.#self), lastSeen: now }
  }

  /** Replaces what this node says about itself; an `update` event when something significant changed. */
  setSelf (info: MemberInfo, now: number): MembershipEvent[] {
    const before = this.#self
    this.#self = { ...structuredClone(info), id: before.id, status: 'alive', lastSeen: now, self: true }
    return changed(before, this.#self) ? [{ type: 'update', member: this.self(now) }] : []
  }

  /**
   * A member known before this node restarted (gossip keeps the list on disk), entered as dead until it is
   * heard from: the first heartbeat of any incarnation makes it alive. It counts among the known members at
   * once, so a restarted node does not take a smaller grid for the whole one, and is forgotten as any dead
   * member is, forgetAfterMs after its last sign of life.
   */
  remember (info: MemberInfo, lastSeen: number, now: number): void {
    if (info.id === this.#self.id || this.#entries.has(info.id) || info.state === 'leaving') return
    const gone = this.#forgotten.get(info.id)
    if (gone !== undefined && info.incarnation <= gone.incarnation) return
    if (now - lastSeen >= this.#init.forgetAfterMs) return
    const member: Member = { ...structuredClone(info), status: 'dead', lastSeen: Math.min(lastSeen, now), self: false }
    this.#entries.set(info.id, { member, seq: -1 })
  }

  /** A heartbeat arrived (validated; `info.id` is the authenticated sender). */
  heard (info: MemberInfo, seq: number, now: number): MembershipEvent[] {
    if (info.id === this.#self.id) return []
    const entry = this.#entries.get(info.id)
    if (entry === undefined) {
      if (info.state === 'leaving') return [] // a goodbye from a stranger: nothing to forget
      const gone = this.#forgotten.get(info.id)
      // a late rumour from before it was forgotten; anything newer (a restart, a healed partition) is a new member
      if (gone !== undefined && (info.incarnation < gone.incarnation || (info.incarnation === gone.incarnation && seq <= gone.seq))) return []
      this.#forgotten.delete(info.id)
      const member: Member = { ...structuredClone(info), status: 'alive', lastSeen: now, self: false }
      this.#entries.set(info.id, { member, seq })
      return [{ type: 'join', member: snapshot(member) }]
    }
    const old = entry.member
    if (info.incarnation < old.incarnation) return []
    if (info.incarnation === old.incarnation && seq <= entry.seq) return []

    let status: MemberStatus
    if (info.state === 'leaving') status = 'left'
    else if (old.status === 'left') status = info.incarnation > old.incarnation ? 'alive' : 'left'
    else status = 'alive'

    const events: MembershipEvent[] = []
    const next: Member = { ...structuredClone(info), status: old.status, lastSeen: now, self: false }
    entry.member = next
    entry.seq = seq
    if (changed(old, next)) events.push({ type: 'update', member: snapshot(next) })
    events.push(...this.#setStatus(entry, status))
    return events
  }

  /** The outcome of a direct ping. Success is a sign of life; failure after silence makes a member suspect. */
  pinged (id: string, ok: boolean, now: number): MembershipEvent[] {
    const entry = this.#entries.get(id)
    if (entry === undefined) return []
    const m = entry.member
    if (m.status !== 'alive' && m.status !== 'suspect') return []
    if (ok) {
      m.lastSeen = Math.max(m.lastSeen, now)
      return this.#setStatus(entry, 'alive')
    }
    if (m.status === 'alive' && now - m.lastSeen >= this.#init.suspectAfterMs) return this.#setStatus(entry, 'suspect')
    return []
  }

  /** Members silent long enough that a direct ping should decide whether they are suspect. */
  needsPing (now: number): string[] {
    const out: string[] = []
    for (const [id, { member: m }] of this.#entries) {
      if ((m.status === 'alive' || m.status === 'suspect') && now - m.lastSeen >= this.#init.suspectAfterMs) out.push(id)
    }
    return out
  }

  /**
   * Drops a dead member for good, as an operator asks (appliance/console): it leaves the view at once (and the list
   * remembered across restarts), and a heartbeat not newer than the last one heard from it (a late rumour) cannot
   * bring it back; a newer one (it was started again, or a partition healed) makes it a new member. Only a dead
   * member can be forgotten: false for anything else.
   */
  forget (id: string): boolean {
    const entry = this.#entries.get(id)
    if (entry === undefined || entry.member.status !== 'dead') return false
    this.#entries.delete(id)
    if (this.#forgotten.size >= FORGOTTEN_MAX) this.#forgotten.delete(this.#forgotten.keys().next().value as string)
    this.#forgotten.set(id, { incarnation: entry.member.incarnation, seq: entry.seq })
    return true
  }

  /** Advances time: the silent die, the long dead are forgotten. */
  tick (now: number): MembershipEvent[] {
    const events: MembershipEvent[] = []
    for (const [id, entry] of this.#entries) {
      const m = entry.member
      const silent = now - m.lastSeen
      if ((m.status === 'alive' || m.status === 'suspect') && silent >= this.#init.deadAfterMs) {
        if (m.status === 'alive') events.push(...this.#setStatus(entry, 'suspect'))
        events.push(...this.#setStatus(entry, 'dead'))
      } else if ((m.status === 'dead' || m.status === 'left') && silent >= this.#init.forgetAfterMs) {
        this.#entries.delete(id)
      }
    }
    return events
  }

  #setStatus (entry: Entry, status: MemberStatus): MembershipEvent[] {
    const from = entry.member.status
    if (from === status) return []
    entry.member.status = status
    return [{ type: 'status', member: snapshot(entry.member), from }]
  }
}
