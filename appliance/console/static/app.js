// mailgrid console: a small page script, no framework. Every string from the server goes into the page as text
// (textContent / text nodes, never innerHTML); the page loads nothing from elsewhere and runs no inline script
// (the server's Content-Security-Policy forbids both). Data comes from the node's JSON API with the session
// cookie; every change sends the session's CSRF token in X-CSRF-Token. The open page refreshes every 2 s.
'use strict'

const POLL_MS = 2000
const app = document.getElementById('app')
let session = null // { admin: { name, domains }, csrf, node }
let view = null // { refresh?: () => Promise<void> }
let polling = false

// ---- DOM helpers ------------------------------------------------------------------------------------------

function h (tag, attrs, ...kids) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v)
    else if (k === 'class') el.className = v
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of kids.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue
    el.append(c instanceof Node ? c : String(c)) // a string becomes a text node: never markup
  }
  return el
}

function clear (el) { while (el.firstChild) el.removeChild(el.firstChild) }

function fmtBytes (n) {
  if (n === null || n === undefined) return '-'
  if (n < 1024) return `${n} B`
  const u = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024; let i = 0
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++ }
  return `${v.toFixed(1)} ${u[i]}`
}
function fmtMs (seconds) { return seconds < 0.01 ? `${(seconds * 1000).toFixed(1)} ms` : seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s` }
function plural (n, word) { return `${n} ${word}${n === 1 ? '' : 's'}` }
function fmtTime (ms) { return ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '-' }
function fmtAgo (ms) {
  if (!ms) return '-'
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000))
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`
}
function message (el, kind, text) { clear(el); if (text) el.append(h('div', { class: `msg ${kind}` }, text)) }

// ---- the API --------------------------------------------------------------------------------------------

class ApiError extends Error { constructor (status, msg) { super(msg); this.status = status } }

async function api (method, path, body) {
  const headers = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (method !== 'GET' && session) headers['x-csrf-token'] = session.csrf
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' })
  let json = null
  try { json = await res.json() } catch { json = null }
  if (res.status === 401 && path !== '/console/login') {
    const had = session !== null
    session = null
    if (had) showLogin('Your session ended: log in again.')
    throw new ApiError(401, 'Not logged in')
  }
  if (!res.ok) throw new ApiError(res.status, (json && json.error) || `HTTP ${res.status}`)
  return json
}

const seg = s => encodeURIComponent(s)
const isFull = () => session && session.admin.domains === null

// ---- login and the frame ----------------------------------------------------------------------------------

function showLogin (note) {
  view = null
  clear(app)
  const err = h('div', { id: 'login-error' })
  const name = h('input', { id: 'login-name', name: 'name', autocomplete: 'username', required: true, autofocus: true })
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true })
  const form = h('form', { class: 'login', id: 'login-form' },
    h('h1', {}, 'mailgrid console'),
    note ? h('div', { class: 'msg info' }, note) : null,
    h('label', { for: 'login-name' }, 'Admin name'), name,
    h('label', { for: 'login-password' }, 'Password'), password,
    h('button', { class: 'primary', type: 'submit', id: 'login-submit' }, 'Log in'),
    err)
  form.addEventListener('submit', async ev => {
    ev.preventDefault()
    message(err, 'info', 'Checking...')
    try {
      const out = await api('POST', '/console/login', { name: name.value, password: password.value })
      session = { admin: out.admin, csrf: out.csrf }
      password.value = ''
      const s = await api('GET', '/console/api/session')
      session = s
      route()
    } catch (e) {
      message(err, 'error', e.message)
    }
  })
  app.append(form)
}

async function logout () {
  try { await fetch('/console/logout', { method: 'POST', headers: { 'x-csrf-token': session ? session.csrf : '' }, credentials: 'same-origin' }) } catch {}
  session = null
  location.hash = ''
  showLogin('Logged out.')
}

const PAGES = [
  ['grid', 'Grid', true], ['domains', 'Domains', false], ['queue', 'Queue', true],
  ['stats', 'Statistics', false], ['alarms', 'Alarms', true], ['nodes', 'Nodes', true], ['admins', 'Admins', true]
]

