// appliance/metrics.ts on its own: what NodeMetrics counts comes out as Prometheus text, histograms cumulative.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createNodeMetrics } from '../../appliance/metrics.ts'

/** The sample lines of one family, as `name{labels} value` → value. */
function samples (text: string, family: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = /^(\S+?(?:\{[^}]*\})?) (\S+)$/.exec(line)
    if (m !== null && !line.startsWith('#') && (m[1] === family || m[1].startsWith(family + '{') || m[1].startsWith(family + '_'))) out.set(m[1], Number(m[2]))
  }
  return out
}

test('counters start at 0 for every known label, add what node/ reports, and keep labels apart', async () => {
  const m = createNodeMetrics({ defaultMetrics: false })
  assert.equal(m.contentType, 'text/plain; version=0.0.4; charset=utf-8')
  let text = await m.render()
  assert.match(text, /^# TYPE mailgrid_commands_total counter$/m)
  assert.equal(samples(text, 'mailgrid_commands_total').get('mailgrid_commands_total{protocol="imap"}'), 0)
  assert.equal(samples(text, 'mailgrid_sent_bytes_total').get('mailgrid_sent_bytes_total'), 0)
  m.node.inc('commands', 'imap')
  m.node.inc('commands', 'imap')
  m.node.inc('commands', 'pop3', 5)
  m.node.inc('deliveriesOut', 'deferred')
  m.node.inc('bytesOut', 'smtp', 1234) // a family without a label: the label is ignored
  m.node.inc('commands', 'lmtp') // a label first seen now gets its own sample
  text = await m.render()
  const commands = samples(text, 'mailgrid_commands_total')
  assert.deepEqual([commands.get('mailgrid_commands_total{protocol="imap"}'), commands.get('mailgrid_commands_total{protocol="pop3"}'),
    commands.get('mailgrid_commands_total{protocol="smtp"}'), commands.get('mailgrid_commands_total{protocol="lmtp"}')], [2, 5, 0, 1])
  assert.equal(samples(text, 'mailgrid_deliveries_out_total').get('mailgrid_deliveries_out_total{result="deferred"}'), 1)
  assert.equal(samples(text, 'mailgrid_sent_bytes_total').get('mailgrid_sent_bytes_total'), 1234)
  // two registries count apart
  const other = createNodeMetrics({ defaultMetrics: false })
  assert.equal(samples(await other.render(), 'mailgrid_commands_total').get('mailgrid_commands_total{protocol="imap"}'), 0)
})

test('the command histogram: cumulative buckets, +Inf, _sum and _count per protocol', async () => {
  const m = createNodeMetrics({ defaultMetrics: false })
  for (const s of [0.0005, 0.001, 0.003, 20]) m.node.observe('commandSeconds', 'imap', s)
  m.node.observe('commandSeconds', 'pop3', 0.2)
  const text = await m.render()
  assert.match(text, /^# TYPE mailgrid_command_duration_seconds histogram$/m)
  const h = samples(text, 'mailgrid_command_duration_seconds')
  const bucket = (le: string, p: string): number | undefined => h.get(`mailgrid_command_duration_seconds_bucket{le="${le}",protocol="${p}"}`)
  assert.deepEqual([bucket('0.001', 'imap'), bucket('0.0025', 'imap'), bucket('0.005', 'imap'), bucket('10', 'imap'), bucket('+Inf', 'imap')], [2, 2, 3, 3, 4])
  assert.equal(h.get('mailgrid_command_duration_seconds_count{protocol="imap"}'), 4)
  assert.ok(Math.abs(h.get('mailgrid_command_duration_seconds_sum{protocol="imap"}')! - 20.0045) < 1e-9)
  assert.deepEqual([bucket('0.1', 'pop3'), bucket('0.25', 'pop3'), bucket('+Inf', 'pop3')], [0, 1, 1])
})
