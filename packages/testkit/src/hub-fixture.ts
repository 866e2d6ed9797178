import { createFreshDatabase, type FreshDatabase } from './fresh-database.js';
import { type HubProcess, type HubProcessOptions, startHubProcess } from './hub-process.js';

/** A hub process on a database of its own, for one test file. */
export interface HubFixture {
  hub: HubProcess;
  database: FreshDatabase;
  stop(): Promise<void>;
}

/**
 * Creates a fresh database on the run's Postgres and starts a hub process on it; `stop()` kills
 * the hub (by its PID) and drops the database. Use in beforeAll/afterAll.
 */
export async function startHubFixture(pgAdminUrl: string, options: Omit<HubProcessOptions, 'databaseUrl'> = {}): Promise<HubFixture> {
  const database = await createFreshDatabase(pgAdminUrl);
  try {
    const hub = await startHubProcess({ ...options, databaseUrl: database.url });
    return {
      hub,
      database,
      stop: async () => {
        await hub.stop();
        await database.drop();
      },
    };
  } catch (err) {
    await database.drop();
    throw err;
  }
}
