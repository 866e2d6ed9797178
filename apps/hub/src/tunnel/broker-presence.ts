import type { Database } from '@graft/db';
import type { BrokerLoad, BrokerRuntime } from '@graft/protocol';
import { type Kysely, type RawBuilder, sql } from 'kysely';
import type pg from 'pg';

/** How often queued heartbeats are written at most: one UPDATE for every broker heard from since the last. */
const MAX_FLUSH_INTERVAL_MS = 1_000;

const WRITE_HEARTBEATS = `UPDATE brokers b SET last_heartbeat_at = v.at, reported_running = v.running, max_agents = v.max_agents
  FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int[], $5::int[]) AS v(id, session, at, running, max_agents)
  WHERE b.id = v.id AND b.tunnel_session = v.session`;

/**
 * A broker is alive while its heartbeats are fresh (it missed fewer than 3) and it is connected, or
 * disconnected for less than one heartbeat interval: a fast reconnect never marks it offline.
 */
export function brokerAliveSql(table: string, heartbeatIntervalMs: number): RawBuilder<boolean> {
  const b = sql.table(table);
  const fresh = sql.lit(`${heartbeatIntervalMs * 3} milliseconds`);
  const grace = sql.lit(`${heartbeatIntervalMs} milliseconds`);
  return sql<boolean>`(${b}.last_heartbeat_at > now() - ${fresh}::interval AND (${b}.tunnel_session IS NOT NULL OR ${b}.disconnected_at > now() - ${grace}::interval))`;
}

/** A broker's tunnel as its hello describes it. */
export interface TunnelHello {
  brokerId: string;
  sessionId: string;
  hostname: string;
  brokerVersion: string;
  runtimes: BrokerRuntime[];
  load: BrokerLoad;
}

/**
 * Where the hub records which brokers hold a tunnel and how loaded they are (the `brokers` row).
 * Every write names the tunnel session it comes from, so a stale connection's late writes are no-ops.
 */
export class BrokerPresence {
  private readonly queued = new Map<string, { session: string; at: Date; load: BrokerLoad }>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly pool: pg.Pool,
    private readonly onError: (err: unknown) => void,
    heartbeatIntervalMs: number,
  ) {
    // Well inside the freshness window (3 intervals), whatever the interval.
    this.timer = setInterval(
      () => {
        this.flushing = this.flush().catch(onError);
      },
      Math.min(MAX_FLUSH_INTERVAL_MS, Math.floor(heartbeatIntervalMs / 2)),
    );
    this.timer.unref();
  }

  /** Records a new tunnel: it replaces whatever session the row named before. */
  async connected(h: TunnelHello): Promise<void> {
    const now = new Date();
    await this.db
      .updateTable('brokers')
      .set({
        tunnel_session: h.sessionId,
        connected_at: now,
        disconnected_at: null,
        last_heartbeat_at: now,
        hostname: h.hostname,
        version: h.brokerVersion,
        runtimes: h.runtimes,
        max_agents: h.load.maxAgents,
        reported_running: h.load.runningAgents,
        updated_at: now,
      })
      .where('id', '=', h.brokerId)
      .execute();
  }

  /** Queues a heartbeat; written within a second together with every other broker's. */
  heartbeat(brokerId: string, sessionId: string, load: BrokerLoad): void {
    this.queued.set(brokerId, { session: sessionId, at: new Date(), load });
  }

  /** Records that a tunnel closed, unless a newer one of the same broker took over already. */
  async disconnected(brokerId: string, sessionId: string): Promise<void> {
    if (this.queued.get(brokerId)?.session === sessionId) this.queued.delete(brokerId);
    await this.db
      .updateTable('brokers')
      .set({ tunnel_session: null, disconnected_at: new Date() })
      .where('id', '=', brokerId)
      .where('tunnel_session', '=', sessionId)
      .execute();
  }

  /** Writes queued heartbeats now. */
  async flush(): Promise<void> {
    await this.flushing.catch(() => {});
    if (this.queued.size === 0) return;
    const batch = [...this.queued];
    this.queued.clear();
    try {
      await this.write(batch);
    } catch (err) {
      // Postgres away: keep the newest heartbeat of each broker for the next flush, so brokers
      // look alive as soon as the database is back, not one heartbeat later.
      for (const [id, h] of batch) if (!this.queued.has(id)) this.queued.set(id, h);
      throw err;
    }
  }

  private async write(batch: Array<[string, { session: string; at: Date; load: BrokerLoad }]>): Promise<void> {
    await this.pool.query({
      name: 'broker_heartbeats_write',
      text: WRITE_HEARTBEATS,
      values: [
        batch.map(([id]) => id),
        batch.map(([, h]) => h.session),
        batch.map(([, h]) => h.at),
        batch.map(([, h]) => h.load.runningAgents),
        batch.map(([, h]) => h.load.maxAgents),
      ],
    });
  }

  /** Stops the flush timer after one last flush. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush().catch(this.onError);
  }
}
