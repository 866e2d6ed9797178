import { join } from 'node:path';
import type { Logger } from '@graft/log';
import { AgentRecords } from './agent-records.js';
import { AgentSupervisor } from './agent-supervisor.js';
import { findAgentTool, withBinOnPath, writeAgentToolShim } from './agent-tool-shim.js';
import { registerAndJoin } from './bootstrap.js';
import { createBrokerMetrics } from './broker-metrics.js';
import type { BrokerConfig } from './config.js';
import { type BrokerCredentials, CredentialsError, readBrokerCredentials } from './credentials.js';
import { startLocalApi } from './local-api.js';
import type { AgentRuntime } from './runtime/agent-runtime.js';
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
  /** The built `graft-agent` entry point (`@graft/agent/main`); without it agents get no `graft-agent`. */
  agentMain?: string | undefined;
  /** The node binary that runs it (default: the broker's own). */
  nodePath?: string | undefined;
}

/** The built `graft-agent`, found like any dependency; an unbuilt one is reported, not fatal. */
function defaultTools(log: Logger): BrokerTools {
  const tool = findAgentTool();
  if ('missing' in tool) {
    log.warn('broker.agent_tool_missing', { reason: tool.missing });
    return {};
  }
  return { agentMain: tool.agentMain, nodePath: process.execPath };
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
  let agentEnv = config.agents.baseEnv;
  if (tools.agentMain !== undefined) {
    const binDir = join(config.dataDir, 'bin');
    const shim = await writeAgentToolShim(binDir, tools.nodePath ?? process.execPath, tools.agentMain);
    agentEnv = withBinOnPath(agentEnv, binDir);
    log.info('broker.agent_tool_ready', { shim, agentMain: tools.agentMain });
  }
  const runtimes = new Map<string, AgentRuntime>();
  for (const name of config.agents.runtimes) {
    if (name === 'process') runtimes.set(name, new ProcessRuntime({ rootDir: join(config.dataDir, 'agents'), baseEnv: agentEnv, log: log.child({ component: 'process-runtime' }) }));
  }
  const records = new AgentRecords(config.dataDir);
  const metrics = createBrokerMetrics(() => {
    const byPhase = new Map<string, number>();
    for (const r of records.all()) byPhase.set(r.phase, (byPhase.get(r.phase) ?? 0) + 1);
    return byPhase;
  });
  const supervisor = new AgentSupervisor({
    records,
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
        for (const r of runtimes.values()) await r.close();
        log.info('broker.stopped', {});
      })();
      return stopping;
    },
  };
}
