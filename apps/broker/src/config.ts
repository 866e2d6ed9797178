import { availableParallelism, homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { BrokerRuntime } from '@graft/protocol';
import { z } from 'zod';

/** Runtimes this build of the broker can run agents with. */
export const AVAILABLE_RUNTIMES: readonly BrokerRuntime[] = ['process', 'bwrap', 'docker'];

const runtimeList = z
  .string()
  .transform((s) => s.split(',').map((r) => r.trim()).filter((r) => r !== ''))
  .pipe(z.array(BrokerRuntime).min(1, 'name at least one runtime'))
  .refine((rs) => new Set(rs).size === rs.length, 'runtimes repeat')
  .refine((rs) => rs.every((r) => AVAILABLE_RUNTIMES.includes(r)), `this broker build offers only: ${AVAILABLE_RUNTIMES.join(', ')}`);

/** The broker's environment, grouped by area. Parsed once in main.ts (or the CLI); nothing else reads process.env. */
const BrokerEnv = z.object({
  // --- Identity and files ---
  /** Where the broker keeps credentials.json, agent records and workspaces. */
  GRAFT_BROKER_DATA_DIR: z.string().min(1).default(join(homedir(), '.graft', 'broker')),
  /** Hostname reported to the hub. */
  GRAFT_BROKER_HOSTNAME: z.string().min(1).max(255).default(hostname()),

  // --- Local API ---
  /** Interface of the local API (health, metrics, agents). */
  GRAFT_BROKER_HOST: z.string().min(1).default('127.0.0.1'),
  /** Port of the local API; 0 picks a free one (logged as `broker.listening`). */
  GRAFT_BROKER_PORT: z.coerce.number().int().min(0).max(65535).default(9800),

  // --- Agents ---
  /** Comma-separated runtimes this node offers. */
  GRAFT_BROKER_RUNTIMES: runtimeList.default(['process']),
  /** Most agents running at once; placement and the broker both enforce it. Default 4 per CPU. */
  GRAFT_BROKER_MAX_AGENTS: z.coerce.number().int().min(1).max(100_000).default(availableParallelism() * 4),
  /** How long an agent gets between SIGTERM and SIGKILL when stopped, in ms. */
  GRAFT_BROKER_STOP_GRACE_MS: z.coerce.number().int().min(0).max(600_000).default(10_000),
  /** Most bytes of output kept (spooled and shipped) per agent; past it a marker says so. Default 1 GiB. */
  GRAFT_BROKER_LOG_LIMIT_BYTES: z.coerce.number().int().min(1024).max(1024 ** 4).default(1024 ** 3),

  // --- Docker runtime ---
  /** Docker-API endpoint: `unix:///path/to.sock` or `tcp://host:port` (Podman's API socket works). */
  DOCKER_HOST: z.string().min(1).default('unix:///var/run/docker.sock'),
  /** Image for agents whose template names none. */
  GRAFT_BROKER_DOCKER_IMAGE: z.string().min(1).max(512).default('localhost/graft-agent:latest'),

  // --- Tunnel ---
  /** First step of the reconnect backoff, in ms (full jitter, doubling up to the max). */
  GRAFT_BROKER_BACKOFF_BASE_MS: z.coerce.number().int().min(10).max(60_000).default(1_000),
  /** Ceiling of the reconnect backoff, in ms. */
  GRAFT_BROKER_BACKOFF_MAX_MS: z.coerce.number().int().min(10).max(600_000).default(60_000),

  // --- First start without credentials (what `npm start` uses) ---
  /** Hub to register with on first start, when the data dir holds no credentials yet. */
  GRAFT_BROKER_BOOTSTRAP_HUB_URL: z.url().optional(),
  /** A platform admin's API key for that registration (phase 1); used once, never stored. */
  GRAFT_BROKER_BOOTSTRAP_TOKEN: z.string().min(1).optional(),
  /** Name to register under (default: the hostname, lower-cased, plus the local API port). */
  GRAFT_BROKER_NAME: z.string().min(1).max(63).optional(),

  // --- Observability ---
  /** Minimum log level. */
  GRAFT_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
});

/** Parsed broker configuration. */
export interface BrokerConfig {
  dataDir: string;
  hostname: string;
  api: { host: string; port: number };
  /** `baseEnv`: what agents inherit from the broker's environment (PATH, HOME, LANG, TZ). */
  agents: { runtimes: BrokerRuntime[]; maxAgents: number; stopGraceMs: number; baseEnv: Record<string, string> };
  /** Per-agent log spool limit in bytes. */
  logs: { limitBytes: number };
  /** Where the docker runtime finds its engine, and the image of agents without one. */
  docker: { endpoint: { socketPath: string } | { host: string; port: number }; defaultImage: string };
  tunnel: { backoffBaseMs: number; backoffMaxMs: number };
  bootstrap: { hubUrl: string; adminToken: string; name: string | undefined } | undefined;
  log: { level: 'debug' | 'info' | 'warn' | 'error' };
}

/** Variables of the broker's own environment that agents inherit; nothing else of it reaches them. */
const INHERITED_ENV = ['PATH', 'HOME', 'LANG', 'TZ'] as const;

/** A configuration problem, reported as one line per bad variable. */
export class BrokerConfigError extends Error {
  override readonly name = 'BrokerConfigError';
}

/** Parses and checks the broker's environment. */
export function loadBrokerConfig(env: Readonly<Record<string, string | undefined>>): BrokerConfig {
  // An empty variable means unset, as in a shell `VAR= cmd`.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = BrokerEnv.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new BrokerConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const e = parsed.data;
  if ((e.GRAFT_BROKER_BOOTSTRAP_HUB_URL === undefined) !== (e.GRAFT_BROKER_BOOTSTRAP_TOKEN === undefined)) {
    throw new BrokerConfigError('invalid configuration:\n  GRAFT_BROKER_BOOTSTRAP_HUB_URL and GRAFT_BROKER_BOOTSTRAP_TOKEN go together');
  }
  const endpoint = dockerEndpoint(e.DOCKER_HOST);
  if (endpoint === null) throw new BrokerConfigError(`invalid configuration:\n  DOCKER_HOST: expected unix:///path or tcp://host:port, got ${e.DOCKER_HOST}`);
  if (e.GRAFT_BROKER_BACKOFF_MAX_MS < e.GRAFT_BROKER_BACKOFF_BASE_MS) {
    throw new BrokerConfigError('invalid configuration:\n  GRAFT_BROKER_BACKOFF_MAX_MS: must not be below GRAFT_BROKER_BACKOFF_BASE_MS');
  }
  return {
    dataDir: e.GRAFT_BROKER_DATA_DIR,
    hostname: e.GRAFT_BROKER_HOSTNAME,
    api: { host: e.GRAFT_BROKER_HOST, port: e.GRAFT_BROKER_PORT },
    agents: {
      runtimes: e.GRAFT_BROKER_RUNTIMES,
      maxAgents: e.GRAFT_BROKER_MAX_AGENTS,
      stopGraceMs: e.GRAFT_BROKER_STOP_GRACE_MS,
      baseEnv: Object.fromEntries(INHERITED_ENV.flatMap((name) => (env[name] ? [[name, env[name]]] : []))),
    },
    docker: { endpoint, defaultImage: e.GRAFT_BROKER_DOCKER_IMAGE },
    logs: { limitBytes: e.GRAFT_BROKER_LOG_LIMIT_BYTES },
    tunnel: { backoffBaseMs: e.GRAFT_BROKER_BACKOFF_BASE_MS, backoffMaxMs: e.GRAFT_BROKER_BACKOFF_MAX_MS },
    bootstrap:
      e.GRAFT_BROKER_BOOTSTRAP_HUB_URL && e.GRAFT_BROKER_BOOTSTRAP_TOKEN
        ? { hubUrl: e.GRAFT_BROKER_BOOTSTRAP_HUB_URL, adminToken: e.GRAFT_BROKER_BOOTSTRAP_TOKEN, name: e.GRAFT_BROKER_NAME }
        : undefined,
    log: { level: e.GRAFT_LOG_LEVEL },
  };
}

/** `unix:///path` or `tcp://host:port` as dockerode options; null when it is neither. */
function dockerEndpoint(value: string): { socketPath: string } | { host: string; port: number } | null {
  if (value.startsWith('unix://')) return value.length > 'unix://'.length ? { socketPath: value.slice('unix://'.length) } : null;
  if (value.startsWith('/')) return { socketPath: value };
  const m = /^tcp:\/\/([^:/]+):(\d{1,5})\/?$/.exec(value);
  return m?.[1] && m[2] ? { host: m[1], port: Number(m[2]) } : null;
}
