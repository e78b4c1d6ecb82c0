/**
 * occ's public API for plugins: the base class, the hook types, the runtime contract, the
 * config, the command-file protocol and the update plan. Third-party plugins import from
 * 'opencode-cloud' and extend RuntimeCommand / hook 'occ:foreground'.
 */
export {RuntimeCommand, toOccError, CONTAINER_COMMANDS} from './runtime/runtime-command.js'
export type {RuntimeArgs, RuntimeFlags} from './runtime/runtime-command.js'
export type {ForegroundContext, OccHooks} from './runtime/hooks.js'
export {FOREGROUND_EVENT} from './runtime/hooks.js'
export type * from './runtime/runtime.js'
export type * from './runtime/update-types.js'
export {UPDATE_STEPS} from './runtime/update-types.js'
export * from './errors.js'
export type {OccConfig} from './config/schema.js'
export type {OccPaths} from './config/paths.js'
export {resolvePaths} from './config/paths.js'
export {CONTAINER_COMMANDS_DIR, MOUNT_STATE, findStateMount, hostCommandsDir, parseMountSpec} from './config/mounts.js'
export type {MountSpec} from './config/mounts.js'
export {resourceNames} from './config/instance.js'
export type {ResourceNames} from './config/instance.js'
export * from './protocol/index.js'
export {JSON_SCHEMAS} from './json-schemas.js'
export type {JsonSchemaEntry} from './json-schemas.js'
