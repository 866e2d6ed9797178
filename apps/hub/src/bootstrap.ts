import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Database } from '@graft/db';
import { type Kysely, sql } from 'kysely';
import { apiKeyPrefix, generateApiKey } from './auth/api-key-token.js';
import { hashToken } from './auth/token-hash.js';
import { parseMasterKey } from './domain/secret-box.js';
import { uuidv7 } from './domain/uuid.js';

/** The email of the platform admin created on first boot. */
export const BOOTSTRAP_ADMIN_EMAIL = 'admin@graft.local';

/** Reads the master key from config or, in embedded mode, from (or newly into) the data dir. */
export function resolveMasterKey(configured: string | undefined, dataDir: string): { key: Buffer; source: 'env' | 'file' | 'generated' } {
  if (configured !== undefined) {
    const key = parseMasterKey(configured);
    if (!key) throw new Error('GRAFT_MASTER_KEY must be 32 bytes as 64 hex characters or base64 (generate one with: openssl rand -hex 32)');
    return { key, source: 'env' };
  }
  const file = join(dataDir, 'master.key');
  if (existsSync(file)) {
    const key = parseMasterKey(readFileSync(file, 'utf8'));
    if (!key) throw new Error(`${file} does not hold a valid 32-byte key`);
    return { key, source: 'file' };
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  writeFileSync(file, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  return { key, source: 'generated' };
}

/** What first-boot bootstrap did. */
export type BootstrapResult = { created: false } | { created: true; userId: string; generatedToken: string | null; tokenFile: string | null };

/**
 * On the first boot of an empty database, creates the platform admin and its API key: the
 * configured GRAFT_ADMIN_TOKEN, or a generated one written to `<dataDir>/admin-token` (0600).
 * Runs under a transaction-scoped advisory lock, so concurrent replicas create exactly one admin.
 */
export async function bootstrapAdmin(db: Kysely<Database>, adminToken: string | undefined, dataDir: string): Promise<BootstrapResult> {
  const token = adminToken ?? generateApiKey();
  const result = await db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(${0x61646d6e})`.execute(trx);
    const anyUser = await trx.selectFrom('users').select('id').limit(1).executeTakeFirst();
    if (anyUser) return null;
    const userId = uuidv7();
    await trx.insertInto('users').values({ id: userId, email: BOOTSTRAP_ADMIN_EMAIL, name: 'Bootstrap admin', is_admin: true }).execute();
    await trx
      .insertInto('api_keys')
      .values({ id: uuidv7(), user_id: userId, name: 'bootstrap-admin', token_hash: hashToken(token), prefix: apiKeyPrefix(token), scopes: ['read', 'write'] })
      .execute();
    return userId;
  });
  if (result === null) return { created: false };
  if (adminToken !== undefined) return { created: true, userId: result, generatedToken: null, tokenFile: null };
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const tokenFile = join(dataDir, 'admin-token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  return { created: true, userId: result, generatedToken: token, tokenFile };
}
