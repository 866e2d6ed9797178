import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createDatabase, type EmbeddedPostgresHandle, migrate, startEmbeddedPostgres } from '@graft/db';
import type { Logger } from '@graft/log';
import { sql } from 'kysely';
import { MemoryNonceCache } from '@graft/protocol';
import pg from 'pg';
import { Authenticator } from './auth/authenticator.js';
import { BrokerAuthenticator } from './auth/broker-authenticator.js';
import { JwtService } from './auth/jwt-service.js';
import { SigningKeyStore } from './auth/signing-keys.js';
import { bootstrapAdmin, resolveMasterKey } from './bootstrap.js';
import type { HubConfig } from './config.js';
import { InProcessTunnelMesh } from './cluster/in-process-tunnel-mesh.js';
import { RedisNonceCache } from './cluster/redis-nonce-cache.js';
import { RedisTunnelMesh } from './cluster/redis-tunnel-mesh.js';
import { ReplicaRouter } from './cluster/replica-router.js';
import type { TunnelMesh } from './cluster/tunnel-mesh.js';
import { applyLifecycleAction } from './domain/lifecycle-action.js';
import type { EventBus } from './events/event-bus.js';
import { InProcessEventBus } from './events/in-process-event-bus.js';
import { publishAgentState, publishBrokerPresence } from './events/hub-event-topics.js';
import { RedisEventBus } from './events/redis-event-bus.js';
import { LogIngest } from './logs/log-ingest.js';
import { FsLogArchive } from './logs/archive/fs-log-archive.js';
import type { LogArchive } from './logs/archive/log-archive.js';
import { S3LogArchive } from './logs/archive/s3-log-archive.js';
import { LogArchiver } from './logs/log-archiver.js';
import { LogStore } from './logs/log-store.js';
import { logRoutes } from './routes/log-routes.js';
import { adminJobRoutes } from './routes/admin-job-routes.js';
import { BullmqJobRunner } from './jobs/bullmq-job-runner.js';
import { registerHubJobs } from './jobs/hub-jobs.js';
import { InProcessJobRunner } from './jobs/in-process-job-runner.js';
import type { JobRunner } from './jobs/job-runner.js';
import { AgentLiveness } from './dispatch/agent-liveness.js';
import { Dispatcher } from './dispatch/dispatcher.js';
import { Placement } from './dispatch/placement.js';
import { AgentStateWriter } from './domain/agent-writer.js';
import { SecretBox } from './domain/secret-box.js';
import type { HubContext } from './hub-context.js';
import { createApp } from './http/create-app.js';
import { InFlight } from './http/in-flight.js';
import { createHubMetrics } from './http/metrics.js';
import type { RouteSpec } from './http/route.js';
import { agentRoutes } from './routes/agent-routes.js';
import { eventRoutes } from './routes/event-routes.js';
import { authRoutes } from './routes/auth-routes.js';
import { brokerRoutes } from './routes/broker-routes.js';
import { metaRoutes } from './routes/meta-routes.js';
import { projectRoutes } from './routes/project-routes.js';
import { templateRoutes } from './routes/template-routes.js';
import { BrokerPresence } from './tunnel/broker-presence.js';
import { attachRoute } from './tunnel/attach-route.js';
import { logSocketRoute } from './tunnel/log-socket-route.js';
import { TunnelServer } from './tunnel/tunnel-server.js';
import { HUB_VERSION } from './version.js';

/** How long a stopping hub waits for in-flight requests before closing their connections. */
const SHUTDOWN_GRACE_MS = 10_000;

/** A running hub. */
export interface RunningHub {
  url: string;
  port: number;
  /** Stops accepting, drains in-flight requests, closes the pool and any embedded Postgres. */
  stop(): Promise<void>;
}

/** Resolves where Postgres is: the configured URL, or an embedded cluster under the data dir. */
export async function resolveDatabase(config: HubConfig, log: Logger): Promise<{ url: string; embedded: EmbeddedPostgresHandle | null }> {
  if (config.storage.databaseUrl) return { url: config.storage.databaseUrl, embedded: null };
  mkdirSync(config.storage.dataDir, { recursive: true, mode: 0o700 });
  const started = Date.now();
  const embedded = await startEmbeddedPostgres({ dataDir: join(config.storage.dataDir, 'postgres'), persistent: true });
  log.info('embedded_postgres.started', { dataDir: embedded.dataDir, port: embedded.port, pid: embedded.pid, ms: Date.now() - started });
  // The cluster's default database is `postgres`; the hub keeps its data in `graft`.
  const admin = new pg.Client({ connectionString: embedded.url });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', ['graft']);
    if (exists.rowCount === 0) await admin.query('CREATE DATABASE graft');
  } finally {
    await admin.end();
  }
  return { url: embedded.url.replace(/\/postgres$/, '/graft'), embedded };
}

