import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Migration } from './migration.js';
import { migrations as allMigrations } from './migrations/index.js';

/** Arbitrary constant key for `pg_advisory_lock`; every replica uses the same one. */
const MIGRATION_LOCK_KEY = 0x6772_6166; // "graf"

/** What a migration run did. */
export interface MigrationResult {
  applied: Array<{ id: number; name: string }>;
  alreadyApplied: number;
}

/** Raised when the database holds a migration whose content differs from the code's. */
export class MigrationMismatchError extends Error {
  override readonly name = 'MigrationMismatchError';
}

function checksum(m: Migration): string {
  return createHash('sha256').update(m.sql).digest('hex');
}

/**
 * Applies pending migrations once, under a session advisory lock so concurrent replicas wait for
 * each other instead of racing; each migration runs in its own transaction.
 */
export async function migrate(
  pool: pg.Pool,
  options: { migrations?: readonly Migration[]; onApplied?: (m: { id: number; name: string; ms: number }) => void } = {},
): Promise<MigrationResult> {
  const list = [...(options.migrations ?? allMigrations)].sort((a, b) => a.id - b.id);
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS graft_migrations (
        id integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const { rows } = await client.query<{ id: number; checksum: string }>('SELECT id, checksum FROM graft_migrations');
      const done = new Map(rows.map((r) => [r.id, r.checksum]));
      const known = new Set(list.map((m) => m.id));
      const unknown = [...done.keys()].filter((id) => !known.has(id));
      if (unknown.length > 0) {
        throw new MigrationMismatchError(`database has migrations this version does not know (${unknown.join(', ')}): is an older hub running against a newer schema?`);
      }
      const applied: MigrationResult['applied'] = [];
      for (const m of list) {
        const sum = checksum(m);
        const existing = done.get(m.id);
        if (existing !== undefined) {
          if (existing !== sum) throw new MigrationMismatchError(`migration ${m.id} (${m.name}) was changed after it was applied`);
          continue;
        }
        const started = Date.now();
        await client.query('BEGIN');
        try {
          await client.query(m.sql);
          await client.query('INSERT INTO graft_migrations (id, name, checksum) VALUES ($1, $2, $3)', [m.id, m.name, sum]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK');
          throw err;
        }
        applied.push({ id: m.id, name: m.name });
        options.onApplied?.({ id: m.id, name: m.name, ms: Date.now() - started });
      }
      return { applied, alreadyApplied: done.size };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  } finally {
    client.release();
  }
}
