import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Migration } from './migration.js';
import { MigrationMismatchError, migrate } from './migrator.js';
import { migrations } from './migrations/index.js';

// @graft/testkit depends on this package, so this test cannot import it, nor its declaration of
// what the global setup provides; the same declaration is repeated here.
declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
  }
}

// A database of our own on the run's Postgres.
const admin = inject('pgAdminUrl');
const name = `graft_mig_${randomBytes(5).toString('hex')}`;
const url = new URL(admin);
url.pathname = `/${name}`;
const pools: pg.Pool[] = [];
const pool = (): pg.Pool => {
  const p = new pg.Pool({ connectionString: url.toString(), max: 3 });
  // Teardown drops the database WITH (FORCE); a connection still closing then hears "terminating
  // connection" from the server, which is expected here and must not surface as an uncaught error.
  p.on('error', () => {});
  p.on('connect', (client) => client.on('error', () => {}));
  pools.push(p);
  return p;
};

async function adminQuery(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

beforeAll(async () => adminQuery(`CREATE DATABASE ${name}`));
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
  await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
});

describe('migrate', () => {
  it('applies every migration exactly once when several replicas race', async () => {
    // A slow migration widens the race window: without the lock two replicas would both run it.
    const slow: Migration = { id: 9000, name: 'slow', sql: 'SELECT pg_sleep(0.3); CREATE TABLE race_probe (id int)' };
    const list = [...migrations, slow];
    const results = await Promise.all([1, 2, 3, 4, 5].map(() => migrate(pool(), { migrations: list })));
    const appliedCounts = results.map((r) => r.applied.length);
    expect(appliedCounts.filter((n) => n === list.length)).toHaveLength(1);
    expect(appliedCounts.filter((n) => n === 0)).toHaveLength(4);
    const { rows } = await pool().query<{ id: number }>('SELECT id FROM graft_migrations ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual(list.map((m) => m.id));
  });

  it('refuses a migration whose content changed after it was applied', async () => {
    const changed = migrations.map((m) => ({ ...m })).concat({ id: 9000, name: 'slow', sql: 'SELECT 1' });
    await expect(migrate(pool(), { migrations: changed })).rejects.toBeInstanceOf(MigrationMismatchError);
  });

  it('refuses to run against a schema newer than the code', async () => {
    await expect(migrate(pool(), { migrations })).rejects.toThrow(MigrationMismatchError);
  });

  it('rolls back a failing migration and records nothing for it', async () => {
    const bad: Migration = { id: 9001, name: 'bad', sql: 'CREATE TABLE half_done (id int); SELECT no_such_function()' };
    const slow: Migration = { id: 9000, name: 'slow', sql: 'SELECT pg_sleep(0.3); CREATE TABLE race_probe (id int)' };
    await expect(migrate(pool(), { migrations: [...migrations, slow, bad] })).rejects.toThrow();
    const t = await pool().query("SELECT to_regclass('half_done') AS t");
    expect(t.rows[0].t).toBeNull();
    const m = await pool().query('SELECT id FROM graft_migrations WHERE id = 9001');
    expect(m.rowCount).toBe(0);
  });
});