function frame (page) {
  clear(app)
  const nav = h('nav', {}, PAGES.filter(p => isFull() || !p[2]).map(([id, label]) =>
    h('a', { href: `#${id}`, class: page === id ? 'active' : null, id: `nav-${id}` }, label)))
  const scope = isFull() ? '' : ` (domains: ${session.admin.domains.join(', ')})`
  app.append(h('header', {},
    h('span', { class: 'brand' }, 'mailgrid'), nav,
    h('span', { class: 'who', id: 'who' }, `${session.admin.name}${scope} on ${session.node || ''}`),
    h('button', { id: 'logout', onclick: logout }, 'Log out')))
  const main = h('main', { id: 'main' })
  app.append(main)
  return main
}

function route () {
  if (!session) return showLogin()
  const hash = location.hash.replace(/^#/, '')
  const [page, ...rest] = hash.split('/')
  const arg = rest.length > 0 ? decodeURIComponent(rest.join('/')) : ''
  const pages = { grid: gridPage, domains: domainsPage, domain: domainPage, queue: queuePage, stats: statsPage, alarms: alarmsPage, nodes: nodesPage, admins: adminsPage }
  let p = pages[page] ? page : (isFull() ? 'grid' : 'domains')
  if (!isFull() && !['domains', 'domain', 'stats'].includes(p)) p = 'domains'
  const main = frame(p === 'domain' ? 'domains' : p)
  view = pages[p](main, arg) || null
  if (view && view.refresh) view.refresh().catch(showError(main))
}

function showError (main) {
  return e => {
    if (e.status === 401) return
    let box = document.getElementById('page-error')
    if (!box) { box = h('div', { id: 'page-error' }); main.prepend(box) }
    message(box, 'error', e.message)
  }
}

setInterval(async () => {
  if (polling || !view || !view.refresh || !view.live || document.hidden) return
  polling = true
  try { await view.refresh() } catch (e) { const m = document.getElementById('main'); if (m) showError(m)(e) } finally { polling = false }
}, POLL_MS)

// ---- sparklines -----------------------------------------------------------------------------------------

function spark (values, color) {
  const c = h('canvas', { class: 'spark', width: 90, height: 22 })
  const ctx = c.getContext('2d')
  if (!ctx || values.length < 2) return c
  const max = Math.max(1, ...values)
  ctx.strokeStyle = color
  ctx.lineWidth = 1.5
  ctx.beginPath()
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * 88 + 1
    const y = 21 - (v / max) * 19
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y)
  })
  ctx.stroke()
  return c
}

// ---- Grid ----------------------------------------------------------------------------------------------

function badge (word) { return h('span', { class: `badge ${word}` }, word) }

