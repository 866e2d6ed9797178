import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { afterEach, expect, inject, it } from 'vitest';
import { createDatabase, type DatabaseHandle } from './connect.js';

let handle: DatabaseHandle | undefined;
afterEach(async () => {
  await handle?.destroy();
  handle = undefined;
});

it('survives the server ending a checked-out connection (FATAL 57P01 between statements): no unhandled error, and the pool keeps serving', async () => {
  handle = createDatabase({ connectionString: inject('pgAdminUrl'), maxConnections: 2 });
  const client = await handle.pool.connect();
  await client.query('BEGIN');
  const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
  // What a Postgres shutdown or restart does to every session: pg_terminate_backend sends the same FATAL.
  const admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await admin.connect();
  try {
    expect((await admin.query('SELECT pg_terminate_backend($1) AS ok', [pid])).rows[0]?.ok).toBe(true);
  } finally {
    await admin.end();
  }
  // Without a listener on the checked-out client, pg emits 'error' unhandled here and the process dies.
  await delay(200);
  await expect(client.query('SELECT 1')).rejects.toThrow();
  client.release(true);
  const { rows } = await handle.pool.query<{ one: number }>('SELECT 1 AS one');
  expect(rows[0]?.one).toBe(1);
});
