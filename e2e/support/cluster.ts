import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import { type BrokerProcess, createFreshDatabase, type HubProcess, type JoinedBroker, registerAndJoinBroker, startBrokerProcess, startHubProcess, startTestRedis, type TestRedis, waitUntil } from '@graft/testkit';
import { killLeftoverAgents } from './agent-processes.js';
import { freePort } from './free-port.js';
import { createNatNamespace, type NatNamespace } from './nat-namespace.js';
import { forwardIntoNamespace } from './netns-port-forward.js';
import { type NginxBalancer, startNginxBalancer } from './nginx-balancer.js';
import { type PrometheusServer, type ScrapeTarget, startPrometheus } from './prometheus-server.js';
import { type PrivatePostgres, startPrivatePostgres } from './private-postgres.js';
import { startTcpCutter, type TcpCutter } from './tcp-cutter.js';

/** One broker of a cluster, as the test asks for it. */
export interface ClusterBrokerSpec {
  name: string;
  /** Runs inside a NAT namespace and dials the balancer through the router. */
  nat?: boolean;
  /** Dials the balancer through a {@link TcpCutter} whose connections the test can drop. */
  cuttable?: boolean;
  /** GRAFT_BROKER_MAX_AGENTS, also announced at join (default 50). */
  maxAgents?: number;
}

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  /** Hub replicas behind the balancer (default 3). */
  replicas?: number;
  /** A fresh database on the run's shared Postgres, or a private Postgres the test may restart. */
  postgres: { shared: string } | 'private';
  brokers: readonly ClusterBrokerSpec[];
  /** Starts Prometheus scraping every hub and broker. */
  prometheus?: boolean;
}

/** One hub replica: a fixed port behind the balancer, and its current process. */
export interface ClusterHub {
  index: number;
  port: number;
  /** Direct URL, bypassing the balancer. */
  url: string;
  /** The current process (replaced by `restart`); its logs stay readable after it died. */
  proc: HubProcess;
  /** Every process this replica ran, the current one last (a killed one's logs tell what it did). */
  history: HubProcess[];
  alive: boolean;
  /** SIGKILLs the replica. */
  kill(): Promise<void>;
  /** Starts the replica again on its port (after `kill`). */
  restart(): Promise<void>;
}

/** One broker daemon of the cluster. */
export interface ClusterBroker {
  name: string;
  brokerId: string;
  dataDir: string;
  credentials: JoinedBroker;
  proc: BrokerProcess;
  nat: boolean;
  cutter: TcpCutter | undefined;
  /** `host:port` of its `/metrics` as seen from the root namespace (a port forward for the NAT'd one). */
  metricsAddress: string;
}

/** A running cluster; `stop()` tears everything down in reverse order. */
export interface Cluster {
  adminToken: string;
  /** The balancer's URL (127.0.0.1): what clients use. */
  url: string;
  /** An admin client through the balancer. */
  admin: GraftClient;
  nginx: NginxBalancer;
  hubs: ClusterHub[];
  brokers: ClusterBroker[];
  /** The private Redis; `restart` stops it, waits `downMs` and starts it again on the same port (empty). */
  redis: { url: string; restart(downMs?: number): Promise<void> };
  /** Present with `postgres: 'private'`. */
  postgres: PrivatePostgres | undefined;
  databaseUrl: string;
  prometheus: PrometheusServer | undefined;
  nat: NatNamespace | undefined;
  /** Goes into every agent command of the file, so that leftovers are found and killed. */
  marker: string;
  broker(name: string): ClusterBroker;
  /** Every log line about an agent, from its broker and every hub process (tagged `proc`), in time order: for failure messages. */
  agentStory(agentId: string): Array<Record<string, unknown>>;
  /** The live replica holding the broker's current tunnel, if any. */
  tunnelOwner(b: ClusterBroker): ClusterHub | undefined;
  /** Waits until a live replica holds the broker's tunnel (optionally one other than `notOn`). */
  waitForTunnelOwner(b: ClusterBroker, options?: { notOn?: ClusterHub; timeoutMs?: number }): Promise<ClusterHub>;
  /** Writes every hub and broker log line, tagged with its process (`proc`) and in time order, to `file` (for a failed run). */
  dumpLogs(file: string): void;
  stop(): Promise<void>;
}

/**
 * Which replica holds a broker's tunnel: the session id of the broker's last `tunnel.connected`
 * (not followed by a disconnect) names the session, and the live replica that logged
 * `tunnel.connected` for that session (and not `tunnel.closed`) holds it. `graft_broker_tunnels` only
 * counts tunnels and the broker API does not say.
 */
