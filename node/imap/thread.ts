/**
 * The THREAD algorithms of RFC 5256 section 3, over the sort keys of sort-keys.ts: ORDEREDSUBJECT and REFERENCES
 * (steps 1 to 6 of the section, numbered below), and the thread-list syntax of section 5. Pure: no store, no I/O.
 * A thread can be as deep as the mailbox is large (a reply chain), so the tree is walked with explicit stacks,
 * never by recursion.
 */
import type { SortKeys } from './sort-keys.ts'

/** A message (index ≥ 0: position in the caller's sequence order) or a dummy (index -1). */
interface ThreadNode {
  index: number
  parent: ThreadNode | null
  children: ThreadNode[]
}

/**
 * Ancestors walked to check that a link makes no loop (REFERENCES step 1). A link that would need more is refused,
 * as a loop is: it bounds the work of a hostile References chain, and real threads are far shallower.
 */
export const THREAD_DEPTH_CHECK_MAX = 100_000

const dummy = (): ThreadNode => ({ index: -1, parent: null, children: [] })

function link (parent: ThreadNode, child: ThreadNode): void {
  child.parent = parent
  parent.children.push(child)
}

function unlink (child: ThreadNode): void {
  const parent = child.parent
  if (parent === null) return
  const at = parent.children.indexOf(child)
  if (at !== -1) parent.children.splice(at, 1)
  child.parent = null
}

/** Whether making `parent` the parent of `child` would close a loop: `parent` is `child` or lies below it. */
function wouldLoop (parent: ThreadNode, child: ThreadNode): boolean {
  // a node without children has nothing below it (the common case: each new message), so no walk
  if (child.children.length === 0) return parent === child
  let n: ThreadNode | null = parent
  for (let steps = 0; n !== null; steps++) {
    if (n === child || steps > THREAD_DEPTH_CHECK_MAX) return true
    n = n.parent
  }
  return false
}

/** Nodes under `root` in pre-order (a parent before its children), root included. */
function preorder (root: ThreadNode): ThreadNode[] {
  const out: ThreadNode[] = []
  const stack = [root]
  while (stack.length > 0) {
    const node = stack.pop()!
    out.push(node)
    for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!)
  }
  return out
}

/** Section 2.2 order of a node: its sent date, then its sequence number; a dummy's are its first child's. */
function first (node: ThreadNode): ThreadNode {
  let n = node
  while (n.index === -1 && n.children.length > 0) n = n.children[0]!
  return n
}

function byDate (keys: readonly SortKeys[]): (a: ThreadNode, b: ThreadNode) => number {
  return (a, b) => {
    const x = first(a).index
    const y = first(b).index
    if (x === -1 || y === -1) return x - y
    return keys[x]!.date - keys[y]!.date || x - y
  }
}