function gridPage (main) {
  const verdict = h('div', { id: 'verdict', class: 'verdict' }, 'Loading...')
  const summary = h('div', { class: 'summary', id: 'grid-summary' })
  const body = h('tbody', { id: 'members' })
  main.append(h('h1', {}, 'Grid'), verdict, summary, h('table', { id: 'members-table' },
    h('thead', {}, h('tr', {}, ['Node', 'Status', 'State', 'Weight', 'Ring share', 'CPU', 'Memory', 'Disk free', 'Network', 'Sessions', 'Users owned', 'Under-replicated', 'Last heard'].map(t => h('th', {}, t)))),
    body))
  return {
    live: true,
    async refresh () {
      const g = await api('GET', '/console/api/grid')
      verdict.className = `verdict ${g.verdict.ok ? 'ok' : 'no'}`
      verdict.setAttribute('data-ok', String(g.verdict.ok))
      verdict.textContent = `Can the grid lose a node now? ${g.verdict.reason}`
      const alive = g.members.filter(m => m.status === 'alive').length
      summary.textContent = g.self === null
        ? `${g.hostname}: a standalone node, ${plural(g.users, 'user')} in ${plural(g.domains, 'domain')}`
        : `${alive} of ${g.members.length} members alive, R=${g.replicas}, ring ${String(g.ringVersion).slice(0, 8)}, ${plural(g.users, 'user')} in ${plural(g.domains, 'domain')}; ` +
          `queue ${plural(g.queue.grid.size, 'message')}${g.queue.grid.oldestAgeMs > 0 ? ` (oldest ${Math.round(g.queue.grid.oldestAgeMs / 1000)} s)` : ''}; ` +
          `this node (${g.hostname}) re-mirrored ${fmtBytes(g.node.remirroredBytes)}, ${g.node.handoffPending} copies to hand over` +
          (g.replicationLag && g.replicationLag.count > 0
            ? `; replication of its writes to the other replicas: mean ${fmtMs(g.replicationLag.meanSeconds)}, 99 % within ${g.replicationLag.p99Seconds === null ? 'more than 10 s' : fmtMs(g.replicationLag.p99Seconds)} (${g.replicationLag.count} writes)`
            : '')
      clear(body)
      const members = [...g.members].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id))
      for (const m of members) {
        const hist = m.history || []
        // a member that is gone has no load: its last heartbeat's figures would only mislead
        const l = m.status === 'alive' || m.status === 'suspect' ? m.load : null
        body.append(h('tr', { class: `${m.status}${m.self ? ' self' : ''}`, 'data-name': m.name, 'data-status': m.status },
          h('td', {}, m.name || m.id.slice(-8), m.self ? h('span', { class: 'muted' }, ' (this node)') : null, h('div', { class: 'muted mono' }, `${m.host} ${m.id.slice(-8)}`)),
          h('td', { class: 'status' }, badge(m.status)),
          h('td', {}, badge(m.state)),
          h('td', { class: 'num' }, m.diskLow ? '0 (disk low)' : String(m.weight)),
          h('td', { class: 'num' }, `${Math.round(m.ringShare * 100)} %`),
          h('td', { class: 'num' }, l ? `${Math.round(l.cpuPct)} %` : '-', spark(hist.map(x => x[1]), '#0969da')),
          h('td', { class: 'num' }, l && l.memTotalBytes ? `${Math.round(100 * l.memUsedBytes / l.memTotalBytes)} %` : '-', spark(hist.map(x => x[2]), '#8250df')),
          h('td', { class: 'num' }, l ? fmtBytes(l.diskFreeBytes) : '-'),
          h('td', { class: 'num' }, l ? `${fmtBytes(l.netRxBytesPerSec + l.netTxBytesPerSec)}/s` : '-', spark(hist.map(x => x[3]), '#1a7f37')),
          h('td', { class: 'num' }, l ? String(l.sessions) : '-', spark(hist.map(x => x[4]), '#9a6700')),
          h('td', { class: 'num' }, m.usersOwned === null ? '-' : String(m.usersOwned)),
          h('td', { class: 'num' }, m.underReplicated === null ? '-' : String(m.underReplicated)),
          h('td', {}, m.self ? '-' : fmtAgo(m.lastSeen))))
      }
    }
  }
}

// ---- Domains, users, aliases, DNS ---------------------------------------------------------------------------

