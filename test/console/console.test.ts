// The web console (issue 11) on a three-process grid of `mailgrid start` nodes, each serving the console on its
// HTTPS admin listener, driven by a real headless Chromium (puppeteer-core) and by plain HTTPS requests:
// login and its refusals, cookie flags, CSRF, security headers, the Grid page with three members and its verdict,
// a user made through the form logging in over IMAP, a hostile display name shown as text, a domain administrator
// confined to its domain (on the pages and on the JSON API), statistics charts when the node serves them, and a
// SIGKILLed node turning dead on the page with the verdict flipping. Screenshots go to test/artifacts/.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImapFlow } from 'imapflow'
import nodemailer from 'nodemailer'
import type { Browser, Page } from 'puppeteer-core'
import { cli, kill, launchBrowser, ROOT, startConsoleGrid, stopConsoleGrid, until } from './grid.ts'
import type { ConsoleNode } from './grid.ts'

const ARTIFACTS = join(ROOT, 'test', 'artifacts')
const ROOT_PW = 'console root pass 1'
const DOM_PW = 'domain admin pass 2'
const USER_PW = 'user password 3'
const HOSTILE = '<img src=x onerror=alert(1)>'

let dir: string
let nodes: ConsoleNode[] = []
let browser: Browser
const dialogs: string[] = []
const pageErrors: string[] = [] // script exceptions and Content-Security-Policy refusals, from every page

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, text: string, json: any }

/** One HTTPS request to a node's admin listener, trusting its own certificate. */
async function call (n: ConsoleNode, method: string, path: string, opts: { headers?: Record<string, string>, body?: unknown } = {}): Promise<Answer> {
  const cert = await readFile(join(n.dir, 'tls', 'cert.pem'), 'utf8')
  const body = opts.body === undefined ? undefined : JSON.stringify(opts.body)
  return await new Promise((resolve, reject) => {
    const req = httpsRequest(n.url + path, {
      method,
      ca: cert,
      checkServerIdentity: () => undefined,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...opts.headers }
    }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json: unknown = null
        try { json = JSON.parse(text) } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function login (n: ConsoleNode, name: string, password: string): Promise<{ cookie: string, csrf: string, answer: Answer }> {
  const answer = await call(n, 'POST', '/console/login', { body: { name, password } })
  const set = answer.headers['set-cookie']
  const cookie = Array.isArray(set) ? set[0] : ''
  return { cookie: cookie.split(';')[0], csrf: answer.json?.csrf, answer }
}

/** A page in a browser context of its own: no cookie from another test's login. */
async function newPage (opts: { acceptConfirm?: boolean } = {}): Promise<Page> {
  const page = await (await browser.createBrowserContext()).newPage()
  page.on('dialog', d => {
    dialogs.push(`${d.type()}: ${d.message()}`)
    void (opts.acceptConfirm === true && d.type() === 'confirm' ? d.accept() : d.dismiss())
  })
  page.on('pageerror', err => { pageErrors.push(String(err)) })
  page.on('console', m => { if (/Content.Security.Policy/i.test(m.text())) pageErrors.push(m.text()) })
  return page
}

async function browserLogin (page: Page, n: ConsoleNode, name: string, password: string): Promise<void> {
  await page.goto(`${n.url}/console/`, { waitUntil: 'load' })
  await page.waitForSelector('#login-form')
  await page.type('#login-name', name)
  await page.type('#login-password', password)
  await page.click('#login-submit')
  await page.waitForSelector('#who', { timeout: 15_000 })
}

async function shot (page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `console-${name}.png`), fullPage: true })
}

async function imapsPort (n: ConsoleNode): Promise<number> {
  const st = (await call(n, 'GET', '/v1/status', { headers: { authorization: `Bearer ${n.token}` } })).json
  return st.services.find((s: { name: string }) => s.name === 'imaps').port
}

