import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';

const bool = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off', ''])
  .transform((v) => v === '1' || v === 'true' || v === 'yes' || v === 'on');

const HEX64 = /^[0-9a-f]{64}$/;

/** The hub's environment, grouped by area. Parsed once in main.ts; nothing else reads process.env. */
const HubEnv = z.object({
  // --- HTTP ---
  /** Interface to listen on. */
  GRAFT_HUB_HOST: z.string().min(1).default('127.0.0.1'),
  /** TCP port; 0 picks a free one (the chosen port is logged as `hub.listening`). */
  GRAFT_HUB_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** URL clients should use to reach this hub; defaults to http://HOST:PORT. */
  GRAFT_HUB_PUBLIC_URL: z.url().optional(),

  // --- Storage ---
  /** Home of everything this hub writes locally: embedded Postgres, admin token, master key. */
  GRAFT_DATA_DIR: z.string().min(1).default(join(homedir(), '.graft')),
  /** Postgres connection string; unset runs an embedded Postgres under the data dir. */
  DATABASE_URL: z.string().min(1).optional(),
  /** Apply pending migrations at start; default on with embedded Postgres, off with DATABASE_URL. */
  GRAFT_AUTO_MIGRATE: bool.optional(),
  /** Max connections in the hub's Postgres pool. */
  GRAFT_DB_POOL_SIZE: z.coerce.number().int().min(1).max(500).default(20),

  // --- Security ---
  /** Bootstrap admin API key (64 hex chars) used on first boot of an empty database. */
  GRAFT_ADMIN_TOKEN: z
    .string()
    .regex(HEX64, 'must be 64 lower-case hex characters (generate one with: openssl rand -hex 32)')
    .optional(),
  /** Enables POST /api/v1/auth/dev-login (any email logs in). Never in production. */
  GRAFT_DEV_AUTH: bool.default(false),
  /** 32-byte key (64 hex chars or base64) that encrypts secrets and JWT keys at rest. */
  GRAFT_MASTER_KEY: z.string().min(1).optional(),
  /** Lifetime of user JWTs from dev login, in seconds. */
  GRAFT_USER_TOKEN_TTL_SECS: z.coerce.number().int().min(60).max(30 * 86400).default(12 * 3600),
  /** Lifetime of agent JWTs, in seconds (agents refresh before expiry). */
  GRAFT_AGENT_TOKEN_TTL_SECS: z.coerce.number().int().min(60).max(86400).default(15 * 60),

  // --- Brokers ---
  /** Lifetime of a broker join token (phase 1 of registration), in seconds; at most 24 h. */
  GRAFT_BROKER_JOIN_TTL_SECS: z.coerce.number().int().min(60).max(86400).default(3600),
  /** How long a broker's previous secret keeps working after a rotation, in seconds. */
  GRAFT_BROKER_SECRET_GRACE_SECS: z.coerce.number().int().min(0).max(7 * 86400).default(3600),
  /** Heartbeat interval the hub asks brokers for, in ms; a broker missing 3 is offline. */
  GRAFT_BROKER_HEARTBEAT_MS: z.coerce.number().int().min(100).max(60_000).default(5_000),
  /** An agent that has reported before but sent nothing (status or heartbeat) for this long gets activity `offline`, in seconds. */
  GRAFT_AGENT_OFFLINE_AFTER_SECS: z.coerce.number().min(1).max(86_400).default(120),
  /** A working, thinking or executing agent whose activity has not changed for this long gets activity `stalled`, in seconds. */
  GRAFT_AGENT_STALLED_AFTER_SECS: z.coerce.number().min(1).max(7 * 86_400).default(300),
  /** How long the hub waits for a broker to answer a command, in ms (reconciliation repairs what times out). */
  GRAFT_BROKER_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).default(10_000),

  // --- Cluster ---
  /** Redis for cluster mode: with it the event bus, tunnel routing, the replay cache and background jobs span every hub replica. */
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').optional(),
  /** Prefix of every Redis key, channel and queue of this cluster: clusters sharing one Redis must each have their own. */
  GRAFT_REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - only (1-64)').default('graft'),

  // --- Agent log archive ---
  /** Where finished agents' logs are archived: `fs` (under GRAFT_DATA_DIR/log-archive) or `s3`. */
  GRAFT_LOG_ARCHIVE: z.enum(['fs', 's3']).default('fs'),
  /** Directory of the fs archive (default GRAFT_DATA_DIR/log-archive). */
  GRAFT_LOG_ARCHIVE_DIR: z.string().min(1).optional(),
  /** S3-compatible endpoint, e.g. http://minio:9000 (unset: AWS S3). */
  GRAFT_LOG_ARCHIVE_S3_ENDPOINT: z.url().optional(),
  /** Bucket of the s3 archive (required with GRAFT_LOG_ARCHIVE=s3). */
  GRAFT_LOG_ARCHIVE_S3_BUCKET: z.string().min(3).max(63).optional(),
  /** Region of the s3 archive. */
  GRAFT_LOG_ARCHIVE_S3_REGION: z.string().min(1).default('us-east-1'),
  /** Access key id of the s3 archive. */
  GRAFT_LOG_ARCHIVE_S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  /** Secret access key of the s3 archive. */
  GRAFT_LOG_ARCHIVE_S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  /** Path-style addressing (most self-hosted S3 servers need it). */
  GRAFT_LOG_ARCHIVE_S3_FORCE_PATH_STYLE: bool.default(true),
  /** Key prefix inside the bucket. */
  GRAFT_LOG_ARCHIVE_S3_PREFIX: z.string().optional(),

  // --- Observability ---
  /** Minimum log level. */
  GRAFT_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
});

