import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JoinedBroker } from './broker-registration.js';
import { collectProcessLogs } from './process-logs.js';

/** The broker entry point in the built workspace. */
export const BROKER_MAIN = join(dirname(fileURLToPath(import.meta.url)), '../../../apps/broker/dist/main.js');

/** A broker daemon running as a real child process. */
export interface BrokerProcess {
  /** URL of its local API. */
  url: string;
  pid: number;
  dataDir: string;
  /** Every JSON log line it wrote so far. */
  logs: Array<Record<string, unknown>>;
  output(): string;
  /** Resolves once a log line matches. */
  waitForLog(test: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Sends a signal and waits for exit (SIGKILL after `timeoutMs`). Agents it started keep running. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

/** Options for {@link startBrokerProcess}. */
export interface BrokerProcessOptions {
  /** Data dir; credentials are written into it when `credentials` is given. */
  dataDir: string;
  credentials?: JoinedBroker;
  env?: Record<string, string>;
  /** argv run before `node main.js`, e.g. `ip netns exec <ns>` for a broker in a network namespace; it must exec the command (the PID stays the broker's). */
  commandPrefix?: readonly string[];
  timeoutMs?: number;
}

/** Writes a broker's credentials file as `graft broker join` would. */
export function writeTestBrokerCredentials(dataDir: string, c: JoinedBroker): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dataDir, 'credentials.json'), JSON.stringify({ hubUrl: c.hubUrl, brokerId: c.brokerId, secretKey: c.secretKey, joinedAt: new Date().toISOString() }), {
    mode: 0o600,
  });
}

/**
 * Spawns `node apps/broker/dist/main.js` with its local API on an ephemeral port; resolves once it
 * logs `broker.listening`. The caller removes the data dir (and stops leftover agents) afterwards.
 */
export async function startBrokerProcess(options: BrokerProcessOptions): Promise<BrokerProcess> {
  if (options.credentials) writeTestBrokerCredentials(options.dataDir, options.credentials);
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? options.dataDir,
    GRAFT_BROKER_DATA_DIR: options.dataDir,
    GRAFT_BROKER_PORT: '0',
    GRAFT_BROKER_STOP_GRACE_MS: '2000',
    GRAFT_BROKER_BACKOFF_BASE_MS: '200',
    GRAFT_BROKER_BACKOFF_MAX_MS: '2000',
    ...options.env,
  };
  const [command = process.execPath, ...prefixArgs] = options.commandPrefix ?? [];
  const args = options.commandPrefix?.length ? [...prefixArgs, process.execPath, BROKER_MAIN] : [BROKER_MAIN];
  const child: ChildProcess = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const collected = collectProcessLogs(child, 'broker');
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  const waitForLog = collected.waitFor;
  const listening = await Promise.race([
    waitForLog((l) => l.event === 'broker.listening', options.timeoutMs ?? 15_000),
    // Resolves (never rejects) so that an exit after a successful start is not an unhandled rejection.
    exited.then((code) => ({ exitedEarly: code })),
  ]);
  if ('exitedEarly' in listening) throw new Error(`broker exited with ${String(listening.exitedEarly)} before listening:\n${collected.output()}`);
  return {
    url: String(listening.url),
    pid: child.pid ?? -1,
    dataDir: options.dataDir,
    logs: collected.lines,
    output: collected.output,
    waitForLog,
    stop: async (signal = 'SIGTERM', timeoutMs = 10_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}
