import type { Database } from '@graft/db';
import { type BrokerRuntime, eligibleRuntimes, type PendingReason, type RuntimeNeeds, runtimeNeeds, runtimeOnBroker, runtimeStages, type TemplateSpec } from '@graft/protocol';
import { type Kysely, sql } from 'kysely';
import { brokerAliveSql } from '../tunnel/broker-presence.js';

/** What placement needs to know about an agent. */
export interface PlacementRequest {
  projectId: string;
  /** Which runtimes may run it (from the template: runtime, image, network, resources). */
  needs: RuntimeNeeds;
  /** Broker labels the template requires. */
  labels: Record<string, string>;
  /** An explicit broker asked for at creation: the agent waits for that one only. */
  requestedBrokerId: string | null;
}

/** A placement decision: a broker and the runtime to use there, or why the agent must wait. */
export type PlacementDecision = { ok: true; brokerId: string; runtime: BrokerRuntime } | { ok: false; pendingReason: PendingReason };

/** Phases that do not hold a slot on a broker, whatever is wanted. */
const FINISHED_PHASES = ['stopped', 'error', 'suspended'];

interface BrokerFacts {
  id: string;
  auto_provide: boolean;
  allowed: boolean;
  runtimes: string[];
  labels: Record<string, string>;
  draining: boolean;
  alive: boolean;
  connected: boolean;
  max_agents: number | null;
  load: string;
}

/**
 * Chooses a broker for an agent (DESIGN §4): connected, not draining, allowed for the project (a
 * link or auto-provide), offering the runtime and labels the template asks for, with a free slot;
 * the least loaded wins (ties by id). Load counts agents placed there that are wanted running and
 * not finished, so it moves with every placement, not only with heartbeats.
 */
export class Placement {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly heartbeatIntervalMs: number,
  ) {}

  /** The placement request of an agent made from `spec`. */
  static requestFor(projectId: string, spec: TemplateSpec, requestedBrokerId: string | null): PlacementRequest {
    return { projectId, needs: runtimeNeeds(spec), labels: spec.requirements?.labels ?? {}, requestedBrokerId };
  }

  /** Picks a broker, or says why none fits. */
  async choose(req: PlacementRequest): Promise<PlacementDecision> {
    const facts = await this.brokerFacts(req, true);
    const best = facts[0];
    const runtime = best ? runtimeOnBroker(req.needs, best.runtimes) : null;
    if (best && runtime !== null && Number(best.load) < (best.max_agents ?? 0)) return { ok: true, brokerId: best.id, runtime };
    return { ok: false, pendingReason: pendingReasonOf(await this.brokerFacts(req, false), req) };
  }

  /** The brokers as placement sees them: only full candidates, least loaded first, or every joined broker. */
  private async brokerFacts(req: PlacementRequest, candidatesOnly: boolean): Promise<BrokerFacts[]> {
    const runtimes = eligibleRuntimes(req.needs);
    const labels = JSON.stringify(req.labels);
    const alive = brokerAliveSql('b', this.heartbeatIntervalMs);
    const filters = candidatesOnly
      ? sql`AND b.tunnel_session IS NOT NULL AND ${alive} AND NOT b.draining
            AND (b.auto_provide OR EXISTS (SELECT 1 FROM broker_projects bp WHERE bp.broker_id = b.id AND bp.project_id = ${req.projectId}))
            AND b.runtimes && ${runtimes}::text[]
            AND b.labels @> ${labels}::jsonb`
      : sql``;
    const requested = req.requestedBrokerId === null ? sql`` : sql`AND b.id = ${req.requestedBrokerId}`;
    const { rows } = await sql<BrokerFacts>`
      SELECT * FROM (
        SELECT b.id, b.auto_provide, b.runtimes, b.labels, b.draining, b.max_agents,
          ${alive} AS alive, b.tunnel_session IS NOT NULL AS connected,
          EXISTS (SELECT 1 FROM broker_projects bp WHERE bp.broker_id = b.id AND bp.project_id = ${req.projectId}) AS allowed,
          (SELECT count(*) FROM agents a WHERE a.broker_id = b.id AND a.desired_state = 'running'
             AND a.phase <> ALL(${FINISHED_PHASES}::text[])) AS load
        FROM brokers b
        WHERE b.joined_at IS NOT NULL ${requested} ${filters}
      ) s
      ORDER BY s.load::float8 / greatest(s.max_agents, 1), s.id
      ${candidatesOnly ? sql`LIMIT 1` : sql``}`.execute(this.db);
    return rows;
  }
}

/**
 * Why no broker fits: the filters in placement order, and the reason is the first one that leaves
 * nobody (so "no_capacity" means some broker would take the agent once a slot frees up).
 */
export function pendingReasonOf(brokers: readonly BrokerFacts[], req: Pick<PlacementRequest, 'needs' | 'labels'>): PendingReason {
  const offers = (runtimes: readonly BrokerRuntime[]) => (b: BrokerFacts) => b.runtimes.some((r) => (runtimes as readonly string[]).includes(r));
  const steps: Array<[PendingReason, (b: BrokerFacts) => boolean]> = [
    ['no_broker', (b) => b.alive && b.connected],
    ['not_allowed', (b) => b.auto_provide || b.allowed],
    // no_runtime, then no_isolation (network: false), then no_limits (resources).
    ...runtimeStages(req.needs).map(({ reason, runtimes }): [PendingReason, (b: BrokerFacts) => boolean] => [reason, offers(runtimes)]),
    ['no_labels', (b) => Object.entries(req.labels).every(([k, v]) => b.labels[k] === v)],
    ['draining', (b) => !b.draining],
    ['no_capacity', (b) => Number(b.load) < (b.max_agents ?? 0)],
  ];
  let left = brokers;
  for (const [reason, keep] of steps) {
    left = left.filter(keep);
    if (left.length === 0) return reason;
  }
  // Everything passed in the diagnosis, so the candidate query raced a change: try again later.
  return 'no_capacity';
}
