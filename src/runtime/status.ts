import type * as z from 'zod'

import type {ContainerState, HealthProbe, Runtime} from './runtime.js'
import type {statusViewSchema} from './status-schema.js'
import {BOOTSTRAP_HELPER, iotpInfo, parseBootstrapAnswer, unavailableIotp, type IotpInfo} from './users/iotp.js'

export type OpencodeHealthState = 'check_failed' | 'healthy' | 'starting' | 'unhealthy'
export type BrokerHealthState = 'check_failed' | 'degraded' | 'healthy' | 'unhealthy'

export interface OpencodeHealth {
  state: OpencodeHealthState
  /** Human label, as the Rust occ prints it: Healthy / Starting / Unhealthy (HTTP n) / Check failed. */
  label: string
  httpStatus?: number
  /** Version reported by /global/health, when healthy. */
  version?: string
}

export interface BrokerHealth {
  state: BrokerHealthState
  label: string
}

/** Facts read inside the sandbox in one exec. Everything here came from the sandbox: untrusted. */
export interface SandboxFacts {
  /** The installed version as recorded in /opt/opencode/VERSION (never by running opencode). */
  opencodeVersion?: string
  commit?: string
  imageVersion?: string
  brokerProcess?: boolean
  brokerSocket?: boolean
  /** The release store's journal: a release switched in and not verified yet (see release-store.sh). */
  unverifiedRelease?: {release: string; previous?: string; previousCommit?: string}
  /** The first-login helper's status answer (parsed strictly), or why there is none. */
  iotp?: IotpInfo
}

/**
 * One exec answers every in-sandbox question (an exec costs ~50 ms): one `key=value` line per
 * fact, so more facts can be added to the same script. Constant text, no input. It never runs
 * opencode (`opencode --version` of the real binary costs 1.3–2.5 s of CPU): the version comes
 * from the health body, or from the VERSION file a release records when opencode is down.
 */
export const SANDBOX_FACTS_SCRIPT = [
  'printf "version=%s\\n" "$(head -c 200 /opt/opencode/VERSION 2>/dev/null | head -n 1)"',
  'printf "commit=%s\\n" "$(head -c 200 /opt/opencode/COMMIT 2>/dev/null | head -n 1)"',
  'printf "image_version=%s\\n" "$(head -c 200 /etc/opencode-cloud-version 2>/dev/null | head -n 1)"',
  'if [ -d /run/systemd/system ]; then systemctl is-active --quiet opencode-broker.service && echo broker_process=1 || echo broker_process=0;' +
    ' else pgrep -x opencode-broker >/dev/null 2>&1 && echo broker_process=1 || echo broker_process=0; fi',
  'test -S /run/opencode/auth.sock && echo broker_socket=1 || echo broker_socket=0',
  // The release store's journal (a file only while a switched-in release is not verified).
  "[ -f /opt/opencode/.journal ] && head -c 2000 /opt/opencode/.journal | sed -n 's/^release=/unverified=/p;s/^previous=/unverified_previous=/p;s/^previous_commit=/unverified_previous_commit=/p'",
  // The IOTP state: "$@" is empty or --include-secret (occ status --show-secrets), nothing else.
  `if [ -x ${BOOTSTRAP_HELPER} ]; then printf "iotp=%s\\n" "$(${BOOTSTRAP_HELPER} status "$@" 2>/dev/null | head -c 4096 | tr -d "\\n")"; else echo iotp_missing=1; fi`,
].join('\n')

/** argv of the one facts exec; the IOTP value is asked for only when it will be shown. */
export function sandboxFactsArgv(includeSecret = false): string[] {
  return ['sh', '-c', SANDBOX_FACTS_SCRIPT, 'occ-facts', ...(includeSecret ? ['--include-secret'] : [])]
}

const MAX_FACT = 120

/** Strips control characters and caps length: sandbox text is shown in a terminal. */
export function cleanText(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  // eslint-disable-next-line no-control-regex
  const clean = value.replaceAll(/[\u0000-\u001F\u007F-\u009F]/g, '').trim().slice(0, MAX_FACT)
  return clean === '' ? undefined : clean
}

