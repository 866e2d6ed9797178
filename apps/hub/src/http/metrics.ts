import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The hub's Prometheus metrics, on a registry of its own. */
export interface HubMetrics {
  registry: Registry;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  signatureRejections: Counter<'reason'>;
  /** Broker tunnels held by this hub. */
  tunnels: Gauge;
  /** Commands sent to brokers, by command. */
  tunnelCommands: Counter<'command'>;
  /** Activities set by the liveness sweeps, by what the agent became (`offline`, `online` again, `stalled`). */
  livenessTransitions: Counter<'to'>;
  /** Agents' log bytes stored (from brokers) and sent to readers. */
  logBytes: Counter<'what'>;
}

/** Creates the registry; `agentsByPhase` is read from the database at scrape time. */
export function createHubMetrics(agentsByPhase: () => Promise<Array<{ phase: string; count: number }>>): HubMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const httpDuration = new Histogram({
    name: 'graft_http_request_duration_seconds',
    help: 'HTTP request latency by method, route pattern and status code',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  new Gauge({
    name: 'graft_agents',
    help: 'Agents by phase',
    labelNames: ['phase'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const { phase, count } of await agentsByPhase()) this.set({ phase }, count);
    },
  });
  const signatureRejections = new Counter({
    name: 'graft_signature_rejections_total',
    help: 'Broker-signed requests refused, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const tunnels = new Gauge({ name: 'graft_broker_tunnels', help: 'Broker tunnels held by this hub', registers: [registry] });
  const tunnelCommands = new Counter({
    name: 'graft_tunnel_commands_total',
    help: 'Commands sent to brokers over their tunnels, by command',
    labelNames: ['command'] as const,
    registers: [registry],
  });
  const livenessTransitions = new Counter({
    name: 'graft_agent_liveness_transitions_total',
    help: 'Changes made by the liveness sweeps: activity offline, online (restored) or stalled, and auto-suspension (suspended)',
    labelNames: ['to'] as const,
    registers: [registry],
  });
  const logBytes = new Counter({
    name: 'graft_log_bytes_total',
    help: 'Agent log bytes stored from brokers (stored), moved to the archive (archived) and sent to readers (read)',
    labelNames: ['what'] as const,
    registers: [registry],
  });
  return { registry, httpDuration, signatureRejections, tunnels, tunnelCommands, livenessTransitions, logBytes };
}