function ownerOf(b: ClusterBroker, hubs: readonly ClusterHub[]): ClusterHub | undefined {
  const last = b.proc.logs.filter((l) => l.event === 'tunnel.connected' || l.event === 'tunnel.disconnected').at(-1);
  if (last?.event !== 'tunnel.connected' || typeof last.sessionId !== 'string') return undefined;
  const session = last.sessionId;
  return hubs.find(
    (h) =>
      h.alive &&
      h.proc.logs.some((l) => l.event === 'tunnel.connected' && l.sessionId === session && l.brokerId === b.brokerId) &&
      !h.proc.logs.some((l) => l.event === 'tunnel.closed' && l.sessionId === session),
  );
}

/**
 * Starts a cluster of real processes: Redis (private), Postgres (a fresh database on the shared
 * server, or a private restartable server), N hub replicas on fixed ephemeral ports sharing the
 * database, Redis, master key, admin token and log archive, nginx balancing over them (also on the
 * NAT's root address when a broker is NAT'd), brokers that reach the hub through nginx only (one
 * through a NAT namespace, some through a TCP cutter), and Prometheus scraping every hub and broker.
 * A failure halfway tears down what was started.
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const teardown: Array<() => Promise<void> | void> = [];
  const runTeardown = async () => {
    for (const step of teardown.reverse()) {
      try {
        await step();
      } catch {
        // Keep tearing down: one failed step must not leave the rest running.
      }
    }
    teardown.length = 0;
  };
  try {
    const adminToken = randomBytes(32).toString('hex');
    const masterKey = randomBytes(32).toString('hex');
    const marker = `graft-e2e-${randomBytes(6).toString('hex')}`;

    const nat = options.brokers.some((b) => b.nat) ? createNatNamespace() : undefined;
    if (nat) teardown.push(() => nat.destroy());

    // Redis and Postgres.
    let redis: TestRedis = await startTestRedis();
    const redisPort = Number(new URL(redis.url).port);
    teardown.push(() => redis.stop());
    let postgres: PrivatePostgres | undefined;
    let adminUrl: string;
    if (options.postgres === 'private') {
      const pg = await startPrivatePostgres();
      postgres = pg;
      teardown.push(() => pg.stop());
      adminUrl = pg.adminUrl;
    } else adminUrl = options.postgres.shared;
    const database = await createFreshDatabase(adminUrl);
    if (options.postgres !== 'private') teardown.push(() => database.drop());

    // Hub replicas on fixed ports (a restarted replica comes back where nginx expects it).
    const archiveDir = mkdtempSync(join(tmpdir(), 'graft-e2e-cluster-archive-'));
    teardown.push(() => rmSync(archiveDir, { recursive: true, force: true }));
    const replicas = options.replicas ?? 3;
    const ports = await Promise.all(Array.from({ length: replicas }, () => freePort()));
    const hubEnv = (port: number) => ({
      REDIS_URL: redis.url,
      GRAFT_ADMIN_TOKEN: adminToken,
      GRAFT_MASTER_KEY: masterKey,
      GRAFT_HUB_PORT: String(port),
      GRAFT_LOG_ARCHIVE_DIR: archiveDir,
      GRAFT_DB_POOL_SIZE: '10',
    });
    const hubs: ClusterHub[] = [];
    const started = await Promise.allSettled(ports.map((port) => startHubProcess({ databaseUrl: database.url, env: hubEnv(port), timeoutMs: 30_000 })));
    started.forEach((result, index) => {
      if (result.status !== 'fulfilled') return;
      const port = ports[index] ?? 0;
      const hub: ClusterHub = {
        index,
        port,
        url: `http://127.0.0.1:${port}`,
        proc: result.value,
        history: [result.value],
        alive: true,
        kill: async () => {
          hub.alive = false;
          await hub.proc.stop('SIGKILL');
        },
        restart: async () => {
          hub.proc = await startHubProcess({ databaseUrl: database.url, env: hubEnv(port), timeoutMs: 30_000 });
          hub.history.push(hub.proc);
          hub.alive = true;
        },
      };
      hubs.push(hub);
    });
    teardown.push(async () => {
      await Promise.all(hubs.map((h) => h.proc.stop('SIGKILL')));
    });
    const failedHub = started.find((r) => r.status === 'rejected');
    if (failedHub?.status === 'rejected') throw failedHub.reason;

    const nginx = await startNginxBalancer({ upstreams: hubs.map((h) => h.url), listen: nat ? ['127.0.0.1', nat.rootAddress] : ['127.0.0.1'] });
    teardown.push(() => nginx.stop());

    // Brokers: registered through the balancer, each dialing it its own way.
    const brokers: ClusterBroker[] = [];
    const dataDirs: string[] = [];
    teardown.push(() => {
      killLeftoverAgents(marker, dataDirs);
      for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
    });
    teardown.push(async () => {
      await Promise.all(brokers.map((b) => b.proc.stop('SIGKILL').catch(() => null)));
    });
    for (const spec of options.brokers) {
      const maxAgents = spec.maxAgents ?? 50;
      const joined = await registerAndJoinBroker(nginx.url, adminToken, { name: spec.name, autoProvide: true }, { maxAgents });
      let cutter: TcpCutter | undefined;
      let hubUrl = nginx.url;
      if (spec.nat && nat) hubUrl = nginx.urlOn(nat.rootAddress);
      else if (spec.cuttable) {
        const c = await startTcpCutter('127.0.0.1', nginx.port);
        cutter = c;
        teardown.push(() => c.stop());
        hubUrl = c.url;
      }
      const credentials: JoinedBroker = { ...joined, hubUrl };
      const dataDir = mkdtempSync(join(tmpdir(), `graft-e2e-cluster-${spec.name}-`));
      dataDirs.push(dataDir);
      const proc = await startBrokerProcess({
        dataDir,
        credentials,
        env: { GRAFT_BROKER_MAX_AGENTS: String(maxAgents), GRAFT_BROKER_HOSTNAME: spec.name, GRAFT_BROKER_RUNTIMES: 'process' },
        ...(spec.nat && nat ? { commandPrefix: nat.exec } : {}),
      });
      const broker: ClusterBroker = { name: spec.name, brokerId: joined.brokerId, dataDir, credentials, proc, nat: Boolean(spec.nat && nat), cutter, metricsAddress: new URL(proc.url).host };
      brokers.push(broker);
      if (broker.nat && nat) {
        const forward = await forwardIntoNamespace(nat.exec, Number(new URL(proc.url).port));
        teardown.push(() => forward.stop());
        broker.metricsAddress = forward.address;
      }
    }
    await Promise.all(brokers.map((b) => b.proc.waitForLog((l) => l.event === 'tunnel.connected', 30_000)));

    let prometheus: PrometheusServer | undefined;
    if (options.prometheus) {
      const targets: ScrapeTarget[] = [
        ...hubs.map((h) => ({ job: 'hub', address: `127.0.0.1:${h.port}`, labels: { replica: `hub-${h.index}` } })),
        ...brokers.map((b) => ({ job: 'broker', address: b.metricsAddress, labels: { name: b.name } })),
      ];
      const p = await startPrometheus(targets);
      prometheus = p;
      teardown.push(() => p.stop());
    }

    const cluster: Cluster = {
      adminToken,
      url: nginx.url,
      admin: new GraftClient({ baseUrl: nginx.url, token: adminToken, timeoutMs: 10_000 }),
      nginx,
      hubs,
      brokers,
      redis: {
        url: redis.url,
        restart: async (downMs = 0) => {
          await redis.stop();
          await new Promise((r) => setTimeout(r, downMs));
          redis = await startTestRedis({ port: redisPort });
        },
      },
      postgres,
      databaseUrl: database.url,
      prometheus,
      nat,
      marker,
      broker: (name) => {
        const b = brokers.find((x) => x.name === name);
        if (!b) throw new Error(`no broker named ${name} in the cluster`);
        return b;
      },
      agentStory: (agentId) =>
        [
          ...brokers.flatMap((b) => b.proc.logs.filter((l) => l.agentId === agentId).map((l): Record<string, unknown> => ({ ...l, proc: b.name }))),
          ...hubs.flatMap((h) => h.history.flatMap((p, n) => p.logs.filter((l) => l.agentId === agentId).map((l): Record<string, unknown> => ({ ...l, proc: `hub-${h.index}${n > 0 ? `#${n}` : ''}` })))),
        ].sort((a, b) => String(a.ts).localeCompare(String(b.ts))),
      dumpLogs: (file) => {
        const lines = [
          ...brokers.flatMap((b) => b.proc.logs.map((l): Record<string, unknown> => ({ ...l, proc: b.name }))),
          ...hubs.flatMap((h) => h.history.flatMap((p, n) => p.logs.map((l): Record<string, unknown> => ({ ...l, proc: `hub-${h.index}${n > 0 ? `#${n}` : ''}` })))),
        ].sort((a, b) => String(a.ts).localeCompare(String(b.ts)));
        writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
      },
      tunnelOwner: (b) => ownerOf(b, hubs),
      waitForTunnelOwner: (b, o = {}) =>
        waitUntil(
          async () => {
            const owner = ownerOf(b, hubs);
            return owner && owner !== o.notOn ? owner : undefined;
          },
          o.timeoutMs ?? 15_000,
        ),
      stop: runTeardown,
    };
    return cluster;
  } catch (err) {
    await runTeardown();
    throw err;
  }
}