function domainsPage (main) {
  const list = h('tbody', { id: 'domains' })
  const status = h('div')
  main.append(h('h1', {}, 'Domains'), status)
  if (isFull()) {
    const name = h('input', { id: 'domain-name', placeholder: 'example.com', required: true })
    const form = h('form', { class: 'inline', id: 'domain-form' }, 'New domain', name, h('button', { class: 'primary', type: 'submit' }, 'Add domain'))
    form.addEventListener('submit', async ev => {
      ev.preventDefault()
      try { await api('POST', '/v1/domains', { name: name.value }); name.value = ''; message(status, 'info', 'Domain added.'); await v.refresh() } catch (e) { message(status, 'error', e.message) }
    })
    main.append(form)
  }
  main.append(h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Domain'), h('th', {}, 'Created'), h('th', {}, ''))), list))
  const v = {
    async refresh () {
      const { domains } = await api('GET', '/v1/domains')
      clear(list)
      for (const d of domains) {
        list.append(h('tr', { 'data-domain': d.name },
          h('td', {}, h('a', { href: `#domain/${seg(d.name)}` }, d.name)),
          h('td', {}, fmtTime(d.created)),
          h('td', {}, isFull() ? h('button', { class: 'danger', onclick: async () => {
            if (!confirm(`Delete the domain ${d.name}? (It must have no users or aliases left.)`)) return
            try { await api('DELETE', `/v1/domains/${seg(d.name)}`); await v.refresh() } catch (e) { message(status, 'error', e.message) }
          } }, 'Delete') : null)))
      }
    }
  }
  return v
}

function domainPage (main, domain) {
  const status = h('div', { id: 'domain-status' })
  const users = h('tbody', { id: 'users' })
  const aliases = h('tbody', { id: 'aliases' })
  const dns = h('tbody', { id: 'dns' })
  const act = async (fn, done) => {
    try { await fn(); if (done) message(status, 'info', done); await v.refresh() } catch (e) { message(status, 'error', e.message) }
  }

  const local = h('input', { id: 'user-local', placeholder: 'name', required: true, size: 14 })
  const display = h('input', { id: 'user-display', placeholder: 'Display name', size: 18 })
  const pw = h('input', { id: 'user-password', type: 'password', placeholder: 'password', required: true, autocomplete: 'new-password' })
  const quota = h('input', { id: 'user-quota', type: 'number', min: 0, placeholder: 'quota MiB (0: none)', size: 12 })
  const userForm = h('form', { class: 'inline', id: 'user-form' }, 'New user', local, `@${domain}`, display, pw, quota, h('button', { class: 'primary', type: 'submit', id: 'user-submit' }, 'Add user'))
  userForm.addEventListener('submit', ev => {
    ev.preventDefault()
    const body = { address: `${local.value}@${domain}`, password: pw.value, displayName: display.value }
    if (quota.value !== '') body.quotaBytes = Math.round(Number(quota.value) * 1024 * 1024)
    act(async () => { await api('POST', '/v1/users', body); local.value = ''; display.value = ''; pw.value = ''; quota.value = '' }, 'User added.')
  })

  const aliasLocal = h('input', { id: 'alias-local', placeholder: 'name (empty: catch-all)', size: 18 })
  const targets = h('input', { id: 'alias-targets', placeholder: 'to@example.com, ...', required: true, size: 34 })
  const aliasForm = h('form', { class: 'inline', id: 'alias-form' }, 'New alias', aliasLocal, `@${domain} to`, targets, h('button', { class: 'primary', type: 'submit' }, 'Add alias'))
  aliasForm.addEventListener('submit', ev => {
    ev.preventDefault()
    const address = `${aliasLocal.value}@${domain}`
    act(async () => { await api('POST', '/v1/aliases', { address, targets: targets.value.split(',').map(s => s.trim()).filter(Boolean) }); aliasLocal.value = ''; targets.value = '' }, 'Alias added.')
  })

  main.append(h('h1', {}, `Domain ${domain}`), h('p', {}, h('a', { href: '#domains' }, 'All domains')), status,
    h('h2', {}, 'Users'), userForm,
    h('table', {}, h('thead', {}, h('tr', {}, ['Address', 'Display name', 'Quota', 'Status', 'Created', ''].map(t => h('th', {}, t)))), users),
    h('h2', {}, 'Aliases'), aliasForm,
    h('table', {}, h('thead', {}, h('tr', {}, ['Alias', 'Delivers to', ''].map(t => h('th', {}, t)))), aliases),
    h('h2', {}, 'DNS records to publish'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Type', 'Value', 'Why'].map(t => h('th', {}, t)))), dns))

  const v = {
    async refresh () {
      const [u, a, d] = await Promise.all([
        api('GET', `/v1/users?domain=${seg(domain)}`),
        api('GET', `/v1/aliases?domain=${seg(domain)}`),
        api('GET', `/v1/dns/${seg(domain)}`).catch(e => ({ records: [], error: e.message }))
      ])
      clear(users)
      for (const x of u.users) {
        const addr = x.address
        users.append(h('tr', { 'data-address': addr },
          h('td', { class: 'mono' }, addr),
          h('td', { class: 'display-name' }, x.displayName || ''),
          h('td', {}, x.quotaBytes ? fmtBytes(x.quotaBytes) : 'none', x.quotaMessages ? `, ${x.quotaMessages} messages` : ''),
          h('td', {}, x.status),
          h('td', {}, fmtTime(x.created)),
          h('td', {},
            h('button', { onclick: () => { const p = prompt(`New password for ${addr}`); if (p) act(() => api('PUT', `/v1/users/${seg(addr)}/password`, { password: p }), 'Password changed.') } }, 'Password'),
            h('button', { onclick: () => { const q = prompt(`Quota for ${addr} in MiB (0: none)`, String(Math.round(x.quotaBytes / 1048576))); if (q !== null && q !== '') act(() => api('PUT', `/v1/users/${seg(addr)}/quota`, { bytes: Math.round(Number(q) * 1048576) }), 'Quota changed.') } }, 'Quota'),
            h('button', { onclick: () => { const n = prompt(`Display name for ${addr}`, x.displayName || ''); if (n !== null) act(() => api('PUT', `/v1/users/${seg(addr)}/name`, { displayName: n }), 'Name changed.') } }, 'Name'),
            h('button', { class: 'danger', onclick: () => { if (confirm(`Delete ${addr} and all of its mail?`)) act(() => api('DELETE', `/v1/users/${seg(addr)}`), 'User deleted.') } }, 'Delete'))))
      }
      clear(aliases)
      for (const x of a.aliases) {
        aliases.append(h('tr', { 'data-alias': x.address },
          h('td', { class: 'mono' }, x.address), h('td', { class: 'mono' }, x.targets.join(', ')),
          h('td', {}, h('button', { class: 'danger', onclick: () => { if (confirm(`Delete the alias ${x.address}?`)) act(() => api('DELETE', `/v1/aliases/${seg(x.address)}`), 'Alias deleted.') } }, 'Delete'))))
      }
      clear(dns)
      if (d.error) dns.append(h('tr', {}, h('td', { colspan: 4 }, d.error)))
      for (const r of d.records) dns.append(h('tr', {}, h('td', { class: 'mono' }, r.name), h('td', {}, r.type), h('td', { class: 'mono' }, r.value), h('td', { class: 'muted' }, r.purpose)))
    }
  }
  return v
}

// ---- Queue ---------------------------------------------------------------------------------------------

function queuePage (main) {
  const status = h('div')
  const body = h('tbody', { id: 'queue' })
  const act = async (fn) => { try { await fn(); await v.refresh() } catch (e) { message(status, 'error', e.message) } }
  main.append(h('h1', {}, 'Outbound queue'), status,
    h('p', {}, h('button', { id: 'retry-all', onclick: () => act(() => api('POST', '/v1/queue/retry')) }, 'Retry every message now')),
    h('table', {}, h('thead', {}, h('tr', {}, ['Queued', 'From', 'To (pending)', 'Size', 'Attempts', 'Next attempt', 'Last error', ''].map(t => h('th', {}, t)))), body))
  const v = {
    live: true,
    async refresh () {
      const { items } = await api('GET', '/v1/queue')
      clear(body)
      if (items.length === 0) body.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'The queue is empty.')))
      for (const q of items) {
        const id = q.id
        body.append(h('tr', { 'data-id': id },
          h('td', {}, fmtTime(q.queuedAt)), h('td', { class: 'mono' }, q.from || '<>'),
          h('td', { class: 'mono' }, q.rcpts.filter(r => r.state === 'pending').map(r => r.address).join(', ')),
          h('td', { class: 'num' }, fmtBytes(q.size)), h('td', { class: 'num' }, String(q.attempts)),
          h('td', {}, q.held ? 'held' : fmtTime(q.nextAttemptAt)), h('td', { class: 'muted' }, q.lastError || ''),
          h('td', {},
            h('button', { onclick: () => act(() => api('POST', `/v1/queue/${seg(id)}/retry`)) }, 'Retry'),
            q.held
              ? h('button', { onclick: () => act(() => api('POST', `/v1/queue/${seg(id)}/release`)) }, 'Release')
              : h('button', { onclick: () => act(() => api('POST', `/v1/queue/${seg(id)}/hold`)) }, 'Hold'),
            h('button', { class: 'danger', onclick: () => { if (confirm('Delete this message from the queue? It will not be delivered.')) act(() => api('DELETE', `/v1/queue/${seg(id)}`)) } }, 'Delete'))))
      }
    }
  }
  return v
}

