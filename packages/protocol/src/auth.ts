import { z } from 'zod';
import { Timestamp, Uuid } from './ids.js';

/** What an API key may do; a key without `write` can only read. */
export const ApiKeyScope = z.enum(['read', 'write']);
/** What an API key may do. */
export type ApiKeyScope = z.infer<typeof ApiKeyScope>;

/** `POST /api-keys` body. */
export const CreateApiKeyRequest = z.strictObject({
  name: z.string().trim().min(1).max(100),
  expiresAt: Timestamp.optional(),
  scopes: z.array(ApiKeyScope).min(1).max(2).optional(),
});
/** `POST /api-keys` body. */
export type CreateApiKeyRequest = z.infer<typeof CreateApiKeyRequest>;

/** An API key as listed: never the token. */
export const ApiKey = z.object({
  id: Uuid,
  name: z.string(),
  prefix: z.string(),
  scopes: z.array(ApiKeyScope),
  expiresAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  createdAt: z.string(),
});
/** An API key as listed. */
export type ApiKey = z.infer<typeof ApiKey>;

/** `POST /api-keys` response: the only time the token is shown. */
export const CreatedApiKey = z.object({ id: Uuid, name: z.string(), token: z.string(), scopes: z.array(ApiKeyScope), expiresAt: z.string().nullable() });
/** `POST /api-keys` response. */
export type CreatedApiKey = z.infer<typeof CreatedApiKey>;

/** A user account. */
export const User = z.object({
  id: Uuid,
  email: z.string(),
  name: z.string().nullable(),
  isAdmin: z.boolean(),
  createdAt: z.string(),
});
/** A user account. */
export type User = z.infer<typeof User>;

/** `POST /users` body (admin only). */
export const CreateUserRequest = z.strictObject({
  email: z.email().max(254).transform((e) => e.toLowerCase()),
  name: z.string().trim().min(1).max(200).optional(),
  isAdmin: z.boolean().optional(),
});
/** `POST /users` body. */
export type CreateUserRequest = z.infer<typeof CreateUserRequest>;

/** `POST /auth/dev-login` body. */
export const DevLoginRequest = z.strictObject({ email: z.email().max(254).transform((e) => e.toLowerCase()) });
/** `POST /auth/dev-login` body. */
export type DevLoginRequest = z.infer<typeof DevLoginRequest>;

/** `POST /auth/dev-login` response. */
export const DevLoginResponse = z.object({ token: z.string(), expiresAt: z.string(), user: User });
/** `POST /auth/dev-login` response. */
export type DevLoginResponse = z.infer<typeof DevLoginResponse>;

/** `GET /auth/me`: who the bearer token belongs to. */
export const Me = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('user'), user: User, via: z.enum(['jwt', 'api_key']), scopes: z.array(ApiKeyScope) }),
  z.object({ kind: z.literal('agent'), agentId: Uuid, projectId: Uuid }),
]);
/** `GET /auth/me` response. */
export type Me = z.infer<typeof Me>;

/** `POST /admin/signing-keys/rotate` response. */
export const RotatedSigningKey = z.object({ kid: z.string(), createdAt: z.string() });
/** `POST /admin/signing-keys/rotate` response. */
export type RotatedSigningKey = z.infer<typeof RotatedSigningKey>;
