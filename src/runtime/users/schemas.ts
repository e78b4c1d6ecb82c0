import * as z from 'zod'

import {statusViewSchema} from '../status-schema.js'

/** The --json results of `occ user *` and `occ reset iotp` (generated into schemas/). */
const users = z.array(z.string()).describe('every managed login user after the command (what config.users mirrors)')

export const userAddResultSchema = z.object({
  username: z.string(),
  created: z.literal(true),
  generated: z.boolean(),
  password: z.string().nullable().describe('the generated password (only with --generate), else null'),
  users,
})

export const userRemoveResultSchema = z.object({username: z.string(), removed: z.literal(true), users})

export const userListResultSchema = z.object({
  users: z.array(
    z.object({username: z.string(), enabled: z.boolean(), uid: z.number().int(), home: z.string(), shell: z.string()}),
  ),
})

export const userPasswdResultSchema = z.object({
  username: z.string(),
  changed: z.literal(true),
  generated: z.boolean(),
  password: z.string().nullable().describe('the generated password (only with --generate), else null'),
})

export const userEnabledResultSchema = z.object({username: z.string(), enabled: z.boolean(), users})

export const resetIotpResultSchema = z.object({
  iotp: statusViewSchema.shape.iotp.describe('the new initial one-time password, in the shape occ status --json has (value always set, masked false)'),
})

export type UserAddResult = z.infer<typeof userAddResultSchema>
export type UserRemoveResult = z.infer<typeof userRemoveResultSchema>
export type UserListResult = z.infer<typeof userListResultSchema>
export type UserPasswdResult = z.infer<typeof userPasswdResultSchema>
export type UserEnabledResult = z.infer<typeof userEnabledResultSchema>
export type ResetIotpResult = z.infer<typeof resetIotpResultSchema>