export function parseSandboxFacts(stdout: string): SandboxFacts {
  const facts: SandboxFacts = {}
  for (const line of stdout.split('\n').slice(0, 20)) {
    const eq = line.indexOf('=')
    if (eq <= 0) continue
    const key = line.slice(0, eq)
    const value = line.slice(eq + 1)
    switch (key) {
      case 'version': {
        facts.opencodeVersion = cleanText(value)
        break
      }

      case 'commit': {
        facts.commit = extractCommit(value)
        break
      }

      case 'image_version': {
        facts.imageVersion = cleanText(value)
        break
      }

      case 'broker_process': {
        facts.brokerProcess = value === '1'
        break
      }

      case 'broker_socket': {
        facts.brokerSocket = value === '1'
        break
      }

      case 'unverified': {
        const release = releaseName(value)
        if (release) facts.unverifiedRelease = {...facts.unverifiedRelease, release}
        break
      }

      case 'unverified_previous': {
        const previous = releaseName(value)
        if (previous && facts.unverifiedRelease) facts.unverifiedRelease.previous = previous
        break
      }

      case 'unverified_previous_commit': {
        const commit = value.trim().toLowerCase()
        if (/^[0-9a-f]{40}$/.test(commit) && facts.unverifiedRelease) facts.unverifiedRelease.previousCommit = commit
        break
      }

      case 'iotp': {
        facts.iotp = iotpInfo(parseBootstrapAnswer(value))
        break
      }

      case 'iotp_missing': {
        facts.iotp = iotpInfo({problem: `the image has no ${BOOTSTRAP_HELPER}`})
        break
      }
    }
  }

  return facts
}

/** A release directory name as the release store writes them (a commit, or image/<name>). */
function releaseName(value: string): string | undefined {
  const name = value.trim()
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(name) ? name : undefined
}

/** The first hex token of 7–40 chars that has a letter a–f (so "20260131" is not a commit). */
export function extractCommit(text: string): string | undefined {
  for (const token of text.trim().split(/\s+/)) {
    const lower = token.toLowerCase()
    if (/^[0-9a-f]{7,40}$/.test(lower) && /[a-f]/.test(lower)) return lower
  }

  return undefined
}

export function mapOpencodeHealth(probe: HealthProbe): OpencodeHealth {
  switch (probe.kind) {
    case 'refused':
    case 'timeout': {
      return {label: 'Starting', state: 'starting'}
    }

    case 'http': {
      if (probe.status < 200 || probe.status >= 300) {
        return {httpStatus: probe.status, label: `Unhealthy (HTTP ${probe.status})`, state: 'unhealthy'}
      }

      const body = probe.body as {healthy?: unknown; version?: unknown} | undefined
      if (!body || typeof body !== 'object' || typeof body.healthy !== 'boolean') {
        return {httpStatus: probe.status, label: 'Check failed', state: 'check_failed'}
      }

      if (!body.healthy) return {httpStatus: probe.status, label: 'Unhealthy (reported)', state: 'unhealthy'}
      const version = typeof body.version === 'string' ? cleanText(body.version) : undefined
      return {httpStatus: probe.status, label: 'Healthy', state: 'healthy', version}
    }

    default: {
      return {label: 'Check failed', state: 'check_failed'}
    }
  }
}

export function mapBrokerHealth(process: boolean | undefined, socket: boolean | undefined): BrokerHealth {
  if (process === undefined || socket === undefined) return {label: 'Check failed', state: 'check_failed'}
  if (process && socket) return {label: 'Healthy', state: 'healthy'}
  if (process || socket) return {label: 'Degraded', state: 'degraded'}
  return {label: 'Unhealthy', state: 'unhealthy'}
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds))
  const days = Math.floor(s / 86_400)
  const hours = Math.floor((s % 86_400) / 3600)
  const minutes = Math.floor((s % 3600) / 60)
  if (days > 0) return hours > 0 ? `${days}d ${hours}h` : `${days}d`
  if (hours > 0) return minutes > 0 ? `${hours}h ${minutes}m` : `${hours}h`
  if (minutes > 0) return s % 60 > 0 ? `${minutes}m ${s % 60}s` : `${minutes}m`
  return `${s}s`
}

/** The "Image update:" line of occ status. */
export function describeImageUpdate(update: NonNullable<StatusView['image']['update']>, nowMs = Date.now()): string {
  const checked = update.checkedAt ? ` (checked ${formatDuration((nowMs - Date.parse(update.checkedAt)) / 1000)} ago)` : ''
  switch (update.state) {
    case 'available': {
      return `a newer image is available${checked}: occ update container`
    }

    case 'up-to-date': {
      return `up to date${checked}`
    }

    case 'disabled':
    case 'pinned': {
      return update.detail ?? update.state
    }

    case 'unknown': {
      return `unknown: ${update.detail ?? 'not checked'}${checked}`
    }
  }
}

