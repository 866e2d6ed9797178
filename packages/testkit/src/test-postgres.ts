import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedPostgres } from '@graft/db';

/** A Postgres server for one test run. */
export interface TestPostgres {
  /** Superuser URL for the `postgres` database (used to create per-test databases). */
  adminUrl: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

/**
 * Uses `GRAFT_TEST_DATABASE_URL` (any Postgres ≥ 14, superuser) when set; otherwise starts a
 * throwaway embedded Postgres with fsync off in a temp dir and removes it on stop.
 */
export async function startTestPostgres(): Promise<TestPostgres> {
  const external = process.env.GRAFT_TEST_DATABASE_URL;
  if (external) return { adminUrl: external, pid: undefined, stop: async () => {} };
  const dir = mkdtempSync(join(tmpdir(), 'graft-test-pg-'));
  const pg = await startEmbeddedPostgres({
    dataDir: join(dir, 'data'),
    persistent: false,
    flags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300'],
  });
  return {
    adminUrl: pg.url,
    pid: pg.pid,
    stop: async () => {
      await pg.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
