import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';

// bigint (int8) as string keeps precision; counts are parsed where they are read.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => v);

/** Options for {@link createDatabase}. */
export interface DatabaseOptions {
  connectionString: string;
  maxConnections?: number;
  applicationName?: string;
  /** Milliseconds to wait for a free connection before failing (maps to 503 upstream). */
  connectionTimeoutMs?: number;
}

/** A pool plus the Kysely instance over it; the owner closes both with `destroy()`. */
export interface DatabaseHandle {
  db: Kysely<Database>;
  pool: pg.Pool;
  destroy(): Promise<void>;
}

/** Opens a pool and a Kysely instance on it. */
export function createDatabase(options: DatabaseOptions): DatabaseHandle {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.maxConnections ?? 20,
    application_name: options.applicationName ?? 'graft',
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client that loses its connection must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  // Nor may a checked-out one (a transaction between two statements, a lock holder) when the server
  // goes away: pg emits its FATAL (57P01 on shutdown) as an 'error' event, which would be unhandled.
  // The statement in flight fails on its own and the pool drops the broken client.
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, pool, destroy: () => db.destroy() };
}