// ---- Statistics ------------------------------------------------------------------------------------------

const RANGES = [['1h', 3600e3], ['6h', 6 * 3600e3], ['24h', 24 * 3600e3], ['7d', 7 * 86400e3], ['30d', 30 * 86400e3]]

function statsPage (main) {
  const status = h('div', { id: 'stats-status' })
  // a domain administrator reads its domains' statistics and their users', not the grid's
  const scope = h('select', { id: 'stats-scope' }, isFull() ? h('option', { value: 'grid' }, 'The whole grid') : null)
  const user = h('input', { id: 'stats-user', placeholder: 'or a user: name@domain', size: 24 })
  const range = h('select', { id: 'stats-range' }, RANGES.map(([l]) => h('option', { value: l }, `last ${l}`)))
  const csv = h('a', { id: 'stats-csv', href: '#' }, 'CSV')
  const charts = h('div', { id: 'charts' })
  const form = h('form', { class: 'inline' }, 'Show', scope, user, range, h('button', { type: 'submit' }, 'Show'), csv)
  form.addEventListener('submit', ev => { ev.preventDefault(); v.refresh().catch(e => message(status, 'error', e.message)) })
  main.append(h('h1', {}, 'Statistics'), form, status, charts)
  const domainsLoaded = api('GET', '/v1/domains').then(({ domains }) => { for (const d of domains) scope.append(h('option', { value: `domain:${d.name}` }, d.name)) }).catch(() => {})
  let plots = []
  let shown = ''
  const v = {
    live: true,
    async refresh () {
      await domainsLoaded
      if (scope.value === '' && user.value.trim() === '') { message(status, 'info', 'No domain to show.'); return }
      const ms = RANGES.find(r => r[0] === range.value)[1]
      const to = Date.now()
      const s = user.value.trim() !== '' ? `user:${user.value.trim()}` : scope.value
      const q = `scope=${seg(s)}&from=${to - ms}&to=${to}`
      csv.setAttribute('href', `/v1/stats.csv?${q}`)
      let data
      try {
        data = await api('GET', `/v1/stats?${q}`)
      } catch (e) {
        if (e.status === 404) { message(status, 'info', 'This node serves no statistics (GET /v1/stats answered 404).'); return }
        throw e
      }
      message(status, '', '')
      const t = data.t.map(x => x / 1000)
      const sets = [
        ['Messages', ['received', 'sent', 'failed', 'rejected', 'quarantined'], ['#0969da', '#1a7f37', '#cf222e', '#9a6700', '#8250df']],
        ['Bytes', ['bytesIn', 'bytesOut'], ['#0969da', '#1a7f37']],
        ['Logins', ['logins', 'loginFailures'], ['#0969da', '#cf222e']]
      ]
      const key = `${q.replace(/&to=\d+|&from=\d+/g, '')}|${t.length}|${JSON.stringify(data.series).length}`
      if (key === shown) return
      shown = key
      for (const p of plots) p.destroy()
      plots = []
      clear(charts)
      for (const [title, names, colors] of sets) {
        const present = names.filter(n => Array.isArray(data.series[n]))
        if (present.length === 0) continue
        const box = h('div', { class: 'chart', 'data-chart': title })
        charts.append(h('h2', {}, title), box)
        const opts = {
          width: Math.min(1100, main.clientWidth - 40), height: 220,
          series: [{}, ...present.map((n, i) => ({ label: n, stroke: colors[i % colors.length], width: 1.5 }))],
          axes: [{}, { size: 60 }]
        }
        plots.push(new uPlot(opts, [t, ...present.map(n => data.series[n])], box)) // eslint-disable-line no-undef
      }
    }
  }
  return v
}

