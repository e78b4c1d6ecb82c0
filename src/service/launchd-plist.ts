import {xmlText} from './escape.js'
import {launchdLabel, type ServiceSpec} from './spec.js'

/** A plist value, as far as occ's agent needs one. */
export type PlistValue = boolean | number | PlistValue[] | string | {[key: string]: PlistValue}

/**
 * The launchd agent as a plain object (what the XML must parse back to). launchd has no
 * ExecStartPre and no start limit: it retries a failed start every ThrottleInterval seconds
 * for as long as the job is loaded, so an engine that comes up late (Docker Desktop after login)
 * is simply picked up by a later attempt.
 */
export function launchdAgent(spec: ServiceSpec): Record<string, PlistValue> {
  return {
    EnvironmentVariables: Object.fromEntries(spec.environment),
    // SIGTERM, then SIGKILL after this long: the listener finishes its step and writes its result.
    ExitTimeOut: spec.stopTimeoutSec,
    // Restart when start --no-daemon exits non-zero (the container died) or crashes; an exit 0
    // (occ stop) leaves it stopped.
    KeepAlive: {Crashed: true, SuccessfulExit: false},
    Label: launchdLabel(spec.instance),
    ProgramArguments: spec.command,
    RunAtLoad: true,
    StandardErrorPath: spec.stderrPath,
    StandardOutPath: spec.stdoutPath,
    ThrottleInterval: spec.restartDelaySec,
    WorkingDirectory: spec.workingDirectory,
  }
}

export function renderLaunchdPlist(spec: ServiceSpec): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    // No double hyphen may appear inside an XML comment, hence -f.
    '<!-- Written by `occ install`. Regenerate with `occ install -f`; edits here are overwritten. -->',
    '<plist version="1.0">',
    ...plistValue(launchdAgent(spec), ''),
    '</plist>',
    '',
  ].join('\n')
}

function plistValue(value: PlistValue, indent: string): string[] {
  if (typeof value === 'boolean') return [`${indent}<${value}/>`]
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new TypeError(`plist integers only (got ${value})`)
    return [`${indent}<integer>${value}</integer>`]
  }

  if (typeof value === 'string') return [`${indent}<string>${xmlText(value)}</string>`]
  if (Array.isArray(value)) {
    return [`${indent}<array>`, ...value.flatMap((item) => plistValue(item, `${indent}\t`)), `${indent}</array>`]
  }

  const keys = Object.keys(value).sort()
  return [
    `${indent}<dict>`,
    ...keys.flatMap((key) => [`${indent}\t<key>${xmlText(key)}</key>`, ...plistValue(value[key], `${indent}\t`)]),
    `${indent}</dict>`,
  ]
}