/** REFERENCES (RFC 5256 section 3). `keys` in sequence order; returns the root's children (the threads). */
export function threadReferences (keys: readonly SortKeys[]): ThreadNode[] {
  const ids = new Map<string, ThreadNode>()
  const nodes: ThreadNode[] = []
  // (1) links from each message's references, in sequence order
  keys.forEach((k, index) => {
    let node: ThreadNode
    const known = k.messageId === null ? undefined : ids.get(k.messageId)
    if (k.messageId !== null && known !== undefined && known.index === -1) {
      // a dummy made for this id by an earlier message's references: this message is it
      node = known
      node.index = index
    } else {
      node = { index, parent: null, children: [] }
      // no id, or a duplicate of an earlier message's: a unique id, which nobody can reference
      if (k.messageId !== null && known === undefined) ids.set(k.messageId, node)
    }
    nodes.push(node)
    // (A) each reference the parent of the next; an existing parent stays; no loops
    let previous: ThreadNode | null = null
    for (const id of k.references) {
      let ref = ids.get(id)
      if (ref === undefined) {
        ref = dummy()
        ids.set(id, ref)
      }
      if (previous !== null && ref.parent === null && !wouldLoop(previous, ref)) link(previous, ref)
      previous = ref
    }
    // (B) the last reference is the parent, replacing a link a truncated References made; none without references
    if (node.parent !== null) unlink(node)
    if (previous !== null && !wouldLoop(previous, node)) link(previous, node)
  })
  // (2) parentless nodes under one root
  const root = dummy()
  for (const node of nodes) if (node.parent === null) link(root, node)
  for (const node of ids.values()) if (node.index === -1 && node.parent === null) link(root, node)
  // (3) prune dummies, bottom-up (a node's children are final before the node is looked at)
  const order = preorder(root)
  for (let i = order.length - 1; i >= 0; i--) {
    const node = order[i]!
    // nothing to prune below a node without a dummy child (most nodes: a leaf, a message with replies)
    if (!node.children.some((child) => child.index === -1)) continue
    const kept: ThreadNode[] = []
    for (const child of node.children) {
      if (child.index !== -1) { kept.push(child); continue }
      if (child.children.length === 0) continue
      // promote, unless that puts several children at the root
      if (node !== root || child.children.length === 1) {
        for (const grandchild of child.children) {
          grandchild.parent = node
          kept.push(grandchild)
        }
      } else {
        kept.push(child)
      }
    }
    node.children = kept
  }
  const compare = byDate(keys)
  // (4) the root's children by date; a dummy by its earliest child
  for (const child of root.children) if (child.index === -1) child.children.sort(compare)
  root.children.sort(compare)
  // (5) threads with the same base subject gathered
  const subjectOf = (node: ThreadNode): string => {
    const n = node.index === -1 ? node.children[0] : node
    return n === undefined || n.index === -1 ? '' : keys[n.index]!.subject
  }
  const replyOf = (node: ThreadNode): boolean => node.index !== -1 && keys[node.index]!.reply
  const table = new Map<string, ThreadNode>()
  for (const node of root.children) {
    const subject = subjectOf(node)
    if (subject === '') continue
    const held = table.get(subject)
    if (held === undefined || (held.index !== -1 && (node.index === -1 || (replyOf(held) && !replyOf(node))))) table.set(subject, node)
  }
  const threads: ThreadNode[] = []
  const position = new Map<ThreadNode, number>()
  /** A table message that a new dummy took over before it was met here: the dummy goes where it would have. */
  const replaced = new Map<ThreadNode, ThreadNode>()
  for (const node of root.children) {
    if (node.parent !== root) {
      const both = replaced.get(node)
      if (both !== undefined) { position.set(both, threads.length); threads.push(both) }
      continue
    }
    const subject = subjectOf(node)
    const held = subject === '' ? undefined : table.get(subject)
    if (held === undefined || held === node) { position.set(node, threads.length); threads.push(node); continue }
    if (held.index === -1 && node.index === -1) {
      for (const child of node.children) link(held, child)
      node.children = []
      node.parent = held // merged away
    } else if (held.index === -1 || (replyOf(node) && !replyOf(held))) {
      link(held, node)
    } else {
      // a new dummy over both, in the table message's place among the threads
      const both = dummy()
      const at = position.get(held)
      if (at !== undefined) { threads[at] = both; position.set(both, at) } else replaced.set(held, both)
      held.parent = both
      both.children.push(held)
      link(both, node)
      table.set(subject, both)
    }
  }
  const result = threads
  // (6) every set of siblings by date, the deepest first; dummies by their first child
  const top = dummy()
  top.children = result
  const all = preorder(top)
  for (let i = all.length - 1; i >= 0; i--) if (all[i]!.children.length > 1) all[i]!.children.sort(compare)
  return top.children
}

/**
 * ORDEREDSUBJECT (RFC 5256 section 3): messages by base subject, then date; one thread per base subject, its first
 * message the parent of all the others; threads by the date of their first message.
 */
export function threadOrderedSubject (keys: readonly SortKeys[]): ThreadNode[] {
  const order = Array.from({ length: keys.length }, (_, i) => i)
  order.sort((a, b) => {
    const x = keys[a]!
    const y = keys[b]!
    if (x.subject !== y.subject) return x.subject < y.subject ? -1 : 1
    return x.date - y.date || a - b
  })
  const threads: ThreadNode[] = []
  let parent: ThreadNode | null = null
  for (const index of order) {
    const node: ThreadNode = { index, parent: null, children: [] }
    if (parent !== null && keys[parent.index]!.subject === keys[index]!.subject) link(parent, node)
    else threads.push(parent = node)
  }
  threads.sort(byDate(keys))
  return threads
}

/**
 * The thread-list text of section 5 (`(1 2 (3)(4))(5)`), numbers as `numbers[index]` (sequence numbers or UIDs):
 * a single child follows its parent in the same list, several children each get a nested list.
 */
export function formatThreads (threads: readonly ThreadNode[], numbers: readonly number[]): string {
  const out: string[] = []
  const stack: Array<ThreadNode | string> = []
  for (let t = threads.length - 1; t >= 0; t--) stack.push(')', threads[t]!, '(')
  while (stack.length > 0) {
    const item = stack.pop()!
    if (typeof item === 'string') { out.push(item); continue }
    const message = item.index !== -1
    if (message) out.push(String(numbers[item.index]))
    if (item.children.length === 1) {
      // a message's only child continues its list; a dummy has at least two children after pruning
      stack.push(item.children[0]!)
      if (message) stack.push(' ')
    } else if (item.children.length > 1) {
      for (let c = item.children.length - 1; c >= 0; c--) stack.push(')', item.children[c]!, '(')
      if (message) stack.push(' ')
    }
  }
  return out.join('')
}