// ---- Alarms ----------------------------------------------------------------------------------------------

function alarmsPage (main) {
  const status = h('div')
  const active = h('tbody', { id: 'alarms-active' })
  const history = h('tbody', { id: 'alarms-history' })
  const head = () => h('thead', {}, h('tr', {}, ['Kind', 'Subject', 'Message', 'Node', 'Since', 'Ended'].map(t => h('th', {}, t))))
  main.append(h('h1', {}, 'Alarms'), status, h('h2', {}, 'Active'), h('table', {}, head(), active), h('h2', {}, 'History'), h('table', {}, head(), history))
  const row = a => h('tr', {}, h('td', {}, a.kind), h('td', { class: 'mono' }, a.subject), h('td', {}, a.message), h('td', {}, a.node), h('td', {}, fmtTime(a.start)), h('td', {}, a.end ? fmtTime(a.end) : '-'))
  return {
    live: true,
    async refresh () {
      let data
      try { data = await api('GET', '/v1/alarms') } catch (e) {
        if (e.status === 404) { message(status, 'info', 'This node serves no alarms (GET /v1/alarms answered 404).'); return }
        throw e
      }
      clear(active); clear(history)
      if (data.active.length === 0) active.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No active alarm.')))
      for (const a of data.active) active.append(row(a))
      for (const a of data.history) history.append(row(a))
    }
  }
}

