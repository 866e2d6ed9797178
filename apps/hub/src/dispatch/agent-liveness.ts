import type { Database } from '@graft/db';
import type { Logger } from '@graft/log';
import { type Activity, applyStatus } from '@graft/protocol';
import { type Kysely, sql } from 'kysely';
import type { Counter } from 'prom-client';
import type { AgentStateWriter } from '../domain/agent-writer.js';
import { brokerAliveSql } from '../tunnel/broker-presence.js';

/** When the platform sets `offline` and `stalled` (DESIGN §3). */
export interface LivenessSettings {
  /** Broker heartbeat interval: a broker that missed 3 is not alive. */
  heartbeatIntervalMs: number;
  /** An agent that has reported before but not for this long is `offline`. */
  agentOfflineAfterMs: number;
  /** A busy agent whose activity has not changed for this long is `stalled`. */
  agentStalledAfterMs: number;
}

/** Activities that can stall: the agent is busy. Idle and waiting (sticky) agents are expected to sit still. */
const BUSY_ACTIVITIES: readonly Activity[] = ['working', 'thinking', 'executing'];

type Change = 'offline' | 'online' | 'stalled';

/**
 * The platform-only activities, from liveness sweeps:
 * - `offline` when the agent's broker is not alive (fast sweep, 20 per heartbeat interval), or when
 *   an agent that has reported before (`last_seen_at` set by its own status reports and heartbeats)
 *   has been silent for `agentOfflineAfterMs`;
 * - back to the activity it had (`prior_activity`) once both are alive again;
 * - `stalled` when a busy agent's activity has not changed for `agentStalledAfterMs`, keeping the
 *   activity it stalled from in `prior_activity` (its next report replaces it);
 * - in projects with `auto_suspend_stalled`, a stalled agent still wanted running is suspended (the
 *   next slow sweep after it stalled, or after the project turned the setting on).
 * Every change goes through the writer and the state machine, as a `platform` report.
 */
export class AgentLiveness {
  /** How often `sweep` should run: the fast (broker) sweep's interval. */
  readonly everyMs: number;
  /** The slow (agent) sweep runs at most this often. */
  private readonly agentSweepMs: number;
  private lastAgentSweep = 0;

  constructor(
    private readonly deps: {
      db: Kysely<Database>;
      writer: AgentStateWriter;
      settings: LivenessSettings;
      transitions: Counter<'to'>;
      /** Suspends an agent as the lifecycle API would (desired state, generation, command to its broker). */
      suspend: (agentId: string) => Promise<void>;
      log: Logger;
    },
  ) {
    const { heartbeatIntervalMs, agentOfflineAfterMs, agentStalledAfterMs } = deps.settings;
    this.everyMs = Math.max(50, Math.floor(heartbeatIntervalMs / 20));
    this.agentSweepMs = Math.max(250, Math.min(5_000, Math.floor(Math.min(agentOfflineAfterMs, agentStalledAfterMs) / 4)));
  }

  /**
   * One pass, run by the `liveness` job every `everyMs`: the broker sweep, and the agent sweep when
   * it is due (it looks at every running agent, so it runs less often).
   */
  async sweep(): Promise<void> {
    await this.sweepBrokers();
    if (Date.now() - this.lastAgentSweep < this.agentSweepMs) return;
    await this.sweepAgents();
    this.lastAgentSweep = Date.now();
  }

