import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The broker's Prometheus metrics, on a registry of its own. */
export interface BrokerMetrics {
  registry: Registry;
  /** Commands handled, by command and outcome (`ok` or the refusal code). */
  commands: Counter<'command' | 'outcome'>;
  /** Time from prepare to a running process, by runtime. */
  runtimeStart: Histogram<'runtime'>;
  /** 1 while the tunnel to the hub is up (welcome received). */
  tunnelUp: Gauge;
  /** Tunnel connection attempts, by outcome. */
  tunnelConnects: Counter<'outcome'>;
  /** Agents' log bytes captured into the spool, shipped to the hub, and acknowledged by it. */
  logBytes: Counter<'what'>;
}

/** Creates the registry; `agentsByPhase` is read at scrape time. */
export function createBrokerMetrics(agentsByPhase: () => Map<string, number>): BrokerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: 'graft_broker_agents',
    help: 'Agents held by this broker, by phase',
    labelNames: ['phase'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [phase, n] of agentsByPhase()) this.set({ phase }, n);
    },
  });
  return {
    registry,
    commands: new Counter({ name: 'graft_broker_commands_total', help: 'Commands handled, by command and outcome', labelNames: ['command', 'outcome'] as const, registers: [registry] }),
    runtimeStart: new Histogram({
      name: 'graft_broker_runtime_start_seconds',
      help: 'Time from prepare to a running agent process, by runtime',
      labelNames: ['runtime'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    }),
    tunnelUp: new Gauge({ name: 'graft_broker_tunnel_up', help: '1 while the tunnel to the hub is established', registers: [registry] }),
    tunnelConnects: new Counter({ name: 'graft_broker_tunnel_connects_total', help: 'Tunnel connection attempts, by outcome', labelNames: ['outcome'] as const, registers: [registry] }),
    logBytes: new Counter({ name: 'graft_broker_log_bytes_total', help: 'Agent log bytes captured, shipped to the hub and acknowledged by it', labelNames: ['what'] as const, registers: [registry] }),
  };
}
