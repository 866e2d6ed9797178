import { join } from 'node:path';
import type { Logger } from '@graft/log';
import { AgentRecords } from './agent-records.js';
import { AgentSupervisor } from './agent-supervisor.js';
import { type AgentToolBundles, findAgentTool, installAgentTool } from './agent-tools.js';
import { registerAndJoin } from './bootstrap.js';
import { createBrokerMetrics } from './broker-metrics.js';
import type { BrokerConfig } from './config.js';
import { type BrokerCredentials, CredentialsError, readBrokerCredentials } from './credentials.js';
import { startHubRelay } from './hub-relay.js';
import { startLocalApi } from './local-api.js';
import { LogShipper } from './logs/log-shipper.js';
import type { AgentRuntime, AgentTools } from './runtime/agent-runtime.js';
import { BwrapRuntime } from './runtime/bwrap-runtime.js';
import { DockerRuntime } from './runtime/docker-runtime.js';
import { ProcessRuntime } from './runtime/process-runtime.js';
import { TunnelClient } from './tunnel-client.js';
import { BROKER_VERSION } from './version.js';

/** A running broker daemon. */
export interface RunningBroker {
  brokerId: string;
  /** URL of the local API. */
  url: string;
  port: number;
  /** Closes the tunnel and the local API; agents keep running and are re-adopted by the next start. */
  stop(): Promise<void>;
  /** Resolves when the hub revoked this broker (it was deleted). */
  revoked: Promise<string>;
}

/** Files the broker hands to agents; found as a dependency unless given (tests give them). */
export interface BrokerTools {
  /** The built self-contained bundles of `@graft/agent`; without them agents get no `graft-agent`. */
  agentTool?: AgentToolBundles | undefined;
}

/** The built `graft-agent`, found like any dependency; an unbuilt one is reported, not fatal. */
function defaultTools(log: Logger): BrokerTools {
  const tool = findAgentTool();
  if ('missing' in tool) {
    log.warn('broker.agent_tool_missing', { reason: tool.missing });
    return {};
  }
  return { agentTool: tool.bundles };
}

/** One adapter per runtime the node offers, each keeping its agents under `<dataDir>/agents/<runtime>`; containers carry the broker's id as label. */
function createRuntimes(config: BrokerConfig, brokerId: string, tools: AgentTools, log: Logger): Map<string, AgentRuntime> {
  const runtimes = new Map<string, AgentRuntime>();
  const baseEnv = config.agents.baseEnv;
  for (const name of config.agents.runtimes) {
    const rootDir = join(config.dataDir, 'agents', name);
    switch (name) {
      case 'process':
        runtimes.set(name, new ProcessRuntime({ rootDir, baseEnv, tools, log: log.child({ component: 'process-runtime' }) }));
        break;
      case 'bwrap':
        runtimes.set(name, new BwrapRuntime({ rootDir, baseEnv, tools, log: log.child({ component: 'bwrap-runtime' }) }));
        break;
      case 'docker':
        runtimes.set(
          name,
          new DockerRuntime({
            engine: config.docker.endpoint,
            rootDir,
            defaultImage: config.docker.defaultImage,
            brokerLabel: brokerId,
            tools,
            log: log.child({ component: 'docker-runtime' }),
          }),
        );
        break;
    }
  }
  return runtimes;
}

/** Starts the broker: credentials (or first-start registration), runtimes, records, local API, tunnel. */
export async function startBroker(config: BrokerConfig, log: Logger, tools: BrokerTools = defaultTools(log)): Promise<RunningBroker> {
  let credentials: BrokerCredentials;
  try {
    credentials = readBrokerCredentials(config.dataDir);
  } catch (err) {
    if (!(err instanceof CredentialsError && err.code === 'credentials_missing' && config.bootstrap)) throw err;
    credentials = await registerAndJoin(config, config.bootstrap, BROKER_VERSION, log);
  }
  // What every agent gets whatever its runtime: graft-agent on PATH and a relay socket to the hub.
  const agentTools: AgentTools = { binDir: join(config.dataDir, 'bin'), runDir: join(config.dataDir, 'run') };
  if (tools.agentTool !== undefined) {
    const installed = await installAgentTool(agentTools.binDir, tools.agentTool);
    log.info('broker.agent_tool_ready', { tool: installed, bundle: tools.agentTool });
  }
  const relay = await startHubRelay({ runDir: agentTools.runDir, hubUrl: credentials.hubUrl, log: log.child({ component: 'hub-relay' }) });
  const runtimes = createRuntimes(config, credentials.brokerId, agentTools, log);
  const records = new AgentRecords(config.dataDir);
  const metrics = createBrokerMetrics(() => {
    const byPhase = new Map<string, number>();
    for (const r of records.all()) byPhase.set(r.phase, (byPhase.get(r.phase) ?? 0) + 1);
    return byPhase;
  });
  const logs = new LogShipper({
    rootDir: join(config.dataDir, 'logs'),
    limitBytes: config.logs.limitBytes,
    log: log.child({ component: 'logs' }),
    onBytes: (what, bytes) => metrics.logBytes.inc({ what }, bytes),
  });
  await logs.start();
  const supervisor = new AgentSupervisor({
    records,
    logs,
    runtimes,
    maxAgents: config.agents.maxAgents,
    stopGraceMs: config.agents.stopGraceMs,
    gitEnv: config.agents.baseEnv,
    metrics,
    log: log.child({ component: 'supervisor' }),
  });
  await supervisor.recover();
  let onRevoked: (reason: string) => void = () => {};
  const revoked = new Promise<string>((resolve) => {
    onRevoked = resolve;
  });
  const tunnel = new TunnelClient({
    hubUrl: credentials.hubUrl,
    brokerId: credentials.brokerId,
    secretKey: credentials.secretKey,
    hostname: config.hostname,
    brokerVersion: BROKER_VERSION,
    runtimes: config.agents.runtimes,
    supervisor,
    logs,
    metrics,
    log: log.child({ component: 'tunnel' }),
    backoff: { baseMs: config.tunnel.backoffBaseMs, maxMs: config.tunnel.backoffMaxMs },
    onRevoked,
  });
  const api = await startLocalApi({
    host: config.api.host,
    port: config.api.port,
    brokerId: credentials.brokerId,
    secretKey: credentials.secretKey,
    supervisor,
    metrics,
    tunnelUp: () => tunnel.isUp,
    version: BROKER_VERSION,
    log: log.child({ component: 'local-api' }),
  });
  tunnel.start();
  log.info('broker.listening', { url: api.url, port: api.port, brokerId: credentials.brokerId, hubUrl: credentials.hubUrl, runtimes: config.agents.runtimes, maxAgents: config.agents.maxAgents, version: BROKER_VERSION });
  let stopping: Promise<void> | undefined;
  return {
    brokerId: credentials.brokerId,
    url: api.url,
    port: api.port,
    revoked,
    stop: () => {
      stopping ??= (async () => {
        log.info('broker.stopping', {});
        await tunnel.stop();
        await api.close();
        await relay.close();
        await logs.stop();
        for (const r of runtimes.values()) await r.close();
        log.info('broker.stopped', {});
      })();
      return stopping;
    },
  };
}
