/**
 * occ's public API for plugins (docs/plugins.md): the base class, the hook types, the runtime
 * contract, the lifecycle and status collection occ's own commands use, the error table, the
 * config, and the command-file contract (file names, schemas, listener status).
 * Third-party plugins import from 'opencode-cloud', extend RuntimeCommand and hook 'occ:foreground'.
 * The low-level file primitives of the update listener are in 'opencode-cloud/internal' (no
 * stability promise).
 */
export {RuntimeCommand, containerCommands, toOccError} from './runtime/runtime-command.js'
export type {RuntimeArgs, RuntimeFlags} from './runtime/runtime-command.js'
export type {ForegroundContext, OccHooks, ReleaseRepair} from './runtime/hooks.js'
export {FOREGROUND_EVENT} from './runtime/hooks.js'
export type * from './runtime/runtime.js'
export type {HostRuntime} from './runtime/host-runtime.js'
export type * from './runtime/update-types.js'
export {UPDATE_STEPS} from './runtime/update-types.js'
// The lifecycle and status collection (what start, stop, restart and status run).
export {restartSandbox, resumeInstalledService, startSandbox, stopSandbox} from './runtime/lifecycle.js'
export type {RestartResult, StartOptions, StartResult, StopResult} from './runtime/lifecycle.js'
export {waitUntilReady} from './runtime/readiness.js'
export type {Readiness, ReadinessOptions} from './runtime/readiness.js'
export {collectStatus} from './runtime/status.js'
export type {BrokerHealth, CollectOptions, OpencodeHealth, StatusView} from './runtime/status.js'
export {withHostStatus} from './runtime/host-status.js'
export * from './errors.js'
export {errorJsonSchema} from './error-schema.js'
export type {OccConfig} from './config/schema.js'
export type {OccPaths} from './config/paths.js'
export {resolvePaths} from './config/paths.js'
export {CONTAINER_COMMANDS_DIR, MOUNT_STATE, findStateMount, hostCommandsDir, parseMountSpec} from './config/mounts.js'
export type {MountSpec} from './config/mounts.js'
export {resourceNames} from './config/instance.js'
export type {ResourceNames} from './config/instance.js'
// The command-file contract: names, schemas, refs, and reading the listener's status.
export {COMMANDS_SUBDIR, LISTENER_FILE, MAX_REQUEST_BYTES, REQUEST_FILE, RESULT_FILE} from './protocol/command-files.js'
export * from './protocol/schemas.js'
export * from './protocol/refs.js'
export {describeListener, readListenerStatus, STALE_AFTER_INTERVALS} from './protocol/listener-status.js'
export type {ListenerView, ReadListenerOptions} from './protocol/listener-status.js'
export {JSON_SCHEMAS} from './json-schemas.js'
export type {JsonSchemaEntry} from './json-schemas.js'
