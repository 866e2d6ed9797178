import { startTestPostgres, type TestPostgres } from '@graft/testkit';
import type { TestProject } from 'vitest/node';

let pg: TestPostgres | undefined;

/** One Postgres server for the whole run; each test file creates its own database on it. */
export async function setup(project: TestProject): Promise<void> {
  pg = await startTestPostgres();
  project.provide('pgAdminUrl', pg.adminUrl);
}

/** Stops the server this run started (by its handle, which stops its PID). */
export async function teardown(): Promise<void> {
  await pg?.stop();
}
