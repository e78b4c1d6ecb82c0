/**
 * @opencode-cloud/update-client: the web UI's side of occ's update button. Zero dependencies;
 * Node >= 20 and Bun. The contract it implements: docs/update-flow.md in the opencode-cloud repo.
 */
export {
  buildUpdateCommand,
  isListenerAlive,
  readListenerStatus,
  readResult,
  requestUpdate,
  type ReadOptions,
  type RequestUpdateOptions,
  type UpdateProgress,
  waitForResult,
  type WaitOptions,
} from './client.js'
export {UpdateClientError, type UpdateClientErrorCode, type UpdateClientErrorDetails} from './errors.js'
export {DEFAULT_COMMANDS_DIR, LISTENER_FILE, MAX_FILE_BYTES, REQUEST_FILE, RESULT_FILE, STALE_AFTER_INTERVALS} from './files.js'
export {compileSchema, type JsonSchema, type Validation, type Validator} from './json-schema.js'
export type {ListenerStatus, UpdateCommand, UpdateResult, UpdateStep} from './types.js'