// ---- Nodes -----------------------------------------------------------------------------------------------

function nodesPage (main) {
  const status = h('div', { id: 'nodes-status' })
  const body = h('tbody', { id: 'nodes' })
  const join = h('div', { id: 'join' })
  main.append(h('h1', {}, 'Nodes'), status,
    h('table', {}, h('thead', {}, h('tr', {}, ['Node', 'Address', 'Status', 'State', ''].map(t => h('th', {}, t)))), body),
    h('h2', {}, 'Add a node'),
    h('p', {}, 'Boot the appliance image on the new PC, choose "join a grid" in the first-boot wizard and give it this cluster key (or scan the code). Keep it secret: whoever has it can join the grid.'),
    join)
  api('GET', '/console/api/joinkey').then(k => {
    clear(join)
    join.append(h('p', {}, h('code', { id: 'join-key' }, k.key)),
      h('div', { class: 'qr' }, h('img', { id: 'join-qr', alt: 'QR code of the grid key', src: `data:image/svg+xml;base64,${btoa(k.qrSvg)}` })))
  }).catch(e => message(join, 'info', e.message))
  const v = {
    live: true,
    async refresh () {
      const g = await api('GET', '/console/api/grid')
      clear(body)
      for (const m of [...g.members].sort((a, b) => a.name.localeCompare(b.name))) {
        const actions = []
        if (m.status === 'alive') {
          if (m.state === 'draining') actions.push(h('button', { class: 'undrain', onclick: () => setState(m, 'alive') }, 'Back in the ring'))
          else actions.push(h('button', { class: 'drain', onclick: () => { if (confirm(`Drain ${m.name}? Its users move to the other nodes; it keeps serving until it is stopped, and stays drained across restarts until taken back.`)) setState(m, 'draining') } }, 'Drain'))
          actions.push(' ', h('button', { class: 'restart', onclick: () => { if (confirm(`Restart ${m.name}? It stops gracefully (its sessions end, its users are served by their other copies meanwhile) and its supervisor starts it again.`)) restart(m, false) } }, 'Restart'))
        }
        if (m.status === 'dead') {
          actions.push(h('button', { class: 'forget', onclick: () => { if (confirm(`Forget ${m.name} for good? Every node drops it from the grid. If it is started again later, it joins as a new member.`)) forget(m) } }, 'Forget'))
        }
        body.append(h('tr', { class: m.status, 'data-name': m.name },
          h('td', {}, m.name, m.self ? h('span', { class: 'muted' }, ' (this node)') : null),
          h('td', { class: 'mono' }, m.host), h('td', {}, badge(m.status)), h('td', {}, badge(m.state)),
          h('td', {}, actions)))
      }
    }
  }
  const restart = async (m, force) => {
    try {
      const r = await api('POST', `/console/api/nodes/${seg(m.id)}/restart`, { force })
      message(status, r.supervised === false ? 'error' : 'info', r.note)
      await v.refresh()
    } catch (e) {
      // refused while it could leave users with no live copy: the reason, and the choice to go on anyway
      if (e.status === 409 && !force && /no live copy/.test(e.message) && confirm(`${e.message}\n\nRestart ${m.name} anyway?`)) return await restart(m, true)
      message(status, 'error', e.message)
    }
  }
  const forget = async m => {
    try {
      await api('POST', `/console/api/nodes/${seg(m.id)}/forget`, {})
      message(status, 'info', `${m.name} forgotten; the other nodes drop it within seconds.`)
      await v.refresh()
    } catch (e) { message(status, 'error', e.message) }
  }
  const setState = async (m, state) => {
    try {
      await api('POST', `/console/api/nodes/${seg(m.id)}/state`, { state })
      message(status, 'info', `${m.name}: ${state === 'draining' ? 'drain' : 'back in the ring'} asked; the page shows its state once it has acted on it.`)
      await v.refresh()
    } catch (e) { message(status, 'error', e.message) }
  }
  return v
}

