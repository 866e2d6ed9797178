import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The hub's Prometheus metrics, on a registry of its own. */
export interface HubMetrics {
  registry: Registry;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  signatureRejections: Counter<'reason'>;
  /** Broker tunnels held by this hub replica. */
  tunnels: { set(n: number): void };
  /** Commands sent to brokers, by command. */
  tunnelCommands: Counter<'command'>;
  /** Activities set by the liveness sweeps, by what the agent became (`offline`, `online` again, `stalled`). */
  livenessTransitions: Counter<'to'>;
  /** Agents' log bytes received and stored (from brokers), archived, and sent to readers. */
  logBytes: Counter<'what'>;
  /** Log acknowledgements sent to brokers. */
  logAcks: Counter;
  /** Time from sending a command to its broker's answer (local or routed), by command. */
  dispatchDuration: Histogram<'command'>;
  /** Commands forwarded to the replica holding the broker's tunnel, by outcome (ok, unreachable, timeout). */
  routedCommands: Counter<'outcome'>;
  /** End-to-end time of forwarded commands that got an answer. */
  routedDuration: Histogram;
  /** Agent status reports from brokers, by outcome (applied, stale, rejected). */
  statusUpdates: Counter<'outcome'>;
  /** Background job runs on this replica, by job and outcome (ok, failed). */
  jobRuns: Counter<'job' | 'outcome'>;
}

/** What the scrape-time gauges read (the database, the job queue); wired in server.ts. */
export interface HubMetricSources {
  agents(): Promise<Array<{ phase: string; activity: string | null; count: number }>>;
  /** Agents wanted running that no broker holds, by pending reason. */
  pending(): Promise<Array<{ reason: string | null; count: number }>>;
  /** Seconds since the last heartbeat of each connected broker. */
  heartbeatAges(): Promise<Array<{ brokerId: string; ageSecs: number }>>;
  /** Jobs by state (a missing state counts 0). */
  jobCounts(): Promise<Record<string, number>>;
  /** This replica's id (tunnels are per replica). */
  replicaId: string;
}

/** Creates the registry; gauges of agents, brokers and jobs are read from `sources` at scrape time. */
export function createHubMetrics(sources: HubMetricSources): HubMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // A scrape during a database outage still answers, with what the process itself knows.
  const readOr = async <T>(read: () => Promise<T>, fallback: T): Promise<T> => read().catch(() => fallback);
  const httpDuration = new Histogram({
    name: 'graft_http_request_duration_seconds',
    help: 'HTTP request latency by method, route pattern and status code',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  new Gauge({
    name: 'graft_agents',
    help: 'Agents by phase and activity (activity none outside running)',
    labelNames: ['phase', 'activity'] as const,
    registers: [registry],
    async collect() {
      const rows = await readOr(sources.agents, null);
      if (rows === null) return;
      this.reset();
      for (const { phase, activity, count } of rows) this.set({ phase, activity: activity ?? 'none' }, count);
    },
  });
  new Gauge({
    name: 'graft_pending_agents',
    help: 'Agents wanted running that wait for a broker, by pending reason',
    labelNames: ['reason'] as const,
    registers: [registry],
    async collect() {
      const rows = await readOr(sources.pending, null);
      if (rows === null) return;
      this.reset();
      for (const { reason, count } of rows) this.set({ reason: reason ?? 'unplaced' }, count);
    },
  });
  new Gauge({
    name: 'graft_broker_heartbeat_age_seconds',
    help: 'Seconds since the last heartbeat of each connected broker',
    labelNames: ['broker'] as const,
    registers: [registry],
    async collect() {
      const rows = await readOr(sources.heartbeatAges, null);
      if (rows === null) return;
      this.reset();
      for (const { brokerId, ageSecs } of rows) this.set({ broker: brokerId }, ageSecs);
    },
  });
  new Gauge({
    name: 'graft_job_queue_depth',
    help: 'Background jobs by state (waiting, active, delayed, failed)',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const counts = await readOr(sources.jobCounts, null);
      if (counts === null) return;
      this.reset();
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  const signatureRejections = new Counter({
    name: 'graft_signature_rejections_total',
    help: 'Broker-signed requests refused, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const tunnelGauge = new Gauge({ name: 'graft_broker_tunnels', help: 'Broker tunnels held by this hub replica', labelNames: ['replica'] as const, registers: [registry] });
  const tunnels = { set: (n: number) => tunnelGauge.set({ replica: sources.replicaId }, n) };
  tunnels.set(0);
  const tunnelCommands = new Counter({
    name: 'graft_tunnel_commands_total',
    help: 'Commands sent to brokers over tunnels held by this replica, by command',
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
    help: 'Agent log bytes received from brokers (received), stored (stored), moved to the archive (archived) and sent to readers (read)',
    labelNames: ['what'] as const,
    registers: [registry],
  });
  const logAcks = new Counter({ name: 'graft_log_acks_total', help: 'Log acknowledgements sent to brokers', registers: [registry] });
  const dispatchDuration = new Histogram({
    name: 'graft_dispatch_duration_seconds',
    help: "Time from sending a command to the broker's answer, local or routed through another replica, by command",
    labelNames: ['command'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const routedCommands = new Counter({
    name: 'graft_routed_commands_total',
    help: "Commands forwarded to the replica holding the broker's tunnel, by outcome (ok, unreachable, timeout)",
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const routedDuration = new Histogram({
    name: 'graft_routed_command_duration_seconds',
    help: 'End-to-end time of forwarded commands that were answered',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const statusUpdates = new Counter({
    name: 'graft_status_updates_total',
    help: 'Agent status reports from brokers, by outcome (applied, stale, rejected)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const jobRuns = new Counter({
    name: 'graft_job_runs_total',
    help: 'Background job runs on this replica, by job and outcome (ok, failed)',
    labelNames: ['job', 'outcome'] as const,
    registers: [registry],
  });
  return {
    registry,
    httpDuration,
    signatureRejections,
    tunnels,
    tunnelCommands,
    livenessTransitions,
    logBytes,
    logAcks,
    dispatchDuration,
    routedCommands,
    routedDuration,
    statusUpdates,
    jobRuns,
  };
}
