import {performance} from 'node:perf_hooks'

import type {PullEvent} from '../docker/image.js'

/** Where a pull stands: layers seen and done, bytes downloaded of the sizes known so far. */
export interface PullSnapshot {
  layers: number
  layersDone: number
  bytesDone: number
  bytesTotal: number
}

interface LayerState {
  current: number
  total: number
  done: boolean
  /** It was already in the engine (no download). */
  cached: boolean
}

/** Events that belong to a layer (the first event's id is the tag, "Pulling from …"). */
const LAYER_STATUSES = /^(Pulling fs layer|Waiting|Downloading|Verifying Checksum|Download complete|Extracting|Pull complete|Already exists|Retrying)/

export type LayerChange = {kind: 'done'; id: string; bytes: number; cached: boolean} | {kind: 'progress'} | {kind: 'none'}

/** Folds the Engine's pull events into per-layer state (pure; unit-tested). */
export class PullTracker {
  private readonly layers = new Map<string, LayerState>()

  onEvent(event: PullEvent): LayerChange {
    const id = event.id
    const status = event.status ?? ''
    if (!id || !LAYER_STATUSES.test(status)) return {kind: 'none'}
    let layer = this.layers.get(id)
    if (!layer) {
      layer = {cached: false, current: 0, done: false, total: 0}
      this.layers.set(id, layer)
    }

    if (layer.done) return {kind: 'none'}
    const detail = event.progressDetail ?? {}
    if (status.startsWith('Downloading')) {
      if (typeof detail.total === 'number' && detail.total > 0) layer.total = detail.total
      if (typeof detail.current === 'number' && detail.current >= 0) layer.current = Math.min(detail.current, layer.total || detail.current)
      return {kind: 'progress'}
    }

    if (status.startsWith('Download complete') || status.startsWith('Verifying Checksum')) {
      if (layer.total > 0) layer.current = layer.total
      return {kind: 'progress'}
    }

    if (status.startsWith('Already exists') || status.startsWith('Pull complete')) {
      layer.done = true
      layer.cached = status.startsWith('Already exists')
      if (layer.total > 0) layer.current = layer.total
      return {bytes: layer.total, cached: layer.cached, id, kind: 'done'}
    }

    return {kind: 'progress'}
  }

  snapshot(): PullSnapshot {
    let bytesDone = 0
    let bytesTotal = 0
    let layersDone = 0
    for (const layer of this.layers.values()) {
      bytesDone += layer.current
      bytesTotal += layer.total
      if (layer.done) layersDone += 1
    }

    return {bytesDone, bytesTotal, layers: this.layers.size, layersDone}
  }
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  const units = ['KB', 'MB', 'GB', 'TB']
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }

  return `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`
}

export function formatSnapshot(snapshot: PullSnapshot): string {
  const bytes = snapshot.bytesTotal > 0 ? `, ${formatBytes(snapshot.bytesDone)} of ${formatBytes(snapshot.bytesTotal)} downloaded` : ''
  return `${snapshot.layersDone}/${snapshot.layers} layers done${bytes}`
}

export interface PullViewOptions {
  /** --json or -q: nothing at all. */
  silent: boolean
  /** stderr is a terminal (and TERM is not dumb): one line rewritten in place. */
  tty: boolean
  write: (text: string) => void
  /** ms between two in-place redraws (default 100). */
  redrawMs?: number
  now?: () => number
}

export interface PullView {
  onEvent(event: PullEvent): void
  /** Ends the in-place line, if any. */
  end(): void
}

/**
 * How a pull shows: on a terminal one line rewritten in place with the layers done and the bytes
 * downloaded; otherwise a plain line per finished layer (and per layer already present, in one
 * line); under --json or -q nothing.
 */
export function createPullView(options: PullViewOptions): PullView {
  const tracker = new PullTracker()
  // The redraw rate is an interval: the monotonic clock.
  const now = options.now ?? (() => performance.now())
  let lastDraw = Number.NEGATIVE_INFINITY
  let drawn = false
  let cachedCount = 0
  return {
    end() {
      if (options.silent) return
      if (options.tty && drawn) {
        options.write(`\r\u001B[2KPull: ${formatSnapshot(tracker.snapshot())}\n`)
        drawn = false
      } else if (!options.tty && cachedCount > 0) {
        options.write(`${cachedCount} layer${cachedCount === 1 ? '' : 's'} already present\n`)
        cachedCount = 0
      }
    },
    onEvent(event) {
      const change = tracker.onEvent(event)
      if (options.silent || change.kind === 'none') return
      const snapshot = tracker.snapshot()
      if (options.tty) {
        const at = now()
        if (change.kind === 'progress' && at - lastDraw < (options.redrawMs ?? 100)) return
        lastDraw = at
        drawn = true
        options.write(`\r\u001B[2KPulling: ${formatSnapshot(snapshot)}`)
        return
      }

      if (change.kind !== 'done') return
      if (change.cached) {
        cachedCount += 1
        return
      }

      const size = change.bytes > 0 ? ` (${formatBytes(change.bytes)})` : ''
      options.write(`Layer ${change.id} pulled${size}: ${formatSnapshot(snapshot)}\n`)
    },
  }
}