/** `occ status --json`: a stable, documented object (schemas/status.schema.json). */
export type StatusView = z.infer<typeof statusViewSchema>

export interface CollectOptions {
  healthTimeoutMs?: number
  execTimeoutMs?: number
  /** Put the IOTP itself into the view (occ status --show-secrets); otherwise only its state. */
  showSecrets?: boolean
  now?: () => number
}

/**
 * The shared status model: container state first (it says whether there is anything to probe),
 * then the HTTP health probe and the one in-sandbox exec run concurrently, each with a timeout.
 */
export async function collectStatus(runtime: Runtime, options: CollectOptions = {}): Promise<StatusView> {
  // The exec starts at once, beside the inspect: when the container turns out not to run, its
  // (failed) answer is simply not used.
  const factsPromise = runtime
    .exec(sandboxFactsArgv(options.showSecrets), {timeoutMs: options.execTimeoutMs ?? 5000, user: 'root'})
    .then((result) => parseSandboxFacts(result.stdout))
    .catch(() => undefined)
  const state = await runtime.containerState()
  const view = emptyView(runtime, state, options.now ?? Date.now)
  if (!state.running) return view

  const [probe, facts, url] = await Promise.all([
    runtime.probeHealth(options.healthTimeoutMs ?? 3000, state),
    factsPromise,
    runtime.opencodeUrl(state),
  ])
  view.opencode.url = url ?? null
  view.opencode.health = mapOpencodeHealth(probe)
  // The running opencode's own word first; the recorded VERSION only when it does not answer.
  view.opencode.version = view.opencode.health.version ?? facts?.opencodeVersion ?? null
  if (facts) {
    const unverified = facts.unverifiedRelease
    // While a release is unverified, COMMIT may already name it (an update killed inside its
    // verify): what is installed is what the journal recorded before the switch.
    const installed = unverified ? unverified.previousCommit : facts.commit
    view.opencode.commit = installed ?? null
    view.opencode.commitShort = installed?.slice(0, 7) ?? null
    view.opencode.unverifiedRelease = unverified
      ? {previous: unverified.previous ?? null, previousCommit: unverified.previousCommit ?? null, release: unverified.release}
      : null
    view.image.version = facts.imageVersion ?? null
    view.broker = {
      health: mapBrokerHealth(facts.brokerProcess, facts.brokerSocket),
      process: facts.brokerProcess ?? null,
      socket: facts.brokerSocket ?? null,
    }
  } else {
    view.broker = {health: mapBrokerHealth(undefined, undefined), process: null, socket: null}
  }

  const iotp = facts?.iotp ?? iotpInfo({problem: 'the sandbox could not be asked'})
  view.iotp = iotpView(iotp, options.showSecrets ?? false)

  return view
}

/** The IOTP as status shows it: the value only when asked for (and there is one). */
export function iotpView(iotp: IotpInfo, showSecrets: boolean): StatusView['iotp'] {
  return {
    createdAt: iotp.createdAt,
    detail: iotp.detail,
    label: iotp.label,
    masked: iotp.state === 'active' && !showSecrets,
    state: iotp.state,
    value: showSecrets ? iotp.otp : null,
  }
}

function emptyView(runtime: Runtime, state: ContainerState, now: () => number): StatusView {
  const started = state.startedAt ? Date.parse(state.startedAt) : Number.NaN
  return {
    broker: {health: null, process: null, socket: null},
    container: {
      exists: state.exists,
      // Docker keeps the previous run's FinishedAt while the container runs again.
      finishedAt: state.running ? null : (state.finishedAt ?? null),
      id: state.id ?? null,
      image: state.image ?? null,
      imageId: state.imageId ?? null,
      name: state.name,
      running: state.running,
      startedAt: state.startedAt ?? null,
      state: state.status,
      uptimeSeconds: state.running && Number.isFinite(started) ? Math.max(0, Math.floor((now() - started) / 1000)) : null,
    },
    image: {digest: null, update: null, version: state.labels['org.opencode-cloud.version'] ?? null},
    instance: runtime.names.instance ?? null,
    iotp: iotpView(unavailableIotp(state.exists ? 'container not running' : 'no container'), false),
    listener: null,
    mounts: state.mounts,
    opencode: {commit: null, commitShort: null, health: null, unverifiedRelease: null, url: null, version: null},
    port: {bindAddress: state.hostIp ?? null, container: 3000, host: state.hostPort ?? null},
    runtime: runtime.kind,
    schemaVersion: 1,
    security: null,
    service: null,
  }
}