/** Parsed hub configuration. */
export interface HubConfig {
  http: { host: string; port: number; publicUrl: string | undefined };
  storage: { dataDir: string; databaseUrl: string | undefined; poolSize: number; autoMigrate: boolean };
  /** Redis of cluster mode; undefined runs single-node (in-process adapters). */
  redisUrl: string | undefined;
  /** Prefix of this cluster's Redis keys, channels and queues. */
  redisPrefix: string;
  /** The log archive backend. */
  logArchive:
    | { kind: 'fs'; dir: string }
    | { kind: 's3'; endpoint: string | undefined; bucket: string; region: string; accessKeyId: string; secretAccessKey: string; forcePathStyle: boolean; prefix: string | undefined };
  security: {
    adminToken: string | undefined;
    devAuth: boolean;
    masterKey: string | undefined;
    userTokenTtlSecs: number;
    agentTokenTtlSecs: number;
  };
  brokers: { joinTtlSecs: number; secretGraceSecs: number; heartbeatIntervalMs: number; requestTimeoutMs: number };
  liveness: { agentOfflineAfterMs: number; agentStalledAfterMs: number };
  log: { level: 'debug' | 'info' | 'warn' | 'error' };
}

/** A configuration problem, reported as one line per bad variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Parses and checks the hub's environment. */
export function loadHubConfig(env: Record<string, string | undefined>): HubConfig {
  const parsed = HubEnv.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const e = parsed.data;
  if (e.DATABASE_URL && !e.GRAFT_MASTER_KEY) {
    throw new ConfigError('invalid configuration:\n  GRAFT_MASTER_KEY: required when DATABASE_URL is set (generate one with: openssl rand -hex 32)');
  }
  let logArchive: HubConfig['logArchive'];
  if (e.GRAFT_LOG_ARCHIVE === 's3') {
    const missing = (['GRAFT_LOG_ARCHIVE_S3_BUCKET', 'GRAFT_LOG_ARCHIVE_S3_ACCESS_KEY_ID', 'GRAFT_LOG_ARCHIVE_S3_SECRET_ACCESS_KEY'] as const).filter((k) => !e[k]);
    if (missing.length > 0) throw new ConfigError(`invalid configuration:\n  ${missing.join(', ')}: required with GRAFT_LOG_ARCHIVE=s3`);
    logArchive = {
      kind: 's3',
      endpoint: e.GRAFT_LOG_ARCHIVE_S3_ENDPOINT,
      bucket: e.GRAFT_LOG_ARCHIVE_S3_BUCKET ?? '',
      region: e.GRAFT_LOG_ARCHIVE_S3_REGION,
      accessKeyId: e.GRAFT_LOG_ARCHIVE_S3_ACCESS_KEY_ID ?? '',
      secretAccessKey: e.GRAFT_LOG_ARCHIVE_S3_SECRET_ACCESS_KEY ?? '',
      forcePathStyle: e.GRAFT_LOG_ARCHIVE_S3_FORCE_PATH_STYLE,
      prefix: e.GRAFT_LOG_ARCHIVE_S3_PREFIX,
    };
  } else logArchive = { kind: 'fs', dir: e.GRAFT_LOG_ARCHIVE_DIR ?? join(e.GRAFT_DATA_DIR, 'log-archive') };
  return {
    redisUrl: e.REDIS_URL,
    redisPrefix: e.GRAFT_REDIS_PREFIX,
    logArchive,
    http: { host: e.GRAFT_HUB_HOST, port: e.GRAFT_HUB_PORT, publicUrl: e.GRAFT_HUB_PUBLIC_URL },
    storage: { dataDir: e.GRAFT_DATA_DIR, databaseUrl: e.DATABASE_URL, poolSize: e.GRAFT_DB_POOL_SIZE, autoMigrate: e.GRAFT_AUTO_MIGRATE ?? !e.DATABASE_URL },
    security: {
      adminToken: e.GRAFT_ADMIN_TOKEN,
      devAuth: e.GRAFT_DEV_AUTH,
      masterKey: e.GRAFT_MASTER_KEY,
      userTokenTtlSecs: e.GRAFT_USER_TOKEN_TTL_SECS,
      agentTokenTtlSecs: e.GRAFT_AGENT_TOKEN_TTL_SECS,
    },
    brokers: {
      joinTtlSecs: e.GRAFT_BROKER_JOIN_TTL_SECS,
      secretGraceSecs: e.GRAFT_BROKER_SECRET_GRACE_SECS,
      heartbeatIntervalMs: e.GRAFT_BROKER_HEARTBEAT_MS,
      requestTimeoutMs: e.GRAFT_BROKER_REQUEST_TIMEOUT_MS,
    },
    liveness: { agentOfflineAfterMs: e.GRAFT_AGENT_OFFLINE_AFTER_SECS * 1000, agentStalledAfterMs: e.GRAFT_AGENT_STALLED_AFTER_SECS * 1000 },
    log: { level: e.GRAFT_LOG_LEVEL },
  };
}