/** Applies migrations against a database URL (what `graft hub migrate` runs). */
export async function runMigrations(databaseUrl: string, log: Logger): Promise<{ applied: number }> {
  const handle = createDatabase({ connectionString: databaseUrl, maxConnections: 2, applicationName: 'graft-migrate' });
  try {
    const r = await migrate(handle.pool, { onApplied: (m) => log.info('migration.applied', m) });
    log.info('migrations.done', { applied: r.applied.length, alreadyApplied: r.alreadyApplied });
    return { applied: r.applied.length };
  } finally {
    await handle.destroy();
  }
}

/** Starts the hub: database (embedded or not), migrations in embedded mode, bootstrap, HTTP. */
export async function startHubServer(config: HubConfig, log: Logger): Promise<RunningHub> {
  const { url: databaseUrl, embedded } = await resolveDatabase(config, log);
  try {
    if (config.storage.autoMigrate) await runMigrations(databaseUrl, log.child({ component: 'migrator' }));
    const master = resolveMasterKey(config.security.masterKey, config.storage.dataDir);
    if (master.source === 'generated') log.info('master_key.generated', { file: join(config.storage.dataDir, 'master.key') });
    const handle = createDatabase({ connectionString: databaseUrl, maxConnections: config.storage.poolSize, applicationName: 'graft-hub' });
    const { db } = handle;
    await db.selectFrom('graft_migrations' as never).select(sql`1`.as('x')).limit(1).execute().catch(() => {
      throw new Error('database schema is missing: run `graft hub migrate` first');
    });
    const box = new SecretBox(master.key);
    const signingKeys = new SigningKeyStore(db, box);
    await signingKeys.init();
    const jwt = new JwtService(signingKeys);
    const boot = await bootstrapAdmin(db, config.security.adminToken, config.storage.dataDir);
    if (boot.created) {
      log.info('admin.bootstrapped', { userId: boot.userId, tokenFile: boot.tokenFile });
      if (boot.generatedToken) {
        // Shown once, to the operator's terminal, never into the JSON log stream.
        process.stderr.write(
          `\n  Graft admin API key (shown once; also saved to ${boot.tokenFile}, mode 0600):\n\n    ${boot.generatedToken}\n\n`,
        );
      }
    }
    // A readable id per process: replicas name each other by it (tunnel claims), and logs and metrics carry it.
    const replicaId = `${hostname()}-${randomBytes(4).toString('hex')}`;
    const mesh: TunnelMesh = config.redisUrl ? new RedisTunnelMesh(config.redisUrl, { prefix: config.redisPrefix, replicaId, log: log.child({ component: 'mesh' }) }) : new InProcessTunnelMesh(undefined, { replicaId });
    const nonces = config.redisUrl ? new RedisNonceCache(config.redisUrl, { prefix: config.redisPrefix, log: log.child({ component: 'nonce-cache' }) }) : new MemoryNonceCache();
    const metrics = createHubMetrics({
      replicaId,
      agents: async () => {
        const rows = await db.selectFrom('agents').select(['phase', 'activity', sql<string>`count(*)`.as('n')]).groupBy(['phase', 'activity']).execute();
        return rows.map((r) => ({ phase: r.phase, activity: r.activity, count: Number(r.n) }));
      },
      pending: async () => {
        const rows = await db
          .selectFrom('agents')
          .select(['pending_reason', sql<string>`count(*)`.as('n')])
          .where('broker_id', 'is', null)
          .where('desired_state', '=', 'running')
          .groupBy('pending_reason')
          .execute();
        return rows.map((r) => ({ reason: r.pending_reason, count: Number(r.n) }));
      },
      heartbeatAges: async () => {
        const rows = await db
          .selectFrom('brokers')
          .select(['id', sql<number>`extract(epoch from now() - last_heartbeat_at)::float8`.as('age')])
          .where('tunnel_session', 'is not', null)
          .where('last_heartbeat_at', 'is not', null)
          .execute();
        return rows.map((r) => ({ brokerId: r.id, ageSecs: Number(r.age) }));
      },
      // Read at scrape time, after the runner below exists.
      jobCounts: () => jobs.counts(),
    });
    const events: EventBus = config.redisUrl ? new RedisEventBus(config.redisUrl, { prefix: config.redisPrefix, log: log.child({ component: 'events' }) }) : new InProcessEventBus();
    // Every written agent change is published: operators' event streams follow it on any replica.
    const agentWriter = new AgentStateWriter(handle.pool, undefined, (row) => publishAgentState(events, row));
    const heartbeatIntervalMs = config.brokers.heartbeatIntervalMs;
    // Known once the server listens; agents are only dispatched after that.
    let hubUrl = config.http.publicUrl ?? '';
    const dispatcher = new Dispatcher({
      db,
      writer: agentWriter,
      placement: new Placement(db, heartbeatIntervalMs),
      jwt,
      box,
      agentTokenTtlSecs: config.security.agentTokenTtlSecs,
      hubUrl: () => hubUrl,
      log: log.child({ component: 'dispatch' }),
      onStatus: (outcome) => metrics.statusUpdates.inc({ outcome }),
    });
    const archive: LogArchive =
      config.logArchive.kind === 's3'
        ? new S3LogArchive({
            ...(config.logArchive.endpoint ? { endpoint: config.logArchive.endpoint } : {}),
            region: config.logArchive.region,
            bucket: config.logArchive.bucket,
            accessKeyId: config.logArchive.accessKeyId,
            secretAccessKey: config.logArchive.secretAccessKey,
            forcePathStyle: config.logArchive.forcePathStyle,
            ...(config.logArchive.prefix ? { prefix: config.logArchive.prefix } : {}),
          })
        : new FsLogArchive({ rootDir: config.logArchive.dir });
    const logStore = new LogStore(db, archive);
    const archiver = new LogArchiver({ db, archive, log: log.child({ component: 'log-archive' }), onArchived: (bytes) => metrics.logBytes.inc({ what: 'archived' }, bytes) });
    // Background jobs: BullMQ in a cluster (each run on one replica), in-process on a single node.
    const jobLog = log.child({ component: 'jobs' });
    const onRun = (job: string, outcome: 'ok' | 'failed') => metrics.jobRuns.inc({ job, outcome });
    const jobs: JobRunner = config.redisUrl ? new BullmqJobRunner({ url: config.redisUrl, prefix: config.redisPrefix, onRun, log: jobLog }) : new InProcessJobRunner({ onRun, log: jobLog });
    const logIngest = new LogIngest({
      db,
      store: logStore,
      events,
      log: log.child({ component: 'logs' }),
      onReceived: (bytes) => metrics.logBytes.inc({ what: 'received' }, bytes),
      onStored: (bytes) => metrics.logBytes.inc({ what: 'stored' }, bytes),
      onAcked: (acks) => metrics.logAcks.inc(acks),
    });
    const ctx: HubContext = {
      db,
      agentWriter,
      dispatcher,
      logs: { store: logStore, events },
      jobs,
      box,
      jwt,
      signingKeys,
      metrics,
      log,
      version: HUB_VERSION,
      startedAt: Date.now(),
      settings: {
        devAuth: config.security.devAuth,
        userTokenTtlSecs: config.security.userTokenTtlSecs,
        agentTokenTtlSecs: config.security.agentTokenTtlSecs,
        brokerJoinTtlSecs: config.brokers.joinTtlSecs,
        brokerSecretGraceSecs: config.brokers.secretGraceSecs,
        heartbeatIntervalMs,
        publicUrl: config.http.publicUrl,
      },
    };
    const routes: RouteSpec[] = [];
    routes.push(...metaRoutes(ctx, () => routes), ...authRoutes(ctx), ...projectRoutes(ctx), ...templateRoutes(ctx), ...agentRoutes(ctx), ...logRoutes(ctx), ...eventRoutes(ctx), ...brokerRoutes(ctx), ...adminJobRoutes(ctx));
    const inFlight = new InFlight();
    const brokerAuthenticator = new BrokerAuthenticator(db, box, nonces, metrics.signatureRejections);
    const authenticator = new Authenticator(db, jwt);
    // Bounded: a database that hangs counts as one that does not answer.
    const databaseAnswers = () =>
      Promise.race([
        sql`SELECT 1`.execute(db).then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((ok) => setTimeout(() => ok(false), 2_000).unref()),
      ]);
    const app = createApp({ routes, databaseAnswers, inFlight, authenticator, brokerAuthenticator, metrics, log: log.child({ component: 'http' }) });
    const presence = new BrokerPresence(db, handle.pool, (err) => log.error('presence.write_failed', { err }), heartbeatIntervalMs);
    const tunnels = new TunnelServer({
      authenticator: brokerAuthenticator,
      dispatcher,
      presence,
      logs: logIngest,
      metrics,
      heartbeatIntervalMs,
      requestTimeoutMs: config.brokers.requestTimeoutMs,
      log: log.child({ component: 'tunnel' }),
      onTunnel: {
        opened: (brokerId) => {
          router.tunnelOpened(brokerId);
          publishBrokerPresence(events, brokerId, 'connected', replicaId);
        },
        closed: (brokerId) => {
          router.tunnelClosed(brokerId);
          publishBrokerPresence(events, brokerId, 'disconnected', replicaId);
        },
      },
    });
    // Commands and attach streams reach a broker through the replica that holds its tunnel.
    const router = new ReplicaRouter({
      local: tunnels,
      mesh,
      requestTimeoutMs: config.brokers.requestTimeoutMs,
      heartbeatIntervalMs,
      metrics,
      log: log.child({ component: 'mesh' }),
    });
    tunnels.route(attachRoute({ ctx, authenticator, channel: (brokerId) => router.attachChannel(brokerId), openTimeoutMs: config.brokers.requestTimeoutMs }));
    tunnels.route(logSocketRoute({ ctx, authenticator }));
    const server: Server = await new Promise((ok, fail) => {
      const s = app.listen(config.http.port, config.http.host, () => ok(s));
      s.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EADDRINUSE') fail(new Error(`port ${config.http.port} on ${config.http.host} is already in use: stop the other process or set GRAFT_HUB_PORT`));
        else fail(err);
      });
    });
    server.keepAliveTimeout = 65_000;
    const port = (server.address() as AddressInfo).port;
    const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host;
    const url = config.http.publicUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    hubUrl = url;
    tunnels.attach(server);
    dispatcher.start(router);
    const liveness = new AgentLiveness({
      db,
      writer: agentWriter,
      settings: { heartbeatIntervalMs, ...config.liveness },
      transitions: metrics.livenessTransitions,
      suspend: async (agentId) => {
        await applyLifecycleAction(agentWriter, agentId, 'suspend');
        await dispatcher.push(agentId, 'suspend');
      },
      log: log.child({ component: 'liveness' }),
    });
    registerHubJobs(jobs, { db, dispatcher, liveness, archiver, log: jobLog });
    // Not awaited: in a cluster it waits for Redis, and the hub serves without it meanwhile.
    jobs.start().catch((err: unknown) => jobLog.error('jobs.start_failed', { err }));
    log.info('hub.listening', { url, port, replicaId, cluster: config.redisUrl !== undefined, host: config.http.host, embeddedPostgres: embedded !== null, devAuth: config.security.devAuth, version: HUB_VERSION });
    let stopping: Promise<void> | undefined;
    return {
      url,
      port,
      stop: () => {
        stopping ??= (async () => {
          log.info('hub.stopping', {});
          // Stop accepting first, so the brokers handed back below reconnect to another replica, not
          // here. In-flight requests finish; keep-alive sockets that go idle are closed as they do,
          // and whatever is still open after the grace period is cut.
          const closed = new Promise<void>((ok) => {
            server.close(() => ok());
            const sweep = setInterval(() => server.closeIdleConnections(), 100);
            const cut = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
            server.once('close', () => {
              clearInterval(sweep);
              clearTimeout(cut);
            });
            server.closeIdleConnections();
          });
          // Brokers reconnect (through the load balancer to another replica, or here after a restart) and reconcile.
          tunnels.close();
          // Waits for the job runs in progress here (they use the database).
          await jobs.close();
          await dispatcher.stop();
          // Chunks received and not yet stored are stored (and acknowledged, if their tunnel is still open).
          await logIngest.flush();
          await closed;
          await inFlight.drained(SHUTDOWN_GRACE_MS);
          await presence.close();
          await router.close();
          await mesh.close();
          if (nonces instanceof RedisNonceCache) await nonces.close();
          await events.close();
          await archive.close();
          await handle.destroy();
          if (embedded) await embedded.stop();
          log.info('hub.stopped', {});
        })();
        return stopping;
      },
    };
  } catch (err) {
    if (embedded) await embedded.stop().catch(() => {});
    throw err;
  }
}
