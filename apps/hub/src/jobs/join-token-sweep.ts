import type { Database } from '@graft/db';
import type { Logger } from '@graft/log';
import type { Kysely } from 'kysely';

/**
 * The `join-token-sweep` job's pass: brokers registered but never joined whose join token expired
 * lose the token's hash, so nothing that could still match a leaked token stays around. The broker
 * rows stay (an admin sees them as not joined, and a join with the old token answers
 * `join_token_expired`). Returns how many tokens were cleared.
 */
export async function sweepExpiredJoinTokens(db: Kysely<Database>, log: Logger): Promise<number> {
  const r = await db
    .updateTable('brokers')
    .set({ join_token_hash: null })
    .where('joined_at', 'is', null)
    .where('join_token_hash', 'is not', null)
    .where('join_expires_at', '<=', new Date())
    .executeTakeFirst();
  const count = Number(r.numUpdatedRows);
  if (count > 0) log.info('brokers.join_tokens_expired', { count });
  return count;
}
