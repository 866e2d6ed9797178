import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createHubMetrics } from './metrics.js';

const sources = {
  replicaId: 'replica-a',
  agents: async () => [
    { phase: 'running', activity: 'working', count: 3 },
    { phase: 'created', activity: null, count: 2 },
  ],
  pending: async () => [{ reason: 'no_capacity', count: 2 }],
  heartbeatAges: async () => [{ brokerId: '0196f0c4-0000-7000-8000-000000000001', ageSecs: 1.5 }],
  jobCounts: async () => ({ waiting: 1, active: 0, delayed: 0, failed: 4 }),
};

/** Our own series only: prom-client's default process/nodejs metrics are not ours to lint. */
function graftOnly(text: string): string {
  return `${text
    .split('\n')
    .filter((l) => /^(# (HELP|TYPE) )?graft_/.test(l))
    .join('\n')}\n`;
}

describe('hub metrics', () => {
  it('pass `promtool check metrics` with every series populated', async () => {
    const m = createHubMetrics(sources);
    m.httpDuration.observe({ method: 'GET', route: '/api/v1/agents', status: '200' }, 0.004);
    m.signatureRejections.inc({ reason: 'bad_signature' });
    m.tunnels.set(2);
    m.tunnelCommands.inc({ command: 'create' });
    m.livenessTransitions.inc({ to: 'offline' });
    m.logBytes.inc({ what: 'received' }, 10);
    m.logAcks.inc();
    m.dispatchDuration.observe({ command: 'create' }, 0.01);
    m.routedCommands.inc({ outcome: 'ok' });
    m.routedDuration.observe(0.002);
    m.statusUpdates.inc({ outcome: 'applied' });
    m.jobRuns.inc({ job: 'placement', outcome: 'ok' });
    const text = graftOnly(await m.registry.metrics());
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    if (check.error) throw new Error(`promtool is required (apt-get install prometheus): ${check.error.message}`);
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
    // The scrape-time gauges read their sources.
    expect(text).toContain('graft_agents{phase="running",activity="working"} 3');
    expect(text).toContain('graft_agents{phase="created",activity="none"} 2');
    expect(text).toContain('graft_pending_agents{reason="no_capacity"} 2');
    expect(text).toContain('graft_broker_heartbeat_age_seconds{broker="0196f0c4-0000-7000-8000-000000000001"} 1.5');
    expect(text).toContain('graft_job_queue_depth{state="failed"} 4');
    expect(text).toContain('graft_broker_tunnels{replica="replica-a"} 2');
  });

  it('flags a metric that breaks the conventions (the check is not vacuous)', () => {
    const bad = '# HELP graft_bad_count a counter without _total\n# TYPE graft_bad_count counter\ngraft_bad_count 1\n';
    const check = spawnSync('promtool', ['check', 'metrics'], { input: bad, encoding: 'utf8' });
    expect(check.status).not.toBe(0);
  });

  it('still answers a scrape while the database is down: the database gauges are left out, the rest stays', async () => {
    const down = async () => {
      throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    };
    const m = createHubMetrics({ ...sources, agents: down, pending: down, heartbeatAges: down });
    m.logAcks.inc(5);
    const text = await m.registry.metrics();
    expect(text).toContain('graft_log_acks_total 5');
    expect(text).not.toMatch(/^graft_agents\{/m);
  });
});
