import * as z from 'zod'

/**
 * `occ status --json`, the contract scripts and monitors read. Additive changes only; a
 * breaking change bumps schemaVersion. Generated into schemas/status.schema.json.
 */
const nullableString = z.string().nullable()

export const opencodeHealthSchema = z.object({
  state: z.enum(['healthy', 'starting', 'unhealthy', 'check_failed']),
  label: z.string().describe('Healthy / Starting / Unhealthy (HTTP n) / Check failed'),
  httpStatus: z.number().int().optional(),
  version: z.string().optional(),
})

export const brokerHealthSchema = z.object({
  state: z.enum(['healthy', 'degraded', 'unhealthy', 'check_failed']),
  label: z.string().describe('Healthy / Degraded / Unhealthy / Check failed'),
})

export const listenerViewSchema = z.object({
  state: z.enum(['absent', 'active', 'stale', 'disabled']),
  description: z.string(),
  pid: z.number().int().nullable(),
  activity: z.enum(['idle', 'updating', 'disabled']).nullable(),
  heartbeatAt: nullableString,
})

export const imageUpdateSchema = z.object({
  check: z.enum(['always', 'once', 'never']).describe("the config's update_check"),
  state: z
    .enum(['up-to-date', 'available', 'unknown', 'disabled', 'pinned'])
    .describe('available: the registry serves another image for the tag (occ update container); unknown: not checked yet, the check failed, or the image has no registry digest'),
  remoteDigest: nullableString.describe('what the registry served for the tag at checkedAt'),
  checkedAt: nullableString.describe('when the registry was asked (the answer is cached; status never waits for the registry)'),
  detail: nullableString,
})

export const serviceViewSchema = z.object({
  manager: z.string().describe("systemd, launchd or 'none'"),
  name: z.string().optional(),
  unitPath: z.string().optional(),
  installed: z.boolean(),
  active: z.boolean().optional(),
  state: z.string().optional(),
  linger: z.boolean().optional(),
})

export const statusViewSchema = z.object({
  schemaVersion: z.literal(1),
  runtime: z.enum(['host', 'container']),
  instance: nullableString,
  container: z.object({
    name: z.string(),
    exists: z.boolean(),
    running: z.boolean(),
    state: z.string().describe("Docker's State.Status, or 'missing'"),
    id: nullableString,
    image: nullableString,
    imageId: nullableString.describe('the ID of the image the container was created from'),
    startedAt: nullableString,
    finishedAt: nullableString,
    uptimeSeconds: z.number().int().nullable(),
  }),
  opencode: z.object({
    url: nullableString,
    health: opencodeHealthSchema.nullable(),
    version: nullableString,
    commit: nullableString.describe(
      'the installed (verified) commit: /opt/opencode/COMMIT, or while a release is unverified the commit recorded before it was switched in',
    ),
    commitShort: nullableString,
    unverifiedRelease: z
      .object({release: z.string(), previous: nullableString, previousCommit: nullableString})
      .nullable()
      .describe(
        'A release that was switched in and not verified healthy yet (an update was interrupted): the next update, occ start or occ restart re-verifies it, else rolls back to previous.',
      ),
  }),
  broker: z.object({health: brokerHealthSchema.nullable(), process: z.boolean().nullable(), socket: z.boolean().nullable()}),
  image: z.object({
    version: nullableString,
    digest: nullableString.describe("the running image's registry digest (sha256:…, its RepoDigest for the configured repository); null when it was not pulled from a registry"),
    update: imageUpdateSchema.nullable().describe('whether the registry has a newer image for the configured tag (host runtime only)'),
  }),
  port: z.object({host: z.number().int().nullable(), container: z.literal(3000), bindAddress: nullableString}),
  mounts: z.array(z.object({type: z.string(), source: z.string(), target: z.string(), readOnly: z.boolean()})),
  security: z
    .object({
      bindAddress: z.string(),
      exposure: z.enum(['local-only', 'network-exposed']),
      users: z.array(z.string()),
      trustProxy: z.boolean(),
      rateLimit: z.object({attempts: z.number().int(), windowSeconds: z.number().int()}),
      allowUnauthenticatedNetwork: z.boolean(),
    })
    .nullable()
    .describe('from the host config (host runtime only)'),
  iotp: z
    .object({
      state: z.enum(['active', 'user_exists', 'completed', 'not_initialized', 'invalid_state', 'error', 'unavailable']),
      label: z.string().describe('unused (active) / inactive (users configured) / used (completed) / …, as the Rust occ prints it'),
      createdAt: nullableString,
      value: nullableString.describe('the initial one-time password: only with --show-secrets, else null'),
      masked: z.boolean().describe('true when there is an active IOTP whose value was left out'),
      detail: nullableString,
    })
    .describe('the first-login password (initial one-time password) from the image\'s opencode-cloud-bootstrap'),
  listener: listenerViewSchema.nullable().describe('the update listener (host runtime only)'),
  service: serviceViewSchema.nullable().describe('the service registration (host runtime only)'),
})
