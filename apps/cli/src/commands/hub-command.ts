import type { HubConfig } from '@graft/hub';
import type { Command } from 'commander';
import type { Environment } from '../config.js';
import type { CliContext } from '../context.js';
import { UsageError } from '../errors.js';
import { printJson } from '../output/io.js';
import { observingLogger } from '../observing-logger.js';
import { waitForSignal } from '../signals.js';

const STOP_TIMEOUT_MS = 15_000;

interface HubFlags {
  host?: string;
  port?: string;
  dataDir?: string;
}

/** The hub's environment with flag overrides applied (flags win, as everywhere in the CLI). */
function hubEnvironment(env: Environment, flags: HubFlags): Environment {
  return {
    ...env,
    ...(flags.host !== undefined ? { GRAFT_HUB_HOST: flags.host } : {}),
    ...(flags.port !== undefined ? { GRAFT_HUB_PORT: flags.port } : {}),
    ...(flags.dataDir !== undefined ? { GRAFT_DATA_DIR: flags.dataDir } : {}),
  };
}

// Loaded lazily (dynamic import): the hub pulls in express, pg and friends, which other commands never need.
type HubModule = typeof import('@graft/hub');

/** Loads the hub's config; its configuration errors are usage errors of the CLI (exit 2). */
function loadConfig({ ConfigError, loadHubConfig }: HubModule, env: Environment): HubConfig {
  try {
    return loadHubConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      // "invalid configuration:\n  A: ...\n  B: ..." becomes one line: "invalid configuration: A: ...; B: ...".
      const [head = '', ...issues] = err.message.split('\n').map((line) => line.trim());
      throw new UsageError(issues.length > 0 ? `${head} ${issues.join('; ')}` : head);
    }
    throw err;
  }
}

const ENV_HELP = `
Both commands configure the hub from the environment, like graft-hub:
  GRAFT_HUB_HOST, GRAFT_HUB_PORT, GRAFT_HUB_PUBLIC_URL, GRAFT_DATA_DIR (default ~/.graft),
  DATABASE_URL (unset: embedded Postgres under the data dir), GRAFT_MASTER_KEY (required with
  DATABASE_URL), GRAFT_AUTO_MIGRATE, GRAFT_DB_POOL_SIZE, GRAFT_ADMIN_TOKEN, GRAFT_DEV_AUTH,
  GRAFT_USER_TOKEN_TTL_SECS, GRAFT_AGENT_TOKEN_TTL_SECS, GRAFT_LOG_LEVEL; REDIS_URL and
  GRAFT_REDIS_PREFIX for cluster mode (all of them: docs/configuration.md).

Cluster: run \`graft hub migrate\` once, then \`graft hub start\` on every replica with the same
DATABASE_URL, REDIS_URL and GRAFT_MASTER_KEY, behind any HTTP load balancer that passes WebSocket
upgrades (deploy/README.md). SIGTERM stops a replica gracefully: it stops accepting, hands its
broker tunnels back (they reconnect to another replica) and drains in-flight requests.

Examples:
  $ graft hub start --port 8080
  $ DATABASE_URL=postgres://graft@db/graft GRAFT_MASTER_KEY=$(cat master.key) graft hub migrate
  $ DATABASE_URL=postgres://graft@db/graft GRAFT_MASTER_KEY=$(cat master.key) \
      REDIS_URL=redis://redis:6379 GRAFT_HUB_HOST=0.0.0.0 graft hub start`;

/** `graft hub start|migrate`. */
export function registerHubCommand(program: Command, ctx: CliContext): void {
  const hub = program.command('hub').description('Run the hub in this process, or apply its database migrations').addHelpText('after', ENV_HELP);

  hub
    .command('start')
    .description('Run the hub in the foreground (JSON logs on stdout) until SIGINT or SIGTERM, then stop gracefully')
    .option('--host <host>', 'interface to listen on (overrides GRAFT_HUB_HOST; default 127.0.0.1)')
    .option('--port <port>', 'TCP port, 0 for any free one (overrides GRAFT_HUB_PORT; default 8080)')
    .option('--data-dir <dir>', 'where the embedded Postgres, admin token and master key live (overrides GRAFT_DATA_DIR)')
    .addHelpText('after', ENV_HELP)
    .action(async (opts: HubFlags) => {
      // Listen before starting, so a signal during a slow start still stops the hub cleanly afterwards.
      const signalled = waitForSignal(['SIGINT', 'SIGTERM']);
      const hubModule = await import('@graft/hub');
      const config = loadConfig(hubModule, hubEnvironment(ctx.env.hubEnv, opts));
      const { createLogger } = await import('@graft/log');
      const log = createLogger({ level: config.log.level, base: { service: 'graft-hub' } });
      const running = await hubModule.startHubServer(config, log);
      const signal = await signalled;
      log.info('hub.signal', { signal });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`hub did not stop within ${STOP_TIMEOUT_MS / 1000} s`)), STOP_TIMEOUT_MS);
      });
      try {
        await Promise.race([running.stop(), timeout]);
      } finally {
        clearTimeout(timer);
      }
    });

  hub
    .command('migrate')
    .description('Apply pending database migrations and exit (DATABASE_URL, or the embedded Postgres under the data dir)')
    .option('--data-dir <dir>', 'data dir of the embedded Postgres (overrides GRAFT_DATA_DIR)')
    .option('--json', 'print {applied: [names], alreadyApplied: n} as JSON')
    .addHelpText('after', ENV_HELP)
    .action(async (opts: HubFlags & { json?: boolean }) => {
      // Ctrl-C during a migration ends the process; a terminal sends it to the embedded Postgres too, which then shuts down by itself.
      const hubModule = await import('@graft/hub');
      const config = loadConfig(hubModule, hubEnvironment(ctx.env.hubEnv, opts));
      const { createLogger } = await import('@graft/log');
      const applied: string[] = [];
      let alreadyApplied = 0;
      // Progress is shown as a summary on stdout; the JSON log keeps only problems (on stderr), unless debugging.
      const inner = createLogger({ level: config.log.level === 'debug' ? 'debug' : 'warn', base: { service: 'graft-migrate' }, sink: (line) => ctx.io.err(line) });
      const log = observingLogger(inner, (event, fields) => {
        if (event === 'migration.applied') applied.push(`${String(fields.id).padStart(4, '0')}-${String(fields.name)}`);
        if (event === 'migrations.done') alreadyApplied = Number(fields.alreadyApplied ?? 0);
      });
      const database = await hubModule.resolveDatabase(config, log);
      try {
        await hubModule.runMigrations(database.url, log);
      } finally {
        await database.embedded?.stop();
      }
      if (opts.json) return printJson(ctx.io, { applied, alreadyApplied });
      if (applied.length === 0) ctx.io.out(`Database is up to date (${alreadyApplied} migrations already applied).`);
      else ctx.io.out(`Applied ${applied.length} migration${applied.length === 1 ? '' : 's'}: ${applied.join(', ')}.`);
    });
}
