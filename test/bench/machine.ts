// What the figures were taken on: cores, CPU model, RAM, the disk under the data directories (and its fsync
// latency, which bounds every durable write), kernel, Node, load average, date and commit.

import { execFileSync } from 'node:child_process'
import { closeSync, fsyncSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'

const FSYNC_PROBES = 50 // 4 KiB writes each followed by fsync

export interface Machine {
  cores: number
  cpuModel: string
  ramGiB: number
  disk: string
  fsyncMs: number
  kernel: string
  node: string
  loadAvg1m: number
  date: string
  commit: string
}

export function describeMachine (repo: string): Machine {
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    ramGiB: Math.round(totalmem() / 2 ** 30 * 10) / 10,
    disk: disk(tmpdir()),
    fsyncMs: fsyncLatencyMs(tmpdir()),
    kernel: release(),
    node: process.version,
    loadAvg1m: loadavg()[0],
    date: new Date().toISOString(),
    commit: commit(repo)
  }
}

function disk (dir: string): string {
  try {
    const [source, fstype, size] = execFileSync('df', ['--output=source,fstype,size', '-B1', dir], { encoding: 'utf8' })
      .trim().split('\n')[1].trim().split(/\s+/)
    const dev = source.replace(/^\/dev\//, '').replace(/\d+$/, '').replace(/p$/, '')
    let kind = 'unknown medium'
    try {
      kind = readFileSync(`/sys/block/${dev}/queue/rotational`, 'utf8').trim() === '1' ? 'reports rotational' : 'non-rotational'
    } catch {}
    let model = ''
    try { model = readFileSync(`/sys/block/${dev}/device/model`, 'utf8').trim() } catch {}
    const virtio = dev.startsWith('vd') ? 'virtio block device' : ''
    return [`${source} (${fstype}, ${Math.round(Number(size) / 1e9)} GB`, kind, virtio, model].filter(s => s !== '').join(', ') + ')'
  } catch {
    return 'unknown'
  }
}

function fsyncLatencyMs (dir: string): number {
  const file = join(dir, `mailgrid-bench-fsync-${process.pid}`)
  const block = Buffer.alloc(4096, 1)
  const fd = openSync(file, 'w')
  try {
    const t0 = performance.now()
    for (let i = 0; i < FSYNC_PROBES; i++) {
      writeSync(fd, block)
      fsyncSync(fd)
    }
    return (performance.now() - t0) / FSYNC_PROBES
  } finally {
    closeSync(fd)
    rmSync(file, { force: true })
  }
}

function commit (repo: string): string {
  try {
    const sha = execFileSync('git', ['-C', repo, 'rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['-C', repo, 'status', '--porcelain', '--untracked-files=no', '--', 'node', 'store', 'test/bench'], { encoding: 'utf8' }).trim() !== ''
    return dirty ? `${sha} (with uncommitted changes in node/, store/ or test/bench/)` : sha
  } catch {
    return 'unknown'
  }
}