before(async () => {
  await mkdir(ARTIFACTS, { recursive: true })
  dir = await mkdtemp(join(tmpdir(), 'mailgrid-console-'))
  nodes = await startConsoleGrid(dir, 3)
  // the grid forms; then the first admin (as `mailgrid admin add` makes it), two domains and a domain admin
  await until('three members alive on every node', async () => {
    const views = await Promise.all(nodes.map(async n => (await call(n, 'GET', '/v1/status', { headers: { authorization: `Bearer ${n.token}` } })).json))
    return views.every(v => v.grid?.members.filter((m: { status: string }) => m.status === 'alive').length === 3)
  }, 60_000, 500)
  for (const args of [['admin', 'add', 'root', '--password', ROOT_PW], ['domain', 'add', 'one.test'], ['domain', 'add', 'two.test'],
    ['admin', 'add', 'onlyone', '--password', DOM_PW, '--domains', 'one.test'], ['user', 'add', 'secret@two.test', '--password', USER_PW]]) {
    const r = await cli(nodes[0], args)
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`)
  }
  // the accounts reach every node (the directory replicates)
  await until('the admin accounts on node3', async () => (await login(nodes[2], 'onlyone', DOM_PW)).answer.status === 200, 30_000, 500)
  browser = await launchBrowser()
})

after(async () => {
  await browser?.close()
  await stopConsoleGrid(nodes)
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

test('mailgrid admin list shows both accounts, the domain admin with its domain', async () => {
  const r = await cli(nodes[1], ['admin', 'list'])
  assert.equal(r.code, 0, r.err)
  assert.equal(r.out, 'onlyone\tone.test\nroot\tall domains\n')
  assert.equal((await cli(nodes[1], ['admin', 'add', 'Bad.Name', '--password', 'x'])).code, 1)
})

test('plain HTTPS: a wrong password and an unknown admin are refused; a login sets a locked-down cookie', async () => {
  const wrong = await login(nodes[0], 'root', 'not the password')
  assert.equal(wrong.answer.status, 403)
  assert.equal(wrong.answer.headers['set-cookie'], undefined)
  assert.equal((await login(nodes[0], 'nobody', ROOT_PW)).answer.status, 403)
  const ok = await login(nodes[1], 'root', ROOT_PW)
  assert.equal(ok.answer.status, 200)
  const set = (ok.answer.headers['set-cookie'] as string[])[0]
  for (const flag of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/']) assert.ok(set.includes(flag), set)
  assert.match(ok.cookie, /^mg_session=root\.\d+\.[\w-]{22}\.[\w-]{43}$/)
  // the session is the grid's: another node honours it
  const s = await call(nodes[2], 'GET', '/console/api/session', { headers: { cookie: ok.cookie } })
  assert.equal(s.status, 200)
  assert.equal(s.json.admin.name, 'root')
  assert.equal(s.json.csrf, ok.csrf)
  // no cookie, or a forged one: not logged in
  assert.equal((await call(nodes[0], 'GET', '/v1/domains')).status, 401)
  const forged = ok.cookie.slice(0, -4) + (ok.cookie.endsWith('AAAA') ? 'BBBB' : 'AAAA')
  assert.equal((await call(nodes[0], 'GET', '/v1/domains', { headers: { cookie: forged } })).status, 401)
})

test('plain HTTPS: failed logins are throttled grid-wide: after 5 on node1, node2 refuses even the right password', async () => {
  assert.equal((await cli(nodes[0], ['admin', 'add', 'victim', '--password', ROOT_PW])).code, 0)
  await until('victim on node2', async () => (await cli(nodes[1], ['admin', 'list'])).out.includes('victim'), 15_000, 300)
  for (let i = 0; i < 5; i++) assert.equal((await login(nodes[0], 'victim', `guess ${i}`)).answer.status, 403)
  assert.equal((await login(nodes[0], 'victim', 'guess 6')).answer.status, 429)
  // each failure is told to every member in batches of 20 ms; a success would clear the count, so node2 is
  // asked once, after a generous wait, with the right password
  await new Promise(resolve => setTimeout(resolve, 2000))
  const refused = await login(nodes[1], 'victim', ROOT_PW)
  assert.equal(refused.answer.status, 429)
  assert.equal(refused.answer.headers['set-cookie'], undefined)
  // another account from the same address is not held back
  assert.equal((await login(nodes[1], 'root', ROOT_PW)).answer.status, 200)
})

test('plain HTTPS: a change without the CSRF token (or with a wrong one, or from another origin) is refused', async () => {
  const { cookie, csrf } = await login(nodes[0], 'root', ROOT_PW)
  const add = { address: 'nocsrf@one.test', password: USER_PW }
  const none = await call(nodes[0], 'POST', '/v1/users', { headers: { cookie }, body: add })
  assert.equal(none.status, 403)
  assert.equal(none.json.error, 'Missing or wrong CSRF token')
  assert.equal((await call(nodes[0], 'POST', '/v1/users', { headers: { cookie, 'x-csrf-token': csrf.slice(1) + 'x' }, body: add })).status, 403)
  assert.equal((await call(nodes[0], 'POST', '/v1/users', { headers: { cookie, 'x-csrf-token': csrf, origin: 'https://evil.example' }, body: add })).status, 403)
  assert.equal((await call(nodes[0], 'GET', '/v1/users/nocsrf%40one.test', { headers: { cookie } })).status, 404)
  // reads need no token; the same change with it goes through
  assert.equal((await call(nodes[0], 'GET', '/v1/domains', { headers: { cookie } })).status, 200)
  const done = await call(nodes[0], 'POST', '/v1/users', { headers: { cookie, 'x-csrf-token': csrf }, body: add })
  assert.equal(done.status, 201, done.text)
  assert.equal((await call(nodes[0], 'DELETE', '/v1/users/nocsrf%40one.test', { headers: { cookie, 'x-csrf-token': csrf } })).status, 200)
  // logging out ends the session on every node
  assert.equal((await call(nodes[0], 'POST', '/console/logout', { headers: { cookie } })).status, 403)
  assert.equal((await call(nodes[0], 'POST', '/console/logout', { headers: { cookie, 'x-csrf-token': csrf } })).status, 200)
  await until('the logout on node2', async () => (await call(nodes[1], 'GET', '/v1/domains', { headers: { cookie } })).status === 401, 15_000, 300)
})

test('plain HTTPS: hostile login and cookie inputs get a clear refusal, and the node keeps serving', async () => {
  const big = await call(nodes[0], 'POST', '/console/login', { body: { name: 'root', password: 'x'.repeat(5000) } })
  assert.equal(big.status, 413)
  const notJson = await new Promise<number>((resolve, reject) => {
    readFile(join(nodes[0].dir, 'tls', 'cert.pem'), 'utf8').then(ca => {
      const req = httpsRequest(nodes[0].url + '/console/login', { method: 'POST', ca, checkServerIdentity: () => undefined }, res => { res.resume(); resolve(res.statusCode ?? 0) })
      req.on('error', reject)
      req.end('{"name": ')
    }, reject)
  })
  assert.equal(notJson, 400)
  assert.equal((await call(nodes[0], 'POST', '/console/login', { body: { name: ['root'], password: { a: 1 } } })).status, 403)
  assert.equal((await call(nodes[0], 'GET', '/console/login')).status, 405)
  assert.equal((await call(nodes[0], 'GET', '/v1/domains', { headers: { cookie: `mg_session=${'a'.repeat(1000)}` } })).status, 401)
  assert.equal((await call(nodes[0], 'GET', '/v1/domains', { headers: { cookie: 'x=' + 'y'.repeat(7000) + '; mg_session=root.1.2.3' } })).status, 401)
  assert.equal((await call(nodes[0], 'GET', '/v1/domains', { headers: { cookie: 'mg_session=root.99999999999999.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } })).status, 401)
  assert.equal((await login(nodes[0], 'root', ROOT_PW)).answer.status, 200)
})

test('the pages carry a strict Content-Security-Policy and the other security headers; no inline script', async () => {
  const page = await call(nodes[0], 'GET', '/console/')
  assert.equal(page.status, 200)
  const csp = String(page.headers['content-security-policy'])
  assert.ok(csp.includes("default-src 'self'") && csp.includes("script-src 'self'") && !csp.includes('unsafe-inline'), csp)
  assert.equal(page.headers['x-content-type-options'], 'nosniff')
  assert.equal(page.headers['x-frame-options'], 'DENY')
  assert.match(String(page.headers['strict-transport-security']), /max-age=\d+/)
  assert.doesNotMatch(page.text, /<script(?![^>]*\bsrc=)[^>]*>/)
  assert.equal((await call(nodes[0], 'GET', '/console/static/..%2fadmin.ts')).status, 404)
  assert.equal((await call(nodes[0], 'GET', '/console/static/uPlot.iife.min.js')).status, 200)
  assert.equal((await call(nodes[0], 'GET', '/')).headers.location, '/console/')
})

test('plain HTTPS: a domain administrator sees and changes only its own domain', async () => {
  const { cookie, csrf } = await login(nodes[1], 'onlyone', DOM_PW)
  const h = { cookie, 'x-csrf-token': csrf }
  const domains = await call(nodes[1], 'GET', '/v1/domains', { headers: h })
  assert.deepEqual(domains.json.domains.map((d: { name: string }) => d.name), ['one.test'])
  assert.equal((await call(nodes[1], 'GET', '/v1/users?domain=two.test', { headers: h })).status, 403)
  const all = await call(nodes[1], 'GET', '/v1/users', { headers: h })
  assert.ok(all.json.users.every((u: { address: string }) => u.address.endsWith('@one.test')), all.text)
  assert.equal((await call(nodes[1], 'GET', '/v1/users/secret%40two.test', { headers: h })).status, 403)
  assert.equal((await call(nodes[1], 'PUT', '/v1/users/secret%40two.test/password', { headers: h, body: { password: 'taken over' } })).status, 403)
  assert.equal((await call(nodes[1], 'DELETE', '/v1/users/secret%40two.test', { headers: h })).status, 403)
  assert.equal((await call(nodes[1], 'POST', '/v1/users', { headers: h, body: { address: 'x@two.test', password: USER_PW } })).status, 403)
  assert.equal((await call(nodes[1], 'POST', '/v1/aliases', { headers: h, body: { address: 'a@two.test', targets: ['x@one.test'] } })).status, 403)
  assert.equal((await call(nodes[1], 'GET', '/v1/dns/two.test', { headers: h })).status, 403)
  // the whole grid's business is not a domain administrator's
  for (const [m, p] of [['GET', '/v1/status'], ['GET', '/console/api/grid'], ['GET', '/v1/queue'], ['GET', '/v1/admins'], ['DELETE', '/v1/domains/two.test'], ['GET', '/console/api/joinkey']]) {
    assert.equal((await call(nodes[1], m, p, { headers: h })).status, 403, `${m} ${p}`)
  }
  // its own domain it runs
  assert.equal((await call(nodes[1], 'POST', '/v1/users', { headers: h, body: { address: 'mine@one.test', password: USER_PW } })).status, 201)
  assert.equal((await call(nodes[1], 'GET', '/v1/dns/one.test', { headers: h })).status, 200)
  assert.equal((await call(nodes[1], 'DELETE', '/v1/users/mine%40one.test', { headers: h })).status, 200)
  // the user the other domain's owner has is untouched, and still logs in
  const imap = new ImapFlow({ host: '127.0.0.1', port: await imapsPort(nodes[0]), secure: true, tls: { rejectUnauthorized: false }, auth: { user: 'secret@two.test', pass: USER_PW }, logger: false })
  await imap.connect()
  await imap.logout()
})

test('browser: log in; the Grid page shows three members and the verdict', async () => {
  const page = await newPage()
  await browserLogin(page, nodes[0], 'root', ROOT_PW)
  await page.waitForSelector('#members tr[data-status]')
  await until('three alive members on the page', async () => await page.$$eval('#members tr[data-status="alive"]', rows => rows.length) === 3, 20_000, 300)
  const names = await page.$$eval('#members tr', rows => rows.map(r => r.getAttribute('data-name')))
  assert.deepEqual(names, ['node1', 'node2', 'node3'])
  await until('the verdict says yes', async () => await page.$eval('#verdict', el => el.getAttribute('data-ok')) === 'true', 30_000, 300)
  assert.match(await page.$eval('#verdict', el => el.textContent ?? ''), /^Can the grid lose a node now\? Yes: every user has 2 copies on 3 nodes/)
  // a few samples for the sparklines before the picture
  await until('sparklines drawn', async () => await page.$$eval('#members canvas.spark', cs => cs.length) >= 12, 20_000, 500)
  await new Promise(resolve => setTimeout(resolve, 11_000))
  await shot(page, 'grid')
  await page.browserContext().close()
})

test('browser: a user created through the form (with a hostile display name) logs in over IMAP; the name shows as text', async () => {
  const page = await newPage()
  await browserLogin(page, nodes[1], 'root', ROOT_PW)
  await page.evaluate(() => { (globalThis as any).location.hash = '#domain/one.test' })
  await page.waitForSelector('#user-form')
  await page.type('#user-local', 'formuser')
  await page.type('#user-display', HOSTILE)
  await page.type('#user-password', USER_PW)
  await page.type('#user-quota', '100')
  await page.click('#user-submit')
  await page.waitForSelector('tr[data-address="formuser@one.test"]', { timeout: 15_000 })
  const shown = await page.$eval('tr[data-address="formuser@one.test"] td.display-name', el => ({ text: el.textContent, imgs: el.querySelectorAll('img').length }))
  assert.deepEqual(shown, { text: HOSTILE, imgs: 0 })
  assert.equal(await page.$$eval('main img', imgs => imgs.length), 0)
  // the page text holds it literally, and no dialog ever opened
  assert.ok((await page.$eval('main', el => el.innerText)).includes(HOSTILE))
  await shot(page, 'domain')
  assert.deepEqual(dialogs, [])
  await page.browserContext().close()
  // the user exists on every node, and logs in over IMAP on another node than the one the form was on
  const imap = new ImapFlow({ host: '127.0.0.1', port: await imapsPort(nodes[2]), secure: true, tls: { rejectUnauthorized: false }, auth: { user: 'formuser@one.test', pass: USER_PW }, logger: false })
  await until('the new user on node3', async () => {
    try { await imap.connect(); return true } catch { return false }
  }, 20_000, 500)
  const box = await imap.mailboxOpen('INBOX')
  assert.equal(box.exists, 0)
  await imap.logout()
  const user = (await call(nodes[2], 'GET', '/v1/users/formuser%40one.test', { headers: { authorization: `Bearer ${nodes[2].token}` } })).json.user
  assert.equal(user.displayName, HOSTILE)
  assert.equal(user.quotaBytes, 100 * 1024 * 1024)
})

test('browser: a full admin adds a domain administrator on the Admins page; it logs in on another node', async () => {
  const page = await newPage()
  await browserLogin(page, nodes[0], 'root', ROOT_PW)
  await page.evaluate(() => { (globalThis as any).location.hash = '#admins' })
  await page.waitForSelector('#admins tr[data-admin="root"]')
  await page.type('#admin-name', 'pagemade')
  await page.type('#admin-password', DOM_PW)
  await page.type('#admin-domains', 'two.test')
  await page.click('#admin-submit')
  await page.waitForSelector('#admins tr[data-admin="pagemade"]', { timeout: 15_000 })
  assert.equal(await page.$eval('#admins tr[data-admin="pagemade"] td:nth-child(2)', el => el.textContent), 'two.test')
  await page.browserContext().close()
  await until('pagemade on node2', async () => (await login(nodes[1], 'pagemade', DOM_PW)).answer.status === 200, 15_000, 300)
  const { cookie } = await login(nodes[1], 'pagemade', DOM_PW)
  const domains = await call(nodes[1], 'GET', '/v1/domains', { headers: { cookie } })
  assert.deepEqual(domains.json.domains.map((d: { name: string }) => d.name), ['two.test'])
})

test('browser: a domain administrator sees only its domain and cannot open another', async () => {
  const page = await newPage()
  await browserLogin(page, nodes[2], 'onlyone', DOM_PW)
  await page.waitForSelector('#domains tr')
  assert.deepEqual(await page.$$eval('header nav a', as => as.map(a => a.textContent)), ['Domains', 'Statistics'])
  assert.deepEqual(await page.$$eval('#domains tr', rows => rows.map(r => r.getAttribute('data-domain'))), ['one.test'])
  await page.evaluate(() => { (globalThis as any).location.hash = '#domain/two.test' })
  await page.waitForSelector('#page-error .msg.error', { timeout: 15_000 })
  assert.equal(await page.$eval('#page-error', el => el.textContent), 'Not one of your domains: two.test')
  assert.equal(await page.$$eval('#users tr', rows => rows.length), 0)
  // the page's own script, asked to change the other domain, is refused by the server
  const status = await page.evaluate(async () => {
    const s = await (await fetch('/console/api/session')).json() as { csrf: string }
    const r = await fetch('/v1/users/secret%40two.test/password', { method: 'PUT', headers: { 'content-type': 'application/json', 'x-csrf-token': s.csrf }, body: JSON.stringify({ password: 'x' }) })
    return r.status
  })
  assert.equal(status, 403)
  // the statistics offer its domain, not the grid
  await page.evaluate(() => { (globalThis as any).location.hash = '#stats' })
  await page.waitForSelector('#stats-scope option')
  assert.deepEqual(await page.$$eval('#stats-scope option', os => os.map(o => o.getAttribute('value'))), ['domain:one.test'])
  // the grid page falls back to its domains
  await page.evaluate(() => { (globalThis as any).location.hash = '#grid' })
  await page.waitForSelector('#domains tr')
  await page.browserContext().close()
})

test('browser: a chart draws with data after traffic (when the node serves statistics)', async t => {
  const probe = await call(nodes[0], 'GET', `/v1/stats?scope=grid&from=${Date.now() - 3600_000}&to=${Date.now()}`, { headers: { authorization: `Bearer ${nodes[0].token}` } })
  if (probe.status === 404) { t.skip('GET /v1/stats is not served by this build'); return }
  assert.equal(probe.status, 200, probe.text)
  const st = (await call(nodes[0], 'GET', '/v1/status', { headers: { authorization: `Bearer ${nodes[0].token}` } })).json
  const smtp = st.services.find((s: { name: string }) => s.name === 'smtp').port
  const mailer = nodemailer.createTransport({ host: '127.0.0.1', port: smtp, secure: false, ignoreTLS: true, tls: { rejectUnauthorized: false } })
  for (let i = 0; i < 5; i++) await mailer.sendMail({ from: 'someone@remote.example', to: 'secret@two.test', subject: `hello ${i}`, text: 'traffic for the chart' })
  mailer.close()
  const received = async (): Promise<number> => {
    const s = await call(nodes[0], 'GET', `/v1/stats?scope=grid&from=${Date.now() - 3600_000}&to=${Date.now() + 300_000}`, { headers: { authorization: `Bearer ${nodes[0].token}` } })
    return (s.json.series.received as number[]).reduce((a, b) => a + b, 0)
  }
  await until('the received count in the statistics', async () => await received() >= 5, 60_000, 1000)
  // the deliveries were replicated: the node holding the recipient's primary copy shows its replication lag
  const lags = await Promise.all(nodes.map(async n => (await call(n, 'GET', '/console/api/grid', { headers: { authorization: `Bearer ${n.token}` } })).json.replicationLag))
  assert.ok(lags.some(l => l.count >= 5 && l.meanSeconds > 0), JSON.stringify(lags))
  const page = await newPage()
  await browserLogin(page, nodes[0], 'root', ROOT_PW)
  await page.evaluate(() => { (globalThis as any).location.hash = '#stats' })
  await page.waitForSelector('.chart[data-chart="Messages"] canvas', { timeout: 20_000 })
  // uPlot draws its series on the canvas: some pixels are not background
  const painted = await page.$eval('.chart[data-chart="Messages"] canvas', c => {
    const cv = c as any
    const d: Uint8ClampedArray = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data
    let n = 0
    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++
    return n
  })
  assert.ok(painted > 100, `painted pixels: ${painted}`)
  const legend = await page.$$eval('.chart[data-chart="Messages"] .u-legend .u-label', ls => ls.map(l => l.textContent))
  assert.ok(legend.includes('received'), JSON.stringify(legend))
  const href = await page.$eval('#stats-csv', a => a.getAttribute('href'))
  assert.match(String(href), /^\/v1\/stats\.csv\?scope=grid&from=\d+&to=\d+$/)
  await shot(page, 'stats')
  await page.browserContext().close()
})

test('browser: node2 drained from node1\'s Nodes page (every node sees it draining), then taken back', async () => {
  const page = await newPage({ acceptConfirm: true })
  await browserLogin(page, nodes[0], 'root', ROOT_PW)
  await page.evaluate(() => { (globalThis as any).location.hash = '#nodes' })
  await page.waitForSelector('#join-key')
  assert.equal(await page.$eval('#join-key', el => el.textContent), nodes[0].env.MAILGRID_GRID_CLUSTER_KEY)
  assert.match(String(await page.$eval('#join-qr', el => el.getAttribute('src'))), /^data:image\/svg\+xml;base64,/)
  await page.waitForSelector('#nodes tr[data-name="node2"] button.drain')
  await shot(page, 'nodes')
  const stateOn = async (n: ConsoleNode, name: string): Promise<string | undefined> =>
    (await call(n, 'GET', '/v1/status', { headers: { authorization: `Bearer ${n.token}` } })).json.grid.members.find((m: { name: string }) => m.name === name)?.state
  await page.click('#nodes tr[data-name="node2"] button.drain')
  await until('node2 draining as node3 sees it', async () => await stateOn(nodes[2], 'node2') === 'draining', 20_000, 300)
  await page.waitForSelector('#nodes tr[data-name="node2"] button.undrain', { timeout: 10_000 })
  await page.click('#nodes tr[data-name="node2"] button.undrain')
  await until('node2 back in the ring as node3 sees it', async () => await stateOn(nodes[2], 'node2') === 'alive', 20_000, 300)
  assert.deepEqual(dialogs.filter(d => !d.startsWith('confirm: Drain node2?')), [])
  await page.browserContext().close()
})

test('browser: a SIGKILLed node turns dead on the page and the verdict flips, within 10 s', async () => {
  const page = await newPage()
  await browserLogin(page, nodes[0], 'root', ROOT_PW)
  await until('three alive and a yes', async () =>
    await page.$$eval('#members tr[data-status="alive"]', rows => rows.length) === 3 &&
    await page.$eval('#verdict', el => el.getAttribute('data-ok')) === 'true', 30_000, 300)
  await kill(nodes[2])
  const took = await until('node3 dead on the page and the verdict no', async () =>
    await page.$eval('#members tr[data-name="node3"]', el => el.getAttribute('data-status')) === 'dead' &&
    await page.$eval('#verdict', el => el.getAttribute('data-ok')) === 'false', 10_000, 200)
  const reason = await page.$eval('#verdict', el => el.textContent ?? '')
  assert.match(reason, /^Can the grid lose a node now\? No: /)
  assert.ok(reason.includes('node3'), reason)
  await shot(page, 'grid-dead')
  await page.browserContext().close()
  process.stdout.write(`# node3 shown dead with the verdict flipped ${took} ms after the kill was seen\n`)
})

test('browser: the dead node3 forgotten from node1\'s Nodes page (with confirmation); node2 drops it too', async () => {
  const page = await newPage({ acceptConfirm: true })
  await browserLogin(page, nodes[0], 'root', ROOT_PW)
  await page.evaluate(() => { (globalThis as any).location.hash = '#nodes' })
  // an alive member has Restart and no Forget; the dead one has Forget only
  await page.waitForSelector('#nodes tr[data-name="node2"] button.restart')
  assert.equal(await page.$('#nodes tr[data-name="node2"] button.forget'), null)
  await page.waitForSelector('#nodes tr[data-name="node3"] button.forget', { timeout: 20_000 })
  assert.equal(await page.$('#nodes tr[data-name="node3"] button.restart'), null)
  await page.click('#nodes tr[data-name="node3"] button.forget')
  await page.waitForFunction(() => (globalThis as any).document.querySelector('#nodes tr[data-name="node3"]') === null, { timeout: 10_000 })
  const on2 = async (): Promise<string[]> =>
    (await call(nodes[1], 'GET', '/v1/status', { headers: { authorization: `Bearer ${nodes[1].token}` } })).json.grid.members.map((m: { name: string }) => m.name)
  await until('node3 gone from node2', async () => !(await on2()).includes('node3'), 15_000, 300)
  assert.ok(dialogs.some(d => d.startsWith('confirm: Forget node3 for good?')), dialogs.join('\n'))
  await page.browserContext().close()
})

test('no page threw or broke its Content-Security-Policy along the way', () => {
  assert.deepEqual(pageErrors, [])
})
