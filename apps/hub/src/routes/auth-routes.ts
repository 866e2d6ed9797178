import { CreateApiKeyRequest, CreatedApiKey, ApiKey, CreateUserRequest, DevLoginRequest, DevLoginResponse, GraftError, IdParams, Me, PageQuery, pageOf, RotatedSigningKey, User } from '@graft/protocol';
import { z } from 'zod';
import { apiKeyPrefix, generateApiKey } from '../auth/api-key-token.js';
import { hashToken } from '../auth/token-hash.js';
import { asUser, requireAdmin } from '../domain/access.js';
import { decodeCursor, isUuidKey, toPage } from '../domain/cursor.js';
import { toApiKey, toUser } from '../domain/mappers.js';
import { isUniqueViolation } from '../domain/pg-errors.js';
import { uuidv7 } from '../domain/uuid.js';
import type { HubContext } from '../hub-context.js';
import { route, type RouteSpec } from '../http/route.js';

const ListUsersQuery = PageQuery.extend({ email: z.email().transform((e) => e.toLowerCase()).optional() });

/** Dev login, whoami, API keys, users and signing-key rotation. */
export function authRoutes(ctx: HubContext): RouteSpec[] {
  const { db } = ctx;
  return [
    route({
      method: 'post',
      path: '/api/v1/auth/dev-login',
      summary: 'Log in by email alone (only when GRAFT_DEV_AUTH is on); creates the user on first login',
      tag: 'auth',
      auth: 'none',
      body: DevLoginRequest,
      responses: { 200: DevLoginResponse },
      handler: async ({ body }) => {
        if (!ctx.settings.devAuth) throw new GraftError('not_found', 'dev login is disabled (set GRAFT_DEV_AUTH=1 on the hub to enable it)');
        await db.insertInto('users').values({ id: uuidv7(), email: body.email, name: null }).onConflict((oc) => oc.column('email').doNothing()).execute();
        const user = await db.selectFrom('users').selectAll().where('email', '=', body.email).executeTakeFirstOrThrow();
        const signed = ctx.jwt.sign({ typ: 'user', sub: user.id }, ctx.settings.userTokenTtlSecs);
        ctx.log.info('auth.dev_login', { userId: user.id });
        return { status: 200, body: { token: signed.token, expiresAt: signed.expiresAt.toISOString(), user: toUser(user) } };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/auth/me',
      summary: 'Who the bearer token belongs to',
      tag: 'auth',
      auth: 'any',
      responses: { 200: Me },
      handler: async ({ principal }) => {
        if (principal.kind === 'agent') return { status: 200, body: { kind: 'agent', agentId: principal.agentId, projectId: principal.projectId } };
        const u = asUser(principal);
        const user = await db.selectFrom('users').selectAll().where('id', '=', u.userId).executeTakeFirstOrThrow();
        return { status: 200, body: { kind: 'user', user: toUser(user), via: u.via, scopes: u.scopes } };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/api-keys',
      summary: 'Create an API key for the caller; the token is shown only in this response',
      tag: 'auth',
      auth: 'user',
      body: CreateApiKeyRequest,
      responses: { 201: CreatedApiKey },
      handler: async ({ body, principal }) => {
        const user = asUser(principal);
        const expiresAt = body.expiresAt ? new Date(body.expiresAt) : null;
        if (expiresAt && expiresAt.getTime() <= Date.now()) throw new GraftError('validation_error', 'expiresAt must be in the future', { field: 'expiresAt' });
        // A key never grants more than the key that created it.
        const scopes = [...new Set(body.scopes ?? user.scopes)];
        if (scopes.some((s) => !user.scopes.includes(s))) throw new GraftError('forbidden', 'cannot create a key with scopes the calling key lacks');
        const token = generateApiKey();
        const id = uuidv7();
        await db.insertInto('api_keys').values({ id, user_id: user.userId, name: body.name, token_hash: hashToken(token), prefix: apiKeyPrefix(token), scopes, expires_at: expiresAt }).execute();
        ctx.log.info('api_key.created', { apiKeyId: id, userId: user.userId });
        return { status: 201, body: { id, name: body.name, token, scopes, expiresAt: expiresAt?.toISOString() ?? null } };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/api-keys',
      summary: "List the caller's API keys (never the tokens)",
      tag: 'auth',
      auth: 'user',
      query: PageQuery,
      responses: { 200: pageOf(ApiKey) },
      handler: async ({ query, principal }) => {
        const user = asUser(principal);
        const after = decodeCursor(query.cursor, isUuidKey);
        let q = db.selectFrom('api_keys').selectAll().where('user_id', '=', user.userId);
        if (after) q = q.where('id', '>', after);
        const rows = await q.orderBy('id').limit(query.limit + 1).execute();
        return { status: 200, body: toPage(rows, query.limit, (r) => r.id, toApiKey) };
      },
    }),
    route({
      method: 'delete',
      path: '/api/v1/api-keys/:id',
      summary: 'Revoke an API key at once',
      tag: 'auth',
      auth: 'user',
      params: IdParams,
      responses: { 204: null },
      handler: async ({ params, principal }) => {
        const user = asUser(principal);
        let q = db.updateTable('api_keys').set({ revoked_at: new Date() }).where('id', '=', params.id).where('revoked_at', 'is', null);
        if (!user.isAdmin) q = q.where('user_id', '=', user.userId);
        const r = await q.executeTakeFirst();
        if (r.numUpdatedRows === 0n) {
          // Revoking twice is idempotent for the owner; other users learn nothing about the key.
          const exists = await db.selectFrom('api_keys').select(['user_id', 'revoked_at']).where('id', '=', params.id).executeTakeFirst();
          if (!exists || (!user.isAdmin && exists.user_id !== user.userId)) throw new GraftError('not_found', 'API key not found');
        } else {
          ctx.log.info('api_key.revoked', { apiKeyId: params.id, by: user.userId });
        }
        return { status: 204 };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/users',
      summary: 'Create a user (platform admin)',
      tag: 'users',
      auth: 'user',
      body: CreateUserRequest,
      responses: { 201: User },
      handler: async ({ body, principal }) => {
        requireAdmin(principal);
        try {
          const row = await db
            .insertInto('users')
            .values({ id: uuidv7(), email: body.email, name: body.name ?? null, is_admin: body.isAdmin ?? false })
            .returningAll()
            .executeTakeFirstOrThrow();
          return { status: 201, body: toUser(row) };
        } catch (err) {
          if (isUniqueViolation(err)) throw new GraftError('conflict', `a user with email ${body.email} already exists`);
          throw err;
        }
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/users',
      summary: 'List users (platform admin), or look one up by exact ?email= (any user)',
      tag: 'users',
      auth: 'user',
      query: ListUsersQuery,
      responses: { 200: pageOf(User) },
      handler: async ({ query, principal }) => {
        const user = asUser(principal);
        if (!user.isAdmin && query.email === undefined) throw new GraftError('forbidden', 'listing all users requires a platform admin; look a user up with ?email=');
        const after = decodeCursor(query.cursor, isUuidKey);
        let q = db.selectFrom('users').selectAll();
        if (query.email !== undefined) q = q.where('email', '=', query.email);
        if (after) q = q.where('id', '>', after);
        const rows = await q.orderBy('id').limit(query.limit + 1).execute();
        return { status: 200, body: toPage(rows, query.limit, (r) => r.id, toUser) };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/admin/signing-keys/rotate',
      summary: 'Start signing JWTs with a new key; tokens signed by older keys stay valid until they expire',
      tag: 'admin',
      auth: 'user',
      responses: { 201: RotatedSigningKey },
      handler: async ({ principal }) => {
        requireAdmin(principal);
        const key = await ctx.signingKeys.rotate();
        ctx.log.info('signing_key.rotated', { kid: key.kid });
        return { status: 201, body: { kid: key.kid, createdAt: key.createdAt.toISOString() } };
      },
    }),
  ];
}
