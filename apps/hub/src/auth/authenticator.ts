import type { Database } from '@graft/db';
import { type ApiKeyScope, GraftError } from '@graft/protocol';
import type { Kysely } from 'kysely';
import { looksLikeApiKey } from './api-key-token.js';
import { hashToken } from './token-hash.js';
import type { JwtService } from './jwt-service.js';
import type { Principal } from './principal.js';

const LAST_USED_WRITE_INTERVAL_MS = 60_000;

/** Resolves a bearer token to a principal: API keys by hash lookup, JWTs by signature. */
export class Authenticator {
  /** Keys whose last_used_at was written recently, so a busy key does not write on every call. */
  private readonly lastUsedWritten = new Map<string, number>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly jwt: JwtService,
  ) {}

  /** Resolves the `Authorization` header; a missing header is anonymous, a bad one is an error. */
  async authenticate(header: string | undefined): Promise<Principal> {
    if (header === undefined || header === '') return { kind: 'anonymous' };
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m?.[1]) throw new GraftError('unauthorized', 'Authorization header must be "Bearer <token>"');
    const token = m[1];
    return looksLikeApiKey(token) ? this.fromApiKey(token) : this.fromJwt(token);
  }

  private async fromApiKey(token: string): Promise<Principal> {
    const row = await this.db
      .selectFrom('api_keys as k')
      .innerJoin('users as u', 'u.id', 'k.user_id')
      .select(['k.id', 'k.scopes', 'k.expires_at', 'k.revoked_at', 'u.id as user_id', 'u.email', 'u.is_admin'])
      .where('k.token_hash', '=', hashToken(token))
      .executeTakeFirst();
    if (!row) throw new GraftError('unauthorized', 'unknown API key');
    if (row.revoked_at) throw new GraftError('unauthorized', 'API key has been revoked');
    if (row.expires_at && row.expires_at.getTime() <= Date.now()) throw new GraftError('unauthorized', 'API key has expired');
    this.touch(row.id);
    return {
      kind: 'user',
      userId: row.user_id,
      email: row.email,
      isAdmin: row.is_admin,
      via: 'api_key',
      scopes: row.scopes as ApiKeyScope[],
      apiKeyId: row.id,
    };
  }

  private async fromJwt(token: string): Promise<Principal> {
    const claims = await this.jwt.verify(token);
    if (claims.typ === 'agent') return { kind: 'agent', agentId: claims.sub, projectId: claims.prj };
    const user = await this.db.selectFrom('users').select(['id', 'email', 'is_admin']).where('id', '=', claims.sub).executeTakeFirst();
    if (!user) throw new GraftError('unauthorized', 'user no longer exists');
    return { kind: 'user', userId: user.id, email: user.email, isAdmin: user.is_admin, via: 'jwt', scopes: ['read', 'write'], apiKeyId: null };
  }

  private touch(keyId: string): void {
    const now = Date.now();
    const last = this.lastUsedWritten.get(keyId) ?? 0;
    if (now - last < LAST_USED_WRITE_INTERVAL_MS) return;
    this.lastUsedWritten.set(keyId, now);
    // Best effort and off the request path: a failed bookkeeping write must not fail the request.
    this.db
      .updateTable('api_keys')
      .set({ last_used_at: new Date(now) })
      .where('id', '=', keyId)
      .execute()
      .catch(() => this.lastUsedWritten.delete(keyId));
  }
}
