import { z } from 'zod';

/** A canonical lower- or upper-case UUID string (any version). */
export const Uuid = z
  .string()
  .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a UUID')
  .transform((s) => s.toLowerCase());
/** A UUID string. */
export type Uuid = z.infer<typeof Uuid>;

/** Route params carrying one `:id`. */
export const IdParams = z.object({ id: Uuid });
/** Route params carrying one `:id`. */
export type IdParams = z.infer<typeof IdParams>;

/** A DNS-label-like name: lower-case letters, digits and dashes, 1-63 chars. */
export const ResourceName = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'must be lower-case letters, digits and dashes, not starting or ending with a dash');

/** Labels: short keys to short values. */
export const Labels = z
  .record(
    z
      .string()
      .min(1)
      .max(63)
      .regex(/^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$/, 'invalid label key'),
    z.string().max(255),
  )
  .refine((l) => Object.keys(l).length <= 64, 'at most 64 labels');
/** Labels: short keys to short values. */
export type Labels = z.infer<typeof Labels>;

/** Environment variables passed to an agent. */
export const EnvVars = z
  .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'invalid environment variable name').max(255), z.string().max(65536))
  .refine((e) => Object.keys(e).length <= 256, 'at most 256 variables');
/** Environment variables passed to an agent. */
export type EnvVars = z.infer<typeof EnvVars>;

/** ISO-8601 timestamp with offset, as sent and received on the wire. */
export const Timestamp = z.iso.datetime({ offset: true });
