import * as z from 'zod'

import type {InstanceDataRemoval} from './instance-data.js'
import type {InstallResult, UninstallResult} from './service.js'

/** `occ install --json`. */
export const installResultSchema = z.strictObject({
  action: z.enum(['dry-run', 'installed', 'reinstalled', 'unchanged']),
  manager: z.enum(['launchd', 'systemd']),
  name: z.string().describe('the systemd unit name or the launchd label'),
  unitPath: z.string(),
  wasInstalled: z.boolean().describe('a service file was there before this run'),
  upToDate: z.boolean().optional().describe('the file on disk is exactly what this occ would write'),
  content: z.string().optional().describe('the unit or plist (dry-run only)'),
  active: z.boolean().optional(),
  state: z.string().optional(),
  enabled: z.boolean().optional(),
  reachable: z.boolean().optional(),
  linger: z.boolean().optional().describe('systemd only: lingering is on'),
  warnings: z.array(z.string()),
})

export const instanceDataRemovalSchema = z.strictObject({
  container: z.enum(['absent', 'removed']),
  containerName: z.string(),
  volumesRemoved: z.array(z.string()),
  volumesAbsent: z.array(z.string()),
})

/** `occ uninstall --json`. */
export const uninstallResultSchema = z.strictObject({
  action: z.enum(['not-installed', 'removed']),
  manager: z.enum(['launchd', 'systemd']),
  name: z.string(),
  unitPath: z.string(),
  warnings: z.array(z.string()),
  data: instanceDataRemovalSchema.optional().describe('with --volumes --force'),
})

// The schemas describe the TypeScript results; these fail to compile when the two drift apart.
type Assert<T extends true> = T
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
export type InstallResultMatches = Assert<Same<z.output<typeof installResultSchema>, InstallResult>>
export type UninstallResultMatches = Assert<Same<z.output<typeof uninstallResultSchema>, UninstallResult & {data?: InstanceDataRemoval}>>
