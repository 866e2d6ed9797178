import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectProcessLogs } from './process-logs.js';

/** The hub entry point in the built workspace. */
export const HUB_MAIN = join(dirname(fileURLToPath(import.meta.url)), '../../../apps/hub/dist/main.js');

/** A hub running as a real child process. */
export interface HubProcess {
  url: string;
  port: number;
  pid: number;
  /** The bootstrap admin API key. */
  adminToken: string;
  dataDir: string;
  /** Every JSON log line the hub wrote so far. */
  logs: Array<Record<string, unknown>>;
  /** Raw stdout+stderr, for assertions that no secret was ever printed. */
  output(): string;
  /** Sends a signal and waits for exit; SIGKILL after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

/** Options for {@link startHubProcess}. */
export interface HubProcessOptions {
  /** Postgres to use; omitted, the hub runs its embedded Postgres under its data dir (as `npm start` does). */
  databaseUrl?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}

/**
 * Spawns `node apps/hub/dist/main.js` on an ephemeral port against the given database, with a
 * fresh data dir, a random master key and a known admin token; resolves once it logs
 * `hub.listening`. Call `stop()` in afterAll.
 */
export async function startHubProcess(options: HubProcessOptions): Promise<HubProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'graft-test-hub-'));
  const adminToken = options.env?.GRAFT_ADMIN_TOKEN ?? randomBytes(32).toString('hex');
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? dataDir,
    ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {}),
    GRAFT_HUB_PORT: '0',
    GRAFT_HUB_HOST: '127.0.0.1',
    GRAFT_DATA_DIR: dataDir,
    GRAFT_MASTER_KEY: options.env?.GRAFT_MASTER_KEY ?? randomBytes(32).toString('hex'),
    GRAFT_ADMIN_TOKEN: adminToken,
    GRAFT_DEV_AUTH: '1',
    GRAFT_AUTO_MIGRATE: '1',
    ...options.env,
  };
  const child: ChildProcess = spawn(process.execPath, [HUB_MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const collected = collectProcessLogs(child, 'hub');
  const logs = collected.lines;
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  const listening = new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`hub did not start within ${options.timeoutMs ?? 20000} ms:\n${collected.output()}`)), options.timeoutMs ?? 20000);
    const poll = setInterval(() => {
      const l = logs.find((x) => x.event === 'hub.listening');
      if (l) {
        clearInterval(poll);
        clearTimeout(timer);
        ok(Number(l.port));
      }
    }, 20);
    void exited.then((code) => {
      clearInterval(poll);
      clearTimeout(timer);
      fail(new Error(`hub exited with ${code} before listening:\n${collected.output()}`));
    });
  });
  let port: number;
  try {
    port = await listening;
  } catch (err) {
    // A hub that failed to start leaves nothing behind.
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid ?? -1,
    adminToken,
    dataDir,
    logs,
    output: collected.output,
    stop: async (signal = 'SIGTERM', timeoutMs = 10_000) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        const code = await exited;
        clearTimeout(t);
        rmSync(dataDir, { recursive: true, force: true });
        return code;
      }
      rmSync(dataDir, { recursive: true, force: true });
      return child.exitCode;
    },
  };
}