  /** Agents of brokers that are not alive go offline; offline agents whose broker and own reports are fresh come back. */
  async sweepBrokers(): Promise<void> {
    const alive = brokerAliveSql('b', this.deps.settings.heartbeatIntervalMs);
    const silent = sql.lit(`${this.deps.settings.agentOfflineAfterMs} milliseconds`);
    const { rows } = await sql<{ id: string; change: Change }>`
      SELECT a.id, 'offline' AS change FROM agents a
        WHERE a.phase = 'running' AND a.activity IS DISTINCT FROM 'offline'
          AND a.broker_id IN (SELECT b.id FROM brokers b WHERE b.joined_at IS NOT NULL AND NOT ${alive})
      UNION ALL
      SELECT a.id, 'online' AS change FROM agents a
        WHERE a.activity = 'offline' AND a.phase = 'running'
          AND (a.last_seen_at IS NULL OR a.last_seen_at >= now() - ${silent}::interval)
          AND a.broker_id IN (SELECT b.id FROM brokers b WHERE ${alive})`.execute(this.deps.db);
    await this.apply(rows);
  }

  /** Agents silent for too long go offline; busy agents whose activity has not moved stall. */
  async sweepAgents(): Promise<void> {
    const silent = sql.lit(`${this.deps.settings.agentOfflineAfterMs} milliseconds`);
    const still = sql.lit(`${this.deps.settings.agentStalledAfterMs} milliseconds`);
    const { rows } = await sql<{ id: string; change: Change | 'suspend' }>`
      SELECT a.id, CASE WHEN a.last_seen_at < now() - ${silent}::interval THEN 'offline' ELSE 'stalled' END AS change
        FROM agents a
        WHERE a.phase = 'running'
          AND ((a.activity IS DISTINCT FROM 'offline' AND a.last_seen_at < now() - ${silent}::interval)
            OR (a.activity = ANY(${BUSY_ACTIVITIES}::text[]) AND a.activity_changed_at < now() - ${still}::interval))
      UNION ALL
      SELECT a.id, 'suspend' AS change FROM agents a JOIN projects p ON p.id = a.project_id
        WHERE p.auto_suspend_stalled AND a.phase = 'running' AND a.activity = 'stalled' AND a.desired_state = 'running'`.execute(this.deps.db);
    await this.apply(rows.filter((r): r is { id: string; change: Change } => r.change !== 'suspend'));
    await this.suspendStalled(rows.filter((r) => r.change === 'suspend').map((r) => r.id));
  }

  private async suspendStalled(ids: readonly string[]): Promise<void> {
    await Promise.all(
      ids.map(async (id) => {
        try {
          await this.deps.suspend(id);
          this.deps.transitions.inc({ to: 'suspended' });
          this.deps.log.info('agent.auto_suspended', { agentId: id });
        } catch (err) {
          // The agent moved on meanwhile (reported, was stopped): nothing to suspend.
          this.deps.log.info('agent.auto_suspend_skipped', { agentId: id, reason: err instanceof Error ? err.message : String(err) });
        }
      }),
    );
  }

  private async apply(rows: ReadonlyArray<{ id: string; change: Change }>): Promise<void> {
    const now = new Date();
    await Promise.all(
      rows.map(({ id, change }) =>
        this.deps.writer
          .update(id, (cur) => {
            if (cur.phase !== 'running') return { noop: false };
            if (change === 'online' && cur.activity !== 'offline') return { noop: false };
            if (change === 'offline' && cur.activity === 'offline') return { noop: false };
            if (change === 'stalled' && (cur.activity === null || !BUSY_ACTIVITIES.includes(cur.activity))) return { noop: false };
            const activity: Activity = change === 'online' ? (cur.priorActivity ?? 'idle') : change;
            const r = applyStatus(cur, { activity }, 'platform');
            if (!r.ok) return { noop: false };
            // Going offline from stalled keeps what it stalled from; coming back restores that.
            const prior = change === 'online' ? null : cur.activity === 'stalled' ? cur.priorActivity : cur.activity;
            return { set: { activity: r.activity, prior_activity: prior, activity_changed_at: now }, result: () => true };
          })
          .then((changed) => {
            if (!changed) return;
            this.deps.transitions.inc({ to: change });
            this.deps.log.info(`agent.${change}`, { agentId: id });
          })
          .catch(() => {}),
      ),
    );
  }
}
