import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EmbeddedPostgresHandle, startEmbeddedPostgres } from '@graft/db';
import { freePort } from './free-port.js';

/** A Postgres server of one test file that may be restarted (the run's shared one never is). */
export interface PrivatePostgres {
  /** Superuser URL of the `postgres` database; the same across restarts. */
  adminUrl: string;
  /** PID of the current postmaster. */
  readonly pid: number | undefined;
  /** Stops the server (fast shutdown: sessions are cut), waits `downMs`, and starts it again on the same port and files. */
  restart(downMs?: number): Promise<void>;
  /** Stops the server by its PID and removes its files. */
  stop(): Promise<void>;
}

const FLAGS = ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200'];

/**
 * Starts an embedded Postgres (real server binaries from npm) on an ephemeral port in a temp dir,
 * kept on disk across `restart()` so the hubs find their data again; `stop()` removes it all.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'graft-e2e-pg-'));
  const port = await freePort();
  const start = () => startEmbeddedPostgres({ dataDir: join(dir, 'data'), port, persistent: true, flags: FLAGS });
  let handle: EmbeddedPostgresHandle | undefined = await start();
  const adminUrl = handle.url;
  const remove = (dataDir: string) => {
    // As root the cluster lives elsewhere (see startEmbeddedPostgres), next to its password file.
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(`${dataDir}.password`, { force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  const clusterDir = handle.dataDir;
  return {
    adminUrl,
    get pid() {
      return handle?.pid;
    },
    restart: async (downMs = 0) => {
      await handle?.stop();
      handle = undefined;
      await new Promise((r) => setTimeout(r, downMs));
      handle = await start();
    },
    stop: async () => {
      await handle?.stop();
      handle = undefined;
      remove(clusterDir);
    },
  };
}