// ---- Admin accounts ----------------------------------------------------------------------------------------

function adminsPage (main) {
  const status = h('div', { id: 'admins-status' })
  const body = h('tbody', { id: 'admins' })
  const name = h('input', { id: 'admin-name', placeholder: 'name', required: true, size: 14 })
  const pw = h('input', { id: 'admin-password', type: 'password', placeholder: 'password', required: true, autocomplete: 'new-password' })
  const domains = h('input', { id: 'admin-domains', placeholder: 'domains, comma-separated (empty: all)', size: 34 })
  const list = text => { const d = text.split(',').map(x => x.trim()).filter(Boolean); return d.length === 0 ? null : d }
  const act = async (fn, done) => { try { await fn(); message(status, 'info', done); await v.refresh() } catch (e) { message(status, 'error', e.message) } }
  const form = h('form', { class: 'inline', id: 'admin-form' }, 'New admin', name, pw, domains, h('button', { class: 'primary', type: 'submit', id: 'admin-submit' }, 'Add admin'))
  form.addEventListener('submit', ev => {
    ev.preventDefault()
    act(async () => { await api('POST', '/v1/admins', { name: name.value, password: pw.value, domains: list(domains.value) }); name.value = ''; pw.value = ''; domains.value = '' }, 'Admin added.')
  })
  main.append(h('h1', {}, 'Admin accounts'), status,
    h('p', { class: 'muted' }, 'An admin limited to some domains sees and changes only their users, aliases and DNS records, and reads their statistics.'),
    form, h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Domains', 'Created', ''].map(t => h('th', {}, t)))), body))
  const v = {
    async refresh () {
      const { admins } = await api('GET', '/v1/admins')
      clear(body)
      for (const a of admins) {
        const self = a.name === session.admin.name
        body.append(h('tr', { 'data-admin': a.name },
          h('td', {}, a.name, self ? h('span', { class: 'muted' }, ' (you)') : null),
          h('td', {}, a.domains === null ? 'all' : a.domains.join(', ')),
          h('td', {}, fmtTime(a.created)),
          h('td', {},
            h('button', { onclick: () => { const p = prompt(`New password for ${a.name} (its sessions end)`); if (p) act(() => api('PUT', `/v1/admins/${seg(a.name)}/password`, { password: p }), 'Password changed.') } }, 'Password'),
            h('button', { onclick: () => { const d = prompt(`Domains of ${a.name}, comma-separated (empty: all)`, a.domains === null ? '' : a.domains.join(', ')); if (d !== null) act(() => api('PUT', `/v1/admins/${seg(a.name)}/domains`, { domains: list(d) }), 'Domains changed.') } }, 'Domains'),
            self ? null : h('button', { class: 'danger', onclick: () => { if (confirm(`Delete the admin ${a.name}?`)) act(() => api('DELETE', `/v1/admins/${seg(a.name)}`), 'Admin deleted.') } }, 'Delete'))))
      }
    }
  }
  return v
}

// ---- start -------------------------------------------------------------------------------------------------

window.addEventListener('hashchange', route)
api('GET', '/console/api/session').then(s => { session = s; route() }, () => { if (!session) showLogin() })
